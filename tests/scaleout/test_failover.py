"""Sentinel failover with ``redis.replica_acks = 1``: no session that was acknowledged is lost when the
primary dies, requests meanwhile get 503 (fail-closed) and never 401, and the service recovers by
itself; a primary that falls silent cannot leave a revoked session honoured from memory; and a write
no replica confirms is answered 503, never acknowledged."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from service.web import appkeys
from service.core import revocations
from service.web.app import create_app
from service.settings import Settings
from tests.support.cookies import cookie, set_cookies
from tests.support.redis_groups import SentinelGroup
from tests.support.sign_in import PASSWORD

pytestmark = pytest.mark.parametrize("backend", ["sentinel"], indirect=True)

FETCH = {"Sec-Fetch-Mode": "cors", "Accept": "application/json"}
WAIT = 20.0  # seconds: the bound on every wait below
OK_OR_UNAVAILABLE = {200, 503}


@pytest.fixture
def failover_settings(make_settings: Callable[..., Settings]) -> Settings:
    # Sign-ins cut short by the failover must not fill the failed-sign-in windows of this one client.
    return make_settings(throttle={"per_user": 1000, "per_ip": 1000})


@pytest.fixture
async def failover_client(make_client: Callable[..., Awaitable[TestClient]], failover_settings: Settings) -> TestClient:
    """A client of an instance on :func:`failover_settings`."""
    return await make_client(of=failover_settings)


async def sign_in(client: TestClient, name: str) -> int:
    response = await client.post("/login", json={"username": name, "password": PASSWORD})
    if response.status != 200:
        assert set_cookies(response) == {}, "an unacknowledged sign-in set cookies"
    return response.status


async def me(client: TestClient) -> tuple[int, str | None]:
    response = await client.get("/api/me", headers=FETCH)
    return response.status, (await response.json())["session"] if response.status == 200 else None


async def until_ready(client: TestClient) -> None:
    deadline = time.monotonic() + WAIT
    while (await client.get("/readyz")).status != 200:
        assert time.monotonic() < deadline, "the service did not recover by itself"
        await asyncio.sleep(0.05)


async def test_a_primary_failover_loses_no_acknowledged_session(
        sentinel: SentinelGroup, failover_settings: Settings, clock: Any,
        make_client: Callable[..., Awaitable[TestClient]], make_user: Callable[..., Awaitable[Any]],
        another_client: Callable[..., Awaitable[TestClient]]) -> None:
    names = [f"user{n}" for n in range(4)]
    for name in names:
        await make_user(name)
    watcher = await make_client(create_app(failover_settings, clock=clock))
    assert await sign_in(watcher, "user0") == 200
    acknowledged: list[tuple[TestClient, str]] = []  # clients whose sign-in was answered 200, and its session
    seen: list[int] = []
    stop = asyncio.Event()

    async def sign_ins(name: str) -> None:
        while not stop.is_set():
            client = await another_client(watcher, cookies=[])  # another browser on the same instance
            response = await client.post("/login", json={"username": name, "password": PASSWORD})
            seen.append(response.status)
            if response.status == 200:
                acknowledged.append((client, (await response.json())["session"]))
                rotated = await client.post("/auth/refresh", headers=FETCH)  # a second write, maybe cut short
                seen.append(rotated.status)
            else:
                assert set_cookies(response) == {}, "an unacknowledged sign-in set cookies"
            await asyncio.sleep(0.01)

    async def watch() -> None:  # a signed-in page polling its API all along
        while not stop.is_set():
            seen.append((await me(watcher))[0])
            await asyncio.sleep(0.01)

    workers = [asyncio.create_task(sign_ins(name)) for name in names] + [asyncio.create_task(watch())]
    try:
        deadline = time.monotonic() + WAIT
        while len(acknowledged) < 20:
            assert time.monotonic() < deadline and not any(w.done() for w in workers)
            await asyncio.sleep(0.01)
        old = sentinel.primary()
        sentinel.kill(old)  # kill -9 while sign-ins and rotations are in flight
        before = len(acknowledged)
        await asyncio.to_thread(sentinel.wait_failover, old)
        await until_ready(watcher)
        deadline = time.monotonic() + WAIT
        while len(acknowledged) < before + 20:  # sign-ins work again, without a restart
            assert time.monotonic() < deadline and not any(w.done() for w in workers), "sign-ins did not recover"
            await asyncio.sleep(0.01)
    finally:
        stop.set()
        await asyncio.gather(*workers)
    assert set(seen) <= OK_OR_UNAVAILABLE, sorted(set(seen))  # never a 401, never a 500
    assert 503 in seen  # the failover was noticed: meanwhile requests were refused, never failed

    # Every acknowledged session works on the new primary, seen by an instance with no memory of it.
    fresh = await make_client(create_app(failover_settings, clock=clock))
    for client, session in acknowledged:
        elsewhere = await another_client(client, server=fresh.server)
        assert await me(elsewhere) == (200, session)
        refreshed = await elsewhere.post("/auth/refresh", headers=FETCH)
        assert refreshed.status == 200, await refreshed.text()
    assert (await me(watcher))[0] == 200


async def test_a_silent_primary_cannot_leave_a_revoked_session_honoured(
        sentinel: SentinelGroup, failover_settings: Settings, clock: Any,
        make_client: Callable[..., Awaitable[TestClient]], make_user: Callable[..., Awaitable[Any]],
        another_client: Callable[..., Awaitable[TestClient]]) -> None:
    """The primary stops answering without closing a connection (SIGSTOP: a hung host, a network
    partition). Instance two's subscription is then deaf without knowing it; its own heartbeat not
    coming back makes it ask Redis again, so a sign-out made on the new primary reaches it."""
    await make_user()
    one = await make_client(create_app(failover_settings, clock=clock))
    two = await make_client(create_app(failover_settings, clock=clock))
    two_view = two.server.app[appkeys.authenticator].revocations
    deadline = time.monotonic() + WAIT
    while not two_view.subscribed:
        assert time.monotonic() < deadline, "instance two never subscribed"
        await asyncio.sleep(0.02)
    assert await sign_in(one, "alice") == 200
    on_two = await another_client(one, server=two.server)
    assert (await me(on_two))[0] == 200  # now remembered as live by instance two

    old = sentinel.primary()
    sentinel.signal(old, signal.SIGSTOP)
    # Two's last heartbeat came back before this, so from then on it is deaf and asks Redis.
    deaf_by = time.monotonic() + revocations.DEAF_AFTER + 0.1
    try:
        await asyncio.to_thread(sentinel.wait_failover, old)
        csrf = await csrf_token_retrying(one)
        deadline = time.monotonic() + WAIT
        while (response := await one.post("/logout", headers={**FETCH, "X-CSRF-Token": csrf})).status != 204:
            assert response.status == 503 and time.monotonic() < deadline, response.status
            await asyncio.sleep(0.05)
        signed_out = time.monotonic()
        while (status := (await me(on_two))[0]) != 401:
            assert status in OK_OR_UNAVAILABLE, status
            if status == 200:
                assert time.monotonic() < max(deaf_by, signed_out), "instance two honours a revoked session"
            assert time.monotonic() < signed_out + WAIT, "instance two never noticed the sign-out"
            await asyncio.sleep(0.02)
    finally:
        sentinel.kill(old)  # the fixture restarts it as a replica of the new primary
    await until_ready(two)
    assert (await me(on_two))[0] == 401


async def csrf_token_retrying(client: TestClient) -> str:
    deadline = time.monotonic() + WAIT
    while (response := await client.get("/api/me", headers=FETCH)).status != 200:
        assert response.status == 503 and time.monotonic() < deadline, response.status
        await asyncio.sleep(0.05)
    return str((await response.json())["csrf_token"])


async def test_a_write_no_replica_confirms_is_answered_503_not_acknowledged(
        sentinel: SentinelGroup, failover_client: TestClient, failover_settings: Settings,
        make_client: Callable[..., Awaitable[TestClient]], make_user: Callable[..., Awaitable[Any]]) -> None:
    await make_user()
    assert await sign_in(failover_client, "alice") == 200
    session = (await me(failover_client))[1]
    refresh_token = cookie(failover_client, "refresh")
    replicas = sentinel.replicas()
    for port in replicas:
        sentinel.signal(port, signal.SIGSTOP)
    try:
        newcomer = await make_client(of=failover_settings)
        assert await sign_in(newcomer, "alice") == 503  # no cookies: checked by sign_in
        rotation = await failover_client.post("/auth/refresh", headers=FETCH)
        assert rotation.status == 503 and set_cookies(rotation) == {}
        assert await me(failover_client) == (200, session)  # reads need no replica
    finally:
        for port in replicas:
            sentinel.signal(port, signal.SIGCONT)
    sentinel.wait_healthy()
    assert cookie(failover_client, "refresh") == refresh_token
    assert (await failover_client.post("/auth/refresh", headers=FETCH)).status == 200
    assert await sign_in(newcomer, "alice") == 200


async def test_a_primary_that_forgot_the_scripts_still_answers(
        sentinel: SentinelGroup, failover_client: TestClient, make_user: Callable[..., Awaitable[Any]]) -> None:
    """A primary restarted empty, or promoted without the script cache, is sent each script again."""
    await make_user()
    assert await sign_in(failover_client, "alice") == 200
    sentinel.ask(sentinel.primary(), "SCRIPT", "FLUSH")
    assert (await failover_client.post("/auth/refresh", headers=FETCH)).status == 200
    assert await sign_in(failover_client, "alice") == 200
