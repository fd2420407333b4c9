"""Cache and security headers on every auth response, cookie prefixes, and error answers that give
nothing away.

Every response of the login, refresh, logout, API and account routes, successes and errors alike
(400, 401, 403, 404, 405), carries ``Cache-Control: no-store``, a CSP without inline script and
with ``frame-ancestors 'none'``, ``X-Content-Type-Options: nosniff``, a Referrer-Policy, and HSTS
exactly when cookies are Secure (issue 3 §4; security anchors §K.65–69, ASVS 5.0 3.4, 14.3.2).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.support.cookies import browser_jar, set_cookies
from tests.support.raw_http import raw_exchange
from tests.support.sign_in import PASSWORD, form_login, login

NAVIGATE = {"Sec-Fetch-Mode": "navigate", "Sec-Fetch-Site": "same-origin", "Sec-Fetch-Dest": "document",
            "Accept": "text/html,application/xhtml+xml"}
JSON = {"Accept": "application/json"}
CROSS_SITE = {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}
REFERRER_POLICIES = {"no-referrer", "same-origin", "strict-origin", "strict-origin-when-cross-origin"}
ONE_YEAR = 31536000
# What a stack trace or an exception's text would leave in a body.
LEAKS = re.compile(r"Traceback|File \"|\.py\b|line \d+|\b[A-Z]\w*(?:Error|Exception)\b|/service/|site-packages")


# --- the responses under test ---------------------------------------------------------------------------

class Visitor:
    """A signed-in browser and a signed-out one on the same server."""

    def __init__(self, signed: TestClient, anon: TestClient, csrf: str) -> None:
        self.signed = signed
        self.anon = anon
        self.csrf = csrf


Request = Callable[[Visitor], Awaitable[Any]]


async def throttled(v: Visitor) -> Any:
    """The sixth wrong password in a row (throttle.per_user is 5)."""
    for _ in range(5):
        response = await v.anon.post("/login", json={"username": "alice", "password": "wrong password"})
        assert response.status == 401
    return await v.anon.post("/login", json={"username": "alice", "password": "wrong password"})


RESPONSES: dict[str, tuple[int, Request]] = {
    "GET /login": (200, lambda v: v.anon.get("/login", headers=NAVIGATE)),
    "GET /login when signed in": (303, lambda v: v.signed.get("/login?next=/account", headers=NAVIGATE,
                                                              allow_redirects=False)),
    "POST /login form": (303, lambda v: form_login(v.anon)),
    "POST /login JSON": (200, lambda v: v.anon.post("/login", json={"username": "alice", "password": PASSWORD})),
    "POST /login JSON, wrong password": (401, lambda v: v.anon.post(
        "/login", json={"username": "alice", "password": "wrong password"})),
    "POST /login form, wrong password": (401, lambda v: form_login(v.anon, password="wrong password")),
    "POST /auth/refresh": (200, lambda v: v.signed.post("/auth/refresh", headers=JSON)),
    "GET /auth/refresh hop": (307, lambda v: v.signed.get("/auth/refresh?next=/account", headers=NAVIGATE,
                                                          allow_redirects=False)),
    "POST /auth/refresh without a cookie": (401, lambda v: v.anon.post("/auth/refresh", headers=JSON)),
    "GET /auth/refresh hop without a cookie": (303, lambda v: v.anon.get(
        "/auth/refresh?next=/account", headers=NAVIGATE, allow_redirects=False)),
    "POST /logout JSON": (204, lambda v: v.signed.post("/logout", headers={**JSON, "X-CSRF-Token": v.csrf})),
    "POST /logout form": (303, lambda v: v.signed.post("/logout", data={"csrf": v.csrf}, headers=NAVIGATE,
                                                       allow_redirects=False)),
    "GET /api/me": (200, lambda v: v.signed.get("/api/me", headers=JSON)),
    "GET /api/sessions": (200, lambda v: v.signed.get("/api/sessions", headers=JSON)),
    "GET /account": (200, lambda v: v.signed.get("/account", headers=NAVIGATE)),
    "GET /": (200, lambda v: v.signed.get("/", headers=NAVIGATE)),
    "400 JSON (malformed body)": (400, lambda v: v.anon.post("/login", data=b'{"username": ',
                                                           headers={**JSON, "Content-Type": "application/json"})),
    "400 HTML (neither form nor JSON)": (400, lambda v: v.anon.post(
        "/login", data=b"username=alice", headers={**NAVIGATE, "Content-Type": "text/plain"})),
    "429 JSON (throttled)": (429, lambda v: throttled(v)),
    "401 JSON (signed out)": (401, lambda v: v.anon.get("/api/me", headers=JSON)),
    "303 to login (signed out page)": (303, lambda v: v.anon.get("/account", headers=NAVIGATE,
                                                                 allow_redirects=False)),
    "403 JSON (cross-site)": (403, lambda v: v.signed.post("/logout", headers={**JSON, **CROSS_SITE})),
    "403 HTML (cross-site form)": (403, lambda v: v.signed.post("/logout", data={"csrf": v.csrf},
                                                                headers={**NAVIGATE, **CROSS_SITE})),
    "403 JSON (no CSRF token)": (403, lambda v: v.signed.delete("/api/sessions", headers=JSON)),
    "404 unknown path": (404, lambda v: v.anon.get("/no-such-page")),
    "404 unknown path, HTML": (404, lambda v: v.anon.get("/no-such-page", headers=NAVIGATE)),
    "404 unknown API path, signed in": (404, lambda v: v.signed.get("/api/no-such-thing", headers=JSON)),
    "405 GET /logout": (405, lambda v: v.signed.get("/logout", headers=NAVIGATE)),
    "405 PUT /login": (405, lambda v: v.anon.put("/login", json={})),
}


async def visitor(make_client: Any, aiohttp_client: Any, **settings: Any) -> Visitor:
    signed = await make_client(**settings)
    anon = await aiohttp_client(signed.server, cookie_jar=browser_jar(signed.server.port))
    csrf = (await login(signed))["csrf_token"]
    return Visitor(signed, anon, csrf)


@pytest.fixture
async def signed_visitor(make_client, make_user, aiohttp_client) -> Visitor:
    await make_user()
    return await visitor(make_client, aiohttp_client)


# --- checks ---------------------------------------------------------------------------------------------

def csp(response: Any) -> dict[str, list[str]]:
    values = response.headers.getall("Content-Security-Policy")
    assert len(values) == 1, values
    directives: dict[str, list[str]] = {}
    for part in values[0].split(";"):
        words = part.split()
        if words:
            directives[words[0].lower()] = words[1:]
    return directives


def assert_security_headers(response: Any, *, hsts: bool = True) -> None:
    headers = response.headers
    assert headers.getall("Cache-Control") == ["no-store"]
    policy = csp(response)
    scripts = policy.get("script-src", policy.get("default-src"))
    assert scripts, policy
    assert not {"'unsafe-inline'", "'unsafe-eval'", "*", "data:", "http:", "https:"} & set(scripts), scripts
    assert policy["frame-ancestors"] == ["'none'"]
    assert policy.get("object-src") == ["'none'"]
    assert headers.getall("X-Content-Type-Options") == ["nosniff"]
    assert headers.getall("Cross-Origin-Opener-Policy") == ["same-origin"]  # ASVS 5.0 3.4.8
    assert headers.getall("Referrer-Policy")[0] in REFERRER_POLICIES
    if hsts:
        value = headers.getall("Strict-Transport-Security")
        assert len(value) == 1
        max_age = re.search(r"max-age=(\d+)", value[0])
        assert max_age and int(max_age.group(1)) >= ONE_YEAR, value
    else:
        assert "Strict-Transport-Security" not in headers


def assert_cookie_prefixes_hold(response: Any) -> None:
    """RFC 6265bis §4.1.3: a ``__Host-`` cookie is Secure on Path=/ without Domain; a ``__Secure-``
    cookie is Secure. Browsers drop cookies that break these rules, silently."""
    for name, morsel in set_cookies(response).items():
        if name.startswith("__Host-"):
            assert morsel["secure"] and morsel["path"] == "/" and not morsel["domain"], (name, morsel)
        if name.startswith("__Secure-"):
            assert morsel["secure"], (name, morsel)


def assert_no_leak(body: str) -> None:
    found = LEAKS.search(body)
    assert found is None, f"{found.group(0)!r} in {body[:400]!r}"


def assert_no_inline_script(body: str) -> None:
    """The CSP forbids inline script, so pages must not rely on any."""
    for tag in re.findall(r"<script\b[^>]*>", body, flags=re.I):
        assert re.search(r"\bsrc=", tag), tag
    assert not re.search(r"\son[a-z]+\s*=", body, flags=re.I)
    assert "javascript:" not in body.lower()


# --- every auth response ------------------------------------------------------------------------------------

@pytest.mark.parametrize("case", list(RESPONSES))
async def test_every_auth_response_carries_the_security_headers(signed_visitor, case):
    status, send = RESPONSES[case]
    response = await send(signed_visitor)
    assert response.status == status, await response.text()
    assert_security_headers(response)
    assert_cookie_prefixes_hold(response)
    body = await response.text()
    if status >= 400:
        assert_no_leak(body)
    if response.content_type == "text/html":
        assert_no_inline_script(body)


@pytest.mark.parametrize("case", ["GET /login", "POST /login JSON", "POST /auth/refresh", "GET /api/me",
                                  "401 JSON (signed out)", "404 unknown path", "405 GET /logout"])
async def test_hsts_is_absent_when_cookies_are_not_secure(make_client, make_user, make_settings, aiohttp_client,
                                                          case):
    """HSTS pins HTTPS for the whole host, so a deployment that chose plain-HTTP cookies does not get it;
    every other header stays."""
    await make_user()
    insecure = await visitor(make_client, aiohttp_client, of=make_settings(cookies={"secure": False}))
    status, send = RESPONSES[case]
    response = await send(insecure)
    assert response.status == status
    assert_security_headers(response, hsts=False)


async def test_static_files_are_cacheable_but_still_get_the_security_headers(signed_visitor):
    response = await signed_visitor.anon.get("/static/style.css")
    assert response.status == 200
    assert "no-store" not in response.headers.get("Cache-Control", "")
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert csp(response)["frame-ancestors"] == ["'none'"]


# --- cookie names and prefixes -------------------------------------------------------------------------------

def names_and_flags(response: Any) -> dict[str, tuple[str, bool, str]]:
    return {name: (m["path"], bool(m["secure"]), m["domain"]) for name, m in set_cookies(response).items()}


@pytest.mark.parametrize(("cookies", "server", "expected"), [
    ({}, {}, {"__Host-access": ("/", True, ""), "__Secure-refresh": ("/auth", True, "")}),
    ({"secure": False}, {}, {"access": ("/", False, ""), "refresh": ("/auth", False, "")}),
    ({}, {"url_prefix": "/sso"}, {"__Secure-access": ("/sso/", True, ""),
                                  "__Secure-refresh": ("/sso/auth", True, ""), "__Host-anchor": ("/", True, "")}),
], ids=["secure: __Host- and __Secure-", "not secure: no prefix", "URL prefix: __Secure- for both"])
async def test_session_cookies_carry_the_prefix_their_attributes_allow(make_client, make_user, make_settings,
                                                                       cookies, server, expected):
    """Issue 3 §4: __Host- (access) and __Secure- (refresh) when secure. A path-scoped cookie cannot be
    __Host-, and without Secure a prefix would make browsers drop the cookie; under a URL prefix the
    __Host-anchor (Path=/) names the authentic path-scoped access cookie."""
    await make_user()
    client = await make_client(of=make_settings(cookies=cookies, server=server))
    prefix = server.get("url_prefix", "")
    response = await client.post(prefix + "/login", json={"username": "alice", "password": PASSWORD})
    assert response.status == 200
    assert names_and_flags(response) == expected
    assert_cookie_prefixes_hold(response)


@pytest.mark.parametrize(("cookies", "name"), [({}, "__Host-login"), ({"secure": False}, "login")],
                         ids=["secure", "not secure"])
async def test_login_form_nonce_cookie_is_host_prefixed_when_secure(make_client, make_settings, cookies, name):
    client = await make_client(of=make_settings(cookies=cookies))
    response = await client.get("/login", headers=NAVIGATE)
    assert response.status == 200
    assert names_and_flags(response) == {name: ("/", bool(cookies.get("secure", True)), "")}
    assert_cookie_prefixes_hold(response)


# --- method hygiene and unknown paths ------------------------------------------------------------------------

@pytest.mark.parametrize(("method", "path", "allow"), [
    ("GET", "/logout", "POST"), ("PUT", "/logout", "POST"), ("PUT", "/login", "GET,HEAD,POST"),
    ("DELETE", "/login", "GET,HEAD,POST"), ("GET", "/api/password", "POST"),
    ("GET", "/account/sessions/revoke-all", "POST"), ("POST", "/api/me", "GET,HEAD"),
])
async def test_wrong_method_on_an_auth_route_is_405_without_a_traceback(signed_visitor, method, path, allow):
    """Anchors F.42, L.74: GET /logout must never sign anyone out (a link or an <img> could). Unsafe
    methods carry the CSRF token, else the CSRF check answers 403 before routing's 405."""
    headers = NAVIGATE if method in ("GET", "HEAD") else {**NAVIGATE, "X-CSRF-Token": signed_visitor.csrf}
    response = await signed_visitor.signed.request(method, path, headers=headers, allow_redirects=False)
    assert response.status == 405
    assert set(response.headers["Allow"].split(",")) == set(allow.split(","))
    assert_no_leak(await response.text())
    assert_security_headers(response)
    assert set_cookies(response) == {}
    assert (await signed_visitor.signed.get("/api/me", headers=JSON)).status == 200  # still signed in


