"""The account page and /api/sessions: a user sees and ends their own sessions and changes the password."""

from __future__ import annotations

import re

from tests.support.sign_in import PASSWORD, login

NAVIGATE = {"Sec-Fetch-Mode": "navigate", "Accept": "text/html"}


async def test_account_page_lists_each_session_with_device_and_marks_this_one(make_client, make_user):
    await make_user()
    laptop, phone = await make_client(), await make_client()
    await login(laptop)
    phone.session.headers["User-Agent"] = "Mozilla/5.0 (Linux; Android 14) Chrome/150.0 Mobile Safari/537.36"
    await login(phone)
    page = await laptop.get("/account", headers=NAVIGATE)
    html = await page.text()
    assert page.status == 200
    assert html.count('<li class="session') == 2
    assert "Chrome on Android" in html and "this session" in html
    assert 'name="csrf"' in html


async def test_api_sessions_lists_own_sessions_only(make_client, make_user):
    await make_user("alice")
    await make_user("bob")
    alice, bob = await make_client(), await make_client()
    await login(alice, "alice")
    await login(bob, "bob")
    sessions = (await (await alice.get("/api/sessions")).json())["sessions"]
    assert len(sessions) == 1 and sessions[0]["current"] is True


async def test_revoking_another_session_signs_that_device_out_at_once(make_client, make_user):
    await make_user()
    laptop, phone = await make_client(), await make_client()
    token = (await login(laptop))["csrf_token"]
    phone_session = (await login(phone))["session"]
    response = await laptop.delete(f"/api/sessions/{phone_session}", headers={"X-CSRF-Token": token})
    assert response.status == 204
    assert (await phone.get("/api/me")).status == 401
    assert (await laptop.get("/api/me")).status == 200


async def test_a_user_cannot_revoke_someone_elses_session(make_client, make_user):
    await make_user("alice")
    await make_user("bob")
    alice, bob = await make_client(), await make_client()
    token = (await login(alice, "alice"))["csrf_token"]
    bob_session = (await login(bob, "bob"))["session"]
    await alice.delete(f"/api/sessions/{bob_session}", headers={"X-CSRF-Token": token})
    assert (await bob.get("/api/me")).status == 200


async def test_sign_out_everywhere_ends_every_session_including_this_one(make_client, make_user):
    await make_user()
    laptop, phone = await make_client(), await make_client()
    token = (await login(laptop))["csrf_token"]
    await login(phone)
    response = await laptop.post("/account/sessions/revoke-all", data={"csrf": token}, headers=NAVIGATE,
                                 allow_redirects=False)
    assert response.status == 303 and response.headers["Location"] == "/login"
    assert (await phone.get("/api/me")).status == 401
    assert (await laptop.get("/api/me")).status == 401


async def test_password_change_needs_the_current_password_and_keeps_only_this_session(make_client, make_user):
    await make_user()
    laptop, phone = await make_client(), await make_client()
    token = (await login(laptop))["csrf_token"]
    await login(phone)
    wrong = await laptop.post("/api/password", json={"current": "nope", "new": "a new long password"},
                              headers={"X-CSRF-Token": token})
    assert wrong.status == 400
    assert (await phone.get("/api/me")).status == 200
    right = await laptop.post("/api/password", json={"current": PASSWORD, "new": "a new long password"},
                              headers={"X-CSRF-Token": token})
    assert right.status == 204
    assert (await laptop.get("/api/me")).status == 200
    assert (await phone.get("/api/me")).status == 401
    fresh = await make_client()
    assert (await fresh.post("/login", json={"username": "alice", "password": PASSWORD})).status == 401
    await login(fresh, "alice", "a new long password")


async def test_too_short_new_password_is_refused_and_nothing_changes(make_client, make_user):
    await make_user()
    laptop = await make_client()
    token = (await login(laptop))["csrf_token"]
    response = await laptop.post("/api/password", json={"current": PASSWORD, "new": "short"},
                                 headers={"X-CSRF-Token": token})
    assert response.status == 400
    await login(await make_client())


async def test_account_page_needs_a_signed_in_user(client):
    response = await client.get("/account", headers=NAVIGATE, allow_redirects=False)
    assert response.status == 303
    assert response.headers["Location"] == "/login?next=%2Faccount"


async def test_guessing_the_current_password_is_throttled_like_logins(make_client, make_settings, make_user):
    settings = make_settings(throttle={"per_user": 3})
    await make_user(of=settings)
    laptop = await make_client(of=settings)
    token = (await login(laptop))["csrf_token"]
    statuses = []
    for guess in range(5):
        response = await laptop.post("/api/password", json={"current": f"guess {guess}", "new": "a new long password"},
                                     headers={"X-CSRF-Token": token})
        statuses.append(response.status)
    assert statuses == [400, 400, 400, 429, 429]
    assert (await (await make_client(of=settings)).post(
        "/login", json={"username": "alice", "password": PASSWORD})).status == 429


async def test_each_sign_out_button_names_its_device(make_client, make_user):
    await make_user()
    laptop, phone = await make_client(), await make_client()
    await login(laptop)
    phone.session.headers["User-Agent"] = "Mozilla/5.0 (Linux; Android 14) Chrome/150.0 Mobile Safari/537.36"
    await login(phone)
    html = await (await laptop.get("/account", headers=NAVIGATE)).text()
    buttons = re.findall(r'<button type="submit"[^>]*>([^<]+)</button>', html)
    assert "Sign out this device" in buttons
    assert "Sign out Chrome on Android (127.0.0.1)" in buttons
    assert len(buttons) == len(set(buttons))  # no two buttons of the page share a name


async def test_times_are_utc_text_in_machine_readable_time_elements(make_client, make_user):
    await make_user()
    laptop = await make_client()
    await login(laptop)
    html = await (await laptop.get("/account", headers=NAVIGATE)).text()
    times = re.findall(r'<time data-local datetime="(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)">([^<]+)</time>', html)
    assert len(times) == 2 and all(text.endswith(" UTC") and text[:16] == iso[:16].replace("T", " ")
                                   for iso, text in times)
    assert re.search(r'<script src="/static/local-time.js" defer></script>', html)


async def test_the_password_form_states_the_minimum_and_asks_twice(make_settings, make_client, make_user):
    settings = make_settings(passwords={"min_length": "12"})
    await make_user(of=settings)
    laptop = await make_client(of=settings)
    await login(laptop)
    html = await (await laptop.get("/account", headers=NAVIGATE)).text()
    assert "At least 12 characters." in html
    assert len(re.findall(r'<input id="(?:new|confirm)" name="(?:new|confirm)" type="password" '
                          r'autocomplete="new-password" minlength="12"', html)) == 2


async def test_a_confirmation_that_differs_changes_nothing(make_client, make_user):
    await make_user()
    laptop = await make_client()
    token = (await login(laptop))["csrf_token"]
    response = await laptop.post("/account/password", headers={"X-CSRF-Token": token, **NAVIGATE},
                                 data={"current": PASSWORD, "new": "a new long password", "confirm": "a new long pasword",
                                       "csrf": token}, allow_redirects=False)
    assert response.status == 400
    assert "differ" in await response.text()
    fresh = await make_client()
    await login(fresh)  # the old password still signs in
