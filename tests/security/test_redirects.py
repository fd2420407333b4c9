"""Open redirects over HTTP: every ``next`` the service will send a browser to — the login page's hidden
field, the form login's 303, the refresh endpoint's 307 (GET and POST), the login page a failed refresh
points at, and the redirect of an already signed-in visitor — is a same-origin relative path inside the
configured URL prefix. Schemes, ``//host``, backslashes, encoded and whitespace/control-character
variants, dot segments that climb out of the prefix and overlong values all land on the home page;
ordinary paths with their queries survive byte for byte. A JSON login never redirects at all.
"""

from __future__ import annotations

import dataclasses
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from yarl import URL

from tests.support.sign_in import (NAVIGATE, PASSWORD, form_login as submit_login_form, hidden_field,
                                   login_token)

# Attacker-chosen values; raw characters are sent as the browser would send them (percent-encoded in
# a query, as-is in a form), and the "%xx" ones arrive with the percent sign itself.
EVIL = {
    "https scheme": "https://evil.example",
    "http scheme in upper case": "HTTP://evil.example/login",
    "javascript scheme": "javascript:alert(1)",
    "javascript scheme in mixed case": "JaVaScRiPt:alert(document.domain)",
    "data scheme": "data:text/html,<script>alert(1)</script>",
    "data scheme base64": "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
    "protocol-relative //host": "//evil.example",
    "protocol-relative with a path": "//evil.example/sso/",
    "three slashes": "///evil",
    "four slashes": "////evil.example",
    "slash backslash": "/\\evil.example",
    "backslash slash": "\\/evil.example",
    "two backslashes": "\\\\evil",
    "slash two backslashes": "/\\\\evil.example",
    "encoded //": "/%2F%2Fevil.example",
    "encoded // in lower case": "/%2f%2fevil.example",
    "encoded second slash": "/%2Fevil.example",
    "all encoded": "%2F%2Fevil.example",
    "encoded backslash": "/%5Cevil.example",
    "encoded backslash in lower case": "/%5cevil.example",
    "encoded tab": "/%09/evil.example",
    "encoded newline": "/%0a/evil.example",
    "encoded CR LF": "/%0d%0a/evil.example",
    "encoded CR LF header injection": "/%0D%0ASet-Cookie:%20a=b",
    "encoded NUL": "/%00/evil.example",
    "raw tab": "/\t/evil.example",
    "raw newline": "/\n/evil.example",
    "raw CR": "/\r/evil.example",
    "raw CR LF header injection": "/\r\nSet-Cookie: a=b",
    "raw space": "/ /evil.example",
    "raw NUL": "/\x00/evil.example",
    "raw DEL": "/\x7f/evil.example",
    "leading space": " //evil.example",
    "leading tab": "\t//evil.example",
    "bare host": "evil.example",
    "userinfo trick": "@evil.example",
    "relative path": "account",
    "empty": "",
    "overlong": "/" + "a" * 6000,  # still fits in a request line (aiohttp's limit is 8190 bytes)
    "one over the limit": "/" + "a" * 2048,
}

# Same-origin targets that must come back exactly as given.
SAFE = {
    "a page": "/account",
    "a query": "/api/me?pretty=1",
    "an encoded space in the path": "/docs/My%20File.pdf",
    "a query with & and encoded space": "/search?q=a%20b&lang=en",
    "an encoded // inside the query": "/page?back=%2F%2Fstill-a-query",
    "a URL inside the query": "/go?to=https://evil.example/",
    "a fragment": "/account#sessions",
    "the home page": "/",
    "the longest allowed": "/" + "a" * 2047,
}

