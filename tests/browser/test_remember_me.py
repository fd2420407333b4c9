""""Keep me signed in", as Chromium keeps the cookies: unticked, both session cookies end with the
browser (no expiry); ticked, they last until the session's absolute deadline."""

from __future__ import annotations

from playwright.async_api import Page

from tests.support.browser import LiveService
from tests.support.sign_in import PASSWORD

ACCESS, REFRESH = "__Host-access", "__Secure-refresh"


async def sign_in(page: Page, service: LiveService, *, remember: bool) -> dict[str, float]:
    await page.goto(service.url("/login"))
    await page.fill("#username", "alice")
    await page.fill("#password", PASSWORD)
    if remember:
        await page.check("#remember")
    async with page.expect_navigation():
        await page.click("button[type=submit]")
    return {c["name"]: c["expires"] for c in await page.context.cookies()}


async def test_unticked_the_cookies_end_with_the_browser(service: LiveService, page: Page) -> None:
    expires = await sign_in(page, service, remember=False)
    assert expires[ACCESS] == expires[REFRESH] == -1  # Playwright's "session cookie"
    account = await page.goto(service.url("/account"))
    assert account is not None and account.status == 200
    assert "until the browser closes" in await page.inner_text(".session.current")


async def test_ticked_they_last_until_the_absolute_deadline(service: LiveService, page: Page) -> None:
    expires = await sign_in(page, service, remember=True)
    deadline = service.clock() + service.settings.sessions.absolute_timeout
    for name in (ACCESS, REFRESH):
        assert abs(expires[name] - deadline) < 5, name
    await page.goto(service.url("/account"))
    assert "kept signed in" in await page.inner_text(".session.current")


async def test_the_checkbox_starts_unticked_and_has_a_label(service: LiveService, page: Page) -> None:
    await page.goto(service.url("/login"))
    assert not await page.is_checked("#remember")
    await page.click("text=Keep me signed in")
    assert await page.is_checked("#remember")
