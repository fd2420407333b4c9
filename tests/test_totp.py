"""TOTP as a second factor, on a settable clock: enrolment, the two-step sign-in, replays, recovery codes,
throttling and turning it off."""

from __future__ import annotations

import pyotp

from tests.support.cookies import cookie
from tests.support.metrics import scrape, value
from tests.support.sign_in import NAVIGATE, PASSWORD, csrf_token, hidden_field, login, login_token
from tests.support.totp import JSON, enrol, password_step


async def test_enrolment_shows_ten_recovery_codes_once_and_turns_the_second_step_on(client, make_user, clock):
    await make_user()
    await login(client)
    app = await enrol(client, clock)
    assert len(app.recovery_codes) == 10 and len(set(app.recovery_codes)) == 10
    page = await (await client.get("/account", headers=NAVIGATE)).text()
    assert "Turn off two-step sign-in" in page and 'id="recovery-left">10<' in page
    assert app.recovery_codes[0] not in page  # shown once, stored only as HMACs
    again = await client.post("/api/totp/setup", headers={**JSON, "X-CSRF-Token": await csrf_token(client)})
    assert again.status == 400  # on already: no second secret


async def test_a_wrong_first_code_does_not_turn_it_on(client, make_user, clock):
    await make_user()
    await login(client)
    headers = {**JSON, "X-CSRF-Token": await csrf_token(client)}
    secret = (await (await client.post("/api/totp/setup", headers=headers)).json())["secret"]
    wrong = pyotp.TOTP(secret).at(clock() + 300)
    assert (await client.post("/api/totp", json={"code": wrong}, headers=headers)).status == 400
    assert (await client.post("/login", json={"username": "alice", "password": PASSWORD})).status == 200


async def test_the_password_alone_starts_no_session_and_the_code_does(client, make_user, clock, another_client):
    await make_user()
    await login(client)
    app = await enrol(client, clock)
    fresh = await another_client(client, cookies=[])
    pending = await password_step(fresh)
    assert cookie(fresh, "access") is None
    response = await fresh.post("/login/code", json={"pending": pending, "code": app.next_code()})
    assert response.status == 200, await response.text()
    assert cookie(fresh, "access")
    sessions = (await (await fresh.get("/api/sessions", headers=JSON)).json())["sessions"]
    assert {s["sign_in"] for s in sessions if s["current"]} == {"password+totp"}


async def test_a_code_is_never_accepted_twice(client, make_user, clock, another_client):
    """RFC 6238 §5.2: the code used to enrol, then the one used to sign in, are spent for good."""
    await make_user()
    await login(client)
    app = await enrol(client, clock)
    used = app.code()
    fresh = await another_client(client, cookies=[])
    pending = await password_step(fresh)
    replay = await fresh.post("/login/code", json={"pending": pending, "code": used})
    assert replay.status == 401
    code = app.next_code()
    assert (await fresh.post("/login/code", json={"pending": pending, "code": code})).status == 200
    other = await another_client(client, cookies=[])
    second = await password_step(other)
    assert (await other.post("/login/code", json={"pending": second, "code": code})).status == 401


async def test_wrong_code_and_unknown_pending_sign_in_get_the_same_answer(client, make_user, clock, another_client):
    await make_user()
    await login(client)
    app = await enrol(client, clock)
    fresh = await another_client(client, cookies=[])
    pending = await password_step(fresh)
    wrong = await fresh.post("/login/code", json={"pending": pending, "code": "000000" if app.code() != "000000" else "111111"})
    unknown = await fresh.post("/login/code", json={"pending": "x" * 43, "code": app.next_code()})
    assert wrong.status == unknown.status == 401
    assert await wrong.json() == await unknown.json()


async def test_a_pending_sign_in_allows_five_codes_then_is_gone(client, make_user, clock, another_client, make_settings):
    await make_user()
    await login(client)
    app = await enrol(client, clock)
    fresh = await another_client(client, cookies=[])
    pending = await password_step(fresh)
    for guess in range(5):
        response = await fresh.post("/login/code", json={"pending": pending, "code": f"{guess:06d}"})
        assert response.status in (401, 429)
    late = await fresh.post("/login/code", json={"pending": pending, "code": app.next_code()})
    assert late.status in (401, 429)
    assert cookie(fresh, "access") is None


