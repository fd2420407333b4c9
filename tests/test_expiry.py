"""How sessions end: logout (reaching access JWTs before their exp), idle and absolute timeouts,
disabled users; and the health endpoints. Time moves only through the settable clock."""

from __future__ import annotations

import pytest

from tests.support.cookies import cookie, jar_snapshot, set_cookies
from tests.support.sign_in import PASSWORD, csrf_token, login

NAVIGATE = {"Sec-Fetch-Mode": "navigate", "Accept": "text/html"}
FETCH = {"Sec-Fetch-Mode": "cors", "Accept": "application/json"}
MINUTE = 60


async def api_status(client) -> int:
    return (await client.get("/api/me", headers=FETCH, allow_redirects=False)).status


async def refresh_status(client) -> int:
    return (await client.post("/auth/refresh", headers=FETCH)).status


async def logout(client, headers: dict[str, str], token: str | None = None, **kwargs):
    """POST /logout as the signed-in page would: with the session's CSRF token (``token`` if given)."""
    token = token or await csrf_token(client)
    return await client.post("/logout", headers={**headers, "X-CSRF-Token": token}, **kwargs)


@pytest.fixture
async def timed_client(make_settings, make_client, make_user):
    """A signed-in client on a service whose sessions idle out after 10 min and end after 1 h."""
    client = await make_client(of=make_settings(tokens={"access_ttl": "1m"},
                                                sessions={"idle_timeout": "10m", "absolute_timeout": "1h"}))
    await make_user()
    signed = await login(client)
    return client, signed


# --- logout ---

async def test_json_logout_is_204_and_revokes_the_access_jwt_before_its_exp(client, make_user, another_client):
    await make_user()
    await login(client)
    stolen = await another_client(client)  # a copy of both cookies, as an attacker or another tab would hold
    response = await logout(client, FETCH)
    assert response.status == 204
    assert await api_status(stolen) == 401  # the JWT is cryptographically valid for another minute
    page = await stolen.get("/", headers=NAVIGATE, allow_redirects=False)
    assert (page.status, page.headers["Location"]) == (303, "/login?next=%2F")
    assert await refresh_status(stolen) == 401


async def test_form_logout_redirects_303_to_the_login_page_and_revokes(client, make_user, another_client):
    await make_user()
    await login(client)
    stolen = await another_client(client)
    response = await logout(client, NAVIGATE, allow_redirects=False)
    assert response.status == 303
    assert response.headers["Location"] == "/login"
    assert await api_status(stolen) == 401
    assert await refresh_status(stolen) == 401


async def test_after_logout_the_browser_is_signed_out(client, make_user):
    await make_user()
    await login(client)
    await logout(client, NAVIGATE)
    assert await api_status(client) == 401
    page = await client.get("/", headers=NAVIGATE)
    assert page.url.path == "/login"


async def test_logout_with_an_expired_access_jwt_still_revokes_the_session(client, make_user, another_client, clock):
    await make_user()
    token = (await login(client))["csrf_token"]
    clock.advance(2 * MINUTE)
    stolen = await another_client(client)
    assert (await logout(client, FETCH, token)).status == 204
    assert await refresh_status(stolen) == 401


async def test_logout_ends_only_this_session(client, make_user, another_client, authenticator):
    user = await make_user()
    await login(client)
    phone = await another_client(client, cookies=[])
    phone_session = (await login(phone))["session"]
    assert (await logout(client, FETCH)).status == 204
    assert await api_status(phone) == 200
    assert [s.session_id for s in await authenticator.sessions.list(user.id)] == [phone_session]


async def test_logout_when_not_signed_in_still_clears_cookies(client):
    response = await client.post("/logout", headers=FETCH)
    assert response.status == 204
    assert {m["max-age"] for m in set_cookies(response).values()} == {"0"}


# --- idle timeout ---

async def test_a_session_used_within_the_idle_timeout_lives_on(timed_client, clock):
    client, _ = timed_client
    for _ in range(5):
        clock.advance(9 * MINUTE)
        assert await refresh_status(client) == 200
    assert await api_status(client) == 200


async def test_a_session_idle_past_the_idle_timeout_ends(timed_client, clock, another_client):
    client, _ = timed_client
    clock.advance(10 * MINUTE + 1)
    stale = await another_client(client)
    assert await refresh_status(client) == 401
    page = await stale.get("/", headers=NAVIGATE)
    assert [r.status for r in page.history] == [307, 303]
    assert page.url.path == "/login"
    assert page.url.query["next"] == "/"


