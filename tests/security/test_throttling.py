"""Brute force, stuffing and enumeration over HTTP: failed sign-ins are throttled per username and per
client address in Redis (429 + Retry-After, shared by instances, kept across restarts, never a
permanent lockout), and unknown, wrong-password and disabled sign-ins look alike in status, body and time."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import statistics
import time
from typing import Any

import argon2
import pytest
from aiohttp import TCPConnector

from service.logs import JsonFormatter
from tests.support.cookies import browser_jar, cookie, set_cookies
from tests.support.sign_in import PASSWORD, login

WINDOW = 15 * 60  # the default throttle.window, in seconds
NAVIGATE = {"Sec-Fetch-Mode": "navigate", "Accept": "text/html,application/xhtml+xml"}
# the only headers whose values may differ between answers (X-Request-ID: a fresh random id each)
VARYING_HEADERS = {"Date", "Content-Length", "X-Request-ID"}


async def attempt(client: Any, name: str = "alice", password: str = PASSWORD + "!", **headers: str) -> Any:
    return await client.post("/login", json={"username": name, "password": password}, headers=headers)


async def fail(client: Any, times: int, name: str = "alice", **headers: str) -> None:
    """``times`` wrong passwords for ``name``, each the generic 401."""
    for _ in range(times):
        response = await attempt(client, name, **headers)
        assert response.status == 401, await response.text()


async def answer(response: Any) -> tuple[int, str, str, frozenset[str], dict[str, str]]:
    """Everything a client can compare between two answers except their Date."""
    headers = {k: v for k, v in response.headers.items() if k not in VARYING_HEADERS}
    return response.status, response.content_type, await response.text(), frozenset(response.headers), headers


async def assert_throttled(response: Any) -> int:
    """A JSON 429 with a positive Retry-After that the body repeats; returns the seconds."""
    assert response.status == 429, await response.text()
    retry_after = int(response.headers["Retry-After"])
    assert retry_after >= 1
    body = await response.json()
    assert body["error"] == "throttled" and body["retry_after"] == retry_after
    assert "Set-Cookie" not in response.headers
    return retry_after


@pytest.fixture
def client_from(aiohttp_client: Any) -> Any:
    """A client of ``like``'s server whose connections come from another loopback address."""

    async def make(like: Any, address: str) -> Any:
        return await aiohttp_client(like.server, cookie_jar=browser_jar(like.server.port),
                                    connector=TCPConnector(local_addr=(address, 0)))

    return make


# --- per username ----------------------------------------------------------------------------------

async def test_brute_force_on_one_account_gets_429_with_retry_after_after_per_user_failures(client, make_user):
    await make_user()
    await fail(client, 5)
    assert await assert_throttled(await attempt(client)) == WINDOW


async def test_the_right_password_is_refused_alike_while_throttled(client, make_user, authenticator):
    user = await make_user()
    await fail(client, 5)
    wrong = await attempt(client)
    right = await attempt(client, password=PASSWORD)
    await assert_throttled(right)
    assert await answer(right) == await answer(wrong)  # no oracle for a guess made while throttled
    assert await authenticator.sessions.list(user.id) == []
    assert not cookie(client, "access") and not cookie(client, "refresh")


async def test_after_the_window_the_user_signs_in(client, make_user, clock):
    await make_user()
    await fail(client, 5)
    clock.advance(WINDOW - 300)
    assert await assert_throttled(await attempt(client, password=PASSWORD)) == 300
    clock.advance(300)
    assert (await attempt(client, password=PASSWORD)).status == 200


async def test_the_window_slides_one_failure_at_a_time(client, make_user, clock):
    await make_user()
    for _ in range(5):  # one failure a minute
        await fail(client, 1)
        clock.advance(60)
    # The oldest failure ages out WINDOW after it happened, 5 minutes ago.
    assert await assert_throttled(await attempt(client)) == WINDOW - 300
    clock.advance(WINDOW - 300)
    await fail(client, 1)  # exactly one slot freed up, and this failure took it
    assert await assert_throttled(await attempt(client)) == 60


async def test_retry_after_rounds_up_to_a_whole_second(client, make_user, clock):
    await make_user()
    await fail(client, 5)
    clock.advance(WINDOW - 0.3)
    assert await assert_throttled(await attempt(client)) == 1
    clock.advance(0.3)
    assert (await attempt(client, password=PASSWORD)).status == 200


async def test_hammering_a_throttled_account_does_not_prolong_the_lockout(client, make_user, clock):
    await make_user()
    await fail(client, 5)
    for _ in range(10):
        clock.advance(60)
        for _ in range(5):
            await assert_throttled(await attempt(client))
    clock.advance(WINDOW - 600)
    assert (await attempt(client, password=PASSWORD)).status == 200


@pytest.mark.parametrize("typed", ["ALICE", "aLiCe", "Ａｌｉｃｅ", " alice "])
async def test_case_and_width_variants_of_a_name_share_its_window(client, make_user, typed):
    await make_user("Alice")
    await fail(client, 4)
    await fail(client, 1, name=typed)
    await assert_throttled(await attempt(client, "alice", PASSWORD))


