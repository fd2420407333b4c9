"""Every page people can meet, error pages included, has no axe-core violation of WCAG 2.2 AA (nor of
axe's best practices), on a 1280 px desktop and a 390 px phone, in the light and the dark colour
scheme (their contrasts differ)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pyotp
import pytest
from playwright.async_api import Browser, Page

from tests.support.axe import require_axe, violations
from tests.support.browser import VIEWPORTS, LiveService, submit
from tests.support.sign_in import PASSWORD


async def sign_in(page: Page, service: LiveService, password: str = PASSWORD) -> int:
    await page.goto(service.url("/login"))
    await page.fill("#username", "alice")
    await page.fill("#password", password)
    return await submit(page)


async def wrong_password(page: Page, service: LiveService) -> int:
    return await sign_in(page, service, "not the password")


async def throttled(page: Page, service: LiveService) -> int:
    """Wrong passwords until the throttle answers: the login page with its 429 error."""
    for _ in range(service.settings.throttle.per_user + 1):
        if (status := await wrong_password(page, service)) != 401:
            return status
    return 401


async def expired_form(page: Page, service: LiveService) -> int:
    """The login form posted after its nonce cookie went (an old tab, cookies cleared): 403."""
    await page.goto(service.url("/login"))
    await page.context.clear_cookies()
    await page.fill("#username", "alice")
    await page.fill("#password", PASSWORD)
    return await submit(page)


async def home(page: Page, service: LiveService) -> int:
    return await sign_in(page, service)


async def account(page: Page, service: LiveService) -> int:
    await sign_in(page, service)
    response = await page.goto(service.url("/account"))
    assert response is not None
    return response.status


async def refused_password_change(page: Page, service: LiveService) -> int:
    """The account page shown again with the error beside the form: the confirmation differs."""
    await account(page, service)
    await page.fill("input[name=current]", PASSWORD)
    await page.fill("input[name=new]", "a brand new passphrase")
    await page.fill("input[name=confirm]", "a different passphrase")
    return await submit(page, "form[action$='/password'] button[type=submit]")


async def confirm(page: Page, service: LiveService) -> int:
    """The step-up page, as a sensitive change long after signing in leads to it."""
    await sign_in(page, service)
    return await goto("/account/confirm?next=/account")(page, service)


async def totp_setup(page: Page, service: LiveService) -> int:
    await account(page, service)
    return await submit(page, "form[action$='/totp/setup'] button")


async def recovery_codes(page: Page, service: LiveService) -> int:
    """Setting up TOTP to the end: the recovery codes (Alice has TOTP on from here)."""
    await totp_setup(page, service)
    secret = (await page.inner_text("#secret")).strip()
    await page.fill("#code", pyotp.TOTP(secret).at(service.clock()))
    return await submit(page)


async def login_code(page: Page, service: LiveService) -> int:
    """The second step of signing in with TOTP on, after a wrong code."""
    assert await sign_in(page, service) == 200
    await page.fill("#code", "000000")  # one chance in a million of being right: then 303, and the test says so
    return await submit(page)


def goto(path: str) -> Callable[[Page, LiveService], Awaitable[int]]:
    async def visit(page: Page, service: LiveService) -> int:
        response = await page.goto(service.url(path))
        assert response is not None
        return response.status
    return visit


# What each page is, how a browser gets there, and the status it answers.
PAGES: dict[str, tuple[Callable[[Page, LiveService], Awaitable[int]], int]] = {
    "login": (goto("/login"), 200),
    "login, wrong password": (wrong_password, 401),
    "login form expired": (expired_form, 403),
    "home": (home, 200),
    "account": (account, 200),
    "account, password change refused": (refused_password_change, 400),
    "page not found": (goto("/no/such/page"), 404),
    "method not allowed": (goto("/logout"), 405),
    "confirm it is you": (confirm, 200),
    "set up an authenticator app": (totp_setup, 200),
    "recovery codes": (recovery_codes, 200),  # TOTP is on for Alice from here
    "login, code asked, wrong code": (login_code, 401),
    "login, throttled": (throttled, 429),  # last: Alice cannot sign in for a while after it
}


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("viewport", ["desktop", "phone"])
async def test_every_page_meets_wcag_22_aa(chromium: Browser, service: LiveService, viewport: str,
                                           scheme: str) -> None:
    source = require_axe()
    found: dict[str, Any] = {}
    for name, (reach, status) in PAGES.items():
        context = await chromium.new_context(**VIEWPORTS[viewport], color_scheme=scheme)
        context.set_default_timeout(10_000)
        try:
            page = await context.new_page()
            assert await reach(page, service) == status, name
            if problems := await violations(page, source):
                found[name] = problems
        finally:
            await context.close()
    assert found == {}
