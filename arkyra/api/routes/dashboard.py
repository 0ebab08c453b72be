"""The integrations dashboard: server-rendered pages at ``/`` and ``/ui/...``.

Jinja2 templates and one small script (no build step). Pages work without JavaScript; with it,
connect and disconnect open in a modal dialog that loads the same forms as fragments
(``X-Arkyra-Fragment: 1``) and follows ``X-Arkyra-Redirect`` on success.

Sign-in is a pasted JWT kept in an ``HttpOnly``/``SameSite=Strict`` cookie (see
:mod:`arkyra.api.session`); every form carries a CSRF token. Credentials are written through the
same :class:`CredentialStore` as the JSON API, and a stored secret is never rendered.
"""

from __future__ import annotations

import inspect
import re
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import httpx
from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates
from sqlalchemy import func, select

from arkyra.api.activity import recent_activity
from arkyra.api.cache import FunctionCache, is_list_function
from arkyra.api.deps import (
    DEFAULT_LIMITS,
    CacheDep,
    DbDep,
    JobsDep,
    LimiterDep,
    ProviderFactoryDep,
    SettingsDep,
    StoreDep,
    route_key,
)
from arkyra.api.jobs import JobRunner, to_jsonable
from arkyra.api.logging import get_logger, redact, remember_secrets
from arkyra.api.routes.third_party import take_generated_secret
from arkyra.api.session import (
    CSRF_FIELD,
    CsrfRejected,
    FormRejected,
    Session,
    SessionRequired,
    check_csrf,
    check_sign_in_csrf,
    current_session,
    end_session,
    optional_session,
    read_form,
    set_sign_in_csrf,
    sign_in_csrf,
    start_session,
)
from arkyra.credentials import CredentialStore, Integration, NeedsReconnect
from arkyra.db.models import AIUsage, IntegrationStatus
from arkyra.db.session import Database
from arkyra.errors import (
    InvalidCredentials,
    InvalidInput,
    NotFound,
    ProviderError,
    RateLimited,
    Transient,
)
from arkyra.providers import ThirdPartyProvider, all_providers, catalogue_entry, provider_class
from arkyra.security.tokens import InvalidToken

log = get_logger("arkyra.api.dashboard")

API_ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = Jinja2Templates(directory=str(API_ROOT / "templates"))
STATIC_DIR = API_ROOT / "static"

FRAGMENT_HEADER = "x-arkyra-fragment"
REDIRECT_HEADER = "X-Arkyra-Redirect"

#: The dashboard's category filters, in display order.
CATEGORIES: tuple[tuple[str, str], ...] = (
    ("video", "Video"),
    ("audio", "Audio"),
    ("automation", "Automation"),
    ("content", "Content"),
    ("ai", "AI"),
)

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; "
        "object-src 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

MAX_ROWS = 500
CHART_DAYS = 14


class Forbidden(Exception):
    """The signed-in user lacks the role for this page or action."""


class Throttled(Exception):
    """The organization's rate limit for this form refused the request."""

    def __init__(self, headers: dict[str, str]) -> None:
        super().__init__("too many requests")
        self.headers = headers


# -- plumbing: HTML errors, security headers, rendering ---------------------------------------


def is_fragment(request: Request) -> bool:
    return request.headers.get(FRAGMENT_HEADER) == "1"


