"""The SSRF guard: hostile URLs refused, public ones accepted, connections pinned to vetted IPs.

No real DNS: names go through :class:`FakeResolver`, and HTTP through ``httpx.MockTransport``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import re
import ssl
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

import httpx
import pytest

from arkyra.config import Settings
from arkyra.errors import InvalidInput, UnsafeURL
from arkyra.http.ssrf import (
    GuardedTransport,
    SystemResolver,
    check_url,
    forbidden_reason,
    guarded_client,
    guarded_request,
    parse_host,
)

PUBLIC_V4 = "93.184.216.34"
PUBLIC_V6 = "2606:2800:220:1:248:1893:25c8:1946"

#: What the fake DNS answers; a name not listed here must never be looked up.
DNS: dict[str, list[str]] = {
    "example.com": [PUBLIC_V4],
    "hooks.example.com": [PUBLIC_V4],
    "other.example.net": ["203.0.114.7"],
    "hooks.zapier.com": ["54.86.12.1"],
    "hook.eu1.make.com": ["3.120.0.10"],
    "xn--mnchen-3ya.de": ["195.30.1.2"],
    "v6only.example.com": [PUBLIC_V6],
    "dual.example.com": [PUBLIC_V4, PUBLIC_V6],
    "internal.example.com": ["10.0.0.5"],
    "rfc1918.example.com": ["192.168.1.20"],
    "meta.example.com": ["169.254.169.254"],
    "ecs.example.com": ["169.254.170.2"],
    "mapped.example.com": ["::ffff:127.0.0.1"],
    "mapped-private.example.com": ["::ffff:10.1.2.3"],
    "ula.example.com": ["fd12:3456::1"],
    "nat64.example.com": ["64:ff9b::a9fe:a9fe"],
    "loop.example.com": ["127.0.0.1"],
    "cgnat.example.com": ["100.64.3.4"],
    "half-private.example.com": [PUBLIC_V4, "10.0.0.1"],
    "half-private-v6.example.com": [PUBLIC_V6, "fe80::1"],
}


class FakeResolver:
    """Answers from a table (or a scripted sequence of answers) and records every look-up."""

    def __init__(
        self, table: dict[str, list[str]] | None = None, script: Sequence[list[str]] = ()
    ) -> None:
        self.table = DNS if table is None else table
        self.script = list(script)
        self.calls: list[tuple[str, int]] = []

    async def resolve(self, host: str, port: int) -> list[str]:
        self.calls.append((host, port))
        if self.script:
            return self.script.pop(0)
        if host not in self.table:
            raise AssertionError(f"unexpected DNS look-up of {host!r}")
        return self.table[host]


class Recorder:
    """An ``httpx.MockTransport`` handler that records requests and answers from a script."""

    def __init__(self, answer: Callable[[httpx.Request], httpx.Response] | None = None) -> None:
        self.requests: list[httpx.Request] = []
        self.answer = answer or (lambda request: httpx.Response(200, json={"ok": True}))

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.answer(request)

    @property
    def hosts(self) -> list[str]:
        return [r.url.host for r in self.requests]


def ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(text)


# -- the hostile table --------------------------------------------------------------------------

HOSTILE: list[tuple[str, str]] = [
    # loopback and "this host"
    ("http://127.0.0.1/", "loopback"),
    ("http://127.255.255.254:8080/x", "loopback"),
    ("http://localhost/", "loopback"),
    ("http://LOCALHOST./admin", "loopback"),
    ("http://api.localhost:3000/", "loopback"),
    ("http://[::1]/", "loopback"),
    ("http://[::1]:8710/", "loopback"),
    ("http://0.0.0.0/", "unspecified"),
    ("http://[::]/", "unspecified"),
    # private, CGNAT, link-local
    ("http://10.0.0.5/", "private"),
    ("https://172.16.0.1/", "private"),
    ("http://172.31.255.255/", "private"),
    ("http://192.168.1.1/", "private"),
    ("http://100.64.0.1/", "carrier-grade NAT"),
    ("http://100.127.255.254/", "carrier-grade NAT"),
    ("http://169.254.1.1/", "link-local"),
    # cloud metadata, by address and by name
    ("http://169.254.169.254/latest/meta-data/", "metadata"),
    ("http://169.254.170.2/v2/credentials", "metadata"),
    ("http://100.100.100.200/latest/meta-data/", "metadata"),
    ("http://[fd00:ec2::254]/latest/meta-data/", "metadata"),
    ("http://metadata.google.internal/computeMetadata/v1/", "metadata"),
    ("http://metadata/computeMetadata/v1/", "metadata"),
    ("http://metadata.goog/", "metadata"),
    ("http://instance-data/latest/", "metadata"),
    # multicast, broadcast, reserved, documentation, benchmarking
    ("http://224.0.0.1/", "multicast"),
    ("http://239.255.255.250:1900/", "multicast"),
    ("http://255.255.255.255/", "broadcast"),
    ("http://240.0.0.1/", "reserved"),
    ("http://198.18.0.1/", "benchmarking"),
    ("http://192.0.2.1/", "documentation"),
    ("http://198.51.100.7/", "documentation"),
    ("http://203.0.113.9/", "documentation"),
    ("http://192.0.0.170/", "protocol-assignment"),
    # IPv6 ranges and IPv6 spellings of IPv4
    ("http://[fc00::1]/", "unique-local"),
    ("http://[fd12:3456::1]/", "unique-local"),
    ("http://[fe80::1]/", "link-local"),
    ("http://[fe80::1%25eth0]/", "link-local"),
    ("http://[fec0::1]/", "site-local"),
    ("http://[ff02::1]/", "multicast"),
    ("http://[2001:db8::1]/", "documentation"),
    ("http://[2001::1]/", "Teredo"),
    ("http://[::ffff:127.0.0.1]/", "IPv4-mapped form of 127.0.0.1"),
    ("http://[::ffff:a9fe:a9fe]/", "IPv4-mapped form of 169.254.169.254"),
    ("http://[::ffff:10.0.0.1]/", "IPv4-mapped form of 10.0.0.1"),
    ("http://[::127.0.0.1]/", "IPv4-compatible form of 127.0.0.1"),
    ("http://[::10.0.0.1]/", "IPv4-compatible form of 10.0.0.1"),
    ("http://[::8.8.8.8]/", "IPv4-compatible form of 8.8.8.8 (deprecated)"),
    ("http://[64:ff9b::7f00:1]/", "NAT64 form of 127.0.0.1"),
    ("http://[64:ff9b::a9fe:a9fe]/", "NAT64 form of 169.254.169.254"),
    ("http://[2002:7f00:1::]/", "6to4 form of 127.0.0.1"),
    ("http://[2002:c0a8:101::1]/", "6to4 form of 192.168.1.1"),
    # odd spellings of forbidden IPv4 addresses
    ("http://2130706433/", "127.0.0.1 is a loopback"),
    ("http://0177.0.0.1/", "127.0.0.1 is a loopback"),
    ("http://0x7f000001/", "127.0.0.1 is a loopback"),
    ("http://0x7f.0.0.1/", "127.0.0.1 is a loopback"),
    ("http://0x7f.1/", "127.0.0.1 is a loopback"),
    ("http://127.1/", "127.0.0.1 is a loopback"),
    ("http://10.1/", "10.0.0.1 is a private"),
    ("http://0xa9.254.0251.0xfe/", "169.254.169.254 is a cloud metadata"),
    ("http://3232235777/", "192.168.1.1 is a private"),
    ("http://0/", "0.0.0.0 is an unspecified"),
    ("http://127.0.0.1./", "127.0.0.1 is a loopback"),
    ("http://%31%32%37.0.0.1/", "127.0.0.1 is a loopback"),
    ("http://%6c%6f%63%61%6c%68%6f%73%74/", "percent-encoded"),
    # not a valid host at all
    ("http://1.2.3.4.5/", "not a valid IP address"),
    ("http://256.0.0.1/", "not a valid IP address"),
    ("http://08.0.0.1/", "not a valid"),
    ("http:///etc/passwd", "no host"),
    ("http://example.com:0/", "not a valid port"),
    ("http://exa mple.com/", "spaces"),
    ("http://\uff11\uff12\uff17.\uff10.\uff10.\uff11/", "not a valid URL"),
    # names that only a local network knows
    ("http://printer.local/", "local-network name"),
    ("http://db.internal/", "local-network name"),
    ("http://router.home.arpa/", "local-network name"),
    ("http://intranet/", "single-label"),
    # schemes
    ("file:///etc/passwd", "only http and https"),
    ("gopher://example.com:70/_GET", "only http and https"),
    ("ftp://example.com/", "only http and https"),
    ("dict://example.com:11211/", "only http and https"),
    ("javascript:alert(1)", "only http and https"),
    ("//example.com/", "only http and https"),
    # userinfo and parser confusion
    ("http://user:pass@example.com/", "user name or password"),
    ("http://user@example.com/", "user name or password"),
    ("http://@example.com/", "user name or password"),
    ("http://example.com@127.0.0.1/", "user name or password"),
    ("http://evil.example.com\\@127.0.0.1/", "backslashes"),
    ("http://127.0.0.1#@example.com/", "loopback"),
    ("http://example.com\r\nHost: 127.0.0.1/", "control characters"),
    # names whose DNS answers are forbidden (ANY forbidden answer refuses)
    ("https://internal.example.com/hook", "resolves to 10.0.0.5, a private address"),
    ("https://rfc1918.example.com/", "resolves to 192.168.1.20"),
    ("https://meta.example.com/", "resolves to 169.254.169.254, a cloud metadata"),
    ("https://ecs.example.com/", "resolves to 169.254.170.2, a cloud metadata"),
    ("https://mapped.example.com/", "IPv4-mapped form of 127.0.0.1"),
    ("https://mapped-private.example.com/", "IPv4-mapped form of 10.1.2.3"),
    ("https://ula.example.com/", "unique-local"),
    ("https://nat64.example.com/", "NAT64 form of 169.254.169.254"),
    ("https://loop.example.com/", "resolves to 127.0.0.1, a loopback"),
    ("https://cgnat.example.com/", "carrier-grade NAT"),
    ("https://half-private.example.com/", "resolves to 10.0.0.1"),
    ("https://half-private-v6.example.com/", "resolves to fe80::1, a link-local"),
]


def test_the_hostile_table_is_large_enough() -> None:
    assert len(HOSTILE) >= 40
    assert len({url for url, _ in HOSTILE}) == len(HOSTILE)


@pytest.mark.parametrize(("url", "why"), HOSTILE)
async def test_hostile_urls_are_refused(url: str, why: str) -> None:
    with pytest.raises(UnsafeURL) as caught:
        await check_url(url, resolver=FakeResolver())
    message = str(caught.value)
    assert message.startswith("refusing ")
    assert why in message


async def test_unsafe_url_is_an_input_error() -> None:
    with pytest.raises(InvalidInput):
        await check_url("http://10.0.0.1/", resolver=FakeResolver())


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/",
        "http://2130706433/",
        "http://[::ffff:169.254.169.254]/",
        "http://localhost/",
        "http://metadata.google.internal/",
        "http://printer.local/",
        "http://intranet/",
    ],
)
async def test_literals_and_local_names_are_refused_without_dns(url: str) -> None:
    resolver = FakeResolver(table={})
    with pytest.raises(UnsafeURL):
        await check_url(url, resolver=resolver)
    assert resolver.calls == []


# -- ordinary public URLs -----------------------------------------------------------------------

PUBLIC: list[tuple[str, list[str]]] = [
    ("https://example.com/", [PUBLIC_V4]),
    ("https://hooks.zapier.com/hooks/catch/123/abc/", ["54.86.12.1"]),
    ("https://hook.eu1.make.com/abcdef?x=1", ["3.120.0.10"]),
    ("http://example.com:8080/path#frag", [PUBLIC_V4]),
    ("HTTPS://EXAMPLE.com./upper-case", [PUBLIC_V4]),
    ("https://münchen.de/", ["195.30.1.2"]),
    ("https://v6only.example.com/", [PUBLIC_V6]),
    ("https://dual.example.com/", [PUBLIC_V4, PUBLIC_V6]),
    ("http://8.8.8.8/", ["8.8.8.8"]),
    ("https://1.1.1.1:8443/dns-query", ["1.1.1.1"]),
    ("http://134744072/", ["8.8.8.8"]),
    ("https://[2606:4700:4700::1111]/dns-query", ["2606:4700:4700::1111"]),
    ("http://[::ffff:8.8.8.8]/", ["::ffff:8.8.8.8"]),
    ("http://[64:ff9b::808:808]/", ["64:ff9b::808:808"]),
    ("http://[2002:808:808::1]/", ["2002:808:808::1"]),
]


@pytest.mark.parametrize(("url", "expected"), PUBLIC)
async def test_public_urls_are_accepted(url: str, expected: list[str]) -> None:
    assert await check_url(url, resolver=FakeResolver()) == [ip(a) for a in expected]


async def test_the_resolver_gets_the_normalised_name_and_port() -> None:
    resolver = FakeResolver()
    await check_url("HTTPS://Example.COM./x", resolver=resolver)
    await check_url("http://example.com:8080/x", resolver=resolver)
    await check_url("https://münchen.de/", resolver=resolver)
    assert resolver.calls == [
        ("example.com", 443),
        ("example.com", 8080),
        ("xn--mnchen-3ya.de", 443),
    ]


async def test_a_name_that_does_not_resolve_is_refused_with_a_clear_message() -> None:
    class Failing:
        async def resolve(self, host: str, port: int) -> list[str]:
            raise OSError("Name or service not known")

    with pytest.raises(UnsafeURL, match=r"refusing https://nowhere\.example\.com: .*not resolve"):
        await check_url("https://nowhere.example.com/secret", resolver=Failing())
    with pytest.raises(UnsafeURL, match="does not resolve"):
        await check_url(
            "https://empty.example.com/", resolver=FakeResolver({"empty.example.com": []})
        )


async def test_the_system_resolver_reads_literal_addresses_without_dns() -> None:
    assert await SystemResolver().resolve("127.0.0.1", 80) == ["127.0.0.1"]


# -- parse_host and forbidden_reason ------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("0X7F.0.0.1", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("10.1", "10.0.0.1"),
        ("192.168.257", "192.168.1.1"),
        ("127.0.0.1.", "127.0.0.1"),
        ("%31%32%37.0.0.1", "127.0.0.1"),
        ("[::1]", "::1"),
        ("::1", "::1"),
        ("[fe80::1%25eth0]", "fe80::1"),
        ("fe80::1%eth0", "fe80::1"),
        ("[::ffff:127.0.0.1]", "::ffff:7f00:1"),
        ("example.com", None),
        ("0x7f.example.com", None),
        ("123.example", None),
        ("localhost", None),
    ],
)
def test_parse_host(host: str, expected: str | None) -> None:
    result = parse_host(host)
    assert result == (None if expected is None else ip(expected))


@pytest.mark.parametrize(
    "host", ["1.2.3.4.5", "256.1.1.1", "08.0.0.1", "4294967296", "[nope]", "::zz"]
)
def test_parse_host_rejects_numbers_that_are_not_addresses(host: str) -> None:
    with pytest.raises(ValueError):
        parse_host(host)


@pytest.mark.parametrize(
    "address", ["8.8.8.8", "93.184.216.34", "2606:4700:4700::1111", "::ffff:1.1.1.1"]
)
def test_public_addresses_have_no_reason(address: str) -> None:
    assert forbidden_reason(ip(address), allow_loopback=False) is None


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("10.0.0.5", False),
        ("192.168.0.1", False),
        ("169.254.169.254", False),
        ("0.0.0.0", False),
        ("::", False),
        ("fc00::1", False),
        ("::127.0.0.1", False),
        ("64:ff9b::7f00:1", False),
        ("2002:7f00:1::", False),
    ],
)
def test_allow_loopback_allows_loopback_and_nothing_else(address: str, allowed: bool) -> None:
    assert forbidden_reason(ip(address), allow_loopback=False) is not None
    reason = forbidden_reason(ip(address), allow_loopback=True)
    assert (reason is None) is allowed


async def test_check_url_with_allow_loopback() -> None:
    resolver = FakeResolver()
    for url in (
        "http://127.0.0.1:8710/heygen",
        "http://localhost:8710/",
        "http://[::1]:8710/",
        "http://2130706433:8710/",
        "https://loop.example.com/",
    ):
        addresses = await check_url(url, allow_loopback=True, resolver=resolver)
        assert all(a.is_loopback or getattr(a, "ipv4_mapped", None) for a in addresses), url
    for url in (
        "http://10.0.0.5/",
        "http://10.1/",
        "http://192.168.1.1/",
        "http://169.254.169.254/",
        "http://0.0.0.0/",
        "https://internal.example.com/",
    ):
        with pytest.raises(UnsafeURL):
            await check_url(url, allow_loopback=True, resolver=resolver)


# -- messages never show the secret parts of a URL ----------------------------------------------

SECRET_BITS = ("s3cr3t", "hunter2", "alice", "catch", "token")


@pytest.mark.parametrize(
    "url",
    [
        "https://10.0.0.5/hooks/catch/s3cr3t?token=s3cr3t",
        "https://alice:hunter2@example.com/hooks/catch/s3cr3t",
        "https://alice:hunter2@10.0.0.5/catch",
        "https://internal.example.com/hooks/catch/s3cr3t?token=s3cr3t#s3cr3t",
        "http://metadata.google.internal/catch?token=s3cr3t",
        "ftp://alice:hunter2@example.com/catch/s3cr3t",
        "http://0177.0.0.1/catch/s3cr3t?token=s3cr3t",
        "http://1.2.3.4.5/catch/s3cr3t",
        "http://alice:hunter2@exa mple.com/catch/s3cr3t",
        "http://alice:hunter2@[::1/catch/s3cr3t",
    ],
)
async def test_messages_show_only_scheme_host_and_port(url: str) -> None:
    with pytest.raises(UnsafeURL) as caught:
        await check_url(url, resolver=FakeResolver())
    message = str(caught.value)
    for bit in SECRET_BITS:
        assert bit not in message, message


async def test_the_message_names_the_address_and_keeps_the_port() -> None:
    with pytest.raises(UnsafeURL) as caught:
        await check_url("https://10.0.0.5:8443/hook/s3cr3t", resolver=FakeResolver())
    assert str(caught.value) == "refusing https://10.0.0.5:8443: 10.0.0.5 is a private address"


# -- the transport: check on every request, pin to the vetted address ---------------------------


@pytest.fixture
def client_with(settings: Settings) -> Callable[..., httpx.AsyncClient]:
    """``client_with(recorder, resolver)``: guarded_client over a MockTransport."""

    def make(
        recorder: Recorder, resolver: FakeResolver, *, allow_loopback: bool = False
    ) -> httpx.AsyncClient:
        configured = settings.model_copy(update={"ssrf_allow_loopback": allow_loopback})
        return guarded_client(configured, resolver=resolver, inner=httpx.MockTransport(recorder))

    return make


async def test_the_transport_pins_https_to_the_vetted_ip(
    client_with: Callable[..., httpx.AsyncClient],
) -> None:
    recorder = Recorder()
    async with client_with(recorder, FakeResolver()) as client:
        response = await client.post("https://hooks.example.com/in/abc?x=1", json={"a": 1})
    assert response.status_code == 200
    assert response.url == httpx.URL("https://hooks.example.com/in/abc?x=1")
    (sent,) = recorder.requests
    assert sent.url == httpx.URL(f"https://{PUBLIC_V4}/in/abc?x=1")
    assert sent.headers["host"] == "hooks.example.com"
    assert sent.extensions["sni_hostname"] == "hooks.example.com"
    assert json.loads(sent.content) == {"a": 1}


async def test_the_transport_pins_ipv6_and_keeps_the_port(
    client_with: Callable[..., httpx.AsyncClient],
) -> None:
    recorder = Recorder()
    async with client_with(recorder, FakeResolver()) as client:
        await client.get("http://v6only.example.com:8080/x")
    (sent,) = recorder.requests
    assert sent.url.host == PUBLIC_V6
    assert sent.url.port == 8080
    assert sent.headers["host"] == "v6only.example.com:8080"
    assert "sni_hostname" not in sent.extensions


async def test_the_transport_refuses_before_sending(
    client_with: Callable[..., httpx.AsyncClient],
) -> None:
    recorder = Recorder()
    async with client_with(recorder, FakeResolver()) as client:
        for url in (
            "http://169.254.169.254/latest/meta-data/",
            "http://localhost/",
            "http://2130706433/",
            "https://internal.example.com/",
            "http://[::ffff:10.0.0.1]/",
        ):
            with pytest.raises(UnsafeURL):
                await client.get(url)
    assert recorder.requests == []


async def test_public_then_private_answer_never_reaches_either(
    client_with: Callable[..., httpx.AsyncClient],
) -> None:
    recorder = Recorder()
    async with client_with(recorder, FakeResolver()) as client:
        with pytest.raises(UnsafeURL, match=re.escape("10.0.0.1")):
            await client.get("https://half-private.example.com/")
        with pytest.raises(UnsafeURL, match=re.escape("10.0.0.1")):
            await guarded_request(client, "GET", "https://half-private.example.com/")
    assert recorder.requests == []


async def test_dns_rebinding_between_check_and_connect_is_refused(
    client_with: Callable[..., httpx.AsyncClient],
) -> None:
    """check_url sees a public answer, the transport's own look-up a private one: refused."""
    recorder = Recorder()
    resolver = FakeResolver(script=[[PUBLIC_V4], ["10.0.0.1"]])
    async with client_with(recorder, resolver) as client:
        with pytest.raises(UnsafeURL, match=re.escape("resolves to 10.0.0.1")):
            await guarded_request(client, "GET", "https://rebind.example.com/")
    assert len(resolver.calls) == 2
    assert recorder.requests == []


