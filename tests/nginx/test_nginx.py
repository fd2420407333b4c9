"""The service behind real nginx over TLS, as ``deploy/nginx/service.conf`` deploys it: Secure prefixed
cookies, sign-in through the login page, a second app guarded by ``auth_request`` that survives access
expiry through the refresh hop, and two instances behind one upstream sharing sessions."""

from __future__ import annotations

import asyncio
import urllib.parse

import aiohttp

from tests.support.cookies import set_cookies
from tests.support.nginx import ACCESS_TTL, Stack, sign_in
from tests.support.sign_in import PASSWORD, hidden_field

HTML = {"Accept": "text/html"}
FORM_NAVIGATION = {"Sec-Fetch-Mode": "navigate", "Accept": "*/*"}


def jar(tls_client: aiohttp.ClientSession) -> dict[str, str]:
    return {morsel.key: morsel.value for morsel in tls_client.cookie_jar}


async def test_sign_in_over_tls_sets_secure_prefixed_cookies_with_their_paths(stack: Stack, tls_client):
    async with tls_client.post(stack.origin + "/sso/login", headers={"Origin": stack.origin},
                               json={"username": "alice", "password": PASSWORD}) as response:
        assert response.status == 200, await response.text()  # the Origin check saw nginx's https origin
        cookies = set_cookies(response)
        assert "max-age" in response.headers["Strict-Transport-Security"]
    access, refresh = cookies["__Host-access"], cookies["__Secure-refresh"]
    assert (access["path"], refresh["path"]) == ("/", "/sso/auth")  # server.protected_prefixes = "/app"
    for morsel in (access, refresh):
        assert morsel["secure"] and morsel["httponly"] and not morsel["domain"]


async def test_the_login_form_through_nginx_returns_to_the_protected_app(stack: Stack, tls_client):
    async with tls_client.get(stack.origin + "/app/page?x=1&y=2", headers=HTML, allow_redirects=False) as response:
        assert response.status == 302
        login = urllib.parse.urlsplit(response.headers["Location"])
    assert login.path == "/sso/login"
    assert urllib.parse.parse_qs(login.query)["next"] == ["/app/page?x=1&y=2"]
    async with tls_client.get(stack.origin + "/sso/login?" + login.query, headers=HTML) as response:
        assert response.status == 200
        form = await response.text()
    fields = {"username": "alice", "password": PASSWORD, "csrf": hidden_field(form, "csrf"),
              "next": hidden_field(form, "next")}
    async with tls_client.post(stack.origin + "/sso/login", data=fields, headers={**HTML, "Origin": stack.origin},
                               allow_redirects=False) as response:
        assert response.status == 303, await response.text()
        assert response.headers["Location"] == "/app/page?x=1&y=2"
    async with tls_client.get(stack.origin + "/app/page?x=1&y=2",
                              headers={**HTML, "X-Auth-User": "mallory"}) as response:
        assert response.status == 200
        seen = await response.json()
    assert seen["path"] == "/app/page?x=1&y=2"
    assert seen["X-Auth-User"] == "alice" and seen["X-Auth-Subject"] and seen["X-Auth-Session"]


async def test_the_protected_app_is_unreachable_signed_out(stack: Stack, tls_client):
    async with tls_client.get(stack.origin + "/app/page", headers={**HTML, "X-Auth-User": "alice"}) as response:
        assert response.status == 200
        assert response.url.path == "/sso/login"  # the login page, not the app
        assert "X-Auth-User" not in await response.text()
    async with tls_client.post(stack.origin + "/app/form", data={"a": "1"}, headers=FORM_NAVIGATION,
                               allow_redirects=False) as response:
        assert response.status == 307  # 307 so that a form POST would be replayed with its body
    async with tls_client.get(stack.origin + "/sso/auth/verify") as response:
        assert response.status == 404  # internal to nginx
    async with tls_client.get(stack.origin + "/sso/metrics") as response:
        assert response.status == 404  # scraped per instance, never through the public site


async def test_plain_http_redirects_to_https(stack: Stack, tls_client):
    async with tls_client.get(f"http://localhost:{stack.http_port}/app/page", allow_redirects=False) as response:
        assert response.status == 301
        assert response.headers["Location"] == "https://localhost/app/page"


async def test_the_protected_app_survives_access_expiry_through_the_refresh_hop(stack: Stack, tls_client):
    session = (await sign_in(tls_client, stack.origin))["session"]
    before = jar(tls_client)
    await asyncio.sleep(ACCESS_TTL + 0.5)  # real time: the service runs in another process
    async with tls_client.post(stack.origin + "/app/form", data={"note": "once"},
                               headers={**HTML, "Origin": stack.origin}) as response:
        assert response.status == 200, await response.text()
        seen = await response.json()
        hops = [(r.status, r.url.path) for r in response.history]
    assert hops == [(307, "/app/form"), (307, "/sso/auth/refresh")]  # nginx → refresh → back, body replayed
    assert (seen["method"], seen["body"], seen["X-Auth-Session"]) == ("POST", "note=once", session)
    after = jar(tls_client)
    assert after["__Host-access"] != before["__Host-access"]
    assert after["__Secure-refresh"] != before["__Secure-refresh"]
    async with tls_client.get(stack.origin + "/app/page", headers=HTML, allow_redirects=False) as response:
        assert response.status == 200
        assert (await response.json())["X-Auth-Session"] == session


async def test_a_get_after_expiry_is_redirected_through_refresh_and_back(stack: Stack, tls_client):
    session = (await sign_in(tls_client, stack.origin))["session"]
    await asyncio.sleep(ACCESS_TTL + 0.5)
    async with tls_client.get(stack.origin + "/app/page?q=a%20b", headers=HTML) as response:
        assert response.status == 200
        seen = await response.json()
        hops = [(r.status, r.url.path) for r in response.history]
    assert hops == [(302, "/app/page"), (307, "/sso/auth/refresh")]
    assert seen["path"] == "/app/page?q=a%20b" and seen["X-Auth-Session"] == session


async def test_two_instances_share_sessions_and_sign_out(stack: Stack, tls_client):
    one, two = stack.pinned_origin(0), stack.pinned_origin(1)
    body = await sign_in(tls_client, one)
    async with tls_client.get(two + "/sso/api/me") as response:  # cookies are per host, not per port
        assert response.status == 200
        assert (await response.json())["session"] == body["session"]
    async with tls_client.get(two + "/app/page", headers=HTML) as response:
        assert response.status == 200 and (await response.json())["X-Auth-Session"] == body["session"]
    copy = {"Cookie": "; ".join(f"{k}={v}" for k, v in jar(tls_client).items())}  # kept from before signing out
    async with tls_client.get(one + "/sso/api/me", headers=copy) as response:
        assert response.status == 200
    async with tls_client.post(two + "/sso/logout", headers={"Origin": two, "X-CSRF-Token": body["csrf_token"],
                                                             "Accept": "application/json"}) as response:
        assert response.status == 204, await response.text()
    assert "__Host-access" not in jar(tls_client)
    async with tls_client.get(one + "/sso/api/me", headers=copy) as response:  # at once, on the other instance
        assert response.status == 401
    async with tls_client.get(one + "/app/page", headers={**HTML, **copy}, allow_redirects=False) as response:
        assert response.status == 302
        assert urllib.parse.urlsplit(response.headers["Location"]).path == "/sso/login"
