"""``/third-party``: success and failure paths of every route, the function cache, reconnects."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from arkyra.api.cache import MemoryFunctionCache
from arkyra.sandbox.state import SandboxState
from tests.api.conftest import HEYGEN_KEY, OTHER_HEYGEN_KEY, Vendors, connect_heygen

VOICES = "/third-party/function/{id}/voices"


def voice_calls(state: SandboxState) -> int:
    return state.calls["heygen GET /heygen/v2/voices"]


def refusing_heygen() -> httpx.AsyncClient:
    """A HeyGen that now refuses every key (HeyGen's legacy 401 body)."""

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            401, json={"code": 40009, "data": None, "message": "Invalid credentials provided"}
        )

    return httpx.AsyncClient(transport=httpx.MockTransport(handler))


# -- catalogue ------------------------------------------------------------------------------


async def test_catalogue_lists_providers_with_field_kinds(api: httpx.AsyncClient, auth) -> None:
    response = await api.get("/third-party/list", headers=auth(role="member"))
    assert response.status_code == 200
    entries = {entry["identifier"]: entry for entry in response.json()}
    heygen = entries["heygen"]
    assert heygen["title"] == "HeyGen"
    assert heygen["category"] == "video"
    assert heygen["deprecated"] is False
    assert heygen["fields"][0]["name"] == "api_key"
    assert heygen["fields"][0]["kind"] == "secret"
    assert {"avatars", "voices"} <= set(heygen["functions"])
    assert {e["category"] for e in entries.values()} >= {"video", "audio", "content"}


async def test_catalogue_needs_a_token(api: httpx.AsyncClient) -> None:
    assert (await api.get("/third-party/list")).status_code == 401


# -- connect ----------------------------------------------------------------------------------


async def test_connect_returns_the_integration(api: httpx.AsyncClient, auth) -> None:
    response = await api.post(
        "/third-party/heygen",
        json={"fields": {"api_key": HEYGEN_KEY}, "label": "Marketing"},
        headers=auth(),
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"id", "identifier", "name"}
    assert body["identifier"] == "heygen"
    assert body["name"] == "Sandbox Creator"
    assert HEYGEN_KEY not in response.text


async def test_connecting_the_same_account_again_updates_it(api: httpx.AsyncClient, auth) -> None:
    first = await connect_heygen(api, auth())
    second = await connect_heygen(api, auth())
    assert first == second
    other = await connect_heygen(api, auth(), OTHER_HEYGEN_KEY)
    assert other != first
    listed = (await api.get("/third-party", headers=auth())).json()
    assert sorted(i["id"] for i in listed) == sorted([first, other])


async def test_connect_missing_field_is_422_with_field_errors(api: httpx.AsyncClient, auth) -> None:
    response = await api.post("/third-party/heygen", json={"fields": {}}, headers=auth())
    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "invalid_input"
    assert "api_key" in body["errors"]


async def test_connect_unknown_field_is_422(api: httpx.AsyncClient, auth) -> None:
    response = await api.post(
        "/third-party/heygen",
        json={"fields": {"api_key": HEYGEN_KEY, "token": "x"}},
        headers=auth(),
    )
    assert response.status_code == 422
    assert "token" in response.json()["errors"]
    assert HEYGEN_KEY not in response.text


async def test_connect_malformed_body_is_422_without_echoing_values(
    api: httpx.AsyncClient, auth
) -> None:
    response = await api.post(
        "/third-party/heygen",
        json={"fields": {"api_key": 12345678901}, "x": HEYGEN_KEY},
        headers=auth(),
    )
    assert response.status_code == 422
    assert HEYGEN_KEY not in response.text
    assert "12345678901" not in response.text
    not_json = await api.post(
        "/third-party/heygen",
        content=b"{not json",
        headers={**auth(), "content-type": "application/json"},
    )
    assert not_json.status_code == 422


async def test_connect_refused_by_the_vendor_is_400_with_its_reason(
    api: httpx.AsyncClient, auth
) -> None:
    wrong_key = "wrong_key_0123456789"
    response = await api.post(
        "/third-party/heygen", json={"fields": {"api_key": wrong_key}}, headers=auth()
    )
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["error"] == "connection_failed"
    assert "Invalid credentials" in body["message"]
    assert body["provider"] == "heygen"
    assert wrong_key not in response.text
    assert (await api.get("/third-party", headers=auth())).json() == []