# With server.url_prefix = "/sso": same-origin, but outside the mounted service.
OUTSIDE_SSO = {
    "the site root": "/",
    "another app": "/other/app?x=1",
    "the prefix without its slash boundary": "/ssox",
    "a sibling path sharing the prefix": "/sso-admin/",
    "the prefix in another case": "/SSO/account",
    "a bare prefix with a query": "/sso?x=1",
    "dot-dot out of the prefix": "/sso/../admin",
    "encoded dot-dot out of the prefix": "/sso/%2e%2e/admin",
    "half-encoded dot-dot": "/sso/.%2E/admin",
    "deep dot-dot": "/sso/a/b/../../../admin",
    "trailing dot-dot": "/sso/..",
}

SAFE_SSO = {
    "a page": "/sso/account",
    "a query": "/sso/api/me?pretty=1",
    "a query with & and encoded space": "/sso/search?q=a%20b&lang=en",
    "the bare prefix": "/sso",
    "the home page": "/sso/",
}


@dataclasses.dataclass
class Rig:
    """A client of the service mounted at ``prefix``, with a user Alice who can sign in."""

    client: Any
    prefix: str

    @property
    def home(self) -> str:
        return self.prefix + "/"

    def url(self, path: str, next_value: str) -> URL:
        query = urllib.parse.urlencode({"next": next_value}, quote_via=urllib.parse.quote)
        return URL(self.prefix + path + "?" + query, encoded=True)

    async def sign_in(self) -> None:
        response = await self.client.post(self.prefix + "/login", json={"username": "alice", "password": PASSWORD})
        assert response.status == 200, await response.text()


Surface = Callable[[Rig, str], Awaitable[str]]


def location(response: Any, status: int) -> str:
    assert response.status == status, response.status
    return str(response.headers["Location"])


async def login_page(rig: Rig, next_value: str) -> str:
    """GET /login?next=: the form's hidden next field."""
    response = await rig.client.get(rig.url("/login", next_value), headers=NAVIGATE)
    assert response.status == 200
    field = hidden_field(await response.text(), "next")
    assert field is not None
    return field


async def login_page_when_signed_in(rig: Rig, next_value: str) -> str:
    """GET /login?next= with a live session: straight on to next."""
    await rig.sign_in()
    return location(await rig.client.get(rig.url("/login", next_value), headers=NAVIGATE,
                                         allow_redirects=False), 303)


async def form_login(rig: Rig, next_value: str) -> str:
    """POST /login as the form does, next in the body."""
    return location(await submit_login_form(rig.client, next=next_value, path=rig.prefix + "/login"), 303)


async def form_login_next_in_query(rig: Rig, next_value: str) -> str:
    """POST /login?next= with no next field in the body."""
    token = await login_token(rig.client, rig.prefix + "/login")
    response = await rig.client.post(rig.url("/login", next_value), headers=NAVIGATE, allow_redirects=False,
                                     data={"username": "alice", "password": PASSWORD, "csrf": token})
    return location(response, 303)


async def failed_form_login(rig: Rig, next_value: str) -> str:
    """A wrong password: the form comes back with the hidden next field for the second try."""
    response = await submit_login_form(rig.client, password="wrong", next=next_value, path=rig.prefix + "/login")
    assert response.status == 401
    field = hidden_field(await response.text(), "next")
    assert field is not None
    return field


async def refresh_get(rig: Rig, next_value: str) -> str:
    """GET /auth/refresh?next=: rotates, then 307 to next."""
    await rig.sign_in()
    return location(await rig.client.get(rig.url("/auth/refresh", next_value), allow_redirects=False), 307)


async def refresh_post(rig: Rig, next_value: str) -> str:
    """POST /auth/refresh?next= (the auto-refresh hop replaying a form): rotates, then 307 to next."""
    await rig.sign_in()
    response = await rig.client.post(rig.url("/auth/refresh", next_value), data={"note": "x"},
                                     allow_redirects=False)
    return location(response, 307)


async def failed_refresh(rig: Rig, next_value: str) -> str:
    """A navigation to /auth/refresh?next= with no session: off to the login page, carrying next along."""
    response = await rig.client.get(rig.url("/auth/refresh", next_value), headers=NAVIGATE, allow_redirects=False)
    return _next_of_login_url(rig, location(response, 303))


