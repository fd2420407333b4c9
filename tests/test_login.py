"""Signing in: the form, JSON, safe ``next``, generic failures, bad bodies, and what a new sign-in ends."""

from __future__ import annotations

import re

import pytest

from tests.support.cookies import cookie, jar_snapshot, set_cookies
from tests.support.sign_in import PASSWORD, form_login, login

NAVIGATE = {"Sec-Fetch-Mode": "navigate", "Accept": "text/html,application/xhtml+xml"}


def form_fields(html: str) -> dict[str, str]:
    """name → value of every input in the page (value empty when absent)."""
    fields = {}
    for tag in re.findall(r"<input\b[^>]*>", html):
        name = re.search(r'\bname="([^"]*)"', tag)
        value = re.search(r'\bvalue="([^"]*)"', tag)
        if name:
            fields[name.group(1)] = value.group(1) if value else ""
    return fields


async def test_json_login_sets_both_cookies_and_answers_the_user(client, make_user):
    await make_user("Alice")
    body = await login(client, "alice")
    assert body["user"]["name"] == "Alice"
    assert cookie(client, "access") and cookie(client, "refresh")
    me = await client.get("/api/me")
    assert me.status == 200
    assert (await me.json())["name"] == "Alice"


async def test_wrong_password_is_401_with_no_cookies(client, make_user):
    await make_user()
    response = await client.post("/login", json={"username": "alice", "password": PASSWORD + "x"})
    assert response.status == 401
    assert "Set-Cookie" not in response.headers


# --- the form ---

async def test_login_page_renders_a_form_with_username_password_and_next(client):
    response = await client.get("/login?next=/account", headers=NAVIGATE)
    assert response.status == 200
    assert response.content_type == "text/html"
    html = await response.text()
    assert re.search(r'<form\b[^>]*method="post"[^>]*action="/login"', html)
    fields = form_fields(html)
    assert {"username", "password", "next", "csrf"} <= fields.keys()
    assert fields["next"] == "/account"
    assert fields["csrf"]  # bound to the pre-session cookie this response sets (login CSRF)
    assert re.search(r'<input\b[^>]*name="password"[^>]*type="password"', html)


@pytest.mark.parametrize("evil", ["//evil.example", "https://evil.example", "/\\evil"])
async def test_login_page_does_not_carry_an_offsite_next(client, evil):
    response = await client.get("/login", params={"next": evil}, headers=NAVIGATE)
    assert response.status == 200
    assert form_fields(await response.text())["next"] == "/"


@pytest.mark.parametrize("target", ["/api/me?pretty=1", "/account", "/docs/My%20File.pdf",
                                    "/search?q=a%20b&lang=en", "/page?back=%2F%2Fstill-a-query"])
async def test_form_login_redirects_303_to_a_safe_next(client, make_user, target):
    await make_user()
    response = await form_login(client, next=target, headers=NAVIGATE)
    assert response.status == 303
    assert response.headers["Location"] == target
    assert cookie(client, "access") and cookie(client, "refresh")


async def test_form_login_without_next_goes_home(client, make_user):
    await make_user()
    response = await form_login(client, headers=NAVIGATE)
    assert response.status == 303
    assert response.headers["Location"] == "/"


@pytest.mark.parametrize("evil", [
    "//evil.example", "https://evil.example", "/\\evil", "\\\\evil.example", "/%2F%2Fevil.example",
    "/%5Cevil.example", "javascript:alert(1)", "/\t/evil.example", "/ /evil.example", "evil.example",
    "/\r\nSet-Cookie: a=b",
])
async def test_open_redirect_next_falls_back_home(client, make_user, evil):
    await make_user()
    response = await form_login(client, next=evil, headers=NAVIGATE)
    assert response.status == 303
    assert response.headers["Location"] == "/"


async def test_form_login_then_following_the_redirect_shows_the_signed_in_page(client, make_user):
    await make_user("Alice")
    response = await form_login(client, next="/", headers=NAVIGATE, allow_redirects=True)
    assert response.status == 200
    assert [r.status for r in response.history] == [303]
    assert "Signed in as" in await response.text() and "Alice" in await response.text()


async def test_login_page_when_already_signed_in_redirects_303_to_next(client, make_user):
    await make_user()
    await login(client)
    response = await client.get("/login?next=/api/me", headers=NAVIGATE, allow_redirects=False)
    assert response.status == 303
    assert response.headers["Location"] == "/api/me"


async def test_login_page_when_already_signed_in_never_redirects_offsite(client, make_user):
    await make_user()
    await login(client)
    response = await client.get("/login", params={"next": "//evil.example"}, headers=NAVIGATE,
                                allow_redirects=False)
    assert response.status == 303
    assert response.headers["Location"] == "/"


# --- failures look alike ---

async def test_json_login_failures_are_indistinguishable(client, failed_sign_ins):
    answers = {}
    for kind, (name, password) in failed_sign_ins.items():
        response = await client.post("/login", json={"username": name, "password": password})
        assert "Set-Cookie" not in response.headers, kind
        answers[kind] = (response.status, response.content_type, await response.json())
    assert len(set(map(repr, answers.values()))) == 1, answers
    status, _, body = answers["unknown user"]
    assert status == 401
    assert body["error"] == "invalid_credentials"
    assert not cookie(client, "access") and not cookie(client, "refresh")


