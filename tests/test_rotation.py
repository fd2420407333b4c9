"""Refresh-token rotation: new token on every use, hashes only in Redis, the grace window for the
immediate predecessor, reuse detection that revokes, forgeries that cannot, 50 parallel refreshes,
and two service instances sharing one Redis."""

from __future__ import annotations

import asyncio
import base64
import hashlib

import pytest

from service.web.app import create_app
from service.storage.client import KeySpace
from tests.support.cookies import cookie, jar_snapshot, with_value
from tests.support.sign_in import login

GRACE = 10  # sessions.refresh_reuse_grace's default, in seconds
FETCH = {"Sec-Fetch-Mode": "cors", "Accept": "application/json"}


async def refresh(client):
    """POST /auth/refresh; returns (status, the refresh cookie the client holds afterwards)."""
    response = await client.post("/auth/refresh", headers=FETCH)
    return response.status, cookie(client, "refresh")


async def signed_in(client) -> bool:
    return (await client.get("/api/me", headers=FETCH, allow_redirects=False)).status == 200


async def stored_bytes(redis_client, prefix: str) -> list[bytes]:
    """Every key name and value under the test's prefix, whatever the type, as bytes."""
    found = []
    async for key in redis_client.scan_iter(match=prefix + "*"):
        found.append(key)
        kind = (await redis_client.type(key)).decode()
        if kind == "string":
            found.append(await redis_client.get(key))
        elif kind == "hash":
            for field, value in (await redis_client.hgetall(key)).items():
                found += [field, value]
        elif kind == "set":
            found += list(await redis_client.smembers(key))
        elif kind == "list":
            found += await redis_client.lrange(key, 0, -1)
        elif kind == "zset":
            found += [member for member, _ in await redis_client.zrange(key, 0, -1, withscores=True)]
        else:
            pytest.fail(f"unexpected key type {kind} at {key!r}")
    return found


def secret_of(token: str) -> str:
    """The random part of a refresh token (``<user>.<session>.<secret>.<tag>``)."""
    return token.split(".")[2]


# --- rotation ---

async def test_refresh_rotates_both_tokens_and_keeps_the_session(client, make_user):
    await make_user()
    signed = await login(client)
    old_access, old_refresh = cookie(client, "access"), cookie(client, "refresh")
    response = await client.post("/auth/refresh", headers=FETCH)
    assert response.status == 200
    body = await response.json()
    assert body["session_expires"] == signed["session_expires"]
    assert cookie(client, "refresh") != old_refresh
    assert cookie(client, "access") != old_access
    me = await (await client.get("/api/me")).json()
    assert me["session"] == signed["session"]


async def test_every_rotation_yields_a_never_seen_token(client, make_user, clock):
    await make_user()
    await login(client)
    seen = [cookie(client, "refresh")]
    for _ in range(5):
        clock.advance(GRACE + 1)  # rotating on from the current token is never a reuse
        status, token = await refresh(client)
        assert status == 200
        seen.append(token)
    assert len(set(seen)) == len(seen)


async def test_refresh_tokens_are_opaque_with_at_least_256_random_bits(client, make_user):
    await make_user()
    await login(client)
    token = cookie(client, "refresh")
    assert token.count(".") == 3  # not a JWT: nothing in it is readable claims
    assert len(base64.urlsafe_b64decode(secret_of(token) + "==")) >= 32


async def test_only_a_sha256_digest_of_the_refresh_token_is_stored(client, make_user, settings, redis_client):
    user = await make_user()
    signed = await login(client)
    first = cookie(client, "refresh")
    assert (await refresh(client))[0] == 200
    current = cookie(client, "refresh")

    everything = b"\n".join(await stored_bytes(redis_client, settings.redis.key_prefix))
    for token in (first, current):
        secret = secret_of(token)
        assert token.encode() not in everything
        assert secret.encode() not in everything
        assert base64.urlsafe_b64decode(secret + "==") not in everything
    # The session's state holds the first 128 bits of each digest: the current token's and its predecessor's.
    state = await redis_client.hget(KeySpace(settings.redis.key_prefix).user_sessions(user.id), signed["session"])
    for token in (first, current):
        assert hashlib.sha256(token.encode()).digest()[:16] in state


# --- reuse: the immediate predecessor within the grace window, and nothing else ---

