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
from service.web import appkeys
from tests.support.axe import require_axe, violations
from tests.support.metrics import scrape, value
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
        await page.click("ul.passkeys form.remove button")
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


async def sign_in_by_button(page: Page, service: PasskeyService) -> None:
    await page.goto(service.url("/login"))
    async with page.expect_navigation(url=service.url("/")):
        await page.click("#passkey-signin button")
    await page.context.clear_cookies()


async def refused_by_button(page: Page, service: PasskeyService) -> str:
    await page.goto(service.url("/login"))
    await page.click("#passkey-signin button")
    error = page.locator("#passkey-signin [data-passkey-error]")
    await error.wait_for(state="visible")
    assert await who(page, service) is None
    return await error.inner_text()


async def test_a_cloned_authenticator_is_refused_logged_and_counted(chromium, passkey_service, caplog):
    """WebAuthn §6.1.1: a counter that goes back means two authenticators hold one private key."""
    page, original = await registered(chromium, passkey_service)
    await without_autofill(page)
    for _ in range(2):
        await sign_in_by_button(page, passkey_service)
    [credential] = await original.credentials()
    assert credential["signCount"] >= 2
    clone_page = await new_page(chromium)
    await without_autofill(clone_page)
    clone = await virtual_authenticator(clone_page)
    await clone.add({**credential, "signCount": 0})
    caplog.set_level(logging.INFO, logger="service.security")
    assert "could not be used" in await refused_by_button(clone_page, passkey_service)
    regressions = [r for r in caplog.records if getattr(r, "event", None) == "passkey_counter_regression"]
    assert len(regressions) == 1 and regressions[0].user == (await who_is("alice", passkey_service))
    async with aiohttp.ClientSession() as http:
        samples = await scrape(http, passkey_service.url("/metrics"))
    assert value(samples, "session_factor_events_total", factor="passkey", outcome="counter_regression") == 1
    # The original, whose counter is ahead of the stored one, still signs in.
    await sign_in_by_button(page, passkey_service)


async def who_is(name: str, service: PasskeyService) -> str:
    return str((await service.app[appkeys.authenticator].users.by_name(name)).id)


@dataclasses.dataclass
class Verdict:
    status: int
    body: Any


async def assertion_for(page: Page, options: Any) -> Any:
    """The page's authenticator answers ``options`` (obtained from any service) in the page's origin."""
    return await page.evaluate(ASSERT, [options])


async def post_assertion(http: aiohttp.ClientSession, service: PasskeyService, credential: Any) -> Verdict:
    async with http.post(service.url("/login/passkey"), json={"credential": credential}) as response:
        return Verdict(response.status, await response.json())


@pytest.mark.parametrize(("rp_id", "origin_port", "accepted"), [
    ("localhost", "page", True),  # the control: the same steps with the right settings sign in
    ("other.localhost", "page", False),  # an assertion for RP localhost, at a service of another RP ID
    ("localhost", "other", False),  # clientDataJSON names an origin the service does not serve
])
async def test_a_service_of_another_rp_id_or_origin_refuses_the_assertion(
        chromium, passkey_service, aiohttp_server, make_settings, clock, rp_id, origin_port, accepted):
    """A second service on the same Redis (so it knows alice's passkey): it issues the challenge, the
    page on the first service's origin signs it, and the second checks RP ID and origin itself."""
    page, _ = await registered(chromium, passkey_service)
    await without_autofill(page)
    await page.goto(passkey_service.url("/login"))
    port = free_port()
    origin = passkey_service.base if origin_port == "page" else f"http://localhost:{port}"
    # Built past validation on purpose: an RP ID that is not the origin's suffix is an operator mistake
    # that startup refuses, and the check at verification must hold even then.
    base: Settings = make_settings()
    second = dataclasses.replace(base, passkeys=dataclasses.replace(base.passkeys, rp_id=rp_id, origins=origin))
    other = await serve_passkeys(aiohttp_server, make_settings, clock, port=port, settings=second)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(treat_as_secure_origin=[other.base])) as http:
        async with http.post(other.url("/login/passkey/options"), json={}) as response:
            options = await response.json()
        options["rpId"] = "localhost"  # what the page's origin allows; the RP ID hash then differs
        verdict = await post_assertion(http, other, await assertion_for(page, options))
    if accepted:
        assert verdict.status == 200 and verdict.body["user"]["name"] == "alice", verdict
    else:
        assert verdict.status == 401 and verdict.body["error"] == "invalid_credentials", verdict


async def test_a_replayed_assertion_is_refused(chromium, passkey_service):
    """The challenge is single-use: the same signed answer posted twice signs in once."""
    page, _ = await registered(chromium, passkey_service)
    await without_autofill(page)
    await page.goto(passkey_service.url("/login"))
    credential = await page.evaluate(OWN_ASSERTION, [passkey_service.url("/login/passkey/options")])
    first = await page.evaluate(POST_JSON, [passkey_service.url("/login/passkey"), {"credential": credential}])
    assert first["status"] == 200, first
    await page.context.clear_cookies()
    await page.goto(passkey_service.url("/login"))
    again = await page.evaluate(POST_JSON, [passkey_service.url("/login/passkey"), {"credential": credential}])
    assert again["status"] == 401 and again["body"]["error"] == "invalid_credentials", again


