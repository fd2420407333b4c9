"""Attacks on the passkey endpoints: another user's passkey used for a step-up, telling an unknown
credential from a bad signature, CSRF on every passkey route, and malformed WebAuthn JSON (never a 5xx).
Real Redis throughout; the signatures come from Chromium's virtual authenticator, never a mock."""

from __future__ import annotations

import base64
import json
import logging
import secrets
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings as hypothesis_settings, strategies as st
from playwright.async_api import Browser, Page

from tests.support.browser import launched_chromium
from tests.support.sign_in import PASSWORD, csrf_token, login, login_token
from tests.support.webauthn import ASSERT, POST_JSON, PasskeyService, serve_passkeys, virtual_authenticator

EVIL = "https://evil.example"


@pytest.fixture
async def attack_browser() -> AsyncIterator[Browser]:
    async with launched_chromium() as browser:
        yield browser


@pytest.fixture
async def two_users(aiohttp_server, make_settings, clock, make_user) -> PasskeyService:
    service = await serve_passkeys(aiohttp_server, make_settings, clock)
    await make_user("alice")
    await make_user("mallory")
    return service


async def with_passkey(attack_browser: Browser, service: PasskeyService, name: str) -> Page:
    """A page signed in as ``name`` whose virtual authenticator holds ``name``'s new passkey."""
    context = await attack_browser.new_context()
    context.set_default_timeout(10_000)
    page = await context.new_page()
    await page.add_init_script("PublicKeyCredential.isConditionalMediationAvailable = async () => false;")
    await virtual_authenticator(page)
    await page.goto(service.url("/login"))
    await page.fill("#username", name)
    await page.fill("#password", PASSWORD)
    async with page.expect_navigation():
        await page.click("form button[type=submit]")
    await page.goto(service.url("/account"))
    async with page.expect_navigation(url=service.url("/account")):
        await page.click("#passkey-add button")
    return page


async def post(page: Page, url: str, body: Any) -> dict[str, Any]:
    return await page.evaluate(POST_JSON, [url, body])  # type: ignore[no-any-return]


async def test_mallorys_passkey_cannot_confirm_alices_step_up(attack_browser, two_users, caplog):
    """Alice's step-up challenge, signed by mallory's authenticator (discoverable: no allowCredentials),
    posted in alice's session: refused, and alice's auth time does not move."""
    alice = await with_passkey(attack_browser, two_users, "alice")
    mallory = await with_passkey(attack_browser, two_users, "mallory")
    await alice.goto(two_users.url("/account"))
    options = (await post(alice, two_users.url("/account/confirm/passkey/options"), {}))["body"]
    assert len(options["allowCredentials"]) == 1  # alice's own passkey only
    await mallory.goto(two_users.url("/account"))
    signed = await mallory.evaluate(ASSERT, [{**options, "allowCredentials": []}])
    caplog.set_level(logging.INFO, logger="service.security")
    verdict = await post(alice, two_users.url("/account/confirm/passkey"), {"credential": signed})
    assert verdict["status"] == 400 and verdict["body"]["error"] == "invalid_input", verdict
    assert not [r for r in caplog.records if getattr(r, "event", None) == "step_up"]
    # Alice's own passkey, for a fresh challenge, does confirm.
    options = (await post(alice, two_users.url("/account/confirm/passkey/options"), {}))["body"]
    own = await alice.evaluate(ASSERT, [options])
    assert (await post(alice, two_users.url("/account/confirm/passkey"), {"credential": own}))["status"] == 200


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