async def test_the_connection_goes_to_the_address_that_was_checked(
    client_with: Callable[..., httpx.AsyncClient],
) -> None:
    """One look-up per request, and the inner transport receives exactly that address."""
    recorder = Recorder()
    resolver = FakeResolver(script=[["198.51.99.1"], ["10.0.0.1"]])
    async with client_with(recorder, resolver) as client:
        await client.get("https://rebind.example.com/")
        with pytest.raises(UnsafeURL):
            await client.get("https://rebind.example.com/")
    assert recorder.hosts == ["198.51.99.1"]
    assert len(resolver.calls) == 2


async def test_a_failed_connect_moves_to_the_next_vetted_address_only() -> None:
    attempts: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        attempts.append(request.url.host)
        if request.url.host == PUBLIC_V4:
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(204)

    transport = GuardedTransport(resolver=FakeResolver(), inner=httpx.MockTransport(handler))
    async with httpx.AsyncClient(transport=transport) as client:
        response = await client.get("https://dual.example.com/")
    assert response.status_code == 204
    assert attempts == [PUBLIC_V4, PUBLIC_V6]


async def test_a_name_that_does_not_resolve_is_a_connect_error_in_the_transport() -> None:
    transport = GuardedTransport(
        resolver=FakeResolver({"gone.example.com": []}), inner=httpx.MockTransport(Recorder())
    )
    async with httpx.AsyncClient(transport=transport) as client:
        with pytest.raises(httpx.ConnectError, match="does not resolve"):
            await client.get("https://gone.example.com/")


