"""The session store on a real redis-server: every session of a user in one compact hash, ended sessions
collected whenever the user's hash is written, nothing kept past its deadlines plus the slack, and
revocations announced in the same step. Time moves only through the settable clock."""

from __future__ import annotations

import asyncio
import secrets

import pytest

from service.errors import RefreshFailed
from service.core.refresh_tokens import RefreshToken, RefreshTokens
from service.storage.sessions import SessionStore
from service.storage.client import KeySpace

MINUTE = 60
SLACK = 60  # seconds Redis keeps a user's sessions past their latest deadline
LAPTOP = ("Firefox on Linux", "203.0.113.7")


@pytest.fixture
def timed_settings(make_settings):
    """Sessions idle out after 10 min and end after 1 h."""
    return make_settings(sessions={"idle_timeout": "10m", "absolute_timeout": "1h"})


@pytest.fixture
async def alice_id(make_user, timed_settings) -> str:
    return (await make_user(of=timed_settings)).id


@pytest.fixture
def store(timed_settings, redis_client, clock) -> SessionStore:
    return SessionStore(redis_client, KeySpace(timed_settings.redis.key_prefix), timed_settings.sessions, clock)


@pytest.fixture
def refresh_tokens() -> RefreshTokens:
    return RefreshTokens(secrets.token_bytes(32))


@pytest.fixture
def hash_key(timed_settings, alice_id) -> str:
    return KeySpace(timed_settings.redis.key_prefix).user_sessions(alice_id)


async def sign_in(store, refresh_tokens, clock, user_id: str, device: str = LAPTOP[0],
                  ip: str = LAPTOP[1]) -> RefreshToken:
    token = refresh_tokens.new(user_id, SessionStore.new_id())
    assert await store.create(token, now=clock(), device=device, ip=ip, generation="0") is not None
    return token


async def rotate(store, refresh_tokens, clock, token: RefreshToken) -> RefreshToken:
    successor = refresh_tokens.successor(token)
    assert (await store.rotate(token, successor, now=clock())).verdict == "rotated"
    return successor


async def stored_ids(redis_client, key: str) -> set[str]:
    """Session ids with anything at all in the user's hash."""
    return {field.decode().split(":")[0] for field in await redis_client.hkeys(key)}


# --- what is stored, and how compactly ---

async def test_a_session_lists_as_it_was_created(store, refresh_tokens, clock, alice_id):
    token = await sign_in(store, refresh_tokens, clock, alice_id)
    [info] = await store.list(alice_id)
    assert info.session_id == token.session_id
    assert (info.device, info.ip) == LAPTOP
    assert info.created == info.last_used == pytest.approx(clock(), abs=0.001)
    assert info.idle_deadline == pytest.approx(clock() + 10 * MINUTE, abs=0.001)
    assert info.absolute_deadline == pytest.approx(clock() + 60 * MINUTE, abs=0.001)


async def test_a_rotation_moves_last_use_and_the_idle_deadline_only(store, refresh_tokens, clock, alice_id):
    token = await sign_in(store, refresh_tokens, clock, alice_id)
    [before] = await store.list(alice_id)
    clock.advance(5 * MINUTE)
    await rotate(store, refresh_tokens, clock, token)
    [after] = await store.list(alice_id)
    assert (after.created, after.absolute_deadline, after.device, after.ip) == (
        before.created, before.absolute_deadline, before.device, before.ip)
    assert after.last_used == pytest.approx(clock(), abs=0.001)
    assert after.idle_deadline == pytest.approx(clock() + 10 * MINUTE, abs=0.001)


async def test_every_session_of_a_user_is_one_compact_hash(store, refresh_tokens, clock, alice_id, redis_client,
                                                           hash_key, timed_settings):
    """One key per user, however many sessions, and every value within hash-max-ziplist-value: a longer one
    would turn the whole hash into a hashtable several times the size. Holds for the longest IPv6 address."""
    for ip in ("203.0.113.7", "2001:0db8:85a3:0000:0000:8a2e:0370:7334", "x" * 300):
        token = await sign_in(store, refresh_tokens, clock, alice_id, device="A very long device name " * 4, ip=ip)
        await rotate(store, refresh_tokens, clock, token)
    user = KeySpace(timed_settings.redis.key_prefix).user(alice_id)
    found = sorted([key async for key in redis_client.scan_iter(match=user + "*")])
    assert found == sorted([user.encode(), hash_key.encode()])  # the user, and all of their sessions
    assert await redis_client.object("encoding", hash_key) in (b"ziplist", b"listpack")
    infos = await store.list(alice_id)
    assert "2001:0db8:85a3:0000:0000:8a2e:0370:7334" in {info.ip for info in infos}


# --- ended sessions are collected when the user's hash is written or listed ---

@pytest.mark.parametrize("touch", ["create", "rotate", "list", "revoke"])
async def test_a_users_ended_sessions_are_collected_when_the_hash_is_touched(
        store, refresh_tokens, clock, alice_id, redis_client, hash_key, touch):
    active = await sign_in(store, refresh_tokens, clock, alice_id)
    idle = await sign_in(store, refresh_tokens, clock, alice_id)
    other = await sign_in(store, refresh_tokens, clock, alice_id)
    clock.advance(8 * MINUTE)
    active = await rotate(store, refresh_tokens, clock, active)
    clock.advance(3 * MINUTE)  # idle and other are past their idle deadline; Redis's TTL has not noticed
    assert await stored_ids(redis_client, hash_key) == {active.session_id, idle.session_id, other.session_id}
    if touch == "create":
        newest = await sign_in(store, refresh_tokens, clock, alice_id)
        left = {active.session_id, newest.session_id}
    elif touch == "rotate":
        await rotate(store, refresh_tokens, clock, active)
        left = {active.session_id}
    elif touch == "list":
        assert [info.session_id for info in await store.list(alice_id)] == [active.session_id]
        left = {active.session_id}
    else:
        assert not await store.revoke(alice_id, other.session_id)  # it had already ended
        left = {active.session_id}
    assert await stored_ids(redis_client, hash_key) == left


