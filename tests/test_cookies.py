"""The two session cookies, read off the raw Set-Cookie headers: names, attributes, scope and clearing."""

from __future__ import annotations

import pytest
from aiohttp import web

from service.web import routes
from service.web.app import create_app
from tests.support.cookies import cookie, jar_snapshot, set_cookies, with_value
from tests.support.sign_in import PASSWORD, csrf_token, form_login, login

NAVIGATE = {"Sec-Fetch-Mode": "navigate", "Accept": "text/html"}
ECHO_PATHS = ["/api/echo-cookies", "/echo-cookies", "/authority/echo-cookies", "/auth/echo-cookies"]


async def echo_cookie_names(request: web.Request) -> web.StreamResponse:
    """Test-only: which cookies did the browser send to this path?"""
    return web.json_response(sorted(request.cookies))


def attributes(morsel) -> dict[str, object]:
    """The attributes a browser acts on, in one comparable dict."""
    return {"path": morsel["path"], "domain": morsel["domain"], "secure": bool(morsel["secure"]),
            "httponly": bool(morsel["httponly"]), "samesite": morsel["samesite"]}


async def login_response(client):
    response = await client.post("/login", json={"username": "alice", "password": PASSWORD})
    assert response.status == 200
    return response


async def test_access_cookie_is_host_prefixed_httponly_secure_lax_on_path_root(client, make_user):
    await make_user()
    access = set_cookies(await login_response(client))["__Host-access"]
    assert attributes(access) == {"path": "/", "domain": "", "secure": True, "httponly": True, "samesite": "Lax"}
    assert access.value.count(".") == 2  # a compact JWS


async def test_refresh_cookie_is_secure_prefixed_httponly_secure_lax_on_the_refresh_prefix(client, make_user):
    await make_user()
    refresh = set_cookies(await login_response(client))["__Secure-refresh"]
    assert attributes(refresh) == {"path": "/auth", "domain": "", "secure": True, "httponly": True,
                                   "samesite": "Lax"}


async def test_login_sets_exactly_the_two_session_cookies(client, make_user):
    await make_user()
    assert set(set_cookies(await login_response(client))) == {"__Host-access", "__Secure-refresh"}


async def test_both_cookies_live_until_the_absolute_session_deadline(make_settings, make_client, make_user):
    # The access cookie outlives its JWT on purpose: an expired JWT must still reach the middleware.
    client = await make_client(of=make_settings(sessions={"absolute_timeout": "2d"}))
    await make_user()
    cookies = set_cookies(await login_response(client))
    assert cookies["__Host-access"]["max-age"] == str(2 * 86400)
    assert cookies["__Secure-refresh"]["max-age"] == str(2 * 86400)


async def test_without_secure_cookies_names_are_unprefixed_and_not_secure(make_settings, make_client, make_user):
    client = await make_client(of=make_settings(cookies={"secure": False}))
    await make_user()
    cookies = set_cookies(await login_response(client))
    assert set(cookies) == {"access", "refresh"}
    assert attributes(cookies["access"]) == {"path": "/", "domain": "", "secure": False, "httponly": True,
                                             "samesite": "Lax"}
    assert attributes(cookies["refresh"]) == {"path": "/auth", "domain": "", "secure": False,
                                              "httponly": True, "samesite": "Lax"}
    assert (await client.get("/api/me")).status == 200


async def test_samesite_strict_is_applied_to_both_cookies(make_settings, make_client, make_user):
    client = await make_client(of=make_settings(cookies={"samesite": "Strict"}))
    await make_user()
    cookies = set_cookies(await login_response(client))
    assert {m["samesite"] for m in cookies.values()} == {"Strict"}


async def test_refresh_cookie_is_sent_only_below_the_refresh_prefix(settings, clock, make_client, make_user):
    app = create_app(settings, clock=clock)
    for path in ECHO_PATHS:
        routes.add(app, "GET", path, echo_cookie_names, "echo")
    client = await make_client(app)
    await make_user()
    await login(client)
    sent = {path: await (await client.get(path)).json() for path in ECHO_PATHS}
    assert sent == {
        "/api/echo-cookies": ["__Host-access"],
        "/echo-cookies": ["__Host-access"],
        "/authority/echo-cookies": ["__Host-access"],
        "/auth/echo-cookies": ["__Host-access", "__Secure-refresh"],
    }


