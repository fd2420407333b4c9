"""Step-up ("sudo mode") on a settable clock: sensitive changes need an authentication within
sessions.step_up_window; a refresh never counts as one, confirming it is you does."""

from __future__ import annotations

import jwt
import pytest

from service.core.access_tokens import TokenCodec
from tests.support.sign_in import NAVIGATE, PASSWORD, csrf_token, hidden_field, login
from tests.support.cookies import cookie
from tests.support.totp import JSON, enrol

WINDOW = 600  # the default sessions.step_up_window


def auth_time(client) -> int:
    """The access cookie's auth_time claim, read without verifying (the test owns the token)."""
    return int(jwt.decode(cookie(client, "access"), options={"verify_signature": False})["auth_time"])


async def change_password(client, new: str = "a whole new passphrase"):
    return await client.post("/api/password", json={"current": PASSWORD, "new": new},
                             headers={**JSON, "X-CSRF-Token": await csrf_token(client)})


async def test_a_fresh_sign_in_may_change_the_password(client, make_user):
    await make_user()
    await login(client)
    assert (await change_password(client)).status == 204


async def test_after_the_window_the_change_asks_to_confirm_and_changes_nothing(client, make_user, clock):
    await make_user()
    await login(client)
    clock.advance(WINDOW + 1)
    response = await change_password(client)  # the access token expired meanwhile: the hop refreshes it
    assert response.status == 403
    body = await response.json()
    assert body["error"] == "step_up_required" and body["confirm"] == "/account/confirm?next=%2Faccount"
    fresh = await client.post("/login", json={"username": "alice", "password": PASSWORD})
    assert fresh.status == 200  # the old password still works


async def test_a_refresh_never_moves_auth_time(client, make_user, clock, settings):
    await make_user()
    await login(client)
    signed_in = auth_time(client)
    for _ in range(3):
        clock.advance(WINDOW / 2)
        assert (await client.post("/auth/refresh", headers=JSON)).status == 200
        assert auth_time(client) == signed_in
    assert (await change_password(client)).status == 403


async def test_confirming_with_the_password_moves_auth_time_and_allows_the_change(client, make_user, clock, settings):
    await make_user()
    await login(client)
    clock.advance(WINDOW + 1)
    assert (await client.post("/auth/refresh", headers=JSON)).status == 200
    token = await csrf_token(client)
    wrong = await client.post("/api/step-up", json={"password": "not it"}, headers={**JSON, "X-CSRF-Token": token})
    assert wrong.status == 400
    confirmed = await client.post("/api/step-up", json={"password": PASSWORD}, headers={**JSON, "X-CSRF-Token": token})
    assert confirmed.status == 200
    assert (await confirmed.json())["auth_time"] == int(clock()) == auth_time(client)
    assert (await change_password(client)).status == 204
    clock.advance(WINDOW + 1)  # and the step-up lasts only the window, across refreshes too
    assert (await change_password(client, "yet another passphrase")).status == 403


async def test_the_confirmation_page_returns_the_browser_to_the_action(client, make_user, clock):
    await make_user()
    await login(client)
    clock.advance(WINDOW + 1)
    token = await csrf_token(client)
    form = await client.post("/account/password", data={"csrf": token, "current": PASSWORD, "new": "x" * 20,
                                                         "confirm": "x" * 20}, headers=NAVIGATE, allow_redirects=False)
    assert form.status == 303 and form.headers["Location"] == "/account/confirm?next=%2Faccount"
    page = await client.get(form.headers["Location"], headers=NAVIGATE)
    assert page.status == 200
    html = await page.text()
    assert hidden_field(html, "next") == "/account" and 'autocomplete="current-password"' in html
    assert "Continue with a code" not in html  # no TOTP: the password only
    done = await client.post("/account/confirm", data={"csrf": token, "password": PASSWORD, "next": "/account"},
                             headers=NAVIGATE, allow_redirects=False)
    assert done.status == 303 and done.headers["Location"] == "/account"
    again = await client.post("/account/password", data={"csrf": token, "current": PASSWORD, "new": "x" * 20,
                                                          "confirm": "x" * 20}, headers=NAVIGATE, allow_redirects=False)
    assert again.status == 303 and again.headers["Location"] == "/account?done=password"


async def test_a_wrong_password_on_the_confirmation_page_shows_it_again(client, make_user, clock):
    await make_user()
    await login(client)
    clock.advance(WINDOW + 1)
    token = await csrf_token(client)
    wrong = await client.post("/account/confirm", data={"csrf": token, "password": "nope", "next": "/account"},
                              headers=NAVIGATE)
    assert wrong.status == 400
    html = await wrong.text()
    assert "That password is not correct." in html and hidden_field(html, "next") == "/account"


async def test_a_totp_code_confirms_too(client, make_user, clock, settings):
    await make_user()
    await login(client)
    app = await enrol(client, clock)
    clock.advance(WINDOW + 1)
    token = await csrf_token(client)
    page = await (await client.get("/account/confirm", headers=NAVIGATE)).text()
    assert "Continue with a code" in page
    confirmed = await client.post("/api/step-up", json={"code": app.code()}, headers={**JSON, "X-CSRF-Token": token})
    assert confirmed.status == 200
    assert (await change_password(client)).status == 204


@pytest.mark.parametrize("path", ["/api/totp/setup", "/api/recovery-codes", "/api/totp/disable"])
async def test_every_second_factor_change_needs_a_recent_authentication(client, make_user, clock, path):
    await make_user()
    await login(client)
    if path != "/api/totp/setup":
        await enrol(client, clock)
    clock.advance(WINDOW + 1)
    response = await client.post(path, json={"code": "000000"}, headers={**JSON, "X-CSRF-Token": await csrf_token(client)})
    assert response.status == 403 and (await response.json())["error"] == "step_up_required"


def test_codec_carries_auth_time(settings, clock):
    from service.core import keyring
    ring = keyring.load_or_create(settings.storage.data_dir / "keys", settings.tokens.algorithm)
    codec = TokenCodec(settings.tokens, ring, clock)
    claims = codec.mint(user_id="u", session_id="s", username="a", not_after=clock() + 60, auth_time=clock() - 50)
    assert codec.verify(codec.encode(claims)).auth_time == int(clock() - 50)
