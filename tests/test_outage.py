"""``redis.outage``: while Redis is down, fail-closed answers 503 and keeps every cookie (never a
sign-out, never a reuse verdict); serve-valid-tokens lets signed, unexpired access tokens through.
Sign-in and refresh answer 503 under both, and everything recovers by itself when Redis returns."""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient

from service.web import appkeys
from service.settings import Settings
from tests.support.cookies import jar_snapshot, set_cookies
from tests.support.redis_server import RedisServer
from tests.support.sign_in import NAVIGATE, login

JSON = {"Accept": "application/json"}
WAIT = 10.0  # seconds: the bound on every wait below


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A redis-server of this test's own, with an append-only file, so a restart keeps the data."""
    directory = Path(tempfile.mkdtemp(prefix="out-", dir="/tmp"))
    server = RedisServer(directory, persistent=True)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


async def signed_in(policy: str, own_redis: RedisServer, make_settings: Callable[..., Settings],
                    make_user: Callable[..., Awaitable[Any]],
                    make_client: Callable[..., Awaitable[TestClient]]) -> TestClient:
    settings = make_settings(redis={"url": own_redis.url, "outage": policy})
    await make_user(of=settings)
    client = await make_client(of=settings)
    await login(client)
    return client


async def redis_goes_away(client: TestClient, own_redis: RedisServer) -> None:
    """Stop Redis and wait (bounded) until the service has noticed: its revocation channel is deaf,
    so no session check is answered from memory any more."""
    own_redis.stop()
    view = client.server.app[appkeys.authenticator].revocations
    deadline = time.monotonic() + WAIT
    while view.subscribed:
        assert time.monotonic() < deadline, "the revocation channel did not notice Redis going away"
        await asyncio.sleep(0.02)


async def redis_comes_back(client: TestClient, own_redis: RedisServer) -> None:
    own_redis.start()
    deadline = time.monotonic() + WAIT
    while (await client.get("/readyz")).status != 200:
        assert time.monotonic() < deadline, "/readyz did not recover"
        await asyncio.sleep(0.05)


async def assert_unavailable(response: Any) -> None:
    assert response.status == 503, await response.text()
    assert response.headers["Retry-After"]
    assert set_cookies(response) == {}  # never a cleared cookie, never a new one


async def assert_recovered(client: TestClient, session_id: str) -> None:
    response = await client.get("/api/me", headers=JSON)
    assert response.status == 200, await response.text()
    assert (await response.json())["session"] == session_id
    origin = f"http://127.0.0.1:{client.server.port}"
    response = await client.post("/auth/refresh", headers={**JSON, "Origin": origin})
    assert response.status == 200, await response.text()  # the refresh token was neither used nor revoked
    response = await client.get("/api/me", headers=JSON)
    assert response.status == 200 and (await response.json())["session"] == session_id


async def assert_sign_in_and_refresh_unavailable(client: TestClient, fresh: TestClient) -> None:
    origin = f"http://127.0.0.1:{client.server.port}"
    await assert_unavailable(await client.post("/auth/refresh", headers={**JSON, "Origin": origin}))
    await assert_unavailable(await client.get("/auth/refresh?next=/", headers=NAVIGATE, allow_redirects=False))
    await assert_unavailable(await fresh.post("/login", json={"username": "alice", "password": "whatever"}))
    ready = await client.get("/readyz")
    assert ready.status == 503 and set_cookies(ready) == {}


