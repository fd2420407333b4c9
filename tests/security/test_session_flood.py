"""One user piling up sessions (a script signing in over and over) must not grow what every step on
that user reads: past ``sessions.max_per_user`` the least recently used sessions end, announced like
any revocation, logged and counted."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from service.core.auth import Client
from service.errors import AuthenticationRequired, SettingsError
from service.storage.client import KeySpace
from service.web.app import build_authenticator
from tests.support.sign_in import PASSWORD

LAPTOP = Client("Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0", "203.0.113.7")


async def test_sign_ins_past_the_cap_end_the_least_recently_used_sessions(
        make_settings: Callable[..., Any], make_user: Callable[..., Awaitable[Any]], redis_client: Any,
        clock: Any, caplog: pytest.LogCaptureFixture) -> None:
    settings = make_settings(sessions={"max_per_user": 3})
    alice = await make_user("alice", of=settings)
    auth = build_authenticator(settings, redis_client, clock)
    first = await auth.login("alice", PASSWORD, LAPTOP)
    clock.advance(1)
    second = await auth.login("alice", PASSWORD, LAPTOP)
    clock.advance(1)
    third = await auth.login("alice", PASSWORD, LAPTOP)
    clock.advance(1)
    await auth.rotate([first.refresh], bound_to=first.claims)  # first is now the most recently used; second the least

    with caplog.at_level(logging.INFO, logger="service.security"):
        fourth = await auth.login("alice", PASSWORD, LAPTOP)

    live = {info.session_id for info in await auth.sessions.list(alice.id)}
    assert live == {first.claims.session_id, third.claims.session_id, fourth.claims.session_id}
    with pytest.raises(AuthenticationRequired):
        await auth.authenticate(second.access)
    evicted = [r for r in caplog.records if getattr(r, "event", None) == "session_evicted"]
    assert [(r.user, r.sid) for r in evicted] == [(alice.id, second.claims.session_id)]  # type: ignore[attr-defined]


async def test_the_users_hash_stays_bounded_however_many_sign_ins(
        make_settings: Callable[..., Any], make_user: Callable[..., Awaitable[Any]], redis_client: Any,
        clock: Any) -> None:
    settings = make_settings(sessions={"max_per_user": 5})
    alice = await make_user("alice", of=settings)
    auth = build_authenticator(settings, redis_client, clock)
    for _ in range(40):
        await auth.login("alice", PASSWORD, LAPTOP)
        clock.advance(1)

    assert await redis_client.hlen(KeySpace(settings.redis.key_prefix).user_sessions(alice.id)) == 2 * 5


@pytest.mark.parametrize("value", [0, 1001, -1])
def test_a_cap_out_of_range_stops_start_up(make_settings: Callable[..., Any], value: int) -> None:
    with pytest.raises(SettingsError, match="sessions.max_per_user"):
        make_settings(sessions={"max_per_user": value})