async def test_guarded_client_reads_allow_loopback_from_settings(
    client_with: Callable[..., httpx.AsyncClient],
) -> None:
    recorder = Recorder()
    async with client_with(recorder, FakeResolver()) as client:
        with pytest.raises(UnsafeURL, match="loopback"):
            await client.get("http://127.0.0.1:8710/")
    async with client_with(recorder, FakeResolver(), allow_loopback=True) as client:
        assert (await client.get("http://127.0.0.1:8710/heygen")).status_code == 200
        assert (await client.get("http://localhost:8710/heygen")).status_code == 200
        with pytest.raises(UnsafeURL, match="private"):
            await client.get("http://10.0.0.5/")
    assert recorder.hosts == ["127.0.0.1", "127.0.0.1"]
    assert recorder.requests[1].headers["host"] == "localhost:8710"
    assert not client.follow_redirects


async def test_proxy_environment_variables_cannot_route_around_the_guard(
    monkeypatch: pytest.MonkeyPatch, client_with: Callable[..., httpx.AsyncClient]
) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://10.0.0.1:3128")
    monkeypatch.setenv("HTTPS_PROXY", "http://10.0.0.1:3128")
    monkeypatch.setenv("ALL_PROXY", "http://10.0.0.1:3128")
    recorder = Recorder()
    async with client_with(recorder, FakeResolver()) as client:
        await client.get("https://example.com/")
        with pytest.raises(UnsafeURL):
            await client.get("http://127.0.0.1/")
    assert recorder.hosts == [PUBLIC_V4]


