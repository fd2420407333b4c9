"""In Chromium, on http://127.0.0.1 with the default cookie settings: signing in through the form,
the cookies' attributes, and navigations, fetch() calls and form posts surviving an expired access token.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Awaitable, Callable

import pytest
from playwright.async_api import Cookie, Page, Request, Response

from tests.support.browser import ARTIFACTS, LiveService
from tests.support.sign_in import PASSWORD

ACCESS, REFRESH, LOGIN = "__Host-access", "__Secure-refresh", "__Host-login"

# The documented way for page scripts: read the token from <meta name="csrf-token"> and send it as
# X-CSRF-Token on every unsafe fetch().
META_TOKEN = "document.querySelector('meta[name=\"csrf-token\"]').content"

FETCH = """async ([url, init]) => {
  const response = await fetch(url, init);
  return {status: response.status, redirected: response.redirected, url: response.url,
          body: await response.json()};
}"""


async def hops(response: Response) -> list[tuple[str, str, int]]:
    """The redirect chain that ended in ``response``, oldest first: (method, path, status)."""
    chain: list[tuple[str, str, int]] = []
    request: Request | None = response.request
    while request is not None:
        answer = await request.response()
        assert answer is not None, request.url
        chain.insert(0, (request.method, urllib.parse.urlsplit(request.url).path, answer.status))
        request = request.redirected_from
    return chain


async def sign_in(page: Page, service: LiveService, next_path: str = "/") -> Response:
    """Fill in and submit the real login form; the response the browser lands on."""
    await page.goto(service.url("/login?" + urllib.parse.urlencode({"next": next_path})))
    await page.fill("#username", "alice")
    await page.fill("#password", PASSWORD)
    async with page.expect_navigation() as landed:
        await page.click("button[type=submit]")
    return await landed.value


async def cookies(page: Page) -> dict[str, Cookie]:
    return {c["name"]: c for c in await page.context.cookies()}


@pytest.mark.parametrize("viewport", ["desktop", "phone"])
async def test_signing_in_through_the_form_lands_on_next_with_secure_prefixed_cookies(
        service: LiveService, open_page: Callable[[str], Awaitable[Page]], viewport: str) -> None:
    page = await open_page(viewport)
    ARTIFACTS.mkdir(exist_ok=True)
    await page.goto(service.url("/login?next=/api/me"))
    await page.screenshot(path=ARTIFACTS / f"login-{viewport}.png", full_page=True)

    landed = await sign_in(page, service, "/api/me")

    assert page.url == service.url("/api/me")
    assert landed.status == 200
    assert (await landed.json())["name"] == "Alice"
    assert "Alice" in await page.content()
    # Chromium kept both Secure, prefixed cookies set over plain http on 127.0.0.1 (and the login
    # page's pre-session nonce, which the form's CSRF token was bound to).
    assert set(await cookies(page)) == {ACCESS, REFRESH, LOGIN}
    await page.goto(service.url("/"))
    assert "Signed in as Alice" in await page.inner_text("main")
    await page.screenshot(path=ARTIFACTS / f"home-{viewport}.png", full_page=True)


async def test_a_wrong_password_shows_the_form_again_with_one_message(service: LiveService, page: Page) -> None:
    await page.goto(service.url("/login"))
    await page.fill("#username", "alice")
    await page.fill("#password", PASSWORD + "x")
    async with page.expect_navigation() as landed:
        await page.click("button[type=submit]")
    assert (await landed.value).status == 401
    assert await page.inner_text("[role=alert]") == "Incorrect username or password."
    assert await page.input_value("#username") == "alice"
    assert set(await cookies(page)) == {LOGIN}  # only the login form's nonce: no session
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=ARTIFACTS / "login-error-desktop.png", full_page=True)


async def test_cookies_are_httponly_secure_lax_and_the_refresh_cookie_stays_under_auth(
        service: LiveService, page: Page) -> None:
    landed = await sign_in(page, service, "/api/me")

    jar = await cookies(page)
    for name in (ACCESS, REFRESH):
        attributes = (jar[name]["httpOnly"], jar[name]["secure"], jar[name]["sameSite"], jar[name]["domain"])
        assert attributes == (True, True, "Lax", "127.0.0.1"), name
    assert jar[ACCESS]["path"] == "/"
    assert jar[REFRESH]["path"] == "/auth"
    sent = (await landed.request.all_headers()).get("cookie", "")
    assert ACCESS in sent and REFRESH not in sent
    assert await page.evaluate("document.cookie") == ""  # HttpOnly: out of reach of page scripts


async def test_an_expired_access_token_is_refreshed_during_a_navigation_without_the_login_page(
        service: LiveService, page: Page) -> None:
    await sign_in(page, service, "/")
    before = await cookies(page)
    service.expire_access_token()

    landed = await page.goto(service.url("/"))

    assert landed is not None
    assert await hops(landed) == [("GET", "/", 307), ("GET", "/auth/refresh", 307), ("GET", "/", 200)]
    assert "Signed in as Alice" in await page.inner_text("main")
    after = await cookies(page)
    assert after[ACCESS]["value"] != before[ACCESS]["value"]
    assert after[REFRESH]["value"] != before[REFRESH]["value"]  # rotated


async def test_fetch_get_and_post_from_page_script_survive_an_expired_access_token(
        service: LiveService, page: Page) -> None:
    await sign_in(page, service, "/test/form")
    service.expire_access_token()

    me = await page.evaluate(FETCH, ["/api/me", {}])

    assert (me["status"], me["redirected"], me["body"]["name"]) == (200, True, "Alice")
    assert me["url"] == service.url("/api/me")
    token = await page.evaluate(META_TOKEN)
    assert token and me["body"]["csrf_token"] == token  # the same token, stable across the refresh

    service.expire_access_token()
    body = json.dumps({"note": "déjà vu ✓", "items": list(range(50))})
    posted = await page.evaluate(FETCH, ["/test/echo", {
        "method": "POST", "headers": {"Content-Type": "application/json", "X-CSRF-Token": token}, "body": body}])

    assert (posted["status"], posted["redirected"]) == (200, True)
    assert posted["body"] == {"user": "Alice", "calls": 1}
    assert service.echoed == [{"user": "Alice", "content_type": "application/json", "body": body}]


async def test_a_form_post_after_expiry_is_applied_exactly_once(service: LiveService, page: Page) -> None:
    await sign_in(page, service, "/test/form")
    token = await page.evaluate(META_TOKEN)  # the same value as the form's hidden field
    service.expire_access_token()
    note = "buy milk & eggs, 100% sure ✓"

    await page.fill("#note", note)
    async with page.expect_navigation() as landed:
        await page.click("button[type=submit]")

    response = await landed.value
    assert await hops(response) == [
        ("POST", "/test/echo", 307), ("POST", "/auth/refresh", 307), ("POST", "/test/echo", 200)]
    assert await response.json() == {"user": "Alice", "calls": 1}
    assert len(service.echoed) == 1
    assert service.echoed[0]["content_type"] == "application/x-www-form-urlencoded"
    assert urllib.parse.parse_qs(service.echoed[0]["body"]) == {"csrf": [token], "note": [note]}


async def test_signing_out_clears_both_cookies_and_the_next_visit_asks_to_sign_in(
        service: LiveService, page: Page) -> None:
    await sign_in(page, service, "/")

    async with page.expect_navigation():
        await page.click("text=Sign out")

    assert urllib.parse.urlsplit(page.url).path == "/login"
    assert set(await cookies(page)) == {LOGIN}  # both session cookies cleared; the login page's nonce stays
    await page.goto(service.url("/"))
    assert urllib.parse.urlsplit(page.url).path == "/login"