async def test_the_confirmation_page_accepts_a_passkey_and_goes_back(chromium, passkey_service, clock):
    """Long after signing in, adding or removing a passkey first asks to confirm it is you, and "Use a
    passkey" on that page does; the same authenticator then cannot add a second passkey for the same
    account (excludeCredentials), and the removal goes through."""
    page, _ = await registered(chromium, passkey_service)
    await without_autofill(page)
    await sign_in_with_password(page, passkey_service)
    clock.advance(passkey_service.settings.sessions.step_up_window + 1)
    await page.goto(passkey_service.url("/account"))
    async with page.expect_navigation(url="**/account/confirm?next=%2Faccount"):
        await page.click("#passkey-add button")
    async with page.expect_navigation(url=passkey_service.url("/account")):
        await page.click("#passkey-confirm button")
    await page.click("#passkey-add button")
    error = page.locator("#passkey-add [data-passkey-error]")
    await error.wait_for(state="visible")
    assert await page.locator("ul.passkeys li.factor").count() == 1
    clock.advance(passkey_service.settings.sessions.step_up_window + 1)
    async with page.expect_navigation(url="**/account/confirm?next=%2Faccount"):
        await page.click("ul.passkeys form.remove button")  # the form, without JavaScript's help
    async with page.expect_navigation(url=passkey_service.url("/account")):
        await page.click("#passkey-confirm button")
    async with page.expect_navigation(url=passkey_service.url("/account?done=passkey")):
        await page.click("ul.passkeys form.remove button")
    assert await page.locator("ul.passkeys li.factor").count() == 0


async def test_a_disabled_user_cannot_sign_in_with_a_passkey(chromium, passkey_service):
    page, _ = await registered(chromium, passkey_service)
    await without_autofill(page)
    await passkey_service.app[appkeys.accounts].disable("alice")
    assert "could not be used" in await refused_by_button(page, passkey_service)


async def test_two_open_ceremonies_each_keep_their_challenge(chromium, passkey_service):
    """Autofill's pending request and a click of the button, or two tabs: the later options do not
    spoil the earlier ones, and each challenge is answered once."""
    page, _ = await registered(chromium, passkey_service)
    await without_autofill(page)
    await page.goto(passkey_service.url("/login"))
    options_url = passkey_service.url("/login/passkey/options")
    first = (await page.evaluate(POST_JSON, [options_url, {}]))["body"]
    second = (await page.evaluate(POST_JSON, [options_url, {}]))["body"]
    assert first["challenge"] != second["challenge"]
    answer = await page.evaluate(ASSERT, [first])
    verdict = await page.evaluate(POST_JSON, [passkey_service.url("/login/passkey"), {"credential": answer}])
    assert verdict["status"] == 200, verdict


async def test_a_passkey_is_renamed_by_its_form_and_by_the_api(chromium, passkey_service):
    page, _ = await registered(chromium, passkey_service)
    await without_autofill(page)
    await sign_in_with_password(page, passkey_service)
    await page.goto(passkey_service.url("/account"))
    await page.fill("ul.passkeys form.rename input[name=name]", "Old laptop")
    async with page.expect_navigation(url=passkey_service.url("/account?done=renamed")):
        await page.click("ul.passkeys form.rename button")
    assert await page.inner_text("ul.passkeys li.factor .device") == "Old laptop"
    [listed] = (await page.evaluate("async (url) => (await fetch(url)).json()",
                                    passkey_service.url("/api/passkeys")))["passkeys"]
    renamed = await page.evaluate("""async ([url, name]) => {
      const token = document.querySelector('meta[name="csrf-token"]').content;
      const response = await fetch(url, {method: 'PATCH', body: JSON.stringify({name}),
                                         headers: {'Content-Type': 'application/json', 'X-CSRF-Token': token}});
      return response.status;
    }""", [passkey_service.url(f"/api/passkeys/{listed['id']}"), "Spare key"])
    assert renamed == 204
    [listed] = (await page.evaluate("async (url) => (await fetch(url)).json()",
                                    passkey_service.url("/api/passkeys")))["passkeys"]
    assert listed["name"] == "Spare key"


async def test_the_passkey_controls_meet_wcag_22_aa(chromium, passkey_service):
    """The pages as they look with passkeys: the button on the login page, the list with its rename and
    remove forms and the add control on the account page, "Use a passkey" on the confirmation page."""
    source = require_axe()
    page, _ = await registered(chromium, passkey_service)
    await without_autofill(page)
    found = {}
    await page.goto(passkey_service.url("/login"))
    await page.locator("#passkey-signin").wait_for(state="visible")
    found["login"] = await violations(page, source)
    await sign_in_with_password(page, passkey_service)
    for path, control in (("/account", "#passkey-add"), ("/account/confirm?next=/account", "#passkey-confirm")):
        await page.goto(passkey_service.url(path))
        await page.locator(control).wait_for(state="visible")
        found[path] = await violations(page, source)
    assert {name: problems for name, problems in found.items() if problems} == {}