async def test_form_login_failures_are_indistinguishable(client, failed_sign_ins):
    pages = {}
    for kind, (name, password) in failed_sign_ins.items():
        response = await form_login(client, name, password, next="/api/me", headers=NAVIGATE)
        assert "Set-Cookie" not in response.headers, kind
        assert response.status == 401, kind
        # The page may echo the typed name back into the form; nothing else may differ.
        pages[kind] = (await response.text()).replace(f'value="{name}"', 'value="NAME"')
    assert len(set(pages.values())) == 1
    page = pages["unknown user"]
    assert "Incorrect username or password." in page
    assert form_fields(page)["next"] == "/api/me"


async def test_disabled_user_cannot_sign_in_even_with_the_right_password(client, make_user, authenticator):
    user = await make_user()
    await authenticator.users.set_disabled(user.id, True)
    response = await client.post("/login", json={"username": "alice", "password": PASSWORD})
    assert response.status == 401
    assert await authenticator.sessions.list(user.id) == []


@pytest.mark.parametrize("typed", ["alice", "ALICE", "aLiCe", "Ａｌｉｃｅ"])
async def test_usernames_are_case_insensitive(client, make_user, typed):
    user = await make_user("Alice")
    body = await login(client, typed)
    assert body["user"] == {"id": user.id, "name": "Alice"}


async def test_password_is_case_sensitive(client, make_user):
    await make_user()
    response = await client.post("/login", json={"username": "alice", "password": PASSWORD.upper()})
    assert response.status == 401


# --- bad bodies: a clear 4xx, never a 500 ---

@pytest.mark.parametrize("body, content_type", [
    (b"{not json", "application/json"),
    (b"", "application/json"),
    (b'["alice", "pw"]', "application/json"),
    (b'"alice"', "application/json"),
    (b"null", "application/json"),
    (b'{"username": "\xff\xfe", "password": "x"}', "application/json"),
    (b"[" * 20000 + b"]" * 20000, "application/json"),
    (b'{"username": 1, "password": "x"}', "application/json"),
    (b'{"username": "alice", "password": ["x"]}', "application/json"),
    (b'{"username": "alice", "password": null}', "application/json"),
    (b'{"username": {"$ne": ""}, "password": {"$ne": ""}}', "application/json"),
    (b"username=alice&password=x", "text/plain"),
    (b"<login><username>alice</username></login>", "application/xml"),
])
async def test_malformed_login_body_is_400_json(client, make_user, body, content_type):
    await make_user()
    response = await client.post("/login", data=body, headers={"Content-Type": content_type})
    assert response.status == 400
    assert response.content_type == "application/json"
    assert (await response.json())["error"] == "invalid_input"
    assert "Set-Cookie" not in response.headers


async def test_login_with_no_body_at_all_is_400(client):
    response = await client.post("/login")
    assert response.status == 400
    assert "Set-Cookie" not in response.headers


async def test_login_form_with_a_missing_password_is_a_generic_401(client, make_user):
    await make_user()
    response = await form_login(client, "alice", None, headers={})
    assert response.status == 401
    assert "Set-Cookie" not in response.headers


async def test_overlong_password_is_a_generic_401_not_a_500(client, make_user):
    await make_user()
    response = await client.post("/login", json={"username": "alice", "password": "x" * 5000})
    assert response.status == 401
    assert (await response.json())["error"] == "invalid_credentials"


@pytest.mark.parametrize("kind", ["json", "form"])
async def test_body_over_max_body_is_413(make_settings, make_client, make_user, kind):
    settings = make_settings(server={"max_body": 1024})
    client = await make_client(of=settings)
    await make_user()
    padding = "x" * 2048
    if kind == "json":
        response = await client.post("/login", json={"username": "alice", "password": PASSWORD, "pad": padding})
    else:
        response = await client.post("/login", data={"username": "alice", "password": PASSWORD, "pad": padding})
    assert response.status == 413
    assert "Set-Cookie" not in response.headers


async def test_body_just_under_max_body_is_accepted(make_settings, make_client, make_user):
    settings = make_settings(server={"max_body": 1024})
    client = await make_client(of=settings)
    await make_user()
    response = await client.post("/login", json={"username": "alice", "password": PASSWORD, "pad": "x" * 900})
    assert response.status == 200


# --- a new sign-in ends the previous session ---

async def test_login_while_signed_in_ends_the_previous_session(client, make_user, another_client, authenticator):
    user = await make_user()
    first = await login(client)
    old_cookies = jar_snapshot(client)
    second = await login(client)
    assert second["session"] != first["session"]

    old = await another_client(client, cookies=old_cookies)
    assert (await old.get("/api/me", allow_redirects=False)).status == 401
    assert (await old.post("/auth/refresh")).status == 401
    assert (await client.get("/api/me")).status == 200
    assert [s.session_id for s in await authenticator.sessions.list(user.id)] == [second["session"]]


async def test_login_with_an_expired_access_token_still_ends_the_previous_session(
        client, make_user, another_client, authenticator, clock):
    user = await make_user()
    await login(client)
    old_cookies = jar_snapshot(client)
    clock.advance(120)  # the access JWT has expired; the session and its refresh token live on
    second = await login(client)

    old = await another_client(client, cookies=old_cookies)
    assert (await old.post("/auth/refresh")).status == 401
    assert [s.session_id for s in await authenticator.sessions.list(user.id)] == [second["session"]]


async def test_a_form_login_sets_cookies_only_on_success(client, make_user):
    await make_user()
    failed = await form_login(client, password="nope", headers=NAVIGATE)
    assert set_cookies(failed) == {}
    succeeded = await form_login(client, headers=NAVIGATE)
    assert set(set_cookies(succeeded)) == {"__Host-access", "__Secure-refresh"}