# -- redirects ----------------------------------------------------------------------------------


def redirects(table: dict[str, httpx.Response]) -> Recorder:
    """Answer by the request's Host header + path (the URL itself carries the pinned IP)."""

    def answer(request: httpx.Request) -> httpx.Response:
        key = f"{request.headers['host']}{request.url.path}"
        return table.get(key, httpx.Response(200, json={"at": key}))

    return Recorder(answer)


def to(location: str, status: int = 302) -> httpx.Response:
    return httpx.Response(status, headers={"location": location})


async def test_a_redirect_to_the_metadata_service_is_refused(
    client_with: Callable[..., httpx.AsyncClient],
) -> None:
    recorder = redirects(
        {
            "hooks.example.com/start": to("https://example.com/next"),
            "example.com/next": to("http://169.254.169.254/latest/meta-data/iam"),
        }
    )
    async with client_with(recorder, FakeResolver()) as client:
        with pytest.raises(UnsafeURL) as caught:
            await guarded_request(client, "GET", "https://hooks.example.com/start?token=s3cr3t")
    assert str(caught.value) == (
        "refusing http://169.254.169.254: 169.254.169.254 is a cloud metadata address "
        "(redirected from https://hooks.example.com)"
    )
    assert recorder.hosts == [PUBLIC_V4, PUBLIC_V4]