async def test_rotating_client_addresses_does_not_escape_the_per_user_limit(client, make_user, client_from):
    await make_user()
    for address in ("127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5", "127.0.0.6"):
        await fail(await client_from(client, address), 1)
    await assert_throttled(await attempt(await client_from(client, "127.0.0.7"), password=PASSWORD))


async def test_parallel_guesses_cannot_race_past_the_limit(client, make_user):
    await make_user()
    guesses = await asyncio.gather(*(attempt(client, password=f"guess {i}") for i in range(15)))
    statuses = sorted(response.status for response in guesses)
    assert statuses == [401] * 5 + [429] * 10  # each attempt takes its slot before the password check


# --- success ----------------------------------------------------------------------------------------

async def test_a_success_resets_the_per_user_window(client, make_user):
    await make_user()
    await fail(client, 4)
    await login(client)
    await fail(client, 5)
    await assert_throttled(await attempt(client))


async def test_a_success_does_not_reset_the_per_ip_window_nor_count_as_a_failure(make_settings, make_client,
                                                                                   make_user):
    client = await make_client(of=make_settings(throttle={"per_user": 5, "per_ip": 6}))
    await make_user()
    await fail(client, 4)
    await login(client)  # its own slot in the client's window is given back
    await fail(client, 2, name="bob")
    await assert_throttled(await attempt(client, "alice", PASSWORD))


async def test_a_throttled_sign_in_keeps_the_current_session(client, make_user):
    await make_user()
    await login(client)
    await fail(client, 5)
    await assert_throttled(await attempt(client, password=PASSWORD))
    assert (await client.get("/api/me")).status == 200


# --- per client address -------------------------------------------------------------------------------

async def test_credential_stuffing_from_one_address_across_many_usernames_is_throttled(client, make_user):
    await make_user()
    for i in range(20):
        await fail(client, 1, name=f"user{i}")
    await assert_throttled(await attempt(client, "alice", PASSWORD))
    await assert_throttled(await attempt(client, "someone-new"))


async def test_forwarded_headers_do_not_escape_the_per_ip_limit(client):
    for i in range(20):
        await fail(client, 1, name=f"user{i}")
    spoofed = {"X-Forwarded-For": "203.0.113.9", "X-Real-IP": "203.0.113.9", "Forwarded": "for=203.0.113.9"}
    await assert_throttled(await attempt(client, "user99", **spoofed))


async def test_another_address_is_not_throttled_by_one_address_stuffing(client, make_user, client_from):
    await make_user()
    for i in range(20):
        await fail(client, 1, name=f"user{i}")
    await assert_throttled(await attempt(client, "alice", PASSWORD))
    elsewhere = await client_from(client, "127.0.0.2")
    assert (await attempt(elsewhere, "alice", PASSWORD)).status == 200


async def test_behind_a_trusted_proxy_each_forwarded_client_has_its_own_window(make_settings, make_client):
    client = await make_client(of=make_settings(server={"trusted_proxies": "127.0.0.1"}))
    for i in range(20):
        await fail(client, 1, name=f"user{i}", **{"X-Forwarded-For": "203.0.113.9"})
    await assert_throttled(await attempt(client, "user99", **{"X-Forwarded-For": "203.0.113.9"}))
    assert (await attempt(client, "user99", **{"X-Forwarded-For": "198.51.100.4"})).status == 401


async def test_an_ipv6_client_is_counted_by_its_slash_64(make_settings, make_client):
    client = await make_client(of=make_settings(server={"trusted_proxies": "127.0.0.1"}))
    for i in range(20):  # one host rotating through the addresses of its /64
        await fail(client, 1, name=f"user{i}", **{"X-Forwarded-For": f"2001:db8:5:6::{i + 1:x}"})
    await assert_throttled(await attempt(client, "user99", **{"X-Forwarded-For": "2001:db8:5:6:ffff::1"}))
    assert (await attempt(client, "user99", **{"X-Forwarded-For": "2001:db8:5:7::1"})).status == 401


# --- shared and durable: the windows live in Redis -------------------------------------------------------

async def test_two_instances_on_one_redis_share_the_limit(settings, make_client, make_user):
    first, second = await make_client(of=settings), await make_client(of=settings)
    await make_user()
    await fail(first, 3)
    await fail(second, 2)
    await assert_throttled(await attempt(first, password=PASSWORD))
    await assert_throttled(await attempt(second, password=PASSWORD))


async def test_the_limit_survives_a_restart(settings, make_client, make_user, clock):
    await make_user()
    before = await make_client(of=settings)
    await fail(before, 5)
    await before.close()
    clock.advance(60)
    after = await make_client(of=settings)
    assert await assert_throttled(await attempt(after, password=PASSWORD)) == WINDOW - 60


# --- enumeration -----------------------------------------------------------------------------------------

