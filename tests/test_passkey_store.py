"""The passkey store on a real Redis: one owner per credential id, a cap per user, the USE script's
sign-counter rule (WebAuthn §6.1.1), and challenges that can be read once only."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from service.storage.client import KeySpace
from service.storage.passkeys import MAX_PER_USER, Passkey, PasskeyStore

PASSKEY = Passkey(id="Y3JlZGVudGlhbC1vZi1hbGljZQ", public_key="cGs", count=5, backup_eligible=True, backed_up=False,
                  transports=("internal", "hybrid"), name="Phone", created=1000.0)


@pytest.fixture
def passkey_store(redis_client, settings) -> PasskeyStore:
    return PasskeyStore(redis_client, KeySpace(settings.redis.key_prefix))


async def test_a_credential_has_one_owner(passkey_store):
    assert await passkey_store.add("alice", PASSKEY)
    assert not await passkey_store.add("alice", PASSKEY) and not await passkey_store.add("mallory", PASSKEY)
    assert await passkey_store.owner(PASSKEY.id) == "alice"
    assert await passkey_store.get("mallory", PASSKEY.id) is None  # another user's passkey reads as unknown
    assert await passkey_store.of_user("alice") == [PASSKEY]
    assert not await passkey_store.remove("mallory", PASSKEY.id) and await passkey_store.owner(PASSKEY.id) == "alice"
    assert await passkey_store.remove("alice", PASSKEY.id)
    assert await passkey_store.owner(PASSKEY.id) is None and await passkey_store.of_user("alice") == []


async def test_a_user_has_at_most_the_cap_and_a_refused_add_releases_the_id(passkey_store):
    for n in range(MAX_PER_USER):
        assert await passkey_store.add("alice", dataclasses.replace(PASSKEY, id=f"{PASSKEY.id}{n:04d}"))
    extra = dataclasses.replace(PASSKEY, id=PASSKEY.id + "more")
    assert not await passkey_store.add("alice", extra)
    assert await passkey_store.owner(extra.id) is None


@pytest.mark.parametrize(("stored", "new", "verdict"), [
    (5, 6, 1), (5, 5, 0), (5, 4, 0), (5, 0, 0),  # a counter that stands still or goes back: a clone
    (0, 0, 1),  # authenticators that never count (many synced passkeys) keep working
    (0, 3, 1),
])
async def test_the_sign_counter_must_grow_when_either_is_nonzero(passkey_store, stored, new, verdict):
    await passkey_store.add("alice", dataclasses.replace(PASSKEY, count=stored))
    assert await passkey_store.use("alice", PASSKEY.id, new, backed_up=True, now=2000.0) == verdict
    kept = await passkey_store.get("alice", PASSKEY.id)
    assert kept is not None and kept.count == (new if verdict == 1 else stored)
    assert kept.last_used == (2000.0 if verdict == 1 else None) and kept.backed_up == (verdict == 1)
    assert kept.transports == ("internal", "hybrid")


async def test_two_racing_assertions_with_one_counter_pass_once(passkey_store):
    await passkey_store.add("alice", PASSKEY)
    verdicts = await asyncio.gather(*(passkey_store.use("alice", PASSKEY.id, 6, backed_up=False, now=1.0) for _ in range(5)))
    assert sorted(verdicts) == [0, 0, 0, 0, 1]
    assert await passkey_store.use("alice", "no-such-credential", 9, backed_up=False, now=1.0) == -1


async def test_a_challenge_is_read_once_and_expires(passkey_store, redis_client):
    key = passkey_store.login_key("nonce", "challenge")
    assert key != passkey_store.login_key("other nonce", "challenge") != passkey_store.login_key("nonce", "another")
    await passkey_store.issue(key, b"\x01" * 32, ttl=60)
    assert 0 < await redis_client.pttl(key) <= 60_000
    assert await passkey_store.take(key) == b"\x01" * 32
    assert await passkey_store.take(key) is None


async def test_a_rename_keeps_the_counter_and_touches_only_the_owners_passkey(passkey_store):
    await passkey_store.add("alice", PASSKEY)
    assert await passkey_store.use("alice", PASSKEY.id, 9, backed_up=True, now=5.0) == 1
    assert not await passkey_store.rename("mallory", PASSKEY.id, "Mine now")
    assert await passkey_store.rename("alice", PASSKEY.id, "Old phone")
    kept = await passkey_store.get("alice", PASSKEY.id)
    assert kept is not None and (kept.name, kept.count, kept.last_used) == ("Old phone", 9, 5.0)