async def test_fail_closed_answers_503_and_keeps_the_cookies(
        own_redis: RedisServer, make_settings: Callable[..., Settings], make_user: Callable[..., Awaitable[Any]],
        make_client: Callable[..., Awaitable[TestClient]],
        another_client: Callable[..., Awaitable[TestClient]]) -> None:
    client = await signed_in("fail-closed", own_redis, make_settings, make_user, make_client)
    session_id = (await (await client.get("/api/me", headers=JSON)).json())["session"]
    cookies = {m.key: m.value for m in jar_snapshot(client)}
    fresh = await another_client(client, cookies=[])
    await redis_goes_away(client, own_redis)

    response = await client.get("/api/me", headers=JSON)
    await assert_unavailable(response)
    assert (await response.json())["error"] == "unavailable"
    page = await client.get("/", headers=NAVIGATE, allow_redirects=False)
    await assert_unavailable(page)
    assert page.content_type == "text/html"
    await assert_sign_in_and_refresh_unavailable(client, fresh)
    assert {m.key: m.value for m in jar_snapshot(client)} == cookies

    await redis_comes_back(client, own_redis)
    await assert_recovered(client, session_id)


async def test_serve_valid_tokens_lets_a_valid_access_token_through(
        own_redis: RedisServer, make_settings: Callable[..., Settings], make_user: Callable[..., Awaitable[Any]],
        make_client: Callable[..., Awaitable[TestClient]],
        another_client: Callable[..., Awaitable[TestClient]]) -> None:
    client = await signed_in("serve-valid-tokens", own_redis, make_settings, make_user, make_client)
    session_id = (await (await client.get("/api/me", headers=JSON)).json())["session"]
    cookies = {m.key: m.value for m in jar_snapshot(client)}
    fresh = await another_client(client, cookies=[])
    await redis_goes_away(client, own_redis)

    response = await client.get("/api/me", headers=JSON)
    assert response.status == 200, await response.text()
    assert (await response.json())["session"] == session_id
    page = await client.get("/", headers=NAVIGATE, allow_redirects=False)
    assert page.status == 200
    await assert_sign_in_and_refresh_unavailable(client, fresh)
    assert {m.key: m.value for m in jar_snapshot(client)} == cookies

    await redis_comes_back(client, own_redis)
    await assert_recovered(client, session_id)


async def test_a_lost_revocation_channel_is_logged_once_not_at_every_retry(
        own_redis: RedisServer, make_settings: Callable[..., Settings], make_user: Callable[..., Awaitable[Any]],
        make_client: Callable[..., Awaitable[TestClient]], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="service")
    client = await signed_in("fail-closed", own_redis, make_settings, make_user, make_client)
    await redis_goes_away(client, own_redis)
    await asyncio.sleep(3.5)  # the channel is retried every second meanwhile
    await redis_comes_back(client, own_redis)
    view = client.server.app[appkeys.authenticator].revocations
    deadline = time.monotonic() + WAIT
    while not view.subscribed:
        assert time.monotonic() < deadline, "the revocation channel did not come back"
        await asyncio.sleep(0.05)
    events = [getattr(record, "event", None) for record in caplog.records]
    assert events.count("revocation_channel_lost") == 1, events
    [restored] = [r for r in caplog.records if getattr(r, "event", None) == "revocation_channel_restored"]
    assert restored.count >= 2  # type: ignore[attr-defined]  # the retries it did not log


async def test_redis_away_at_start_defers_the_schema_check_to_readyz(
        own_redis: RedisServer, make_settings: Callable[..., Settings],
        make_client: Callable[..., Awaitable[TestClient]]) -> None:
    settings = make_settings(redis={"url": own_redis.url})
    stamp = f"{settings.redis.key_prefix}schema"
    planted = aioredis.from_url(own_redis.url)
    await planted.set(stamp, "99")  # written by a newer release
    await planted.aclose()
    own_redis.stop()
    client = await make_client(of=settings)  # starts, as it would with an external Redis not up yet
    own_redis.start()
    response = await client.get("/readyz")
    assert response.status == 503 and (await response.json())["redis"] == "schema mismatch"
    fixer = aioredis.from_url(own_redis.url)
    try:
        assert await fixer.get(stamp) == b"99"  # refused, not rewritten
        await fixer.set(stamp, "1")  # the operator restored data this release reads
        assert (await client.get("/readyz")).status == 200
    finally:
        await fixer.aclose()