async def test_reusing_the_previous_token_within_grace_gives_the_same_successor(client, make_user, another_client,
                                                                                clock):
    await make_user()
    signed = await login(client)
    old_tab = await another_client(client)  # still holds the first refresh token
    first = await client.post("/auth/refresh", headers=FETCH)
    clock.advance(GRACE - 1)
    again = await old_tab.post("/auth/refresh", headers=FETCH)
    assert (first.status, again.status) == (200, 200)
    assert cookie(old_tab, "refresh") == cookie(client, "refresh")
    assert (await again.json())["session_expires"] == (await first.json())["session_expires"]
    for tab in (client, old_tab):
        me = await (await tab.get("/api/me")).json()
        assert me["session"] == signed["session"]
    assert (await refresh(old_tab))[0] == 200  # the successor rotates on as usual


async def test_reusing_the_previous_token_after_grace_revokes_the_whole_session(
        client, make_user, another_client, clock, authenticator):
    user = await make_user()
    await login(client)
    thief = await another_client(client)  # a copy of the first refresh token
    assert (await refresh(client))[0] == 200
    clock.advance(GRACE + 1)  # the access JWT (60 s) is still within its exp
    assert (await thief.post("/auth/refresh", headers=FETCH)).status == 401
    # The legitimate holder's current tokens die with the session.
    assert not await signed_in(client)
    assert (await client.post("/auth/refresh", headers=FETCH)).status == 401
    assert await authenticator.sessions.list(user.id) == []


async def test_reusing_the_previous_token_right_at_the_end_of_grace_is_still_forgiven(
        client, make_user, another_client, clock):
    await make_user()
    await login(client)
    old_tab = await another_client(client)
    assert (await refresh(client))[0] == 200
    clock.advance(GRACE)
    assert (await refresh(old_tab))[0] == 200
    assert await signed_in(client)


async def test_reusing_a_grandparent_token_revokes_the_session(client, make_user, another_client, clock):
    # R0 → R1, later R1 → R2; R0 is then two behind: only the immediate predecessor is forgiven.
    await make_user()
    await login(client)
    grandparent = await another_client(client)
    assert (await refresh(client))[0] == 200
    clock.advance(GRACE + 1)
    assert (await refresh(client))[0] == 200
    assert (await grandparent.post("/auth/refresh", headers=FETCH)).status == 401
    assert not await signed_in(client)
    assert (await client.post("/auth/refresh", headers=FETCH)).status == 401


async def test_a_token_issued_within_the_grace_window_is_kept_not_rotated_again(client, make_user, another_client):
    # A burst reaches the refresh hop in waves (browsers open at most 6 connections per host): the
    # second wave carries R1 while stragglers still carry R0. Rotating R1 again would make R0 a
    # grandparent and revoke the session; instead R1 is kept, and R0 still yields R1.
    await make_user()
    await login(client)
    first_wave = await another_client(client)
    status, r1 = await refresh(client)
    assert status == 200
    status, again = await refresh(client)
    assert (status, again) == (200, r1)
    status, straggler = await refresh(first_wave)
    assert (status, straggler) == (200, r1)
    assert await signed_in(client) and await signed_in(first_wave)


async def test_a_kept_token_rotates_once_the_grace_window_has_passed(client, make_user, clock):
    await make_user()
    await login(client)
    _, r1 = await refresh(client)
    clock.advance(GRACE + 1)
    status, r2 = await refresh(client)
    assert status == 200 and r2 != r1


def forge(token: str, how: str) -> str:
    """A token of the right shape that the service never issued."""
    user_id, session_id, secret, tag = token.split(".")
    if how == "bad tag":
        tag = ("B" if tag[0] == "A" else "A") + tag[1:]
    elif how == "bad secret":
        secret = ("B" if secret[0] == "A" else "A") + secret[1:]
    elif how == "fresh secret":
        secret = base64.urlsafe_b64encode(b"\x00" * 32).rstrip(b"=").decode()
    return ".".join((user_id, session_id, secret, tag))


@pytest.mark.parametrize("how", ["bad tag", "bad secret", "fresh secret"])
async def test_a_forged_token_is_401_and_never_revokes_the_real_session(client, make_user, another_client, how,
                                                                        authenticator):
    user = await make_user()
    signed = await login(client)
    forged = forge(cookie(client, "refresh"), how)
    attacker = await another_client(client, cookies=with_value(jar_snapshot(client), "refresh", forged))
    assert (await attacker.post("/auth/refresh", headers=FETCH)).status == 401
    assert await signed_in(client)
    assert (await refresh(client))[0] == 200
    assert [s.session_id for s in await authenticator.sessions.list(user.id)] == [signed["session"]]


