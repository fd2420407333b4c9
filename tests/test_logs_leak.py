"""No token, cookie, CSRF token or password reaches a log line, at DEBUG for every logger, through a
whole flow; and log lines written while a request is handled carry its X-Request-ID."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from service.logs import JsonFormatter, RequestIdFilter
from tests.support.cookies import jar_snapshot, set_cookies, with_value
from tests.support.sign_in import NAVIGATE, PASSWORD, csrf_token, hidden_field, login

GRACE = 10  # sessions.refresh_reuse_grace's default, in seconds
FETCH = {"Sec-Fetch-Mode": "cors", "Accept": "application/json"}
WRONG = "Tr0ub4dor&3-wrong-password"
NEW_PASSWORD = "a brand new long passphrase"
TYPED_AS_NAME = "my-password-typed-into-the-username-field"


class Rendered(logging.Handler):
    """Every record as the service writes it: JSON, with the request id filter of ``logs.configure``."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(JsonFormatter())
        self.addFilter(RequestIdFilter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def rendered(caplog: pytest.LogCaptureFixture) -> Iterator[Rendered]:
    caplog.set_level(logging.DEBUG)
    handler = Rendered()
    root = logging.getLogger()
    root.addHandler(handler)
    yield handler
    root.removeHandler(handler)


class Secrets:
    """Every credential the flow sees: cookie values, CSRF tokens, passwords."""

    def __init__(self) -> None:
        self.values: set[str] = {PASSWORD, WRONG, NEW_PASSWORD, TYPED_AS_NAME}

    def add(self, value: str | None) -> None:
        if value and len(value) >= 8:
            self.values.add(value)
            # the secret parts of a JWT or refresh token (ids are short and logged on purpose)
            self.values.update(part for part in value.split(".") if len(part) >= 32)

    def jar(self, client: Any) -> None:
        for morsel in client.session.cookie_jar:
            self.add(morsel.value)

    def response(self, response: Any) -> Any:
        for morsel in set_cookies(response).values():
            self.add(morsel.value)
        return response


async def test_no_credential_reaches_any_log_line(make_client, make_user, another_client, clock, caplog, rendered):
    seen = Secrets()
    await make_user()
    page = await make_client()
    # sign in through the form, as a browser does
    form = await page.get("/login", headers=NAVIGATE)
    form_token = hidden_field(await form.text(), "csrf")
    seen.add(form_token)
    seen.jar(page)
    seen.response(await page.post("/login", data={"csrf": form_token, "username": "alice", "password": PASSWORD},
                                  headers=NAVIGATE, allow_redirects=False))
    seen.jar(page)
    seen.add(await csrf_token(page))
    # and with JSON, on the same server; a wrong password in both forms
    api = await another_client(page, cookies=[])
    seen.add((await login(api))["csrf_token"])
    seen.jar(api)
    stranger = await another_client(page, cookies=[])
    assert (await stranger.post("/login", json={"username": "alice", "password": WRONG})).status == 401
    stranger_form = hidden_field(await (await stranger.get("/login", headers=NAVIGATE)).text(), "csrf")
    seen.add(stranger_form)
    response = await stranger.post("/login", data={"csrf": stranger_form, "username": "alice", "password": WRONG},
                                   headers=NAVIGATE)
    assert response.status == 401
    # a forged access cookie, refresh, then the old refresh token replayed after the grace window
    access = next(m.value for m in api.session.cookie_jar if m.key.endswith("access"))
    forger = await another_client(api, cookies=with_value(jar_snapshot(api), "access", access[:-6] + "AAAAAA"))
    seen.add(access[:-6] + "AAAAAA")
    assert (await forger.get("/api/me", headers=FETCH)).status == 401
    thief = await another_client(api)
    assert seen.response(await api.post("/auth/refresh", headers=FETCH)).status == 200
    seen.jar(api)
    clock.advance(GRACE + 1)
    assert seen.response(await thief.post("/auth/refresh", headers=FETCH)).status == 401
    # the page's access token expires: the auto-refresh hop
    clock.advance(61)
    assert (await page.get("/", headers=NAVIGATE)).status == 200
    seen.jar(page)
    token = await csrf_token(page)
    seen.add(token)
    # password change, wrong then right; then sign out
    for current in (WRONG, PASSWORD):
        seen.response(await page.post("/api/password", json={"current": current, "new": NEW_PASSWORD},
                                      headers={"X-CSRF-Token": token, **FETCH}))
    seen.jar(page)
    assert (await page.post("/logout", headers={"X-CSRF-Token": token, **FETCH})).status == 204
    # throttling, with a password typed into the username field among the attempts
    for guess in range(6):
        await stranger.post("/login", json={"username": "alice", "password": f"{WRONG}{guess}"})
    await stranger.post("/login", json={"username": TYPED_AS_NAME, "password": WRONG})
    assert (await stranger.post("/login", json={"username": "alice", "password": NEW_PASSWORD})).status == 429
    seen.values.update(f"{WRONG}{guess}" for guess in range(6))

    events = {json.loads(line).get("event") for line in rendered.lines}
    assert {"login", "login_failed", "refresh_reused", "password_changed", "login_throttled"} <= events
    outputs = {"caplog": caplog.text, **{f"record {i}": JsonFormatter().format(record)
                                         for i, record in enumerate(caplog.records)},
               **{f"line {i}": line for i, line in enumerate(rendered.lines)}}
    for where, text in outputs.items():
        for secret in seen.values:
            assert secret not in text, f"a credential ({secret[:6]}…) reached the log ({where}): {text[:300]}"


async def test_log_lines_carry_the_request_id_returned_in_the_header(client, make_user, rendered):
    await make_user()
    response = await client.post("/login", json={"username": "alice", "password": WRONG})
    assert response.status == 401
    request_id = response.headers["X-Request-ID"]
    failed = [json.loads(line) for line in rendered.lines if '"login_failed"' in line]
    assert [entry["request_id"] for entry in failed] == [request_id]


async def test_a_short_safe_incoming_request_id_is_kept(client):
    response = await client.get("/healthz", headers={"X-Request-ID": "nginx-4f2a.9_b"})
    assert response.headers["X-Request-ID"] == "nginx-4f2a.9_b"


@pytest.mark.parametrize("incoming", ["", "has space", "x" * 65, 'quote"d', "new\u2028line", "é"])
async def test_an_unsafe_incoming_request_id_is_replaced(client, incoming):
    response = await client.get("/healthz", headers={"X-Request-ID": incoming})
    returned = response.headers["X-Request-ID"]
    assert returned != incoming and len(returned) == 16


async def test_every_answer_has_a_fresh_request_id(client):
    first, second = await client.get("/healthz"), await client.get("/no/such/page")
    assert second.status == 404
    assert first.headers["X-Request-ID"] != second.headers["X-Request-ID"]