async def test_code_guesses_are_throttled_like_passwords(make_client, make_settings, make_user, clock, another_client):
    client = await make_client(of=make_settings(throttle={"per_user": 3}))
    await make_user()
    await login(client)
    app = await enrol(client, clock)
    fresh = await another_client(client, cookies=[])
    statuses = []
    for guess in range(3):
        pending = await password_step(fresh)
        statuses.append((await fresh.post("/login/code", json={"pending": pending, "code": f"{guess:06d}"})).status)
    assert statuses == [401, 401, 401]
    refused = await fresh.post("/login", json={"username": "alice", "password": PASSWORD})
    assert refused.status == 429 and "Retry-After" in refused.headers
    assert app.code()  # the right code never got a chance: the window is full


async def test_the_pending_sign_in_is_bound_to_the_browser_that_typed_the_password(client, make_user, clock,
                                                                                    another_client):
    await make_user()
    await login(client)
    app = await enrol(client, clock)
    victim = await another_client(client, cookies=[])
    csrf = await login_token(victim)
    page = await victim.post("/login", data={"csrf": csrf, "username": "alice", "password": PASSWORD},
                             headers=NAVIGATE)
    assert page.status == 200
    html = await page.text()
    pending = hidden_field(html, "pending")
    assert pending and 'autocomplete="one-time-code"' in html
    thief = await another_client(client, cookies=[])
    thief_csrf = await login_token(thief)
    stolen = await thief.post("/login/code", data={"csrf": thief_csrf, "pending": pending, "code": app.next_code()},
                              headers=NAVIGATE)
    assert stolen.status == 401 and cookie(thief, "access") is None
    code = app.next_code()
    done = await victim.post("/login/code", data={"csrf": hidden_field(html, "csrf"), "pending": pending,
                                                  "code": code, "next": "/account"},
                             headers=NAVIGATE, allow_redirects=False)
    assert done.status == 303 and done.headers["Location"] == "/account"
    assert cookie(victim, "access")


async def test_each_recovery_code_signs_in_once(client, make_user, clock, another_client):
    await make_user()
    await login(client)
    app = await enrol(client, clock)
    fresh = await another_client(client, cookies=[])
    code = app.recovery_codes[3]
    pending = await password_step(fresh)
    assert (await fresh.post("/login/code", json={"pending": pending, "code": code.upper()})).status == 200
    sessions = (await (await fresh.get("/api/sessions", headers=JSON)).json())["sessions"]
    assert {s["sign_in"] for s in sessions if s["current"]} == {"password+recovery"}
    other = await another_client(client, cookies=[])
    again = await password_step(other)
    assert (await other.post("/login/code", json={"pending": again, "code": code})).status == 401
    page = await (await client.get("/account", headers=NAVIGATE)).text()
    assert 'id="recovery-left">9<' in page


async def test_new_recovery_codes_replace_the_old(client, make_user, clock, another_client):
    await make_user()
    await login(client)
    app = await enrol(client, clock)
    headers = {**JSON, "X-CSRF-Token": await csrf_token(client)}
    fresh_codes = (await (await client.post("/api/recovery-codes", headers=headers)).json())["recovery_codes"]
    other = await another_client(client, cookies=[])
    pending = await password_step(other)
    assert (await other.post("/login/code", json={"pending": pending, "code": app.recovery_codes[0]})).status == 401
    assert (await other.post("/login/code", json={"pending": pending, "code": fresh_codes[0]})).status == 200


async def test_turning_it_off_needs_a_code(client, make_user, clock, another_client):
    await make_user()
    await login(client)
    app = await enrol(client, clock)
    headers = {**JSON, "X-CSRF-Token": await csrf_token(client)}
    assert (await client.post("/api/totp/disable", json={"code": "12345"}, headers=headers)).status == 400
    assert (await client.post("/api/totp/disable", json={"code": app.next_code()}, headers=headers)).status == 204
    fresh = await another_client(client, cookies=[])
    assert (await fresh.post("/login", json={"username": "alice", "password": PASSWORD})).status == 200


async def test_each_factor_event_is_counted(client, make_user, clock, another_client):
    await make_user()
    await login(client)
    app = await enrol(client, clock)
    fresh = await another_client(client, cookies=[])
    used = app.code()
    pending = await password_step(fresh)
    await fresh.post("/login/code", json={"pending": pending, "code": used})  # a replay
    await fresh.post("/login/code", json={"pending": pending, "code": app.recovery_codes[0]})
    samples = await scrape(client)
    counted = {outcome: value(samples, "session_factor_events_total", factor=factor, outcome=outcome)
               for factor, outcome in (("totp", "enrolled"), ("totp", "replay"), ("totp", "failure"),
                                       ("recovery", "success"), ("recovery", "generated"))}
    assert counted == {"enrolled": 1, "replay": 1, "failure": 1, "success": 1, "generated": 1}