@pytest.mark.parametrize("garbage", ["", "x", "a.b.c.d", "." * 3, "é" * 40, "A" * 5000,
                                     "eyJhbGciOiJIUzI1NiJ9.e30.ZRrHA1JJJW8opsbCGfG_HACGpVUMN_a9IV7pAx_Zmeo"])
async def test_a_malformed_refresh_token_is_401_not_500(client, make_user, another_client, garbage):
    await make_user()
    await login(client)
    attacker = await another_client(client, cookies=with_value(jar_snapshot(client), "refresh", garbage or None))
    response = await attacker.post("/auth/refresh", headers=FETCH)
    assert response.status == 401
    assert (await response.json())["error"] == "unauthenticated"
    assert await signed_in(client)


async def test_the_access_token_is_not_accepted_as_a_refresh_token(client, make_user, another_client):
    await make_user()
    await login(client)
    swapped = with_value(jar_snapshot(client), "refresh", cookie(client, "access"))
    attacker = await another_client(client, cookies=swapped)
    assert (await attacker.post("/auth/refresh", headers=FETCH)).status == 401
    assert await signed_in(client)


# --- concurrency: 50 requests, one expired access cookie, one refresh cookie ---

@pytest.mark.parametrize("route", ["/api/me", "/auth/refresh"])
async def test_fifty_parallel_refreshes_all_succeed_and_leave_one_session(
        client, make_user, another_client, clock, authenticator, route):
    user = await make_user()
    signed = await login(client)
    clock.advance(61)  # every copy carries the same expired access cookie
    tabs = [await another_client(client) for _ in range(50)]

    async def call(tab):
        if route == "/auth/refresh":
            return await tab.post(route, headers=FETCH)
        return await tab.get(route, headers=FETCH)

    answers = await asyncio.gather(*(call(tab) for tab in tabs))
    assert [a.status for a in answers] == [200] * 50
    if route == "/api/me":
        assert {(await a.json())["session"] for a in answers} == {signed["session"]}
        assert {tuple(r.status for r in a.history) for a in answers} == {(307, 307)}
    assert len({cookie(tab, "refresh") for tab in tabs}) == 1  # everyone got the same successor

    assert [s.session_id for s in await authenticator.sessions.list(user.id)] == [signed["session"]]
    clock.advance(GRACE + 1)
    assert await signed_in(tabs[0])
    assert (await refresh(tabs[-1]))[0] == 200
    assert await signed_in(tabs[-1])


# --- two instances, one Redis ---

@pytest.fixture
async def twins(settings, clock, make_client, make_user):
    """Two service instances sharing one Redis and one data directory (so the same keys)."""
    await make_user()
    one = await make_client(create_app(settings, clock=clock))
    two = await make_client(create_app(settings, clock=clock))
    return one, two


async def test_a_rotation_on_one_instance_is_honoured_on_the_other(twins, another_client, clock):
    one, two = twins
    signed = await login(one)
    clock.advance(61)
    on_two = await another_client(one, server=two.server)
    assert (await refresh(on_two))[0] == 200
    back_on_one = await another_client(on_two, server=one.server)
    me = await (await back_on_one.get("/api/me", headers=FETCH, allow_redirects=False)).json()
    assert me["session"] == signed["session"]
    assert (await refresh(back_on_one))[0] == 200


async def test_grace_and_reuse_detection_work_across_instances(twins, another_client, clock):
    one, two = twins
    await login(one)
    on_two = await another_client(one, server=two.server)
    assert (await refresh(on_two))[0] == 200
    # Within the grace window the old token, presented to the other instance, gives the same successor.
    old_tab = await another_client(one)
    assert (await refresh(old_tab))[0] == 200
    assert cookie(old_tab, "refresh") == cookie(on_two, "refresh")
    # After it, the same replay on instance one ends the session everywhere.
    clock.advance(GRACE + 1)
    assert (await one.post("/auth/refresh", headers=FETCH)).status == 401
    assert not await signed_in(on_two)
    assert (await on_two.post("/auth/refresh", headers=FETCH)).status == 401
