"""Cookie tossing in a real Chromium: a page on a sibling host (``evil.site.localhost``) plants the
attacker's own genuine cookies for the parent domain (``Domain=site.localhost``, which ``__Secure-``
allows), then sends the victim to the service on ``app.site.localhost``. Chromium resolves both names
to 127.0.0.1 (``--host-resolver-rules``) and treats ``*.localhost`` as a secure context, so Secure
cookies behave as over HTTPS. The victim must never end up signed in as the attacker."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from playwright.async_api import Browser, Page
from yarl import URL

from service.clock import SettableClock
from service.settings import Settings
from service.web.app import create_app
from tests.support.browser import launched_chromium
from tests.support.sign_in import PASSWORD

SIBLINGS = "site.localhost"


@pytest.fixture
async def sibling_chromium() -> AsyncIterator[Browser]:
    async with launched_chromium(f"--host-resolver-rules=MAP *.{SIBLINGS} 127.0.0.1") as browser:
        yield browser


@pytest.fixture
async def evil_port(aiohttp_server: Any) -> int:
    """The sibling host's server: ``GET /toss?name=&value=&path=&next=`` plants the cookie for the
    parent domain, then sends the browser on to ``next``."""

    async def toss(request: web.Request) -> web.StreamResponse:
        q = request.query
        response = web.Response(status=303, headers={"Location": q["next"]})
        response.headers.add("Set-Cookie", f"{q['name']}={q['value']}; Domain={SIBLINGS}; Path={q['path']}; "
                                           "Secure; HttpOnly; SameSite=Lax")
        return response

    app = web.Application()
    app.router.add_get("/toss", toss)
    return int((await aiohttp_server(app, host="127.0.0.1")).port)


@pytest.fixture
def tossing_site(aiohttp_server: Any, make_settings: Callable[..., Settings], clock: SettableClock,
                 make_user: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[str]]:
    """Start the service (``url_prefix`` optional) with users alice and mallory; returns its origin."""

    async def start(url_prefix: str = "") -> str:
        app = create_app(make_settings(server={"url_prefix": url_prefix}), clock=clock)
        server = await aiohttp_server(app, host="127.0.0.1")
        await make_user("alice")
        await make_user("mallory")
        return f"http://app.{SIBLINGS}:{server.port}"

    return start


async def cookies_of(origin: str, username: str, prefix: str = "") -> dict[str, str]:
    """The attacker signs in as herself, from her own machine: her genuine session cookies."""
    port = origin.rsplit(":", 1)[1]
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
        async with session.post(f"http://127.0.0.1:{port}{prefix}/login",
                                json={"username": username, "password": PASSWORD}) as response:
            assert response.status == 200, await response.text()
            return {name: morsel.value for name, morsel in response.cookies.items()}


async def toss(page: Page, evil_port: int, name: str, value: str, path: str, then: str) -> None:
    url = URL(f"http://evil.{SIBLINGS}:{evil_port}/toss").with_query(name=name, value=value, path=path, next=then)
    await page.goto(str(url))


async def signed_in_as(page: Page, origin: str, prefix: str = "") -> str | None:
    """Who the service says this browser is (None: signed out), as a same-origin fetch() asks."""
    await page.goto(origin + prefix + "/login")
    answer = await page.evaluate("""async (url) => {
        const r = await fetch(url, {headers: {Accept: "application/json"}});
        return [r.status, await r.text()];
    }""", origin + prefix + "/api/me")
    return json.loads(answer[1])["name"] if answer[0] == 200 else None


async def sign_in_with_the_form(page: Page, origin: str, prefix: str = "") -> None:
    await page.goto(origin + prefix + "/login")
    await page.fill("input[name=username]", "alice")
    await page.fill("input[name=password]", PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_load_state()
    assert "/login" not in page.url


async def test_a_tossed_refresh_cookie_does_not_sign_a_signed_out_victim_in_as_the_attacker(
        sibling_chromium, tossing_site, evil_port):
    origin = await tossing_site()
    mallory = await cookies_of(origin, "mallory")
    page = await (await sibling_chromium.new_context()).new_page()
    await toss(page, evil_port, "__Secure-refresh", mallory["__Secure-refresh"], "/auth",
               origin + "/auth/refresh?next=%2Faccount")
    assert page.url.startswith(origin + "/login")  # asked to sign in, not let in as mallory
    assert await signed_in_as(page, origin) is None


async def test_a_tossed_refresh_cookie_sent_first_leaves_the_victim_signed_in_as_themselves(
        sibling_chromium, tossing_site, evil_port, clock):
    origin = await tossing_site()
    mallory = await cookies_of(origin, "mallory")
    page = await (await sibling_chromium.new_context()).new_page()
    await sign_in_with_the_form(page, origin)
    # A longer Path is sent first: the order of cookies must decide nothing.
    await toss(page, evil_port, "__Secure-refresh", mallory["__Secure-refresh"], "/auth/refresh", origin + "/")
    clock.advance(61)  # the victim's access token has expired: the next call takes the refresh hop
    assert await signed_in_as(page, origin) == "alice"


@pytest.mark.parametrize("victim", ["signed out", "signed in"])
async def test_under_a_url_prefix_a_tossed_access_cookie_never_wins(sibling_chromium, tossing_site, evil_port,
                                                                    victim):
    origin = await tossing_site("/sso")
    mallory = await cookies_of(origin, "mallory", "/sso")
    page = await (await sibling_chromium.new_context()).new_page()
    if victim == "signed in":
        await sign_in_with_the_form(page, origin, "/sso")
    await toss(page, evil_port, "__Secure-refresh", mallory["__Secure-refresh"], "/sso/auth", origin + "/sso/login")
    await toss(page, evil_port, "__Secure-access", mallory["__Secure-access"], "/sso/api", origin + "/sso/login")
    assert await signed_in_as(page, origin, "/sso") == (None if victim == "signed out" else "alice")