async def test_an_ended_session_is_not_listed_even_before_it_is_collected(store, refresh_tokens, clock, alice_id):
    await sign_in(store, refresh_tokens, clock, alice_id)
    clock.advance(10 * MINUTE)
    assert await store.list(alice_id) == []


async def test_another_users_sessions_are_left_alone(store, refresh_tokens, clock, alice_id, make_user, timed_settings,
                                                     redis_client):
    bob = (await make_user("bob", of=timed_settings)).id
    bobs = await sign_in(store, refresh_tokens, clock, bob)
    clock.advance(11 * MINUTE)
    await sign_in(store, refresh_tokens, clock, alice_id)
    bob_key = KeySpace(timed_settings.redis.key_prefix).user_sessions(bob)
    assert await stored_ids(redis_client, bob_key) == {bobs.session_id}


# --- nothing outlives its deadlines in Redis by more than the slack ---

async def ttl(redis_client, key: str) -> float:
    return await redis_client.pttl(key) / 1000


async def test_the_hash_lives_until_the_latest_idle_deadline_plus_slack(store, refresh_tokens, clock, alice_id,
                                                                        redis_client, hash_key):
    first = await sign_in(store, refresh_tokens, clock, alice_id)
    assert 10 * MINUTE < await ttl(redis_client, hash_key) <= 10 * MINUTE + SLACK
    clock.advance(5 * MINUTE)
    await sign_in(store, refresh_tokens, clock, alice_id)  # ends 5 min after the first
    assert 10 * MINUTE < await ttl(redis_client, hash_key) <= 10 * MINUTE + SLACK
    await store.revoke_all(alice_id, keep=first.session_id)  # only the first is left: 5 min to go
    assert 5 * MINUTE < await ttl(redis_client, hash_key) <= 5 * MINUTE + SLACK


async def test_no_session_data_outlives_the_absolute_deadline_plus_slack(store, refresh_tokens, clock, alice_id,
                                                                         redis_client, hash_key):
    token = await sign_in(store, refresh_tokens, clock, alice_id)
    ends = clock() + 60 * MINUTE
    for _ in range(11):  # kept in use: every rotation pushes the idle deadline, never past the absolute one
        clock.advance(5 * MINUTE)
        token = await rotate(store, refresh_tokens, clock, token)
        assert await ttl(redis_client, hash_key) <= min(10 * MINUTE, ends - clock()) + SLACK
    assert await ttl(redis_client, hash_key) <= 5 * MINUTE + SLACK
    clock.advance(5 * MINUTE)
    with pytest.raises(RefreshFailed, match="expired"):
        await store.rotate(token, refresh_tokens.successor(token), now=clock())
    assert not await redis_client.exists(hash_key)


# --- is_live, revoke and revoke_all ---

async def test_is_live_follows_create_and_revoke(store, refresh_tokens, clock, alice_id):
    token = await sign_in(store, refresh_tokens, clock, alice_id)
    assert await store.is_live(alice_id, token.session_id)
    assert await store.revoke(alice_id, token.session_id)
    assert not await store.is_live(alice_id, token.session_id)
    assert not await store.revoke(alice_id, token.session_id)


async def test_revocations_are_announced_as_user_and_session(store, refresh_tokens, clock, alice_id, redis_client,
                                                             timed_settings):
    kept, *others = [await sign_in(store, refresh_tokens, clock, alice_id) for _ in range(3)]
    async with redis_client.pubsub() as pubsub:
        await pubsub.subscribe(KeySpace(timed_settings.redis.key_prefix).revocations())
        await pubsub.get_message(timeout=1)  # the subscription's confirmation
        assert len(await store.revoke_all(alice_id, keep=kept.session_id)) == 2
        assert await store.revoke(alice_id, kept.session_id)
        heard = []
        while len(heard) < 3:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
            assert message is not None, heard
            heard.append(message["data"].decode())
    assert sorted(heard[:2]) == sorted(f"{alice_id} {token.session_id}" for token in others)
    assert heard[2] == f"{alice_id} {kept.session_id}"
    assert await store.list(alice_id) == []


async def test_revoke_all_counts_only_sessions_that_had_not_ended(store, refresh_tokens, clock, alice_id):
    await sign_in(store, refresh_tokens, clock, alice_id)
    clock.advance(5 * MINUTE)
    await sign_in(store, refresh_tokens, clock, alice_id)
    clock.advance(6 * MINUTE)  # the first has idled out
    assert len(await store.revoke_all(alice_id)) == 1
    assert await store.list(alice_id) == []


async def test_parallel_sign_ins_all_land_in_the_one_hash(store, refresh_tokens, clock, alice_id):
    tokens = [refresh_tokens.new(alice_id, SessionStore.new_id()) for _ in range(20)]
    await asyncio.gather(*(store.create(t, now=clock(), device=LAPTOP[0], ip=LAPTOP[1], generation="0") for t in tokens))
    assert {info.session_id for info in await store.list(alice_id)} == {t.session_id for t in tokens}