async def test_the_transport_alone_refuses_redirect_hops(
    client_with: Callable[..., httpx.AsyncClient],
) -> None:
    """Even a caller that lets httpx follow redirects cannot reach a forbidden hop."""
    recorder = redirects({"hooks.example.com/start": to("http://[::ffff:169.254.169.254]/")})
    async with client_with(recorder, FakeResolver()) as client:
        with pytest.raises(UnsafeURL, match=re.escape("169.254.169.254")):
            await client.get("https://hooks.example.com/start", follow_redirects=True)
    assert len(recorder.requests) == 1


@pytest.mark.parametrize(
    "location",
    [
        "http://localhost/admin",
        "http://internal.example.com/",
        "https://alice:hunter2@example.com/",
        "file:///etc/passwd",
        "http://0x7f.1/",
    ],
)
async def test_redirects_to_any_forbidden_target_are_refused(
    location: str, client_with: Callable[..., httpx.AsyncClient]
) -> None:
    recorder = redirects({"hooks.example.com/start": to(location, 307)})
    async with client_with(recorder, FakeResolver()) as client:
        with pytest.raises(UnsafeURL, match=re.escape("redirected from https://hooks.example.com")):
            await guarded_request(client, "POST", "https://hooks.example.com/start", json={})
    assert len(recorder.requests) == 1


