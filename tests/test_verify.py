"""``GET /auth/verify`` for nginx ``auth_request``, and ``server.protected_prefixes``: the apps it guards
on the same origin receive the access cookie and are valid ``next`` targets, nothing else is."""

from __future__ import annotations

import urllib.parse
from typing import Any

import pytest

from service.errors import SettingsError
from service.web.paths import Paths
from tests.support.cookies import set_cookies
from tests.support.sign_in import login

SSO_APP = {"url_prefix": "/sso", "protected_prefixes": "/app, /tools/admin"}


def redirect_of(response: Any) -> tuple[str, str]:
    """Where a 401 from verify tells nginx to send the browser: (path, next)."""
    target = urllib.parse.urlsplit(response.headers["X-Auth-Redirect"])
    return target.path, urllib.parse.parse_qs(target.query)["next"][0]


async def test_a_signed_in_request_gets_its_identity_as_headers(client, make_user):
    user = await make_user("alice")
    body = await login(client)
    response = await client.get("/auth/verify", headers={"X-Original-URI": "/app/page"})
    assert response.status == 200
    assert response.headers["X-Auth-User"] == "alice"
    assert response.headers["X-Auth-Subject"] == user.id
    assert response.headers["X-Auth-Session"] == body["session"]
    assert response.headers["Cache-Control"] == "no-store"
    assert "Location" not in response.headers and not set_cookies(response)


async def test_no_cookie_is_401_pointing_at_login_with_the_original_uri(client):
    response = await client.get("/auth/verify", headers={"X-Original-URI": "/page?a=1&b=2"},
                                allow_redirects=False)
    assert response.status == 401
    assert response.headers["Cache-Control"] == "no-store"
    assert "Location" not in response.headers and "X-Auth-User" not in response.headers
    assert redirect_of(response) == ("/login", "/page?a=1&b=2")


async def test_an_expired_token_is_401_pointing_at_the_refresh_hop(client, make_user, clock):
    await make_user("alice")
    await login(client)
    clock.advance(61)
    response = await client.get("/auth/verify", headers={"X-Original-URI": "/page"}, allow_redirects=False)
    assert response.status == 401
    assert redirect_of(response) == ("/auth/refresh", "/page")


async def test_a_forged_token_is_401(client):
    client.session.cookie_jar.update_cookies({"__Host-access": "e30.e30.AAAA"})
    response = await client.get("/auth/verify", allow_redirects=False)
    assert response.status == 401
    assert redirect_of(response) == ("/login", "/")


async def test_a_signed_out_session_is_401_at_once(client, make_user):
    await make_user("alice")
    body = await login(client)
    stolen = {m.key: m.value for m in client.session.cookie_jar}
    response = await client.post("/logout", headers={"X-CSRF-Token": body["csrf_token"], "Accept": "application/json"})
    assert response.status == 204
    client.session.cookie_jar.update_cookies(stolen)
    assert (await client.get("/auth/verify", allow_redirects=False)).status == 401


async def test_an_offsite_original_uri_cannot_become_the_next_target(client):
    response = await client.get("/auth/verify", headers={"X-Original-URI": "//evil.example/"})
    assert redirect_of(response) == ("/login", "/")


async def test_under_a_prefix_verify_lives_under_it(make_settings, make_client, make_user):
    await make_user("alice")
    client = await make_client(of=make_settings(server={"url_prefix": "/sso"}))
    assert (await client.get("/auth/verify", allow_redirects=False)).status == 404
    response = await client.get("/sso/auth/verify", headers={"X-Original-URI": "/sso/account"})
    assert response.status == 401
    assert redirect_of(response) == ("/sso/login", "/sso/account")


@pytest.mark.parametrize("target", ["/app", "/app/", "/app/page?x=1&y=2", "/tools/admin/x", "/sso/account"])
def test_protected_prefixes_are_valid_next_targets(make_settings, target):
    assert Paths(make_settings(server=SSO_APP)).safe_next(target) == target


@pytest.mark.parametrize("target", ["/appx", "/app-admin/", "/APP/page", "/tools/", "/tools/adminx",
                                    "/app/../admin", "/app/%2e%2e/admin", "//app/", "https://evil.example/app/"])
def test_paths_beside_protected_prefixes_fall_back_home(make_settings, target):
    assert Paths(make_settings(server=SSO_APP)).safe_next(target) == "/sso/"


@pytest.mark.parametrize("value", ["app", "/app/", "/", "/app,/x y", "https://evil.example"])
def test_a_bad_protected_prefix_stops_startup(make_settings, value):
    with pytest.raises(SettingsError, match="server.protected_prefixes"):
        make_settings(server={"url_prefix": "/sso", "protected_prefixes": value})


async def test_with_protected_prefixes_the_access_cookie_covers_the_origin(make_settings, make_client, make_user):
    await make_user("alice")
    client = await make_client(of=make_settings(server=SSO_APP))
    response = await client.post("/sso/login", json={"username": "alice", "password": "correct horse battery staple"})
    assert response.status == 200
    cookies = set_cookies(response)
    assert cookies["__Host-access"]["path"] == "/" and cookies["__Host-access"]["secure"]
    assert cookies["__Secure-refresh"]["path"] == "/sso/auth"  # the refresh token still goes nowhere else
    response = await client.get("/sso/auth/verify", headers={"X-Original-URI": "/app/page"})
    assert response.status == 200 and response.headers["X-Auth-User"] == "alice"


async def test_a_login_under_a_prefix_returns_to_a_protected_app(make_settings, make_client, make_user):
    await make_user("alice")
    client = await make_client(of=make_settings(server=SSO_APP))
    response = await client.post("/sso/login", json={"username": "alice", "password": "correct horse battery staple"})
    assert response.status == 200
    response = await client.get("/sso/login", params={"next": "/app/page?x=1"}, allow_redirects=False,
                                headers={"Accept": "text/html"})
    assert response.status == 303 and response.headers["Location"] == "/app/page?x=1"