async def test_connect_vendor_outage_is_not_a_client_error(
    api: httpx.AsyncClient, auth, sandbox_state: SandboxState
) -> None:
    faults = sandbox_state.faults_for("heygen")
    faults.error_rate = 1.0
    faults.error_status = 503
    response = await api.post(
        "/third-party/heygen", json={"fields": {"api_key": HEYGEN_KEY}}, headers=auth()
    )
    assert response.status_code == 503
    assert response.json()["provider_error"] == "Transient"


async def test_connect_unknown_provider_is_404(api: httpx.AsyncClient, auth) -> None:
    response = await api.post(
        "/third-party/no-such-vendor", json={"fields": {"api_key": HEYGEN_KEY}}, headers=auth()
    )
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


# -- list and delete --------------------------------------------------------------------------


async def test_list_shows_status_and_last_check(api: httpx.AsyncClient, auth) -> None:
    integration_id = await connect_heygen(api, auth())
    listed = (await api.get("/third-party", headers=auth(role="member"))).json()
    assert len(listed) == 1
    item = listed[0]
    assert item["id"] == integration_id
    assert item["status"] == "connected"
    assert item["last_checked_at"]
    assert "api_key" not in item


async def test_delete_removes_it(api: httpx.AsyncClient, auth) -> None:
    integration_id = await connect_heygen(api, auth())
    response = await api.delete(f"/third-party/{integration_id}", headers=auth())
    assert response.status_code == 204
    assert response.content == b""
    assert (await api.get("/third-party", headers=auth())).json() == []
    again = await api.delete(f"/third-party/{integration_id}", headers=auth())
    assert again.status_code == 404
    call = await api.post(VOICES.format(id=integration_id), json={}, headers=auth())
    assert call.status_code == 404


async def test_delete_unknown_is_404(api: httpx.AsyncClient, auth) -> None:
    response = await api.delete("/third-party/00000000-0000-0000-0000-000000000000", headers=auth())
    assert response.status_code == 404


# -- exposed functions ------------------------------------------------------------------------


