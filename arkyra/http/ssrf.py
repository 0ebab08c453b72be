"""The SSRF guard for user-supplied URLs (hook URLs, webhook targets, media links).

A URL that a user typed is never fetched as-is. :func:`check_url` refuses anything that is not a
plain ``http(s)://host[:port]/...`` URL pointing at a public address: loopback, private, link-local,
carrier-grade NAT, cloud metadata, multicast, reserved ranges, their IPv6 forms and the odd ways
of spelling them (``2130706433``, ``0x7f.1``, ``[::ffff:127.0.0.1]``, ``%31%32%37.0.0.1``...).
A name is resolved and refused when ANY of its addresses is forbidden.

:class:`GuardedTransport` repeats the check on every request (redirect hops included) and then
pins the connection to the vetted address, so DNS rebinding between check and connect cannot
work. Refusals raise :class:`~arkyra.errors.UnsafeURL`, whose message shows only
``scheme://host[:port]``: hook URLs carry secrets in their path, query and userinfo.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import re
import socket
import ssl
import weakref
from collections.abc import Callable, Mapping
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

import httpx

from arkyra.config import Settings, get_settings
from arkyra.errors import UnsafeURL
from arkyra.http.client import build_client

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

ALLOWED_SCHEMES = frozenset({"http", "https"})
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})

#: Names of instance-metadata services, refused before any DNS look-up.
METADATA_NAMES = frozenset(
    {
        "metadata",
        "metadata.google.internal",
        "metadata.goog",
        "instance-data",
        "instance-data.ec2.internal",
    }
)
#: Suffixes that only ever name hosts on a local network (RFC 6762, RFC 8375, ICANN .internal).
LOCAL_SUFFIXES = (".local", ".internal", ".localdomain", ".home.arpa")

_net = ipaddress.ip_network
_Rule = tuple[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...], str]

_V4_METADATA = tuple(
    _net(n)
    for n in (
        "169.254.169.254/32",  # AWS, GCP, Azure, OpenStack, DigitalOcean...
        "169.254.170.2/32",  # AWS ECS task credentials
        "100.100.100.200/32",  # Alibaba Cloud
        "192.0.0.192/32",  # Oracle Cloud (classic)
    )
)
_V6_METADATA = (_net("fd00:ec2::254/128"),)

#: (networks, reason) in the order they are tested; the first match names the refusal.
_V4_RULES: tuple[_Rule, ...] = (
    ((_net("255.255.255.255/32"),), "the broadcast address"),
    (_V4_METADATA, "a cloud metadata address"),
    ((_net("0.0.0.0/8"),), "an unspecified ('this network') address"),
    ((_net("10.0.0.0/8"), _net("172.16.0.0/12"), _net("192.168.0.0/16")), "a private address"),
    ((_net("100.64.0.0/10"),), "a carrier-grade NAT (shared) address"),
    ((_net("169.254.0.0/16"),), "a link-local address"),
    ((_net("192.0.0.0/24"),), "an IETF protocol-assignment address"),
    (
        (_net("192.0.2.0/24"), _net("198.51.100.0/24"), _net("203.0.113.0/24")),
        "a documentation address",
    ),
    ((_net("198.18.0.0/15"),), "a benchmarking address"),
    ((_net("192.88.99.0/24"),), "a 6to4 relay anycast address"),
    ((_net("224.0.0.0/4"),), "a multicast address"),
    ((_net("240.0.0.0/4"),), "a reserved address"),
)

_V6_RULES: tuple[_Rule, ...] = (
    ((_net("::/128"),), "the unspecified address"),
    (_V6_METADATA, "a cloud metadata address"),
    ((_net("64:ff9b:1::/48"),), "a local-use NAT64 address"),
    ((_net("2001::/32"),), "a Teredo tunnel address"),
    ((_net("fc00::/7"),), "a unique-local (private) address"),
    ((_net("fe80::/10"),), "a link-local address"),
    ((_net("fec0::/10"),), "a site-local address (deprecated)"),
    ((_net("ff00::/8"),), "a multicast address"),
    ((_net("2001:db8::/32"), _net("3fff::/20")), "a documentation address"),
    ((_net("2001:2::/48"),), "a benchmarking address"),
    ((_net("100::/64"),), "a discard-only address"),
)

_V4_LOOPBACK = _net("127.0.0.0/8")
_V6_LOOPBACK = ipaddress.IPv6Address("::1")
_V4_COMPATIBLE = _net("::/96")
_V4_TRANSLATED = _net("::ffff:0:0:0/96")
_NAT64 = _net("64:ff9b::/96")
_SIX_TO_FOUR = _net("2002::/16")

_NUMERIC_LABEL = re.compile(r"[0-9]+|0x[0-9a-f]*", re.ASCII)
_LEGACY_IPV4 = re.compile(r"(?:0x[0-9a-f]+|[0-9]+)(?:\.(?:0x[0-9a-f]+|[0-9]+)){0,3}", re.ASCII)
_HOST_NAME = re.compile(r"[a-z0-9_-]+(?:\.[a-z0-9_-]+)*", re.ASCII)
_BAD_URL_CHARS = re.compile(r"[\s\\\x00-\x1f\x7f]")


# -- addresses ----------------------------------------------------------------------------------


def forbidden_reason(ip: IPAddress, *, allow_loopback: bool) -> str | None:
    """Why ``ip`` must not be contacted (``"a private address"``...), or ``None`` when public.

    ``allow_loopback`` lets 127.0.0.0/8, ``::1`` and ``::ffff:127.x`` through (the sandbox);
    nothing else.
    """
    if isinstance(ip, ipaddress.IPv4Address):
        return _v4_reason(ip, allow_loopback=allow_loopback)
    return _v6_reason(ip, allow_loopback=allow_loopback)


def _v4_reason(ip: ipaddress.IPv4Address, *, allow_loopback: bool) -> str | None:
    if ip in _V4_LOOPBACK:
        return None if allow_loopback else "a loopback address"
    for networks, reason in _V4_RULES:
        if any(ip in network for network in networks):
            return reason
    return None if ip.is_global else "not a public address"


def _v6_reason(ip: ipaddress.IPv6Address, *, allow_loopback: bool) -> str | None:
    if ip == _V6_LOOPBACK:
        return None if allow_loopback else "a loopback address"
    mapped = ip.ipv4_mapped
    if mapped is not None:
        inner = _v4_reason(mapped, allow_loopback=allow_loopback)
        return f"an IPv4-mapped form of {mapped}, {inner}" if inner else None
    for networks, reason in _V6_RULES:
        if any(ip in network for network in networks):
            return reason
    embedded = _embedded_v4(ip)
    if embedded is not None:
        kind, v4, tolerated = embedded
        inner = _v4_reason(v4, allow_loopback=False)
        if inner:
            return f"{kind} of {v4}, {inner}"
        return None if tolerated else f"{kind} of {v4} (deprecated)"
    return None if ip.is_global else "not a public address"


def _embedded_v4(ip: ipaddress.IPv6Address) -> tuple[str, ipaddress.IPv4Address, bool] | None:
    """(kind, embedded IPv4, whether a public one is acceptable) for v6 forms that carry a v4."""
    low32 = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip in _NAT64:
        return "a NAT64 form", low32, True
    if ip in _SIX_TO_FOUR and ip.sixtofour is not None:
        return "a 6to4 form", ip.sixtofour, True
    if ip in _V4_TRANSLATED:
        return "an IPv4-translated form", low32, False
    if ip in _V4_COMPATIBLE:
        return "an IPv4-compatible form", low32, False
    return None


def parse_host(host: str) -> IPAddress | None:
    """The address a literal host stands for, in any spelling; ``None`` for a host name.

    Accepts brackets, IPv6 zone ids, one trailing dot, percent-encoding and the legacy IPv4
    forms every resolver understands (``2130706433``, ``0177.0.0.1``, ``0x7f.1``, ``127.1``),
    read with ``socket.inet_aton`` semantics. A host that ends in a number but is no valid
    address (``1.2.3.4.5``, ``256.0.0.1``) raises ``ValueError``: it is not a name either.
    """
    text = unquote(host)
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
        if ":" not in text:
            raise ValueError(f"{host!r} is not a valid IPv6 address")
    if ":" in text:
        address = text.split("%", 1)[0]
        try:
            return ipaddress.IPv6Address(address)
        except ValueError:
            raise ValueError(f"{host!r} is not a valid IPv6 address") from None
    text = text.lower()
    if text.endswith("."):
        text = text[:-1]
    last_label = text.rsplit(".", 1)[-1]
    if not _NUMERIC_LABEL.fullmatch(last_label):
        return None
    if not _LEGACY_IPV4.fullmatch(text):
        raise ValueError(f"{host!r} is not a valid IPv4 address")
    try:
        return ipaddress.IPv4Address(socket.inet_aton(text))
    except OSError:
        raise ValueError(f"{host!r} is not a valid IPv4 address") from None


# -- resolution ---------------------------------------------------------------------------------


class Resolver(Protocol):
    """Turns a host name into IP address strings (tests pass a fake; no real DNS in tests)."""

    async def resolve(self, host: str, port: int) -> list[str]: ...


class SystemResolver:
    """The operating system's resolver, through the running loop's ``getaddrinfo``."""

    async def resolve(self, host: str, port: int) -> list[str]:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        addresses: list[str] = []
        for *_, sockaddr in infos:
            address = str(sockaddr[0])
            if address not in addresses:
                addresses.append(address)
        return addresses


class _ResolutionFailed(Exception):
    """The name did not resolve (the transport maps this to ``httpx.ConnectError``)."""


# -- URLs ---------------------------------------------------------------------------------------


def _origin(scheme: str, host: str, port: int | None) -> str:
    """``scheme://host[:port]``: the only part of a URL an error message may show."""
    shown = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return f"{scheme or '?'}://{shown}" + (f":{port}" if port is not None else "")