async def test_public_redirects_are_followed_with_relative_locations(
    client_with: Callable[..., httpx.AsyncClient],
) -> None:
    recorder = redirects(
        {
            "hooks.example.com/a": to("/b", 301),
            "hooks.example.com/b": to("https://other.example.net/c?q=1", 308),
            "other.example.net/c": to("d", 307),
        }
    )
    async with client_with(recorder, FakeResolver()) as client:
        response = await guarded_request(client, "GET", "https://hooks.example.com/a")
    assert response.json() == {"at": "other.example.net/d"}
    assert response.url == httpx.URL("https://other.example.net/d")
    assert recorder.hosts == [PUBLIC_V4, PUBLIC_V4, "203.0.114.7", "203.0.114.7"]


async def test_303_turns_a_post_into_a_bodyless_get(
    client_with: Callable[..., httpx.AsyncClient],
) -> None:
    recorder = redirects({"hooks.example.com/in": to("/status", 303)})
    async with client_with(recorder, FakeResolver()) as client:
        await guarded_request(client, "POST", "https://hooks.example.com/in", json={"a": 1})
    first, second = recorder.requests
    assert (first.method, second.method) == ("POST", "GET")
    assert second.content == b""
    assert "content-type" not in second.headers


async def test_307_keeps_the_method_and_body(client_with: Callable[..., httpx.AsyncClient]) -> None:
    recorder = redirects({"hooks.example.com/in": to("/moved", 307)})
    async with client_with(recorder, FakeResolver()) as client:
        await guarded_request(client, "POST", "https://hooks.example.com/in", json={"a": 1})
    second = recorder.requests[1]
    assert second.method == "POST"
    assert json.loads(second.content) == {"a": 1}


