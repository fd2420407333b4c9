"""The service on a Redis Cluster and on a Sentinel-watched primary behaves as on one server: sign-in,
the refresh hop, rotation and reuse detection, sign-out everywhere, and revocations that another
instance honours within 100 ms. Each test runs once per backend (see conftest.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp.test_utils import TestClient

from service.web import appkeys
from service.web.app import create_app
from service.settings import Settings
from tests.support.cli import Cli
from tests.support.cookies import cookie
from tests.support.sign_in import NAVIGATE, PASSWORD, login

FETCH = {"Sec-Fetch-Mode": "cors", "Accept": "application/json"}
ACCESS_TTL = 60  # seconds: the shared make_settings's tokens.access_ttl
GRACE = 10  # sessions.refresh_reuse_grace's default
WAIT = 10.0  # seconds: the bound on every wait below


async def subscribed(client: TestClient) -> None:
    """Wait (bounded) until the instance's revocation channel is live: its own heartbeat came back."""
    view = client.server.app[appkeys.authenticator].revocations
    deadline = time.monotonic() + WAIT
    while not view.subscribed:
        assert time.monotonic() < deadline, "the revocation channel never heard its own heartbeat"
        await asyncio.sleep(0.02)


async def refused_soon(client: TestClient) -> None:
    """The client's session is refused within 100 ms. A revocation reaches instances by pub/sub, and
    under Cluster over the cluster bus, so even the instance that made it may take a few ms."""
    started = time.monotonic()
    while (await me(client))[0] != 401:
        assert time.monotonic() - started < 0.1, "a revoked session is still honoured after 100 ms"
        await asyncio.sleep(0.005)


async def me(client: TestClient) -> Any:
    response = await client.get("/api/me", headers=FETCH, allow_redirects=False)
    return response.status, (await response.json() if response.status == 200 else None)


async def test_sign_in_and_api_me(client: TestClient, make_user: Callable[..., Awaitable[Any]]) -> None:
    await make_user("Alice")
    signed = await login(client, "alice")
    status, body = await me(client)
    assert status == 200
    assert body["name"] == "Alice" and body["session"] == signed["session"]
    assert (await client.get("/readyz")).status == 200


async def test_an_expired_access_token_is_refreshed_through_the_307_hop(
        client: TestClient, make_user: Callable[..., Awaitable[Any]], clock: Any) -> None:
    await make_user()
    signed = await login(client)
    old_refresh = cookie(client, "refresh")
    clock.advance(ACCESS_TTL + 1)
    response = await client.get("/", headers=NAVIGATE)
    assert [r.status for r in response.history] == [307, 307] and response.status == 200
    assert "Signed in as" in await response.text()
    assert cookie(client, "refresh") != old_refresh
    status, body = await me(client)
    assert status == 200 and body["session"] == signed["session"]


async def test_rotation_and_reuse_detection(client: TestClient, make_user: Callable[..., Awaitable[Any]],
                                            another_client: Callable[..., Awaitable[TestClient]], clock: Any) -> None:
    await make_user()
    await login(client)
    thief = await another_client(client)  # a copy of the first refresh token
    assert (await client.post("/auth/refresh", headers=FETCH)).status == 200
    assert cookie(client, "refresh") != cookie(thief, "refresh")
    clock.advance(GRACE + 1)
    assert (await thief.post("/auth/refresh", headers=FETCH)).status == 401
    await refused_soon(client)  # the whole session ended with the replay
    assert (await client.post("/auth/refresh", headers=FETCH)).status == 401


async def test_sign_out_everywhere_ends_every_session(make_client: Callable[..., Awaitable[TestClient]],
                                                      make_user: Callable[..., Awaitable[Any]]) -> None:
    await make_user()
    laptop, phone, tablet = await make_client(), await make_client(), await make_client()
    token = (await login(laptop))["csrf_token"]
    await login(phone)
    await login(tablet)
    listed = await (await laptop.get("/api/sessions", headers=FETCH)).json()
    assert len(listed["sessions"]) == 3
    response = await laptop.post("/account/sessions/revoke-all", data={"csrf": token}, headers=NAVIGATE,
                                 allow_redirects=False)
    assert response.status == 303
    for device in (laptop, phone, tablet):  # each on an instance of its own
        await refused_soon(device)
        assert (await device.post("/auth/refresh", headers=FETCH)).status == 401


async def test_a_sign_out_on_one_instance_reaches_another_within_100_ms(
        settings: Settings, clock: Any, make_client: Callable[..., Awaitable[TestClient]],
        make_user: Callable[..., Awaitable[Any]], another_client: Callable[..., Awaitable[TestClient]]) -> None:
    await make_user()
    one = await make_client(create_app(settings, clock=clock))
    two = await make_client(create_app(settings, clock=clock))
    await subscribed(one)
    await subscribed(two)
    await login(one)
    on_two = await another_client(one, server=two.server)
    assert (await me(on_two))[0] == 200  # instance two now holds the session as live in memory
    assert (await me(on_two))[0] == 200
    assert (await one.post("/logout", headers={**FETCH, "X-CSRF-Token": await csrf(one)})).status == 204
    await refused_soon(on_two)


async def csrf(client: TestClient) -> str:
    return str((await me(client))[1]["csrf_token"])


async def test_the_cli_adds_a_user_who_can_then_sign_in(settings: Settings, client: TestClient) -> None:
    """An operator runs ``users add`` against the same ``redis.url``; the new user signs in."""
    data_dir = settings.storage.data_dir
    cli = Cli(data_dir.parent, data_dir.parent, data_dir)
    env = cli.env(SERVICE__REDIS__URL=settings.redis.url, SERVICE__REDIS__KEY_PREFIX=settings.redis.key_prefix,
                  SERVICE__REDIS__REPLICA_ACKS=str(settings.redis.replica_acks))
    for args in (["users", "add", "Grace", "--password-stdin"], ["users", "list"]):
        result = await asyncio.to_thread(cli.run, *args, env=env, stdin=PASSWORD + "\n")
        assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Grace\t") and "\tactive\t" in result.stdout
    assert (await login(client, "grace"))["session"]