def _default_port(scheme: str) -> int:
    return 443 if scheme == "https" else 80


async def _vet_host(
    scheme: str,
    host: str,
    port: int | None,
    *,
    allow_loopback: bool,
    resolver: Resolver,
) -> list[IPAddress]:
    """Check a literal address, or resolve a name and check every address it has."""
    origin = _origin(scheme, host, port)
    try:
        literal = parse_host(host)
    except ValueError:
        raise UnsafeURL(f"refusing {origin}: {host} is not a valid IP address") from None
    if literal is not None:
        reason = forbidden_reason(literal, allow_loopback=allow_loopback)
        if reason:
            raise UnsafeURL(f"refusing {origin}: {literal} is {reason}")
        return [literal]
    name = host.lower()
    name = name[:-1] if name.endswith(".") else name
    if "%" in name:
        raise UnsafeURL(f"refusing {origin}: percent-encoded host names are not accepted")
    if not _HOST_NAME.fullmatch(name):
        raise UnsafeURL(f"refusing {origin}: {host} is not a valid host name")
    if name == "localhost" or name.endswith(".localhost"):
        if allow_loopback:
            return [ipaddress.IPv4Address("127.0.0.1")]
        raise UnsafeURL(f"refusing {origin}: {name} always means this machine (loopback)")
    if name in METADATA_NAMES:
        raise UnsafeURL(f"refusing {origin}: {name} is a cloud metadata service")
    if name.endswith(LOCAL_SUFFIXES):
        raise UnsafeURL(f"refusing {origin}: {name} is a local-network name")
    if "." not in name:
        raise UnsafeURL(
            f"refusing {origin}: {name} is a single-label name that only a local network "
            "resolves; use the full public host name"
        )
    try:
        answers = await resolver.resolve(name, port or _default_port(scheme))
    except OSError as exc:
        raise _ResolutionFailed(f"{name} does not resolve ({exc})") from None
    if not answers:
        raise _ResolutionFailed(f"{name} does not resolve")
    addresses = [_resolved_address(answer, origin) for answer in answers]
    for address in addresses:
        reason = forbidden_reason(address, allow_loopback=allow_loopback)
        if reason:
            raise UnsafeURL(f"refusing {origin}: {name} resolves to {address}, {reason}")
    return addresses


