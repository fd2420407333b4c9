"""Shared fixtures: one real redis-server per test run, settings with a unique key prefix per test,
a settable clock, and factories that make users, apps, clients and sign-ins."""

from __future__ import annotations

import asyncio
import functools
import html
import os
import re
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from http.cookies import Morsel, SimpleCookie
from pathlib import Path
from typing import Any

import pytest
import redis as sync_redis
from aiohttp import CookieJar, web
from aiohttp.test_utils import TestClient
from yarl import URL

from service import settings as settings_module
from service.web.app import build_authenticator, create_app
from service.clock import SettableClock
from service.storage.embedded import die_with_parent, find_redis_server
from service.settings import Settings
from service.storage.client import connect

PASSWORD = "correct horse battery staple"

# argon2's cheapest parameters: tests exercise the code path, not the cost.
CHEAP_PASSWORDS = {"time_cost": 1, "memory_cost": 64, "parallelism": 1}


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A real redis-server on a unix socket, for the whole run; each test uses its own key prefix."""
    directory = Path(tempfile.mkdtemp(prefix="svc-redis-", dir="/tmp"))
    socket = directory / "redis.sock"
    process = subprocess.Popen(
        [find_redis_server(), "--port", "0", "--unixsocket", str(socket), "--unixsocketperm", "700",
         "--dir", str(directory), "--save", "", "--appendonly", "no", "--daemonize", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        preexec_fn=functools.partial(die_with_parent, os.getpid()),  # never outlives a killed test run
    )
    client = sync_redis.Redis(unix_socket_path=str(socket))
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except sync_redis.exceptions.ConnectionError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                raise RuntimeError("the test redis-server did not start") from None
            time.sleep(0.02)
    client.close()
    yield f"unix://{socket}"
    process.terminate()
    process.wait(timeout=10)
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def clock() -> SettableClock:
    return SettableClock()


@pytest.fixture
def make_settings(redis_url: str, tmp_path: Path) -> Callable[..., Settings]:
    """Settings for one test: its own key prefix and data dir; ``section={key: value}`` overrides."""
    prefix = f"t{uuid.uuid4().hex[:12]}:"

    def make(**sections: dict[str, Any]) -> Settings:
        raw: dict[str, dict[str, Any]] = {
            "storage": {"data_dir": str(tmp_path / "data")},
            "redis": {"url": redis_url, "key_prefix": prefix},
            "passwords": dict(CHEAP_PASSWORDS),
            "tokens": {"access_ttl": "60s"},
        }
        for section, values in sections.items():
            raw.setdefault(section, {}).update(values)
        return settings_module.validate(settings_module.build(raw))

    return make


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings()


@pytest.fixture
def make_user(settings: Settings, clock: SettableClock) -> Callable[..., Awaitable[Any]]:
    """Create a user through the core, as the CLI does; returns the :class:`~service.users.User`."""

    async def make(name: str = "alice", password: str = PASSWORD, *, of: Settings | None = None) -> Any:
        chosen = of or settings
        redis = connect(chosen.redis.url, chosen.redis)
        try:
            auth = build_authenticator(chosen, redis, clock)
            return await auth.users.create(name, await auth.passwords.hash(password), clock())
        finally:
            await redis.aclose()

    return make


@pytest.fixture
def make_client(aiohttp_client: Any, aiohttp_server: Any, settings: Settings,
                clock: SettableClock) -> Callable[..., Awaitable[TestClient]]:
    """A real loopback server running the service, and a client whose cookie jar acts like a browser's
    on http://127.0.0.1 (which browsers treat as a secure origin)."""

    async def make(app: web.Application | None = None, *, of: Settings | None = None) -> TestClient:
        server = await aiohttp_server(app or create_app(of or settings, clock=clock), host="127.0.0.1")
        jar = CookieJar(unsafe=True, treat_as_secure_origin=[f"http://127.0.0.1:{server.port}"])
        return await aiohttp_client(server, cookie_jar=jar)

    return make


@pytest.fixture
async def client(make_client: Callable[..., Awaitable[TestClient]]) -> TestClient:
    return await make_client()


async def login(client: TestClient, name: str = "alice", password: str = PASSWORD) -> dict[str, Any]:
    """Sign in with JSON; returns the response body (it includes the session's ``csrf_token``).
    Cookies land in the client's jar."""
    response = await client.post("/login", json={"username": name, "password": password})
    assert response.status == 200, await response.text()
    return await response.json()


# --- CSRF: the tokens a same-origin page would hold ---

NAVIGATE = {"Sec-Fetch-Mode": "navigate", "Sec-Fetch-Site": "same-origin", "Accept": "text/html"}


def hidden_field(page: str, name: str) -> str | None:
    """The value of the hidden input called ``name`` in a rendered page, HTML entities decoded."""
    for tag in re.findall(r"<input\b[^>]*>", page):
        if re.search(rf'\bname="{re.escape(name)}"', tag) and 'type="hidden"' in tag:
            value = re.search(r'\bvalue="([^"]*)"', tag)
            return html.unescape(value.group(1)) if value else ""
    return None


