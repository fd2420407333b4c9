"""Two-step sign-in in Chromium, through the pages alone: setting up an authenticator app from the QR
page, the recovery codes shown once, signing in with a code, and confirming it is you with one."""

from __future__ import annotations

import pyotp
from playwright.async_api import Page

from tests.support.browser import LiveService, submit
from tests.support.sign_in import PASSWORD


async def password_step(page: Page, service: LiveService) -> int:
    await page.goto(service.url("/login?next=/account"))
    await page.fill("#username", "alice")
    await page.fill("#password", PASSWORD)
    return await submit(page)


async def test_setting_up_totp_then_signing_in_with_a_code(service: LiveService, page: Page) -> None:
    assert await password_step(page, service) == 200
    assert await submit(page, "form[action$='/totp/setup'] button") == 200
    qr = page.locator("img.qr")
    assert (await qr.get_attribute("src") or "").startswith("data:image/svg+xml")
    assert await qr.evaluate("img => img.complete && img.naturalWidth > 0")  # the CSP let the QR code show
    secret = (await page.inner_text("#secret")).strip()
    await page.fill("#code", pyotp.TOTP(secret).at(service.clock()))
    assert await submit(page) == 200
    codes = [line.strip() for line in (await page.inner_text("#recovery-codes")).splitlines() if line.strip()]
    assert len(codes) == 10
    await page.goto(service.url("/account"))
    assert "recovery codes left" in await page.inner_text("main")

    await page.context.clear_cookies()
    assert await password_step(page, service) == 200  # the code page, no session yet
    assert {c["name"] for c in await page.context.cookies()} == {"__Host-login"}
    assert await page.get_attribute("#code", "autocomplete") == "one-time-code"
    service.clock.advance(30)
    await page.fill("#code", pyotp.TOTP(secret).at(service.clock()))
    assert await submit(page) == 200
    assert page.url == service.url("/account")
    assert "Password and authenticator code" in await page.inner_text(".session.current")


async def test_confirming_it_is_you_with_a_code_returns_to_the_account(service: LiveService, page: Page) -> None:
    assert await password_step(page, service) == 200
    assert await submit(page, "form[action$='/totp/setup'] button") == 200
    secret = (await page.inner_text("#secret")).strip()
    await page.fill("#code", pyotp.TOTP(secret).at(service.clock()))
    assert await submit(page) == 200
    await page.goto(service.url("/account"))
    service.clock.advance(11 * 60)  # past the step-up window; the next request refreshes on its way
    assert await submit(page, "form[action$='/recovery-codes'] button") == 200
    assert page.url.startswith(service.url("/account/confirm"))
    await page.fill("#code", pyotp.TOTP(secret).at(service.clock()))
    assert await submit(page, "form:has(#code) button") == 200
    assert page.url == service.url("/account")
    assert await submit(page, "form[action$='/recovery-codes'] button") == 200
    assert len((await page.inner_text("#recovery-codes")).split()) == 10