def _resolved_address(answer: str, origin: str) -> IPAddress:
    try:
        return ipaddress.ip_address(answer.split("%", 1)[0])
    except ValueError:
        raise UnsafeURL(f"refusing {origin}: the resolver answered {answer!r}") from None


def _parse_url(url: str, allow_loopback: bool) -> httpx.URL:
    """Parse with httpx (what will send the request); refuse what it or we find ambiguous."""
    if not isinstance(url, str):
        raise UnsafeURL("refusing this URL: a URL must be given as text")
    if _BAD_URL_CHARS.search(url):
        raise UnsafeURL("refusing this URL: it contains spaces, control characters or backslashes")
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        raise UnsafeURL(_invalid_url_message(url, allow_loopback)) from None
    _check_form(parsed, raw_authority=urlsplit(url).netloc)
    return parsed


def _invalid_url_message(url: str, allow_loopback: bool) -> str:
    """Explain a URL httpx cannot parse; name the address when it is an odd IPv4 spelling."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname or "", parts.port
    except ValueError:
        return "refusing this URL: it is not a valid URL"
    origin = _origin(parts.scheme.lower(), host, port)
    try:
        literal = parse_host(host) if host else None
    except ValueError:
        return f"refusing {origin}: {host} is not a valid IP address"
    if literal is not None:
        reason = forbidden_reason(literal, allow_loopback=allow_loopback)
        if reason:
            return f"refusing {origin}: {literal} is {reason}"
    return f"refusing {origin}: it is not a valid URL"


def _check_form(url: httpx.URL, *, raw_authority: str | None = None) -> None:
    """Scheme, host, port and userinfo rules that need no DNS."""
    host = url.raw_host.decode("ascii", "replace")
    origin = _origin(url.scheme, host, url.port)
    if url.scheme not in ALLOWED_SCHEMES:
        raise UnsafeURL(f"refusing {origin}: only http and https URLs are allowed")
    if url.userinfo or (raw_authority is not None and "@" in raw_authority):
        raise UnsafeURL(
            f"refusing {origin}: URLs with a user name or password (user:pass@host) are not "
            "accepted; send credentials in a header instead"
        )
    if not host:
        raise UnsafeURL(f"refusing {origin}: the URL has no host")
    if url.port is not None and not 0 < url.port < 65536:
        raise UnsafeURL(f"refusing {origin}: {url.port} is not a valid port")


async def check_url(
    url: str, *, allow_loopback: bool = False, resolver: Resolver | None = None
) -> list[IPAddress]:
    """Validate ``url`` and every address its host resolves to; return the vetted addresses.

    Raises :class:`UnsafeURL` with a message that names only ``scheme://host[:port]``.
    """
    parsed = _parse_url(url, allow_loopback)
    host = parsed.raw_host.decode("ascii")
    try:
        return await _vet_host(
            parsed.scheme,
            host,
            parsed.port,
            allow_loopback=allow_loopback,
            resolver=resolver or SystemResolver(),
        )
    except _ResolutionFailed as exc:
        raise UnsafeURL(f"refusing {_origin(parsed.scheme, host, parsed.port)}: {exc}") from None


def safe_origin(url: str | httpx.URL) -> str:
    """``scheme://host[:port]`` of ``url`` for logs and messages (never path, query or userinfo)."""
    try:
        parsed = url if isinstance(url, httpx.URL) else httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        return "?://?"
    return _origin(parsed.scheme, parsed.raw_host.decode("ascii", "replace"), parsed.port)


