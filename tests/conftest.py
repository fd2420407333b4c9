"""Shared fixtures: one real redis-server per test run, settings with a unique key prefix per test,
a settable clock, and factories that make users, apps, clients and sign-ins; the CLI and the service
as an operator runs them. Helpers live in tests/support/."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from http.cookies import Morsel
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from yarl import URL

from service import settings as settings_module
from service.clock import SettableClock
from service.core.accounts import Accounts
from service.settings import Settings
from service.storage.client import connect
from service.web.app import build_authenticator, create_app
from tests.support.cli import Cli
from tests.support.cookies import browser_jar, jar_snapshot
from tests.support.redis_server import RedisServer, remove_root
from tests.support.servers import ServiceProcess, service_process_in_fresh_dir
from tests.support.sign_in import CHEAP_PASSWORDS, PASSWORD


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A real redis-server on a unix socket, for the whole run; each test uses its own key prefix."""
    server = RedisServer(Path(tempfile.mkdtemp(prefix="svc-redis-", dir="/tmp")))
    server.start()
    yield server.url
    server.stop()
    shutil.rmtree(server.directory, ignore_errors=True)


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
        return await aiohttp_client(server, cookie_jar=browser_jar(server.port))

    return make


@pytest.fixture
async def client(make_client: Callable[..., Awaitable[TestClient]]) -> TestClient:
    return await make_client()


@pytest.fixture
def another_client(aiohttp_client: Any) -> Callable[..., Awaitable[TestClient]]:
    """Another client (its own jar, like another tab or device) for a running server.

    ``cookies`` are morsels (see :func:`~tests.support.cookies.jar_snapshot`) put in the new jar,
    default a snapshot of ``like``'s jar; ``server`` defaults to ``like``'s server. Cookies ignore
    ports, as in browsers.
    """

    async def make(like: TestClient, *, cookies: Iterable[Morsel[str]] | None = None,
                   server: Any = None) -> TestClient:
        server = server or like.server
        jar = browser_jar(server.port)
        chosen = jar_snapshot(like) if cookies is None else list(cookies)
        jar.update_cookies([(morsel.key, morsel) for morsel in chosen],
                           response_url=URL(f"http://127.0.0.1:{server.port}/"))
        return await aiohttp_client(server, cookie_jar=jar)

    return make


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
def accounts(authenticator: Any) -> Accounts:
    """The account core, as the CLI and the HTTP handlers use it."""
    return Accounts(authenticator)


@pytest.fixture
async def failed_sign_ins(make_user: Callable[..., Awaitable[Any]], authenticator: Any) -> dict[str, tuple[str, str]]:
    """One failed sign-in of each kind: unknown user, wrong password, disabled user (right password)."""
    await make_user("alice")
    bob = await make_user("bob")
    await authenticator.users.set_disabled(bob.id, True)
    return {"unknown user": ("mallory", PASSWORD), "wrong password": ("alice", PASSWORD + "!"),
            "disabled user": ("bob", PASSWORD)}


@pytest.fixture
def cli() -> Iterator[Cli]:
    """The CLI in a fresh directory under /tmp; no redis-server it started may outlive the test."""
    root = Path(tempfile.mkdtemp(prefix="cli-", dir="/tmp"))
    (root / "cwd").mkdir()
    try:
        yield Cli(root, root / "cwd", root / "data")
    finally:
        remove_root(root, "the CLI")


@pytest.fixture
def service_process() -> Iterator[ServiceProcess]:
    """``python -m service`` (not yet started) in a fresh directory, on a free port."""
    with service_process_in_fresh_dir("rst-", "the service") as running:
        yield running