async def raw_get(client: TestClient, target: bytes) -> tuple[int, bytes]:
    """GET with the request target exactly as given (an HTTP client library would normalise it)."""
    data = await raw_exchange(client.server.port,
                              b"GET " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


@pytest.mark.parametrize("target", [
    "/no-such-page", "/api/no-such-thing", "/auth/no-such-thing", "/auth", "/admin", "/.git/config",
    "/login/extra", "/%00", "/%ff%fe", "/api/me%00",
])
async def test_unknown_path_is_404_without_a_traceback(signed_visitor, target):
    response = await signed_visitor.anon.get(target, headers=NAVIGATE, allow_redirects=False)
    assert response.status == 404
    assert_no_leak(await response.text())
    assert_security_headers(response)


@pytest.mark.parametrize("target", [b"/static/../service/app.py", b"/static/%2e%2e/service/app.py",
                                    b"/static/..%2fservice%2fapp.py", b"/static/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
                                    b"/static//etc/passwd", b"/static/..\\service\\app.py"],
                         ids=["dot-dot", "encoded dot-dot", "encoded slash", "encoded to /etc", "absolute",
                              "backslashes"])
async def test_path_traversal_through_static_files_finds_nothing(signed_visitor, target):
    """The static route serves its own directory only: no source file or system file comes back."""
    status, body = await raw_get(signed_visitor.anon, target)
    assert status == 404, (status, body[:200])
    assert b"import" not in body and b"root:" not in body
    assert_no_leak(body.decode("utf-8", "replace"))