# -- the transport ------------------------------------------------------------------------------


@functools.cache
def shared_ssl_context() -> ssl.SSLContext:
    """One verifying TLS context for every guarded client: loading the CA bundle costs tens of
    milliseconds, and a guarded client is built per test delivery and per media download."""
    return httpx.create_ssl_context()


class GuardedTransport(httpx.AsyncBaseTransport):
    """Checks every request's host, then connects to the vetted address and nothing else.

    The request is re-addressed to the IP (the ``Host`` header keeps the name, and TLS gets the
    name through the ``sni_hostname`` extension, so certificates are still verified against it).
    The default inner transport keeps no idle connections: a pool keyed by IP would otherwise
    reuse one name's TLS session for another name on the same address.
    """

    def __init__(
        self,
        *,
        allow_loopback: bool = False,
        resolver: Resolver | None = None,
        inner: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.allow_loopback = allow_loopback
        self.resolver: Resolver = resolver or SystemResolver()
        self._inner = inner or httpx.AsyncHTTPTransport(
            verify=shared_ssl_context(), limits=httpx.Limits(max_keepalive_connections=0)
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        _check_form(url)
        host = url.raw_host.decode("ascii")
        try:
            addresses = await _vet_host(
                url.scheme,
                host,
                url.port,
                allow_loopback=self.allow_loopback,
                resolver=self.resolver,
            )
        except _ResolutionFailed as exc:
            raise httpx.ConnectError(str(exc), request=request) from None
        pinned = self._pinned(request, host)
        last_error: httpx.ConnectError | None = None
        for address in addresses:
            try:
                return await self._inner.handle_async_request(pinned(address))
            except httpx.ConnectError as exc:  # try the next vetted address, never a new one
                last_error = exc
        assert last_error is not None
        raise last_error

    def _pinned(self, request: httpx.Request, host: str) -> Callable[[IPAddress], httpx.Request]:
        """A factory of copies of ``request`` addressed to one vetted IP."""
        extensions: dict[str, Any] = dict(request.extensions)
        if request.url.scheme == "https" and parse_host(host) is None:
            extensions["sni_hostname"] = host[:-1] if host.endswith(".") else host

        def to(address: IPAddress) -> httpx.Request:
            return httpx.Request(
                request.method,
                request.url.copy_with(host=str(address)),
                headers=request.headers,
                stream=request.stream,
                extensions=extensions,
            )

        return to

    async def aclose(self) -> None:
        await self._inner.aclose()


_guards: weakref.WeakKeyDictionary[httpx.AsyncClient, GuardedTransport] = (
    weakref.WeakKeyDictionary()
)


def guarded_client(
    settings: Settings | None = None,
    *,
    resolver: Resolver | None = None,
    inner: httpx.AsyncBaseTransport | None = None,
) -> httpx.AsyncClient:
    """A client for user-supplied URLs: the project's timeouts, no implicit redirects, the guard.

    Loopback is reachable only when ``settings.ssrf_allow_loopback`` is set (the sandbox).
    """
    settings = settings or get_settings()
    transport = GuardedTransport(
        allow_loopback=settings.ssrf_allow_loopback, resolver=resolver, inner=inner
    )
    client = build_client(settings, transport=transport)
    _guards[client] = transport
    return client


def _guard_of(client: httpx.AsyncClient) -> GuardedTransport:
    guard = _guards.get(client) or getattr(client, "_transport", None)
    if not isinstance(guard, GuardedTransport):
        raise TypeError("guarded_request needs a client whose transport is a GuardedTransport")
    return guard


# -- redirects ----------------------------------------------------------------------------------

_BODY_ARGS = ("content", "data", "files", "json")
_BODY_HEADERS = ("content-type", "content-length", "transfer-encoding")
_CREDENTIAL_HEADERS = ("authorization", "proxy-authorization", "cookie")


async def guarded_request(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    max_redirects: int = 5,
    **kwargs: Any,
) -> httpx.Response:
    """Send a request to a user-supplied URL, following at most ``max_redirects`` redirects.

    Every hop is checked (and pinned by the transport). 303, and 301/302 after a POST, become a
    GET without a body; credentials are dropped when a redirect leaves the origin.
    """
    guard = _guard_of(client)
    method = method.upper()
    first_origin = safe_origin(url)
    current = url
    redirects = 0
    while True:
        try:
            await check_url(current, allow_loopback=guard.allow_loopback, resolver=guard.resolver)
        except UnsafeURL as exc:
            if redirects:
                raise UnsafeURL(f"{exc} (redirected from {first_origin})") from None
            raise
        response = await client.request(method, current, **kwargs)
        location = response.headers.get("location")
        if response.status_code not in REDIRECT_STATUSES or not location:
            return response
        await response.aclose()
        if redirects >= max_redirects:
            raise UnsafeURL(f"refusing {first_origin}: more than {max_redirects} redirects")
        redirects += 1
        try:
            target = response.url.join(location)
        except httpx.InvalidURL:
            raise UnsafeURL(
                f"refusing {first_origin}: a redirect pointed at an invalid URL"
            ) from None
        method, kwargs = _follow(response.status_code, method, kwargs, response.url, target)
        current = str(target)


def _follow(
    status: int, method: str, kwargs: Mapping[str, Any], source: httpx.URL, target: httpx.URL
) -> tuple[str, dict[str, Any]]:
    """Method and arguments for the next hop, as browsers (and httpx) do it."""
    following = {k: v for k, v in kwargs.items() if k != "params"}
    headers = httpx.Headers(following.get("headers"))
    if (status == 303 and method != "HEAD") or (status in (301, 302) and method == "POST"):
        method = "GET"
        for name in _BODY_ARGS:
            following.pop(name, None)
        for name in _BODY_HEADERS:
            headers.pop(name, None)
    if safe_origin(source) != safe_origin(target):
        following.pop("auth", None)
        for name in _CREDENTIAL_HEADERS:
            headers.pop(name, None)
    following["headers"] = headers
    return method, following
