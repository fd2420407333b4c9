""""Keep me signed in" over HTTP: the form's checkbox and JSON's "remember" decide the cookies' lifetime
and the session's absolute deadline (sessions.short_absolute_timeout otherwise), and a refresh keeps it."""

from __future__ import annotations

from tests.support.cookies import set_cookies
from tests.support.sign_in import PASSWORD, form_login

JSON = {"Accept": "application/json"}


async def test_an_unticked_form_sign_in_gets_browser_session_cookies(client, make_user):
    await make_user()
    response = await form_login(client, remember=False)
    assert response.status == 303
    cookies = set_cookies(response)
    for name in ("__Host-access", "__Secure-refresh"):
        assert cookies[name]["max-age"] == "" and cookies[name]["expires"] == "", name


async def test_a_session_not_remembered_ends_after_the_short_lifetime_even_when_used(client, make_user, clock,
                                                                                     settings):
    await make_user()
    response = await client.post("/login", json={"username": "alice", "password": PASSWORD, "remember": False})
    body = await response.json()
    assert body["remembered"] is False
    assert body["session_expires"] == int(clock() + settings.sessions.short_absolute_timeout)
    for _ in range(11):  # used every hour, never idle
        clock.advance(3600)
        refreshed = await client.post("/auth/refresh", headers=JSON)
        assert refreshed.status == 200
        assert all(m["max-age"] == "" for m in set_cookies(refreshed).values())  # still no Max-Age
    clock.advance(3601)
    assert (await client.post("/auth/refresh", headers=JSON)).status == 401


async def test_a_remembered_sign_in_keeps_todays_lifetimes(client, make_user, clock, settings):
    await make_user()
    response = await client.post("/login", json={"username": "alice", "password": PASSWORD, "remember": True})
    assert (await response.json())["session_expires"] == int(clock() + settings.sessions.absolute_timeout)
    assert set_cookies(response)["__Secure-refresh"]["max-age"] == str(int(settings.sessions.absolute_timeout))


async def test_json_without_remember_is_remembered_as_before(client, make_user):
    await make_user()
    response = await client.post("/login", json={"username": "alice", "password": PASSWORD})
    assert (await response.json())["remembered"] is True


async def test_remember_must_be_a_boolean(client, make_user):
    await make_user()
    response = await client.post("/login", json={"username": "alice", "password": PASSWORD, "remember": [1]})
    assert response.status == 400


async def test_the_account_api_says_how_each_session_signed_in(client, make_user, another_client):
    await make_user()
    await form_login(client, remember=False)
    other = await another_client(client, cookies=[])
    await other.post("/login", json={"username": "alice", "password": PASSWORD})
    sessions = (await (await client.get("/api/sessions", headers=JSON)).json())["sessions"]
    assert sorted((s["current"], s["sign_in"], s["remembered"]) for s in sessions) == [
        (False, "password", True), (True, "password", False)]