async def test_refresh_rotation_sets_both_cookies_with_the_same_attributes(client, make_user):
    await make_user()
    at_login = set_cookies(await login_response(client))
    rotated = set_cookies(await client.post("/auth/refresh"))
    assert set(rotated) == set(at_login)
    for name, morsel in rotated.items():
        assert attributes(morsel) == attributes(at_login[name]), name
        assert morsel.value != at_login[name].value, name


@pytest.mark.parametrize("kind, headers, status", [("json", {}, 204), ("form", NAVIGATE, 303)])
async def test_logout_clears_both_cookies_with_the_attributes_they_were_set_with(
        client, make_user, kind, headers, status):
    await make_user()
    at_login = set_cookies(await login_response(client))
    headers = {**headers, "X-CSRF-Token": await csrf_token(client)}
    response = await client.post("/logout", headers=headers, allow_redirects=False)
    assert response.status == status
    cleared = set_cookies(response)
    assert set(cleared) == set(at_login)
    for name, morsel in cleared.items():
        assert morsel.value == "", name
        assert morsel["max-age"] == "0", name
        # A clear on another Path, or a __Host-/__Secure- clear without Secure, is ignored by browsers.
        assert attributes(morsel) == attributes(at_login[name]), name
    assert cookie(client, "access") is None and cookie(client, "refresh") is None


async def test_failed_refresh_clears_both_cookies(client, make_user, another_client):
    await make_user()
    at_login = set_cookies(await login_response(client))
    forged = await another_client(client, cookies=with_value(jar_snapshot(client), "refresh", "not.a.real.token"))
    response = await forged.post("/auth/refresh")
    assert response.status == 401
    cleared = set_cookies(response)
    assert set(cleared) == set(at_login)
    for name, morsel in cleared.items():
        assert morsel["max-age"] == "0" and attributes(morsel) == attributes(at_login[name]), name


async def test_a_forged_access_cookie_is_cleared_and_answered_like_no_cookie(client):
    client.session.cookie_jar.update_cookies({"__Host-access": "eyJhbGciOiJub25lIn0.e30."})
    response = await client.get("/", headers=NAVIGATE, allow_redirects=False)
    assert response.status == 303
    assert response.headers["Location"] == "/login?next=%2F"
    cleared = set_cookies(response)["__Host-access"]
    assert cleared["max-age"] == "0" and cleared["path"] == "/"


async def test_every_auth_response_is_no_store(client, make_user, clock):
    await make_user()
    responses = {
        "login page": await client.get("/login", headers=NAVIGATE),
        "failed login": await client.post("/login", json={"username": "alice", "password": "nope"}),
        "bad login body": await client.post("/login", data=b"{", headers={"Content-Type": "application/json"}),
        "unauthenticated page": await client.get("/", headers=NAVIGATE, allow_redirects=False),
        "unauthenticated api": await client.get("/api/me"),
        "form login": await form_login(client, headers=NAVIGATE),
        "json login": await client.post("/login", json={"username": "alice", "password": PASSWORD}),
        "home": await client.get("/", headers=NAVIGATE),
        "me": await client.get("/api/me"),
        "signed-in login page": await client.get("/login", headers=NAVIGATE, allow_redirects=False),
        "refresh": await client.post("/auth/refresh"),
    }
    clock.advance(3600)
    hop = await client.get("/api/me", allow_redirects=False)
    responses["auto-refresh hop"] = hop
    responses["refresh redirect"] = await client.get(hop.headers["Location"], allow_redirects=False)
    responses["logout"] = await client.post("/logout", headers={"X-CSRF-Token": await csrf_token(client)})
    responses["refresh after logout"] = await client.post("/auth/refresh")
    assert (responses["form login"].status, responses["logout"].status) == (303, 204)
    assert responses["refresh after logout"].status == 401
    for what, response in responses.items():
        assert response.headers.get("Cache-Control") == "no-store", what