async def failed_refresh_fetch(rig: Rig, next_value: str) -> str:
    """The same from fetch(): a 401 whose JSON names the login page to send the user to."""
    response = await rig.client.get(rig.url("/auth/refresh", next_value), headers={"Accept": "application/json"},
                                    allow_redirects=False)
    assert response.status == 401
    return _next_of_login_url(rig, (await response.json())["login"])


def _next_of_login_url(rig: Rig, url: str) -> str:
    target = urllib.parse.urlsplit(url)
    assert (target.scheme, target.netloc, target.path) == ("", "", rig.prefix + "/login")
    return urllib.parse.parse_qs(target.query)["next"][0]


SURFACES: dict[str, Surface] = {
    "login page": login_page,
    "login page when signed in": login_page_when_signed_in,
    "form login": form_login,
    "form login, next in the query": form_login_next_in_query,
    "failed form login": failed_form_login,
    "GET refresh": refresh_get,
    "POST refresh": refresh_post,
    "failed refresh": failed_refresh,
    "failed refresh from fetch()": failed_refresh_fetch,
}
SSO_SURFACES = {name: SURFACES[name] for name in ("login page", "form login", "GET refresh", "failed refresh")}


@pytest.fixture
async def rig(make_client, make_user) -> Rig:
    await make_user("alice")
    return Rig(await make_client(), "")


@pytest.fixture
async def sso(make_settings, make_client, make_user) -> Rig:
    await make_user("alice")
    return Rig(await make_client(of=make_settings(server={"url_prefix": "/sso"})), "/sso")


@pytest.mark.parametrize("surface", SURFACES.values(), ids=SURFACES.keys())
@pytest.mark.parametrize("evil", EVIL.values(), ids=EVIL.keys())
async def test_offsite_next_lands_on_the_home_page(rig, surface, evil):
    assert await surface(rig, evil) == "/"


@pytest.mark.parametrize("surface", SURFACES.values(), ids=SURFACES.keys())
@pytest.mark.parametrize("target", SAFE.values(), ids=SAFE.keys())
async def test_same_origin_next_survives_intact(rig, surface, target):
    assert await surface(rig, target) == target


@pytest.mark.parametrize("evil", EVIL.values(), ids=EVIL.keys())
async def test_json_login_never_redirects(rig, evil):
    response = await rig.client.post("/login", json={"username": "alice", "password": PASSWORD, "next": evil})
    assert response.status == 200
    assert "Location" not in response.headers
    assert not {"next", "location", "redirect"} & set(await response.json())


@pytest.mark.parametrize("surface", SSO_SURFACES.values(), ids=SSO_SURFACES.keys())
@pytest.mark.parametrize("evil", {**EVIL, **OUTSIDE_SSO}.values(), ids={**EVIL, **OUTSIDE_SSO}.keys())
async def test_under_a_prefix_anything_outside_it_lands_on_the_prefixed_home_page(sso, surface, evil):
    assert await surface(sso, evil) == "/sso/"


@pytest.mark.parametrize("surface", SSO_SURFACES.values(), ids=SSO_SURFACES.keys())
@pytest.mark.parametrize("target", SAFE_SSO.values(), ids=SAFE_SSO.keys())
async def test_under_a_prefix_paths_inside_it_survive_intact(sso, surface, target):
    assert await surface(sso, target) == target


@pytest.mark.parametrize("path", ["/login", "/auth/refresh"])
async def test_a_next_too_long_for_the_request_line_is_a_plain_400(rig, path):
    response = await rig.client.get(rig.url(path, "/" + "a" * 10_000), headers=NAVIGATE, allow_redirects=False)
    assert response.status == 400
    assert "Location" not in response.headers and "Set-Cookie" not in response.headers