async def test_an_unknown_credential_and_a_bad_signature_get_the_same_answer(attack_browser, two_users):
    """No enumeration: whether the id is registered or the signature is wrong, the answer is the same."""
    page = await with_passkey(attack_browser, two_users, "alice")
    await page.context.clear_cookies()
    await page.goto(two_users.url("/login"))
    answers = []
    for tamper in ("unknown credential", "bad signature", "another user handle"):
        options = (await post(page, two_users.url("/login/passkey/options"), {}))["body"]
        credential = await page.evaluate(ASSERT, [options])
        if tamper == "unknown credential":
            credential["id"] = credential["rawId"] = _b64(secrets.token_bytes(32))
        elif tamper == "bad signature":
            signature = bytearray(base64.urlsafe_b64decode(credential["response"]["signature"] + "=="))
            signature[-1] ^= 1
            credential["response"]["signature"] = _b64(bytes(signature))
        else:
            credential["response"]["userHandle"] = _b64(b"someone-else")
        verdict = await post(page, two_users.url("/login/passkey"), {"credential": credential})
        answers.append((verdict["status"], verdict["body"]))
    assert answers[0][0] == 401 and answers[0][1]["error"] == "invalid_credentials"
    assert answers[0] == answers[1] == answers[2]


# Every passkey route that changes something; "{id}" is filled with a credential id of the right form.
SIGNED_IN_ROUTES = [("POST", "/account/passkeys/options"), ("POST", "/account/passkeys"),
                    ("POST", "/account/passkeys/{id}/remove"), ("DELETE", "/api/passkeys/{id}"),
                    ("POST", "/account/passkeys/{id}/rename"), ("PATCH", "/api/passkeys/{id}"),
                    ("POST", "/account/confirm/passkey/options"), ("POST", "/account/confirm/passkey")]
LOGIN_ROUTES = [("POST", "/login/passkey/options"), ("POST", "/login/passkey")]
CREDENTIAL_ID = _b64(b"x" * 32)


@pytest.fixture
async def signed_in_alice(client, make_user):
    await make_user("alice")
    signed = await login(client)
    return signed


@pytest.mark.parametrize(("method", "path"), SIGNED_IN_ROUTES + LOGIN_ROUTES)
@pytest.mark.parametrize("signal", [{"Origin": EVIL}, {"Sec-Fetch-Site": "cross-site"}, {"Origin": "null"}])
async def test_a_cross_site_request_to_a_passkey_route_is_refused(client, signed_in_alice, method, path, signal):
    """With the victim's right token: only Origin / Sec-Fetch-Site can stop it."""
    headers = {**signal, "X-CSRF-Token": signed_in_alice["csrf_token"], "Accept": "application/json"}
    response = await client.request(method, path.format(id=CREDENTIAL_ID), json={}, headers=headers)
    assert response.status == 403 and (await response.json())["error"] == "csrf"


@pytest.mark.parametrize(("method", "path"), SIGNED_IN_ROUTES)
@pytest.mark.parametrize("token", [None, "wrong"])
async def test_a_signed_in_passkey_route_needs_the_sessions_token(client, signed_in_alice, method, path, token):
    headers = {"Accept": "application/json", **({"X-CSRF-Token": token} if token else {})}
    response = await client.request(method, path.format(id=CREDENTIAL_ID), json={}, headers=headers)
    assert response.status == 403 and (await response.json())["error"] == "csrf"


@pytest.mark.parametrize(("method", "path"), LOGIN_ROUTES)
@pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded", "text/plain", "multipart/form-data"])
async def test_a_passkey_sign_in_is_json_only(client, make_user, method, path, content_type):
    """A form or text/plain POST is what another site can send without a preflight: refused, even with
    the login form's right token."""
    await make_user("alice")
    token = await login_token(client)
    response = await client.request(method, path, data=f"csrf={token}", headers={
        "Content-Type": content_type, "Accept": "application/json"})
    assert response.status == 403


async def test_the_passkey_routes_answer_their_own_page_with_the_right_token(client, signed_in_alice):
    headers = {"X-CSRF-Token": signed_in_alice["csrf_token"], "Accept": "application/json"}
    response = await client.post("/account/passkeys/options", json={}, headers=headers)
    assert response.status == 200 and (await response.json())["authenticatorSelection"]["residentKey"] == "required"
    response = await client.get("/api/passkeys")
    assert response.status == 200 and await response.json() == {"passkeys": []}
    response = await client.post("/account/confirm/passkey/options", json={}, headers=headers)
    assert response.status == 400  # no passkey yet


