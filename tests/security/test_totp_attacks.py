"""Attacks on the TOTP second factor: telling users apart by it, using someone else's codes, waiting
out or replaying the pending sign-in, and reading the secrets from a copy of Redis."""

from __future__ import annotations

import pytest

from tests.support.cookies import cookie
from tests.support.sign_in import PASSWORD, login
from tests.support.totp import JSON, enrol, password_step


@pytest.fixture
async def alice_with_totp(client, make_user, clock):
    await make_user("alice")
    await make_user("mallory")
    await login(client, "alice")
    return await enrol(client, clock)


async def test_a_wrong_password_answers_alike_with_totp_on_or_off_and_for_no_such_user(
        alice_with_totp, client, another_client):
    """Enumeration: whether a user has TOTP on shows only after the right password."""
    stranger = await another_client(client, cookies=[])
    answers = []
    for name in ("alice", "mallory", "nobody"):
        response = await stranger.post("/login", json={"username": name, "password": "not the password"})
        answers.append((response.status, await response.json()))
    assert answers[0] == answers[1] == answers[2] and answers[0][0] == 401


async def test_another_users_codes_do_not_complete_alices_sign_in(alice_with_totp, client, another_client, clock):
    mallory = await another_client(client, cookies=[])
    await login(mallory, "mallory")
    mallorys_app = await enrol(mallory, clock)
    attacker = await another_client(client, cookies=[])
    pending = await password_step(attacker, "alice")
    for code in (mallorys_app.next_code(), mallorys_app.recovery_codes[0]):
        response = await attacker.post("/login/code", json={"pending": pending, "code": code})
        assert response.status == 401
    assert cookie(attacker, "access") is None


async def test_the_pending_sign_in_expires_on_the_services_clock(alice_with_totp, client, another_client, clock):
    fresh = await another_client(client, cookies=[])
    pending = await password_step(fresh, "alice")
    clock.advance(301)
    response = await fresh.post("/login/code", json={"pending": pending, "code": alice_with_totp.code()})
    assert response.status == 401 and cookie(fresh, "access") is None


async def test_a_completed_pending_sign_in_cannot_start_a_second_session(alice_with_totp, client, another_client):
    fresh = await another_client(client, cookies=[])
    pending = await password_step(fresh, "alice")
    assert (await fresh.post("/login/code", json={"pending": pending, "code": alice_with_totp.next_code()})).status == 200
    thief = await another_client(client, cookies=[])
    replay = await thief.post("/login/code", json={"pending": pending, "code": alice_with_totp.next_code()})
    assert replay.status == 401 and cookie(thief, "access") is None


async def test_the_pending_sign_in_is_no_session(alice_with_totp, client, another_client):
    fresh = await another_client(client, cookies=[])
    pending = await password_step(fresh, "alice")
    for name in ("__Host-access", "__Secure-refresh"):
        response = await fresh.get("/api/me", headers={**JSON, "Cookie": f"{name}={pending}"})
        assert response.status == 401


async def test_a_password_change_meanwhile_fails_the_pending_sign_in(alice_with_totp, client, another_client):
    fresh = await another_client(client, cookies=[])
    pending = await password_step(fresh, "alice")
    token = (await (await client.get("/api/me", headers=JSON)).json())["csrf_token"]
    changed = await client.post("/api/password", json={"current": PASSWORD, "new": "a brand new passphrase"},
                                headers={**JSON, "X-CSRF-Token": token})
    assert changed.status == 204
    response = await fresh.post("/login/code", json={"pending": pending, "code": alice_with_totp.next_code()})
    assert response.status == 401 and cookie(fresh, "access") is None


async def test_a_copy_of_redis_holds_neither_the_secret_nor_the_recovery_codes(alice_with_totp, redis_client,
                                                                                 settings):
    dump = b""
    async for key in redis_client.scan_iter(match=settings.redis.key_prefix + "*"):
        kind = (await redis_client.type(key)).decode()
        if kind == "hash":
            dump += b" ".join(k + b"=" + v for k, v in (await redis_client.hgetall(key)).items())
        elif kind == "string":
            dump += await redis_client.get(key)
    assert alice_with_totp.secret.encode() not in dump
    for code in alice_with_totp.recovery_codes:
        assert code.encode() not in dump and code.replace("-", "").encode() not in dump


@pytest.mark.parametrize("body", [{"pending": 1, "code": "1"}, {"pending": "x", "code": ["1"]}, [], "x",
                                  {"pending": "x" * 100000, "code": "1"}, {"pending": "\ud800", "code": "1"},
                                  {"pending": "x", "code": "１２３４５６"}, {"pending": "x", "code": "-" * 64}])
async def test_malformed_code_steps_get_a_4xx(alice_with_totp, client, another_client, body):
    fresh = await another_client(client, cookies=[])
    response = await fresh.post("/login/code", json=body)
    assert 400 <= response.status < 500


@pytest.mark.parametrize("code", ["１２３４５６", "12345\u0663", "\ud800" * 6, "1" * 64, "", " ", "abcde-fghij" * 6,
                                  "ABCDEFGHJK", "0" * 6])
async def test_odd_codes_for_a_real_pending_sign_in_are_just_wrong(alice_with_totp, client, another_client, code):
    fresh = await another_client(client, cookies=[])
    pending = await password_step(fresh, "alice")
    response = await fresh.post("/login/code", json={"pending": pending, "code": code})
    assert response.status in (400, 401)
    headers = {**JSON, "X-CSRF-Token": (await (await client.get("/api/me", headers=JSON)).json())["csrf_token"]}
    for path in ("/api/step-up", "/api/totp/disable"):
        assert (await client.post(path, json={"code": code}, headers=headers)).status == 400