def secure(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def render(
    request: Request,
    template: str,
    context: dict[str, Any] | None = None,
    *,
    status: int = 200,
    session: Session | None = None,
) -> HTMLResponse:
    """A page, or just its content when the modal asked for a fragment."""
    values: dict[str, Any] = {
        "layout": "fragment.html" if is_fragment(request) else "base.html",
        "session": session,
        "csrf_field": CSRF_FIELD,
        "categories": CATEGORIES,
    }
    values.update(context or {})
    response = TEMPLATES.TemplateResponse(request, template, values, status_code=status)
    secure(response)
    return response


def redirect(request: Request, url: str) -> Response:
    """After a successful form: a 303 for the browser, or a header the modal script follows."""
    if is_fragment(request):
        response: Response = Response(status_code=200, headers={REDIRECT_HEADER: url})
    else:
        response = RedirectResponse(url, status_code=303)
    return secure(response)


def message_page(
    request: Request, status: int, title: str, text: str, session: Session | None = None
) -> HTMLResponse:
    return render(
        request, "message.html", {"title": title, "text": text}, status=status, session=session
    )


def _sign_in_url(request: Request) -> str:
    path = request.url.path
    return "/ui/sign-in" if path in ("/", "/ui/sign-in") else f"/ui/sign-in?next={quote(path)}"


class DashboardRoute(APIRoute):
    """Turns the dashboard's own refusals into HTML pages (the API's handlers answer JSON)."""

    def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
        handler = super().get_route_handler()

        async def html_errors(request: Request) -> Response:
            try:
                return await handler(request)
            except SessionRequired:
                if is_fragment(request) or request.method != "GET":
                    response: Response = message_page(
                        request, 401, "Signed out", "Your session has ended; sign in again."
                    )
                    response.headers[REDIRECT_HEADER] = "/ui/sign-in"
                    return response
                return secure(RedirectResponse(_sign_in_url(request), status_code=303))
            except CsrfRejected as exc:
                return message_page(request, 403, "Form refused", str(exc))
            except FormRejected as exc:
                return message_page(request, 400, "Form refused", str(exc))
            except Forbidden as exc:
                return message_page(request, 403, "Not allowed", str(exc))
            except Throttled as exc:
                response = message_page(
                    request, 429, "Slow down", "Too many attempts; wait a moment and try again."
                )
                response.headers.update(exc.headers)
                return response
            except NotFound:
                return message_page(
                    request, 404, "Not found", "There is nothing here in your organization."
                )

        return html_errors


router = APIRouter(include_in_schema=False, route_class=DashboardRoute)


# -- dependencies -----------------------------------------------------------------------------


def get_session(request: Request, settings: SettingsDep) -> Session:
    return current_session(request, settings)


SessionDep = Annotated[Session, Depends(get_session)]


def get_admin_session(session: SessionDep) -> Session:
    if not session.principal.is_admin:
        raise Forbidden("Only an admin of your organization can do this.")
    return session


AdminSessionDep = Annotated[Session, Depends(get_admin_session)]


async def get_checked_form(request: Request, session: AdminSessionDep) -> dict[str, str]:
    """The posted form, once its CSRF token matches this session."""
    form = await read_form(request)
    check_csrf(request, session, form)
    return form


FormDep = Annotated[dict[str, str], Depends(get_checked_form)]


def limited(bucket: str) -> Callable[..., Awaitable[None]]:
    """A dependency counting a form against the organization's API limit for ``bucket``
    (the same limits and storage as the JSON API), keyed by this route."""

    async def check(request: Request, session: SessionDep, limiter: LimiterDep) -> None:
        limits: dict[str, str] = getattr(request.app.state, "limits", None) or DEFAULT_LIMITS
        limit = limits.get(bucket) or limits.get("default") or DEFAULT_LIMITS["default"]
        decision = await limiter.hit(limit, session.principal.organization_id, route_key(request))
        if not decision.allowed:
            raise Throttled(decision.headers())

    return check


# -- static files -----------------------------------------------------------------------------


def _static_files() -> dict[str, Path]:
    """Every file we serve under ``/static``, fixed at start-up (no path from a request is
    ever joined onto the file system)."""
    return {
        path.relative_to(STATIC_DIR).as_posix(): path
        for path in STATIC_DIR.rglob("*")
        if path.is_file()
    }


STATIC_FILES = _static_files()
MEDIA_TYPES = {".css": "text/css", ".js": "text/javascript", ".svg": "image/svg+xml"}


def logo_url(identifier: str) -> str:
    """The provider's bundled logo, or a neutral one for a provider without its own."""
    name = f"logos/{identifier}.svg"
    return f"/static/{name}" if name in STATIC_FILES else "/static/logos/_generic.svg"


TEMPLATES.env.globals["logo_url"] = logo_url


@router.get("/static/{path:path}")
async def static_file(path: str) -> Response:
    file = STATIC_FILES.get(path)
    if file is None:
        return Response("not found", status_code=404, media_type="text/plain")
    response = FileResponse(file, media_type=MEDIA_TYPES.get(file.suffix))
    response.headers["Cache-Control"] = "public, max-age=3600"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


# -- sign in and out --------------------------------------------------------------------------


_SAFE_NEXT = re.compile(r"^/(?:ui/[A-Za-z0-9/_.-]*)?$")


def _safe_next(value: str | None) -> str:
    """Only our own pages: never another site (``//evil``), never a scheme."""
    return value if value and _SAFE_NEXT.match(value) else "/"


@router.get("/ui/sign-in", response_class=HTMLResponse)
async def sign_in_page(
    request: Request, settings: SettingsDep, next: str | None = None
) -> Response:
    if optional_session(request, settings) is not None:
        return secure(RedirectResponse(_safe_next(next), status_code=303))
    return _sign_in_form(request, next=_safe_next(next))


def _sign_in_form(
    request: Request, *, next: str, error: str | None = None, status: int = 200
) -> Response:
    token = sign_in_csrf(request)
    context = {"sign_in_csrf": token, "next": next, "error": error}
    response = render(request, "sign_in.html", context, status=status)
    set_sign_in_csrf(response, request, token)
    return response


@router.post("/ui/sign-in")
async def sign_in(request: Request, settings: SettingsDep) -> Response:
    form = await read_form(request)
    check_sign_in_csrf(request, form)
    target = _safe_next(form.get("next"))
    token = form.get("token", "").strip()
    if not token:
        return _sign_in_form(request, next=target, error="Paste a token to sign in.", status=400)
    response = RedirectResponse(target, status_code=303)
    try:
        start_session(response, request, settings, token)
    except InvalidToken as exc:
        return _sign_in_form(
            request, next=target, error=f"That token was refused: {exc}.", status=401
        )
    return secure(response)


@router.post("/ui/sign-out")
async def sign_out(request: Request, session: SessionDep) -> Response:
    form = await read_form(request)
    check_csrf(request, session, form)
    response = RedirectResponse("/ui/sign-in", status_code=303)
    end_session(response)
    return secure(response)


# -- the dashboard ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Card:
    """One provider on the dashboard with this organization's integrations of it."""

    entry: dict[str, Any]
    integrations: list[Integration]

    @property
    def identifier(self) -> str:
        return str(self.entry["identifier"])


def _known_identifier(value: str | None) -> str | None:
    identifiers = {cls.identifier: cls.title for cls in all_providers()}
    return identifiers.get(value or "")


@router.get("/", response_class=HTMLResponse)
async def dashboard(
    request: Request,
    session: SessionDep,
    store: StoreDep,
    category: Annotated[str | None, Query(max_length=32)] = None,
    connected: Annotated[str | None, Query(max_length=64)] = None,
    disconnected: Annotated[str | None, Query(max_length=64)] = None,
) -> Response:
    """Every provider as a card with its status, filtered by category."""
    by_identifier: dict[str, list[Integration]] = defaultdict(list)
    for item in await store.list(session.principal.organization_id):
        by_identifier[item.identifier].append(item)
    order = {key: index for index, (key, _) in enumerate(CATEGORIES)}
    providers = sorted(all_providers(), key=lambda c: (order.get(c.category, 99), c.title.lower()))
    cards = [Card(catalogue_entry(c), by_identifier.get(c.identifier, [])) for c in providers]
    counts = {key: sum(1 for c in cards if c.entry["category"] == key) for key, _ in CATEGORIES}
    selected = category if category in counts else None
    notice = None
    if title := _known_identifier(connected):
        names = ", ".join(i.name for i in by_identifier.get(connected or "", []))
        notice = f"{title} is connected" + (f" as {names}." if names else ".")
    elif title := _known_identifier(disconnected):
        notice = f"{title} was disconnected."
    return render(
        request,
        "dashboard.html",
        {
            "cards": [c for c in cards if selected in (None, c.entry["category"])],
            "counts": counts,
            "total": len(cards),
            "selected": selected,
            "notice": notice,
        },
        session=session,
    )


# -- connect ----------------------------------------------------------------------------------


def _provider_or_404(identifier: str) -> type[ThirdPartyProvider]:
    return provider_class(identifier)  # NotFound -> the 404 page


def _connect_context(
    cls: type[ThirdPartyProvider],
    *,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    failure: str | None = None,
) -> dict[str, Any]:
    """The connect form: secrets are never filled in again, even after a failed attempt."""
    kept = {
        f.name: (values or {}).get(f.name, "")
        for f in cls.fields
        if not f.is_secret and (values or {}).get(f.name)
    }
    if values and values.get("label"):
        kept["label"] = values["label"]
    return {
        "provider": catalogue_entry(cls),
        "fields": cls.fields,
        "values": kept,
        "errors": errors or {},
        "failure": failure,
    }


@router.get("/ui/providers/{identifier}/connect", response_class=HTMLResponse)
async def connect_form(request: Request, identifier: str, session: AdminSessionDep) -> Response:
    cls = _provider_or_404(identifier)
    return render(request, "connect.html", _connect_context(cls), session=session)


@router.post("/ui/providers/{identifier}/connect", dependencies=[Depends(limited("connect"))])
async def connect(
    request: Request,
    identifier: str,
    session: AdminSessionDep,
    form: FormDep,
    store: StoreDep,
    cache: CacheDep,
) -> Response:
    """Check the fields here, prove them with the vendor, store them; say why if refused."""
    cls = _provider_or_404(identifier)
    values = {f.name: form.get(f.name, "") for f in cls.fields}
    if form.get("label", "").strip():
        values["label"] = form["label"]
    secrets = [v.strip() for v in values.values() if len(v.strip()) >= 6]
    remember_secrets(secrets)

    def again(status: int, **kwargs: Any) -> Response:
        context = _connect_context(cls, values=values, **kwargs)
        return render(request, "connect.html", context, status=status, session=session)

    provider = store.provider(identifier)
    try:
        cls.validate_credentials(values)
        integration = await store.connect(
            session.principal.organization_id, identifier, values, provider=provider
        )
    except InvalidInput as exc:
        errors = {name: redact(text, secrets) for name, text in exc.errors.items()}
        return again(422, errors=errors, failure="Some fields need attention.")
    except (Transient, RateLimited) as exc:
        reason = redact(exc.message or str(exc), secrets)
        log.info("dashboard connect %s: vendor unavailable: %s", identifier, type(exc).__name__)
        return again(
            503,
            failure=f"{cls.title} could not check the credentials now: {reason}. "
            "Try again in a moment.",
        )
    except ProviderError as exc:
        reason = redact(exc.message or str(exc), secrets)
        log.info("dashboard connect %s refused: %s", identifier, type(exc).__name__)
        return again(400, failure=f"{cls.title} refused the connection: {reason}")
    await _forget_cached(cache, integration.id)
    log.info("dashboard connected %s integration %s", identifier, integration.id)
    signing_secret = take_generated_secret(provider)
    if signing_secret:  # generated for this connect: this page is the only place it is shown
        context = {
            "provider": catalogue_entry(cls),
            "integration": integration,
            "signing_secret": signing_secret,
        }
        return render(request, "connected.html", context, session=session)
    return redirect(request, f"/?connected={identifier}")


async def _forget_cached(cache: FunctionCache, integration_id: str) -> None:
    try:
        await cache.invalidate(integration_id)
    except Exception as exc:  # an optimisation; never fail the page on it
        log.warning("cache invalidation failed for %s: %s", integration_id, type(exc).__name__)


# -- one integration: manage, disconnect, browse list functions -------------------------------


def browsable_functions(cls: type[ThirdPartyProvider]) -> list[str]:
    """Exposed list functions that need no input: voices, avatars, templates, ..."""
    names = []
    for name, spec in sorted(cls.exposed.items()):
        required = any(f.is_required() for f in spec.input_model.model_fields.values())
        if not required and is_list_function(cls, name):
            names.append(name)
    return names


async def _integration(
    store: CredentialStore, session: Session, integration_id: str
) -> Integration:
    return await store.get(session.principal.organization_id, integration_id)


async def _panel(
    integration: Integration, cls: type[ThirdPartyProvider], jobs: JobRunner, db: Database
) -> dict[str, Any]:
    """What every view of one integration shows: details, list functions, recent activity."""
    return {
        "integration": integration,
        "provider": catalogue_entry(cls),
        "functions": browsable_functions(cls),
        "activity": await recent_activity(jobs, db, integration, cls.category),
    }


@router.get("/ui/integrations/{integration_id}", response_class=HTMLResponse)
async def integration_page(
    request: Request,
    integration_id: str,
    session: SessionDep,
    store: StoreDep,
    jobs: JobsDep,
    db: DbDep,
) -> Response:
    integration = await _integration(store, session, integration_id)
    cls = _provider_or_404(integration.identifier)
    context = await _panel(integration, cls, jobs, db)
    return render(request, "integration.html", context, session=session)


@router.get("/ui/integrations/{integration_id}/disconnect", response_class=HTMLResponse)
async def disconnect_form(
    request: Request, integration_id: str, session: AdminSessionDep, store: StoreDep
) -> Response:
    integration = await _integration(store, session, integration_id)
    cls = _provider_or_404(integration.identifier)
    context = {"integration": integration, "provider": catalogue_entry(cls)}
    return render(request, "disconnect.html", context, session=session)


@router.post("/ui/integrations/{integration_id}/disconnect")
async def disconnect(
    request: Request,
    integration_id: str,
    session: AdminSessionDep,
    form: FormDep,
    store: StoreDep,
    cache: CacheDep,
) -> Response:
    integration = await _integration(store, session, integration_id)
    await store.remove(session.principal.organization_id, integration.id)
    await _forget_cached(cache, integration.id)
    log.info("dashboard removed integration %s", integration.id)
    return redirect(request, f"/?disconnected={integration.identifier}")


@router.get(
    "/ui/integrations/{integration_id}/functions/{name}",
    response_class=HTMLResponse,
    dependencies=[Depends(limited("function"))],
)
async def browse_function(
    request: Request,
    integration_id: str,
    name: str,
    session: SessionDep,
    store: StoreDep,
    cache: CacheDep,
    providers: ProviderFactoryDep,
    jobs: JobsDep,
    db: DbDep,
    q: Annotated[str, Query(max_length=200)] = "",
) -> Response:
    """A list function's items as a table, with a search box."""
    integration = await _integration(store, session, integration_id)
    cls = _provider_or_404(integration.identifier)
    if name not in browsable_functions(cls):
        raise NotFound(name)
    context = await _panel(integration, cls, jobs, db)
    context.update({"function": name, "q": q, "problem": None, "table": None})
    try:
        items = await _list_items(store, cache, providers, integration, name)
    except NeedsReconnect:
        context["problem"] = "This integration needs to be connected again before it can be used."
    except ProviderError as exc:
        context["problem"] = f"{cls.title} answered with an error: {exc.message}"
    else:
        context["table"] = Table.of(items, q)
    return render(request, "integration.html", context, session=session)


async def _list_items(
    store: CredentialStore,
    cache: FunctionCache,
    providers: Callable[[str], ThirdPartyProvider],
    integration: Integration,
    name: str,
) -> list[Any]:
    """Call the function (cached like the API's list functions); mark a refused key."""
    try:
        cached = await cache.get(integration.id, name, {})
    except Exception:
        cached = None
    if cached is not None:
        return list(cached)
    _, credentials = await store.credentials_for_use(integration.organization_id, integration.id)
    secrets = [v for v in credentials.values() if len(v) >= 6]
    remember_secrets(secrets)
    try:
        outcome = await providers(integration.identifier).call(name, credentials, {})
    except InvalidCredentials as exc:
        reason = redact(exc.message or "the vendor refused the stored credentials", secrets)
        await store.mark(integration.id, IntegrationStatus.NEEDS_RECONNECT, reason)
        await _forget_cached(cache, integration.id)
        raise
    items = _scrub(to_jsonable(outcome), secrets)
    items = items if isinstance(items, list) else [items]
    try:
        await cache.set(integration.id, name, {}, items)
    except Exception as exc:
        log.warning("cache write failed: %s", type(exc).__name__)
    return items


def _scrub(value: Any, secrets: list[str]) -> Any:
    """``value`` with any credential value a vendor echoed back replaced, however nested."""
    if isinstance(value, str):
        return redact(value, secrets)
    if isinstance(value, dict):
        return {k: _scrub(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v, secrets) for v in value]
    return value


@dataclass(frozen=True)
class Table:
    """Rows of a list function, flattened to text cells, filtered by a search."""

    columns: list[str]
    rows: list[list[str]]
    total: int
    matched: int

    @classmethod
    def of(cls, items: list[Any], q: str = "") -> Table:
        records = [i if isinstance(i, dict) else {"value": i} for i in items]
        columns = _columns(records)
        rows = [[_cell(r.get(c)) for c in columns] for r in records]
        needle = q.strip().lower()
        matching = [r for r in rows if not needle or any(needle in c.lower() for c in r)]
        return cls(columns, matching[:MAX_ROWS], total=len(rows), matched=len(matching))


def _columns(records: list[dict[str, Any]], limit: int = 6) -> list[str]:
    """Scalar keys in first-seen order, ``id`` and ``name`` first."""
    seen: list[str] = []
    for record in records[:50]:
        for key, value in record.items():
            if key not in seen and not isinstance(value, dict | list):
                seen.append(str(key))
    preferred = [k for k in ("id", "name") if k in seen]
    return [*preferred, *[k for k in seen if k not in preferred]][:limit]


def _cell(value: Any) -> str:
    if value is None:
        return ""
    text = str(value)
    return text if len(text) <= 120 else text[:117] + "..."


# -- the AI router ----------------------------------------------------------------------------


_PARAM = re.compile(r"\{[^}]+\}")


def has_route(request: Request, path: str) -> bool:
    """Whether this app serves ``path`` (a template such as ``/ai/quota/{org_id}``), whatever
    its parameters are called."""
    wanted = _PARAM.sub("{}", path)
    return any(_PARAM.sub("{}", p) == wanted for p in request.app.openapi().get("paths", {}))


async def api_get(request: Request, session: Session, path: str) -> tuple[int, Any]:
    """Ask this app's own JSON API, as the signed-in user (in process, no sockets)."""
    transport = httpx.ASGITransport(app=request.app)
    headers = {"Authorization": f"Bearer {session.token}"}
    async with httpx.AsyncClient(transport=transport, base_url="http://dashboard.local") as c:
        response = await c.get(path, headers=headers)
    try:
        body = response.json()
    except ValueError:
        body = None
    return response.status_code, body


@dataclass(frozen=True)
class Panel:
    """One block of the AI page: data, or an honest reason why there is none."""

    title: str
    data: Any = None
    unavailable: str | None = None


async def _ai_panel(
    request: Request, session: Session, title: str, template: str, path: str | None = None
) -> Panel:
    """Read one AI router endpoint for the page; say plainly when it cannot be read."""
    if not has_route(request, template):
        return Panel(title, unavailable="the AI router's API is not part of this deployment.")
    url = _PARAM.sub(session.principal.organization_id, path or template)
    try:
        status, body = await api_get(request, session, url)
    except Exception as exc:
        log.warning("dashboard could not read %s: %s", template, type(exc).__name__)
        return Panel(title, unavailable="the API did not answer.")
    if status != 200:
        message = body.get("message") if isinstance(body, dict) else None
        return Panel(title, unavailable=f"the API answered {status}: {message or 'error'}.")
    return Panel(title, data=body)


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    colour: int
    label: str


@dataclass(frozen=True)
class Chart:
    """Cost per provider per day as stacked bars (inline SVG) plus the same numbers as a table."""

    days: list[str]
    providers: list[str]
    costs: dict[tuple[str, str], Decimal]
    bars: list[Bar]
    max_total: Decimal
    width: int = 640
    height: int = 220

    @classmethod
    def of(cls, rows: Iterable[tuple[str, str, Decimal]]) -> Chart:
        costs: dict[tuple[str, str], Decimal] = {}
        for day, provider, cost in rows:
            costs[(day, provider)] = costs.get((day, provider), Decimal(0)) + Decimal(cost)
        days = sorted({d for d, _ in costs})
        providers = sorted({p for _, p in costs})
        totals = {
            d: sum((costs.get((d, p), Decimal(0)) for p in providers), Decimal(0)) for d in days
        }
        max_total = max(totals.values(), default=Decimal(0))
        bars: list[Bar] = []
        plot_height, slot = 180.0, (640 - 60) / max(len(days), 1)
        for index, day in enumerate(days):
            top = 200.0
            for colour, provider in enumerate(providers):
                cost = costs.get((day, provider), Decimal(0))
                if cost <= 0 or max_total <= 0:
                    continue
                height = float(cost / max_total) * plot_height
                top -= height
                bars.append(
                    Bar(
                        60 + index * slot + slot * 0.15,
                        top,
                        slot * 0.7,
                        height,
                        colour % 6,
                        f"{provider} on {day}: ${cost:.4f}",
                    )
                )
        return cls(days, providers, costs, bars, max_total)

    def cost(self, day: str, provider: str) -> str:
        return f"{self.costs.get((day, provider), Decimal(0)):.4f}"


async def cost_by_provider_and_day(db: Database, organization_id: str) -> Chart:
    """This organization's AI cost per provider per day, for the last :data:`CHART_DAYS` days."""
    since = datetime.now(UTC) - timedelta(days=CHART_DAYS)
    day = func.date(AIUsage.created_at)
    statement = (
        select(day, AIUsage.provider, func.coalesce(func.sum(AIUsage.cost_usd), 0))
        .where(AIUsage.organization_id == organization_id, AIUsage.created_at >= since)
        .group_by(day, AIUsage.provider)
    )
    async with db.sessions() as s:
        rows = (await s.execute(statement)).all()
    return Chart.of((str(d)[:10], str(p), Decimal(str(c))) for d, p, c in rows)


@dataclass(frozen=True)
class ProviderHealth:
    """One AI provider's row: availability, breaker, recent metrics (from ``/ai/providers``)."""

    provider: str
    available: bool
    breaker: str
    retry_in_seconds: float | None
    healthy: bool | None
    requests: int | None
    success_rate: float | None
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    cost_usd: Any
    default_model: str


def provider_health(data: Any) -> list[ProviderHealth] | None:
    """The rows of ``GET /ai/providers``, or ``None`` when its shape is not the known one."""
    items = data.get("providers") if isinstance(data, dict) else data
    if not isinstance(items, list) or not all(
        isinstance(i, dict) and isinstance(i.get("provider"), str) for i in items
    ):
        return None
    rows = []
    for item in items:
        breaker = item.get("breaker") if isinstance(item.get("breaker"), dict) else {}
        metrics = item.get("metrics") if isinstance(item.get("metrics"), dict) else {}
        rows.append(
            ProviderHealth(
                provider=item["provider"],
                available=bool(item.get("available", True)),
                breaker=str(breaker.get("state") or item.get("breaker") or "unknown"),
                retry_in_seconds=breaker.get("retry_in_seconds"),
                healthy=item.get("healthy"),
                requests=metrics.get("requests"),
                success_rate=metrics.get("success_rate"),
                latency_p50_ms=metrics.get("latency_p50_ms"),
                latency_p95_ms=metrics.get("latency_p95_ms"),
                cost_usd=metrics.get("cost_usd"),
                default_model=str(item.get("default_model") or ""),
            )
        )
    return rows


@router.get("/ui/ai", response_class=HTMLResponse)
async def ai_page(
    request: Request, session: SessionDep, db: DbDep, probe: bool = False
) -> Response:
    """Providers with health and breakers, this organization's quota, usage and cost chart.

    ``?probe=true`` also runs each provider's free health check (it calls the vendors).
    """
    providers_path = "/ai/providers?probe=true" if probe else "/ai/providers"
    providers = await _ai_panel(request, session, "Providers", "/ai/providers", providers_path)
    quota = await _ai_panel(request, session, "Quota", "/ai/quota/{org_id}")
    usage = await _ai_panel(request, session, "Usage", "/ai/usage/{org_id}")
    chart: Chart | None
    try:
        chart = await cost_by_provider_and_day(db, session.principal.organization_id)
    except Exception as exc:
        log.warning("dashboard could not read AI usage: %s", type(exc).__name__)
        chart = None
    return render(
        request,
        "ai.html",
        {
            "providers": providers,
            "health": provider_health(providers.data) if providers.data is not None else None,
            "probed": probe,
            "quota": quota,
            "usage": usage,
            "chart": chart,
            "chart_days": CHART_DAYS,
        },
        session=session,
    )


# -- pipelines (Prefect deployments) ----------------------------------------------------------


@dataclass(frozen=True)
class PrefectTarget:
    api_url: str
    ui_url: str

    def flow_run_url(self, flow_run_id: str) -> str:
        return f"{self.ui_url}/runs/flow-run/{flow_run_id}"


def prefect_target() -> PrefectTarget | None:
    """The Prefect API this process talks to, or ``None`` when none is configured."""
    from prefect.settings import get_current_settings

    current = get_current_settings()
    api_url = (str(current.api.url) if current.api.url else "").rstrip("/")
    if not api_url:
        return None
    ui_url = (str(current.ui_url) if current.ui_url else "").rstrip("/")
    if not ui_url:
        ui_url = api_url[: -len("/api")] if api_url.endswith("/api") else api_url
    return PrefectTarget(api_url=api_url, ui_url=ui_url)


@dataclass(frozen=True)
class Pipeline:
    id: str
    name: str
    flow_name: str
    description: str
    paused: bool


async def list_pipelines() -> list[Pipeline]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterId

    async with get_client() as client:
        deployments = await client.read_deployments(limit=200)
        flow_ids = list({d.flow_id for d in deployments})
        flows = await client.read_flows(flow_filter=FlowFilter(id=FlowFilterId(any_=flow_ids)))
    names = {f.id: f.name for f in flows}
    return sorted(
        (
            Pipeline(
                id=str(d.id),
                name=d.name,
                flow_name=names.get(d.flow_id, "?"),
                description=_text(d.description),
                paused=bool(d.paused),
            )
            for d in deployments
        ),
        key=lambda p: (p.flow_name, p.name),
    )


def _text(value: str | None) -> str:
    """Prefect's client stores a missing description as the string ``"None"``."""
    return "" if value in (None, "None") else str(value)


@router.get("/ui/pipelines", response_class=HTMLResponse)
async def pipelines_page(
    request: Request,
    session: SessionDep,
    started: Annotated[str | None, Query(max_length=64)] = None,
) -> Response:
    """The Prefect deployments, each with "Run now"; plainly says when Prefect is absent."""
    target = prefect_target()
    pipelines: list[Pipeline] = []
    problem = None
    if target is not None:
        try:
            pipelines = await list_pipelines()
        except Exception as exc:
            log.warning("dashboard could not list deployments: %s", type(exc).__name__)
            problem = f"The Prefect API at {target.api_url} did not answer ({type(exc).__name__})."
    started_url = None
    if started and target is not None and _is_uuid(started):
        started_url = target.flow_run_url(started)
    return render(
        request,
        "pipelines.html",
        {
            "target": target,
            "pipelines": pipelines,
            "problem": problem,
            "started": started if started_url else None,
            "started_url": started_url,
        },
        session=session,
    )


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


@router.post("/ui/pipelines/{deployment_id}/run", dependencies=[Depends(limited("submit"))])
async def run_pipeline(
    request: Request, deployment_id: str, session: AdminSessionDep, form: FormDep
) -> Response:
    """Start a run and return at once (``timeout=0``); the page links to it in Prefect."""
    if prefect_target() is None or not _is_uuid(deployment_id):
        raise NotFound(deployment_id)
    from prefect.deployments import run_deployment

    try:
        outcome = run_deployment(uuid.UUID(deployment_id), timeout=0)
        flow_run = await outcome if inspect.isawaitable(outcome) else outcome
    except Exception as exc:
        log.warning(
            "dashboard could not start deployment %s: %s", deployment_id, type(exc).__name__
        )
        return message_page(
            request, 502, "Run not started", "Prefect refused to start the run.", session
        )
    log.info("dashboard started flow run %s of deployment %s", flow_run.id, deployment_id)
    return redirect(request, f"/ui/pipelines?started={flow_run.id}")