BAD_CREDENTIALS: list[Any] = [
    None, 1, "x", [], {}, {"id": 1}, {"id": "", "rawId": ""}, {"id": CREDENTIAL_ID},
    {"id": CREDENTIAL_ID, "rawId": CREDENTIAL_ID, "type": "public-key", "response": {}},
    {"id": CREDENTIAL_ID, "rawId": CREDENTIAL_ID, "type": "public-key",
     "response": {"clientDataJSON": "!!!", "authenticatorData": "%%", "signature": "", "userHandle": 5}},
    {"id": CREDENTIAL_ID, "rawId": CREDENTIAL_ID, "type": "public-key",
     "response": {"clientDataJSON": _b64(b"{not json"), "attestationObject": _b64(b"\xff\x00"), "transports": "usb"}},
    {"id": CREDENTIAL_ID, "rawId": CREDENTIAL_ID, "type": "public-key",
     "response": {"clientDataJSON": _b64(json.dumps({"type": "webauthn.create", "challenge": "AA",
                                                     "origin": "http://localhost"}).encode()),
                  "attestationObject": _b64(b"\xa3cfmtdnone"), "transports": ["usb", 7]}},
    {"id": "A" * 5000, "rawId": "A" * 5000, "type": "public-key", "response": {"clientDataJSON": "A" * 5000}},
]
RAW_BODIES = [b"", b"{", b"[]", b"null", b'"credential"', b'{"credential": "\\ud800"}', b"\xff\xfe",
              b'{"credential": {"id": "\\ud800"}}', b"[" * 5000 + b"]" * 5000, b'{"name": 5, "credential": {}}']
MALFORMED_ROUTES = ["/login/passkey", "/account/passkeys", "/account/confirm/passkey"]


@pytest.mark.parametrize("path", MALFORMED_ROUTES)
async def test_malformed_webauthn_json_is_a_4xx_never_a_5xx(client, signed_in_alice, path, caplog):
    headers = {"X-CSRF-Token": signed_in_alice["csrf_token"], "Accept": "application/json", "Content-Type": "application/json"}
    await client.post(path + "/options", json={}, headers=headers)  # a live challenge to verify against
    bodies = [json.dumps({"credential": credential, "name": "n"}).encode() for credential in BAD_CREDENTIALS]
    for body in bodies + RAW_BODIES:
        response = await client.post(path, data=body, headers=headers)
        assert 400 <= response.status < 500, (path, body[:80], response.status)
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=30),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                                        max_size=4), max_leaves=12)
CREDENTIAL_KEYS = st.sampled_from(["id", "rawId", "type", "response", "authenticatorAttachment",
                                   "clientExtensionResults"])
RESPONSE = st.dictionaries(st.sampled_from(["clientDataJSON", "authenticatorData", "signature", "userHandle",
                                            "attestationObject", "transports"]),
                           st.one_of(st.text(alphabet="ABCabc-_0189", max_size=40), JSON_VALUES), max_size=6)
CREDENTIALS = st.fixed_dictionaries({"id": st.just(CREDENTIAL_ID), "rawId": st.just(CREDENTIAL_ID),
                                     "type": st.just("public-key"), "response": RESPONSE}) | st.dictionaries(
    CREDENTIAL_KEYS, JSON_VALUES, max_size=6)


@given(credential=CREDENTIALS)
@hypothesis_settings(max_examples=60, derandomize=True, deadline=None, database=None,
                     suppress_health_check=[HealthCheck.function_scoped_fixture])
async def test_no_credential_shape_gets_a_5xx(client, signed_in_alice, credential):
    headers = {"X-CSRF-Token": signed_in_alice["csrf_token"], "Accept": "application/json"}
    for path in MALFORMED_ROUTES:
        response = await client.post(path, json={"credential": credential}, headers=headers)
        assert 400 <= response.status < 500, (path, credential, response.status)