async def test_function_call_returns_json_results(api: httpx.AsyncClient, auth) -> None:
    integration_id = await connect_heygen(api, auth())
    response = await api.post(
        f"/third-party/function/{integration_id}/avatars",
        json={"input": {"kind": "avatar"}},
        headers=auth(role="member"),
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["function"] == "avatars"
    assert body["result"]
    assert all(a["kind"] == "avatar" for a in body["result"])
    assert HEYGEN_KEY not in response.text


async def test_function_without_body_uses_defaults(api: httpx.AsyncClient, auth) -> None:
    integration_id = await connect_heygen(api, auth())
    response = await api.post(VOICES.format(id=integration_id), headers=auth())
    assert response.status_code == 200, response.text
    assert response.json()["result"]


async def test_unknown_function_is_404(api: httpx.AsyncClient, auth) -> None:
    integration_id = await connect_heygen(api, auth())
    for name in ("nope", "send_data", "check_connection", "get_job", "_data"):
        response = await api.post(
            f"/third-party/function/{integration_id}/{name}", json={}, headers=auth()
        )
        assert response.status_code == 404, name


async def test_function_input_is_validated(api: httpx.AsyncClient, auth) -> None:
    integration_id = await connect_heygen(api, auth())
    response = await api.post(
        f"/third-party/function/{integration_id}/avatars",
        json={"input": {"kind": "dragon", "extra": 1}},
        headers=auth(),
    )
    assert response.status_code == 422
    errors = response.json()["errors"]
    assert "kind" in errors
    assert "extra" in errors


async def test_function_on_unknown_integration_is_404(api: httpx.AsyncClient, auth) -> None:
    response = await api.post(VOICES.format(id="missing"), json={}, headers=auth())
    assert response.status_code == 404


async def test_list_functions_are_cached_per_integration(
    api: httpx.AsyncClient, auth, sandbox_state: SandboxState
) -> None:
    integration_id = await connect_heygen(api, auth())
    first = await api.post(VOICES.format(id=integration_id), json={}, headers=auth())
    second = await api.post(VOICES.format(id=integration_id), json={}, headers=auth())
    assert first.headers["x-arkyra-cache"] == "miss"
    assert second.headers["x-arkyra-cache"] == "hit"
    assert first.json() == second.json()
    assert voice_calls(sandbox_state) == 1
    filtered = await api.post(
        VOICES.format(id=integration_id), json={"input": {"language": "English"}}, headers=auth()
    )
    assert filtered.headers["x-arkyra-cache"] == "miss"  # other input, other entry
    other_id = await connect_heygen(api, auth(), OTHER_HEYGEN_KEY)
    other = await api.post(VOICES.format(id=other_id), json={}, headers=auth())
    assert other.headers["x-arkyra-cache"] == "miss"  # per integration
    assert voice_calls(sandbox_state) == 3


async def test_reconnect_invalidates_the_cache(
    api: httpx.AsyncClient, auth, sandbox_state: SandboxState
) -> None:
    integration_id = await connect_heygen(api, auth())
    await api.post(VOICES.format(id=integration_id), json={}, headers=auth())
    assert await connect_heygen(api, auth()) == integration_id
    after = await api.post(VOICES.format(id=integration_id), json={}, headers=auth())
    assert after.headers["x-arkyra-cache"] == "miss"
    assert voice_calls(sandbox_state) == 2


async def test_delete_invalidates_the_cache(
    api: httpx.AsyncClient, auth, function_cache: MemoryFunctionCache
) -> None:
    integration_id = await connect_heygen(api, auth())
    await api.post(VOICES.format(id=integration_id), json={}, headers=auth())
    assert await function_cache.get(integration_id, "voices", {}) is not None
    await api.delete(f"/third-party/{integration_id}", headers=auth())
    assert await function_cache.get(integration_id, "voices", {}) is None


async def test_non_list_functions_are_not_cached(api: httpx.AsyncClient, auth) -> None:
    from arkyra.api.cache import is_list_function
    from arkyra.providers import provider_class

    assert is_list_function(provider_class("heygen"), "voices")
    assert not is_list_function(provider_class("heygen"), "no-such-function")


async def test_refused_credentials_mark_the_integration_needs_reconnect(
    api: httpx.AsyncClient, auth, vendors: Vendors
) -> None:
    integration_id = await connect_heygen(api, auth())
    vendors.override = refusing_heygen()
    try:
        response = await api.post(VOICES.format(id=integration_id), json={}, headers=auth())
    finally:
        await vendors.override.aclose()
        vendors.override = None
    assert response.status_code == 409, response.text
    assert response.json()["error"] == "needs_reconnect"
    listed = (await api.get("/third-party", headers=auth())).json()
    assert listed[0]["status"] == "needs_reconnect"
    assert "Invalid credentials" in listed[0]["status_reason"]
    blocked = await api.post(VOICES.format(id=integration_id), json={}, headers=auth())
    assert blocked.status_code == 409
    # Connecting again with a working key clears the flag.
    assert await connect_heygen(api, auth()) == integration_id
    again = await api.post(VOICES.format(id=integration_id), json={}, headers=auth())
    assert again.status_code == 200


async def test_vendor_rate_limit_on_a_function_is_429(
    api: httpx.AsyncClient, auth, sandbox_state: SandboxState
) -> None:
    integration_id = await connect_heygen(api, auth())
    faults = sandbox_state.faults_for("heygen")
    faults.rate_limit_rate = 1.0
    faults.retry_after_seconds = 0.01
    response = await api.post(VOICES.format(id=integration_id), json={}, headers=auth())
    assert response.status_code == 429
    assert response.json()["provider_error"] == "RateLimited"
    assert "retry-after" in response.headers


async def test_results_are_json_serialised(make_app: Callable, db_settings) -> None:
    import pandas as pd
    from pydantic import BaseModel

    from arkyra.api.jobs import to_jsonable

    class Model(BaseModel):
        when: object = None
        name: str = "x"

    frame = pd.DataFrame([{"a": 1, "b": "x"}, {"a": 2, "b": "y"}])
    assert to_jsonable(frame) == [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]
    assert to_jsonable([Model()]) == [{"when": None, "name": "x"}]
    assert to_jsonable({"k": (1, 2)}) == {"k": [1, 2]}