async def test_an_idle_session_is_deleted_when_it_is_next_presented(timed_client, clock, authenticator):
    client, signed = timed_client
    clock.advance(10 * MINUTE + 1)
    assert await refresh_status(client) == 401
    assert await authenticator.sessions.list(signed["user"]["id"]) == []


# --- absolute timeout ---

async def test_a_session_ends_at_the_absolute_timeout_however_much_it_is_used(timed_client, clock):
    client, signed = timed_client
    deadline = signed["session_expires"]
    for _ in range(11):  # every 5 minutes, for 55 minutes
        clock.advance(5 * MINUTE)
        response = await client.post("/auth/refresh", headers=FETCH)
        assert response.status == 200
        body = await response.json()
        assert body["session_expires"] == deadline  # rotation never extends the absolute deadline
        assert body["access_expires"] <= deadline
    clock.advance(5 * MINUTE + 1)
    assert await refresh_status(client) == 401
    page = await client.get("/", headers=NAVIGATE)
    assert page.url.path == "/login"


async def test_rotation_never_extends_the_absolute_deadline(timed_client, clock, authenticator):
    client, signed = timed_client
    created = (await authenticator.sessions.list(signed["user"]["id"]))[0]
    for _ in range(3):
        clock.advance(5 * MINUTE)
        response = await client.post("/auth/refresh", headers=FETCH)
        cookies = set_cookies(response)
        remaining = signed["session_expires"] - clock()
        assert {m["max-age"] for m in cookies.values()} == {str(int(remaining))}
    now = (await authenticator.sessions.list(signed["user"]["id"]))[0]
    assert now.absolute_deadline == created.absolute_deadline
    assert now.idle_deadline > created.idle_deadline


async def test_the_last_access_jwt_expires_with_the_session(timed_client, clock):
    client, signed = timed_client
    for _ in range(11):
        clock.advance(5 * MINUTE)
        await refresh_status(client)
    clock.advance(4 * MINUTE + 30)  # 30 s before the end: a fresh JWT may not outlive the session
    response = await client.post("/auth/refresh", headers=FETCH)
    assert (await response.json())["access_expires"] == int(signed["session_expires"])
    clock.advance(31)
    assert await api_status(client) == 307  # expired: the middleware tries a refresh...
    assert (await client.get("/api/me", headers=FETCH)).status == 401  # ...which the ended session refuses


# --- disabled users ---

async def test_a_disabled_user_loses_access_and_refresh_at_once(client, make_user, authenticator, another_client):
    user = await make_user()
    await login(client)
    other_device = await another_client(client, cookies=[])
    await login(other_device)
    # What `python -m service users disable alice` does:
    await authenticator.users.set_disabled(user.id, True)
    assert await authenticator.logout_everywhere(user.id) == 2
    for device in (client, other_device):
        assert await api_status(device) == 401
        assert await refresh_status(device) == 401
    response = await client.post("/login", json={"username": "alice", "password": PASSWORD})
    assert response.status == 401


async def test_a_disabled_flag_alone_already_stops_refresh(client, make_user, authenticator, clock):
    user = await make_user()
    await login(client)
    await authenticator.users.set_disabled(user.id, True)
    clock.advance(2 * MINUTE)
    assert await refresh_status(client) == 401
    assert await authenticator.sessions.list(user.id) == []


async def test_a_re_enabled_user_signs_in_afresh(client, make_user, authenticator):
    user = await make_user()
    await login(client)
    old = cookie(client, "refresh")
    await authenticator.users.set_disabled(user.id, True)
    await authenticator.logout_everywhere(user.id)
    await authenticator.users.set_disabled(user.id, False)
    assert await refresh_status(client) == 401  # the old session stays ended
    await login(client)
    assert cookie(client, "refresh") != old
    assert await api_status(client) == 200


async def test_a_removed_user_cannot_use_old_cookies(client, make_user, authenticator, another_client):
    user = await make_user()
    await login(client)
    stolen = jar_snapshot(client)
    await authenticator.users.set_disabled(user.id, True)  # as `users remove` does
    await authenticator.logout_everywhere(user.id)
    await authenticator.users.remove(user)
    ghost = await another_client(client, cookies=stolen)
    assert await api_status(ghost) == 401
    assert await refresh_status(ghost) == 401


# --- health ---

async def test_healthz_answers_200(client):
    response = await client.get("/healthz")
    assert response.status == 200
    assert (await response.json())["status"] == "ok"


async def test_readyz_answers_200_when_redis_answers(client):
    response = await client.get("/readyz")
    assert response.status == 200
    assert (await response.json())["redis"] == "ok"
