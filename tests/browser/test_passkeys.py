"""Passkeys in Chromium with a virtual authenticator (CDP ``WebAuthn.*``), against the real service on
http://localhost and a real Redis: registering one from the account page, signing in with it by the
button and by autofill (conditional mediation), removing it, and the attacks a server must catch
itself — a cloned authenticator, another RP ID or origin, a replayed assertion."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from playwright.async_api import Browser, Page

from service.settings import Settings
from tests.support.ports import free_port
from tests.support.sign_in import PASSWORD
from tests.support.webauthn import (
    ASSERT,
    OWN_ASSERTION,
    POST_JSON,
    Authenticator,
    PasskeyService,
    serve_passkeys,
    virtual_authenticator,
)


@pytest.fixture
async def passkey_service(aiohttp_server, make_settings, clock, make_user) -> PasskeyService:
    service = await serve_passkeys(aiohttp_server, make_settings, clock)
    await make_user("alice")
    return service


async def new_page(chromium: Browser) -> Page:
    context = await chromium.new_context()
    context.set_default_timeout(10_000)
    return await context.new_page()


async def sign_in_with_password(page: Page, service: PasskeyService) -> None:
    await page.goto(service.url("/login"))
    await page.fill("#username", "alice")
    await page.fill("#password", PASSWORD)
    async with page.expect_navigation():
        await page.click("form button[type=submit]")


async def add_passkey(page: Page, service: PasskeyService, name: str = "Test laptop") -> None:
    """Through the account page, as a person does: name it, press the button."""
    await page.goto(service.url("/account"))
    await page.fill("#passkey-name", name)
    async with page.expect_navigation(url=service.url("/account")):
        await page.click("#passkey-add button")


async def registered(chromium: Browser, service: PasskeyService) -> tuple[Page, Authenticator]:
    """A page whose authenticator holds alice's passkey, signed out again."""
    page = await new_page(chromium)
    authenticator = await virtual_authenticator(page)
    await sign_in_with_password(page, service)
    await add_passkey(page, service)
    await page.context.clear_cookies()
    return page, authenticator


async def without_autofill(page: Page) -> None:
    """A browser without conditional mediation: else Chromium's virtual authenticator answers the
    autofill request as soon as the (autofocused) username field has focus, before any button."""
    await page.add_init_script("PublicKeyCredential.isConditionalMediationAvailable = async () => false;")


async def who(page: Page, service: PasskeyService) -> Any:
    return await page.evaluate("async (url) => (await fetch(url)).status === 200 ? (await fetch(url)).json() : null",
                               service.url("/api/me"))


async def test_a_passkey_added_on_the_account_page_is_listed_and_held_by_the_authenticator(chromium, passkey_service):
    page = await new_page(chromium)
    authenticator = await virtual_authenticator(page)
    await sign_in_with_password(page, passkey_service)
    await add_passkey(page, passkey_service, "Work laptop")
    item = page.locator("ul.passkeys li.factor")
    assert await item.count() == 1
    assert "Work laptop" in await item.inner_text() and "not used yet" in await item.inner_text()
    held = await authenticator.credentials()
    assert len(held) == 1 and held[0]["isResidentCredential"] and held[0]["rpId"] == "localhost"
    listed = await page.evaluate("async (url) => (await fetch(url)).json()", passkey_service.url("/api/passkeys"))
    assert [p["name"] for p in listed["passkeys"]] == ["Work laptop"]


async def test_the_button_signs_in_with_the_passkey_alone(chromium, passkey_service):
    page, _ = await registered(chromium, passkey_service)
    await without_autofill(page)
    await page.goto(passkey_service.url("/login?next=/account"))
    assert not await page.is_checked("#remember")
    async with page.expect_navigation(url=passkey_service.url("/account")):
        await page.click("#passkey-signin button")
    me = await who(page, passkey_service)
    assert me["name"] == "alice"
    sessions = await page.evaluate("async (url) => (await fetch(url)).json()", passkey_service.url("/api/sessions"))
    current = next(s for s in sessions["sessions"] if s["current"])
    assert current["sign_in"] == "passkey" and current["remembered"] is False  # the checkbox went along
    assert "last used" in await page.locator("ul.passkeys li.factor").inner_text()


async def test_autofill_offers_the_passkey_in_the_username_field(chromium, passkey_service):
    """Conditional mediation: the page asks at once (mediation "conditional"), and Chromium's virtual
    authenticator (automatic presence) picks the passkey from the username field's autofill as soon as
    that field has focus; it is autofocused, so no click is needed (the click makes sure). A person
    would choose it in the dropdown, which headless Chromium does not draw."""
    page, _ = await registered(chromium, passkey_service)
    mediations: list[str] = []
    await page.expose_function("recordMediation", lambda mediation: mediations.append(mediation))
    await page.add_init_script("""(() => {
      const get = navigator.credentials.get.bind(navigator.credentials);
      navigator.credentials.get = (options) => { window.recordMediation(String(options.mediation)); return get(options); };
    })();""")
    async with page.expect_navigation(url=passkey_service.url("/")):
        await page.goto(passkey_service.url("/login"))
        await page.locator("#username").click()
    assert mediations == ["conditional"]  # autofill alone: the button was never pressed
    assert (await who(page, passkey_service))["name"] == "alice"


async def test_a_removed_passkey_no_longer_signs_in(chromium, passkey_service):
    page, _ = await registered(chromium, passkey_service)
    await without_autofill(page)
    await sign_in_with_password(page, passkey_service)
    await page.goto(passkey_service.url("/account"))
    async with page.expect_navigation():
        await page.click("ul.passkeys form button")
    assert page.url == passkey_service.url("/account?done=passkey")
    assert await page.locator("ul.passkeys li.factor").count() == 0
    await page.context.clear_cookies()
    await page.goto(passkey_service.url("/login"))
    await page.click("#passkey-signin button")
    error = page.locator("#passkey-signin [data-passkey-error]")
    await error.wait_for(state="visible")
    assert "could not be used" in await error.inner_text()
    assert await who(page, passkey_service) is None


async def test_the_password_form_still_works_without_javascript(chromium, passkey_service):
    context = await chromium.new_context(java_script_enabled=False)
    page = await context.new_page()
    await page.goto(passkey_service.url("/login"))
    assert not await page.locator("#passkey-signin").is_visible()
    assert await page.get_attribute("#username", "autocomplete") == "username webauthn"
    await sign_in_with_password(page, passkey_service)
    assert page.url == passkey_service.url("/")