async def test_credentials_are_dropped_when_a_redirect_leaves_the_origin(
    client_with: Callable[..., httpx.AsyncClient],
) -> None:
    recorder = redirects(
        {
            "hooks.example.com/a": to("/b"),
            "hooks.example.com/b": to("https://other.example.net/c"),
        }
    )
    async with client_with(recorder, FakeResolver()) as client:
        await guarded_request(
            client, "GET", "https://hooks.example.com/a", headers={"Authorization": "Bearer t"}
        )
    assert [r.headers.get("authorization") for r in recorder.requests] == [
        "Bearer t",
        "Bearer t",
        None,
    ]


async def test_query_params_apply_to_the_first_hop_only(
    client_with: Callable[..., httpx.AsyncClient],
) -> None:
    recorder = redirects({"hooks.example.com/a": to("/b?page=2")})
    async with client_with(recorder, FakeResolver()) as client:
        await guarded_request(client, "GET", "https://hooks.example.com/a", params={"page": 1})
    assert [str(r.url.query, "ascii") for r in recorder.requests] == ["page=1", "page=2"]


async def test_too_many_redirects_are_refused(
    client_with: Callable[..., httpx.AsyncClient],
) -> None:
    recorder = Recorder(lambda request: to(f"/{len(recorder.requests)}"))
    async with client_with(recorder, FakeResolver()) as client:
        with pytest.raises(UnsafeURL, match=r"refusing https://hooks\.example\.com: more than 3"):
            await guarded_request(client, "GET", "https://hooks.example.com/0", max_redirects=3)
    assert len(recorder.requests) == 4