async def test_unknown_wrong_password_and_disabled_answer_identically(client, failed_sign_ins):
    answers = {kind: await answer(await attempt(client, name, password))
               for kind, (name, password) in failed_sign_ins.items()}
    assert len(set(map(repr, answers.values()))) == 1, answers
    status, _, body, names, _ = answers["unknown user"]
    assert status == 401 and json.loads(body)["error"] == "invalid_credentials"
    assert "Set-Cookie" not in names


async def test_throttled_real_and_unknown_users_answer_identically(client, failed_sign_ins, client_from):
    answers = {}
    for address, (kind, (name, password)) in zip(("127.0.0.2", "127.0.0.3", "127.0.0.4"), failed_sign_ins.items()):
        own = await client_from(client, address)  # each on its own address: only the per-user window fills
        await fail(own, 5, name=name)
        answers[kind] = await answer(await attempt(own, name, password))
    assert len(set(map(repr, answers.values()))) == 1, answers
    assert answers["unknown user"][0] == 429


async def test_typed_usernames_are_not_stored_in_the_clear(client, redis_client, settings):
    typed = "MyS3cret-Passw0rd"  # people do type their password into the username field
    await fail(client, 1, name=typed)
    keys = [key.decode() async for key in redis_client.scan_iter(match=f"{settings.redis.key_prefix}*")]
    assert any("throttle" in key for key in keys)
    assert not any(typed.lower() in key.lower() for key in keys)


async def test_failures_look_alike_in_time(make_settings, make_client, make_user, authenticator):
    """Median times of N unknown-user, wrong-password and disabled-user sign-ins with real argon2 costs
    agree within a generous factor, and the unknown user's includes a full argon2 verify (the dummy hash)."""
    costs = {"time_cost": 2, "memory_cost": 8192, "parallelism": 1}
    settings = make_settings(passwords=costs, throttle={"per_user": 1000, "per_ip": 1000})
    client = await make_client(of=settings)
    await make_user("alice", of=settings)
    bob = await make_user("bob", of=settings)
    await authenticator.users.set_disabled(bob.id, True)
    kinds = {"unknown": ("mallory", PASSWORD), "wrong": ("alice", PASSWORD + "!"), "disabled": ("bob", PASSWORD)}
    times: dict[str, list[float]] = {kind: [] for kind in kinds}
    for round_ in range(16):  # interleaved, so drift hits every kind alike; round 0 warms up
        for kind, (name, password) in kinds.items():
            started = time.perf_counter()
            response = await attempt(client, name, password)
            if round_:
                times[kind].append(time.perf_counter() - started)
            assert response.status == 401
    medians = {kind: statistics.median(samples) for kind, samples in times.items()}
    assert max(medians.values()) / min(medians.values()) < 1.5, medians

    hasher = argon2.PasswordHasher(type=argon2.Type.ID, **costs)
    stored, started = hasher.hash("x"), time.perf_counter()
    for _ in range(5):
        with pytest.raises(argon2.exceptions.VerifyMismatchError):
            hasher.verify(stored, "y")
    one_verify = (time.perf_counter() - started) / 5
    assert medians["unknown"] > 0.5 * one_verify, (medians, one_verify)


# --- the form, and the log ------------------------------------------------------------------------------

async def form_attempt(client: Any, password: str) -> Any:
    """A browser's form sign-in: fetch the page (for its CSRF token), then post it back."""
    page = await (await client.get("/login?next=/account", headers=NAVIGATE)).text()
    token = re.search(r'name="csrf" value="([^"]*)"', page)
    data = {"username": "alice", "password": password, "next": "/account", "csrf": token.group(1) if token else ""}
    return await client.post("/login", data=data, headers=NAVIGATE, allow_redirects=False)


async def test_a_throttled_form_sign_in_re_renders_the_page_with_429(client, make_user):
    await make_user()
    await fail(client, 5)
    response = await form_attempt(client, PASSWORD)
    assert response.status == 429
    assert response.content_type == "text/html"
    assert response.headers["Retry-After"] == str(WINDOW)
    assert set_cookies(response) == {}
    page = await response.text()
    assert "Too many failed sign-in attempts. Try again in 15 minutes." in page
    assert re.search(r'<form\b[^>]*method="post"', page) and 'value="/account"' in page


async def test_throttling_is_logged_as_a_security_event_without_secrets(client, make_user, caplog):
    await make_user()
    await fail(client, 5)
    with caplog.at_level(logging.INFO, logger="service.security"):
        await assert_throttled(await attempt(client, password=PASSWORD))
    events = [r for r in caplog.records if getattr(r, "event", None) == "login_throttled"]
    assert len(events) == 1 and events[0].name == "service.security"
    line = json.loads(JsonFormatter().format(events[0]))
    assert line["retry_after"] == WINDOW and line["reason"] == "user" and line["ip"] == "127.0.0.1"
    assert "alice" not in json.dumps(line) and PASSWORD not in json.dumps(line)
