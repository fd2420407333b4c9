"""Signing in: the form, JSON, generic failures and the cookies a success sets."""

from __future__ import annotations

from conftest import PASSWORD, cookie, login


async def test_json_login_sets_both_cookies_and_answers_the_user(client, make_user):
    await make_user("Alice")
    body = await login(client, "alice")
    assert body["user"]["name"] == "Alice"
    assert cookie(client, "access") and cookie(client, "refresh")
    me = await client.get("/api/me")
    assert me.status == 200
    assert (await me.json())["name"] == "Alice"


async def test_wrong_password_is_401_with_no_cookies(client, make_user):
    await make_user()
    response = await client.post("/login", json={"username": "alice", "password": PASSWORD + "x"})
    assert response.status == 401
    assert "Set-Cookie" not in response.headers