async def test_a_redirect_without_location_is_returned_as_is(
    client_with: Callable[..., httpx.AsyncClient],
) -> None:
    recorder = Recorder(lambda request: httpx.Response(302))
    async with client_with(recorder, FakeResolver()) as client:
        response = await guarded_request(client, "GET", "https://hooks.example.com/")
    assert response.status_code == 302


async def test_guarded_request_needs_a_guarded_client() -> None:
    async with httpx.AsyncClient(transport=httpx.MockTransport(Recorder())) as client:
        with pytest.raises(TypeError, match="GuardedTransport"):
            await guarded_request(client, "GET", "https://example.com/")


async def test_a_client_built_by_hand_around_the_transport_works() -> None:
    recorder = Recorder()
    transport = GuardedTransport(resolver=FakeResolver(), inner=httpx.MockTransport(recorder))
    async with httpx.AsyncClient(transport=transport) as client:
        response = await guarded_request(client, "GET", "https://example.com/")
    assert response.status_code == 200
    assert recorder.hosts == [PUBLIC_V4]


# -- pinning over real TLS on loopback ----------------------------------------------------------


def self_signed(name: str) -> tuple[bytes, bytes]:
    """A throw-away certificate for ``name`` (PEM cert, PEM key)."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


@pytest.fixture
async def tls_server(tmp_path: Path) -> AsyncIterator[tuple[int, bytes, list[str | None]]]:
    """An HTTPS server on 127.0.0.1 with a certificate for ``pinned.test``; echoes Host."""
    cert_pem, key_pem = self_signed("pinned.test")
    (tmp_path / "cert.pem").write_bytes(cert_pem)
    (tmp_path / "key.pem").write_bytes(key_pem)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    server_names: list[str | None] = []
    context.sni_callback = lambda sock, name, ctx: server_names.append(name)  # type: ignore[assignment, misc]

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        host = next(
            line.split(b":", 1)[1].strip()
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"host:")
        )
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
            % (len(host), host)
        )
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=context)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield port, cert_pem, server_names


async def test_tls_is_verified_against_the_name_while_connecting_to_the_ip(
    tls_server: tuple[int, bytes, list[str | None]],
) -> None:
    port, cert_pem, server_names = tls_server
    trust = ssl.create_default_context(cadata=cert_pem.decode())
    transport = GuardedTransport(
        allow_loopback=True,
        resolver=FakeResolver({"pinned.test": ["127.0.0.1"], "wrong.test": ["127.0.0.1"]}),
        inner=httpx.AsyncHTTPTransport(verify=trust),
    )
    async with httpx.AsyncClient(transport=transport) as client:
        response = await client.get(f"https://pinned.test:{port}/x")
        assert response.text == f"pinned.test:{port}"
        assert server_names == ["pinned.test"]
        with pytest.raises(httpx.ConnectError, match=r"(?i)certificate|hostname"):
            await client.get(f"https://wrong.test:{port}/x")