async def login_token(client: TestClient, path: str = "/login") -> str:
    """GET the login page as a browser would: the pre-session nonce cookie lands in the jar and the
    form's hidden ``csrf`` field, bound to it, is returned."""
    response = await client.get(path, headers=NAVIGATE, allow_redirects=False)
    assert response.status == 200, response.status
    token = hidden_field(await response.text(), "csrf")
    assert token, "the login form has no csrf field"
    return token


async def form_login(client: TestClient, name: str | None = "alice", password: str | None = PASSWORD, *,
                     next: str | None = None, headers: dict[str, str] | None = None,
                     allow_redirects: bool = False, path: str = "/login") -> Any:
    """Sign in through the login form as a browser does: GET the page, then POST the form with its
    hidden ``csrf`` field. ``None`` leaves a field out. Returns the POST's response."""
    data = {"csrf": await login_token(client, path)}
    for field, value in (("username", name), ("password", password), ("next", next)):
        if value is not None:
            data[field] = value
    return await client.post(path, data=data, headers=NAVIGATE if headers is None else headers,
                             allow_redirects=allow_redirects)


async def csrf_token(client: TestClient) -> str:
    """The CSRF token of the client's current session, as page scripts read it from ``/api/me``."""
    response = await client.get("/api/me", headers={"Accept": "application/json"})
    assert response.status == 200, response.status
    token = (await response.json())["csrf_token"]
    assert token
    return str(token)


def cookie(client: TestClient, name: str) -> str | None:
    """The value of a cookie in the client's jar, by its name without prefix (``access``, ``refresh``)."""
    for morsel in client.session.cookie_jar:
        if morsel.key.split("-", 1)[-1] == name or morsel.key == name:
            return morsel.value
    return None


# --- helpers for the HTTP behaviour suites (login, cookies, auto-refresh, rotation, expiry) ---

def jar_snapshot(client: TestClient) -> list[Morsel[str]]:
    """Copies of every cookie in the client's jar, with their Path and Domain, to replay later."""
    return [morsel.copy() for morsel in client.session.cookie_jar]


def set_cookies(response: Any) -> dict[str, Morsel[str]]:
    """The cookies a response sets, by full name, parsed from each raw ``Set-Cookie`` header."""
    found: dict[str, Morsel[str]] = {}
    for header in response.headers.getall("Set-Cookie", []):
        parsed: SimpleCookie = SimpleCookie()
        parsed.load(header)
        found.update(parsed)
    return found


@pytest.fixture
async def redis_client(settings: Settings) -> AsyncIterator[Any]:
    """A client of the test's redis-server, to set up state and to inspect what the service stored."""
    client = connect(settings.redis.url, settings.redis)
    yield client
    await client.aclose()


@pytest.fixture
def authenticator(settings: Settings, redis_client: Any, clock: SettableClock) -> Any:
    """The core wired as the CLI wires it (``users disable`` and friends), on the test's key prefix."""
    return build_authenticator(settings, redis_client, clock)


@pytest.fixture
def browser(aiohttp_client: Any) -> Callable[..., Awaitable[TestClient]]:
    """Another client (its own jar, like another tab or device) for a running server.

    ``cookies`` are morsels (see :func:`jar_snapshot`) put in the new jar, default a snapshot of
    ``like``'s jar; ``server`` defaults to ``like``'s server. Cookies ignore ports, as in browsers.
    """

    async def make(like: TestClient, *, cookies: Iterable[Morsel[str]] | None = None,
                   server: Any = None) -> TestClient:
        server = server or like.server
        origin = f"http://127.0.0.1:{server.port}"
        jar = CookieJar(unsafe=True, treat_as_secure_origin=[origin])
        chosen = jar_snapshot(like) if cookies is None else list(cookies)
        jar.update_cookies([(morsel.key, morsel) for morsel in chosen], response_url=URL(origin + "/"))
        return await aiohttp_client(server, cookie_jar=jar)

    return make


def with_value(cookies: Iterable[Morsel[str]], name: str, value: str | None) -> list[Morsel[str]]:
    """Copies of ``cookies`` in which the cookie called ``name`` (without prefix) holds ``value``
    (or is left out, for None); its Path, Domain and flags are kept."""
    changed = []
    for morsel in cookies:
        morsel = morsel.copy()
        if morsel.key.split("-", 1)[-1] == name or morsel.key == name:
            if value is None:
                continue
            morsel.set(morsel.key, value, value)
        changed.append(morsel)
    return changed


async def raw_exchange(port: int, request: bytes) -> bytes:
    """Send exact request bytes to 127.0.0.1:port and read the whole answer (``Connection: close``):
    for bytes an HTTP client library would refuse or rewrite."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
        await writer.wait_closed()
