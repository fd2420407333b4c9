"""Server-side auto-refresh: navigations, form POSTs and fetch() calls survive an expired access JWT,
reach their handler exactly once with their body intact, and end on the login page (or a 401) when
nothing can be refreshed. Time moves only through the settable clock."""

from __future__ import annotations

import dataclasses
import json
import urllib.parse

import aiohttp
import pytest
from aiohttp import web

from service.web import routes
from service.web.app import create_app
from service.web.pipeline import require_user
from tests.support.cookies import cookie, jar_snapshot, set_cookies, with_value
from tests.support.sign_in import csrf_token, login

ACCESS_TTL = 30
NAVIGATE = {"Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document", "Accept": "text/html,*/*;q=0.8"}
FETCH = {"Sec-Fetch-Mode": "cors", "Sec-Fetch-Dest": "empty", "Accept": "application/json"}


@dataclasses.dataclass
class Applied:
    method: str
    path_qs: str
    user: str
    content_type: str
    body: bytes
    fields: dict[str, object] | None = None


class Probe:
    """Test-only protected routes that record every request their handler actually applies."""

    def __init__(self) -> None:
        self.applied: list[Applied] = []

    async def handle(self, request: web.Request) -> web.StreamResponse:
        user = require_user(request)  # raises before anything is applied
        body = await request.read()
        self.applied.append(Applied(request.method, request.path_qs, user.username, request.content_type, body))
        return web.json_response({"applied": len(self.applied), "user": user.username})

    async def handle_form(self, request: web.Request) -> web.StreamResponse:
        """Reads the body as the service's own form handlers do, with ``request.post()``: the CSRF
        check has already parsed a multipart body, whose raw bytes are then spent (as in Django)."""
        user = require_user(request)
        fields: dict[str, object] = {}
        for name, value in (await request.post()).items():
            is_file = isinstance(value, web.FileField)
            fields[name] = (value.filename, value.content_type, value.file.read()) if is_file else value
        self.applied.append(Applied(request.method, request.path_qs, user.username, request.content_type,
                                    b"", fields))
        return web.json_response({"applied": len(self.applied), "user": user.username})

    def install(self, app: web.Application) -> None:
        routes.add(app, "GET", "/probe/page", self.handle, "probe")
        routes.add(app, "POST", "/probe/form", self.handle, "probe")
        routes.add(app, "POST", "/probe/json", self.handle, "probe")
        routes.add(app, "POST", "/probe/multipart", self.handle_form, "probe")


@pytest.fixture
def probe() -> Probe:
    return Probe()


@pytest.fixture
async def probed_client(make_settings, make_client, make_user, probe, clock):
    """A signed-in browser on a service with a short access TTL and the probe routes."""
    app = create_app(make_settings(tokens={"access_ttl": ACCESS_TTL}), clock=clock)
    probe.install(app)
    client = await make_client(app)
    await make_user("Alice")
    await login(client, "alice")
    return client


def with_token(headers: dict[str, str], token: str) -> dict[str, str]:
    """``headers`` plus the session's CSRF token, as a same-origin fetch() sends it."""
    return {**headers, "X-CSRF-Token": token}


def expire_access(clock) -> None:
    clock.advance(ACCESS_TTL + 1)


def chain(response) -> list[tuple[int, str]]:
    """(status, Location) of each redirect followed, then the final (status, path)."""
    hops = [(r.status, r.headers["Location"]) for r in response.history]
    return hops + [(response.status, response.url.path)]


def refresh_hop(next_path: str) -> str:
    return "/auth/refresh?" + urllib.parse.urlencode({"next": next_path})


# --- (a) navigations ---

async def test_navigation_with_expired_access_is_refreshed_and_lands_on_the_page(probed_client, clock):
    old_access, old_refresh = cookie(probed_client, "access"), cookie(probed_client, "refresh")
    expire_access(clock)
    response = await probed_client.get("/", headers=NAVIGATE)
    assert chain(response) == [(307, "/auth/refresh?next=%2F"), (307, "/"), (200, "/")]
    assert "Signed in as" in await response.text()
    rotation = set_cookies(response.history[1])
    assert set(rotation) == {"__Host-access", "__Secure-refresh"}
    assert cookie(probed_client, "access") == rotation["__Host-access"].value != old_access
    assert cookie(probed_client, "refresh") == rotation["__Secure-refresh"].value != old_refresh


async def test_navigation_refresh_keeps_the_original_query(probed_client, clock, probe):
    expire_access(clock)
    response = await probed_client.get("/probe/page?q=a%20b&page=2", headers=NAVIGATE)
    assert chain(response) == [(307, refresh_hop("/probe/page?q=a%20b&page=2")),
                               (307, "/probe/page?q=a%20b&page=2"), (200, "/probe/page")]
    assert [a.path_qs for a in probe.applied] == ["/probe/page?q=a%20b&page=2"]


async def test_after_a_refresh_the_next_requests_go_straight_through(probed_client, clock):
    expire_access(clock)
    await probed_client.get("/", headers=NAVIGATE)
    again = await probed_client.get("/", headers=NAVIGATE)
    assert chain(again) == [(200, "/")]


async def test_valid_access_needs_no_refresh_hop(probed_client, clock):
    clock.advance(ACCESS_TTL - 1)
    response = await probed_client.get("/api/me", headers=FETCH)
    assert chain(response) == [(200, "/api/me")]
    assert set_cookies(response) == {}


# --- (b), (c), (d): requests with bodies and fetch() ---

async def test_form_post_survives_expiry_and_is_applied_exactly_once_with_its_body(probed_client, clock, probe):
    # The page's form carries its hidden csrf field; the replayed body still holds it after the hop.
    form = {"title": "Grüße & <tags>", "amount": "42", "empty": "", "csrf": await csrf_token(probed_client)}
    expire_access(clock)
    response = await probed_client.post("/probe/form", data=form, headers=NAVIGATE)
    assert chain(response) == [(307, refresh_hop("/probe/form")), (307, "/probe/form"), (200, "/probe/form")]
    assert [(r.method, r.url.path) for r in response.history] == [("POST", "/probe/form"),
                                                                   ("POST", "/auth/refresh")]
    assert len(probe.applied) == 1
    applied = probe.applied[0]
    assert (applied.method, applied.user, applied.content_type) == ("POST", "Alice",
                                                                    "application/x-www-form-urlencoded")
    assert dict(urllib.parse.parse_qsl(applied.body.decode(), keep_blank_values=True)) == form


async def test_multipart_form_post_survives_expiry_with_its_body(probed_client, clock, probe):
    token = await csrf_token(probed_client)
    expire_access(clock)
    data = aiohttp.FormData()
    data.add_field("csrf", token)
    data.add_field("note", "hello")
    data.add_field("file", b"\x00\x01binary", filename="a.bin", content_type="application/octet-stream")
    response = await probed_client.post("/probe/multipart", data=data, headers=NAVIGATE)
    assert chain(response) == [(307, refresh_hop("/probe/multipart")), (307, "/probe/multipart"),
                               (200, "/probe/multipart")]
    assert len(probe.applied) == 1
    assert probe.applied[0].content_type == "multipart/form-data"
    assert probe.applied[0].fields == {"csrf": token, "note": "hello",
                                       "file": ("a.bin", "application/octet-stream", b"\x00\x01binary")}


async def test_fetch_json_post_survives_expiry_and_is_applied_exactly_once(probed_client, clock, probe):
    payload = {"items": [1, 2, 3], "text": "ünïcode", "nested": {"ok": True}}
    token = await csrf_token(probed_client)
    expire_access(clock)
    response = await probed_client.post("/probe/json", json=payload, headers=with_token(FETCH, token))
    assert chain(response) == [(307, refresh_hop("/probe/json")), (307, "/probe/json"), (200, "/probe/json")]
    assert await response.json() == {"applied": 1, "user": "Alice"}
    assert len(probe.applied) == 1
    assert probe.applied[0].content_type == "application/json"
    assert json.loads(probe.applied[0].body) == payload


async def test_fetch_get_api_me_survives_expiry(probed_client, clock):
    before = await (await probed_client.get("/api/me", headers=FETCH)).json()
    expire_access(clock)
    response = await probed_client.get("/api/me", headers=FETCH)
    assert chain(response) == [(307, refresh_hop("/api/me")), (307, "/api/me"), (200, "/api/me")]
    after = await response.json()
    assert after["name"] == "Alice" and after["session"] == before["session"]
    assert after["access_expires"] > before["access_expires"]


async def test_a_client_without_fetch_metadata_survives_expiry_too(probed_client, clock):
    expire_access(clock)
    response = await probed_client.get("/api/me")
    assert response.status == 200
    assert [r.status for r in response.history] == [307, 307]


# --- (e) nothing usable ---

@pytest.fixture
async def stranded(probed_client, clock, another_client, authenticator):
    """Browsers whose access JWT has expired and whose refresh cannot work, one per reason."""
    cookies = jar_snapshot(probed_client)
    me = await (await probed_client.get("/api/me")).json()

    async def make(reason: str):
        if reason == "no refresh cookie":
            jar = with_value(cookies, "refresh", None)
        elif reason == "garbage refresh cookie":
            jar = with_value(cookies, "refresh", "garbage")
        elif reason == "forged refresh cookie":  # the right shape, naming the real session, a wrong tag
            user_id, session_id, secret, tag = cookie(probed_client, "refresh").split(".")
            jar = with_value(cookies, "refresh", ".".join((user_id, session_id, secret, tag[::-1])))
        else:
            assert reason == "revoked session"
            await authenticator.logout_everywhere(me["id"])
            jar = cookies
        expire_access(clock)
        return await another_client(probed_client, cookies=jar)

    return make


REASONS = ["no refresh cookie", "garbage refresh cookie", "forged refresh cookie", "revoked session"]


@pytest.mark.parametrize("reason", REASONS)
async def test_unrefreshable_navigation_lands_on_login_with_next(stranded, reason):
    tab = await stranded(reason)
    response = await tab.get("/probe/page?x=1", headers=NAVIGATE)
    assert chain(response) == [(307, refresh_hop("/probe/page?x=1")),
                               (303, "/login?next=%2Fprobe%2Fpage%3Fx%3D1"), (200, "/login")]
    assert 'name="password"' in await response.text()
    # The failed refresh cleared both cookies, so the next visit goes straight to the login page.
    assert cookie(tab, "access") is None and cookie(tab, "refresh") is None
    again = await tab.get("/", headers=NAVIGATE)
    assert chain(again) == [(303, "/login?next=%2F"), (200, "/login")]


@pytest.mark.parametrize("reason", REASONS)
async def test_unrefreshable_json_request_gets_401_json(stranded, reason):
    tab = await stranded(reason)
    response = await tab.get("/api/me", headers=FETCH)
    assert [(r.status, r.headers["Location"]) for r in response.history] == [(307, refresh_hop("/api/me"))]
    assert response.status == 401
    assert response.content_type == "application/json"
    body = await response.json()
    assert body["error"] == "unauthenticated"
    assert body["login"] == "/login?next=%2Fapi%2Fme"


@pytest.mark.parametrize("reason", REASONS)
async def test_unrefreshable_form_post_is_never_applied(probed_client, stranded, probe, reason):
    token = await csrf_token(probed_client)  # the form was rendered while the session lived
    tab = await stranded(reason)
    response = await tab.post("/probe/form", data={"title": "lost", "csrf": token}, headers=NAVIGATE)
    assert response.url.path == "/login"
    assert [r.status for r in response.history] == [307, 303]
    assert probe.applied == []


async def test_a_revoked_session_with_unexpired_access_goes_straight_to_login(probed_client, authenticator, probe):
    me = await (await probed_client.get("/api/me")).json()
    await authenticator.logout_everywhere(me["id"])
    page = await probed_client.get("/probe/page", headers=NAVIGATE)
    assert chain(page) == [(303, "/login?next=%2Fprobe%2Fpage"), (200, "/login")]
    api = await probed_client.get("/api/me", headers=FETCH)
    assert (api.status, api.history) == (401, ())
    assert probe.applied == []


# --- (f) never signed in ---

async def test_home_without_cookies_redirects_to_login(client):
    response = await client.get("/", headers=NAVIGATE, allow_redirects=False)
    assert response.status == 303
    assert response.headers["Location"] == "/login?next=%2F"


async def test_api_without_cookies_is_401_json_without_a_refresh_hop(client):
    response = await client.get("/api/me", headers=FETCH, allow_redirects=False)
    assert response.status == 401
    assert (await response.json())["login"] == "/login?next=%2Fapi%2Fme"


async def test_a_post_without_cookies_is_never_applied(make_client, settings, clock, probe):
    app = create_app(settings, clock=clock)
    probe.install(app)
    client = await make_client(app)
    response = await client.post("/probe/form", data={"x": "1"}, headers=NAVIGATE, allow_redirects=False)
    assert response.status == 303
    assert response.headers["Location"].startswith("/login?next=")
    assert probe.applied == []


# --- the edges of the refresh hop ---

@pytest.mark.parametrize("evil", ["//evil.example/", "https://evil.example/", "/\\evil.example"])
async def test_refresh_hop_never_redirects_offsite(probed_client, clock, evil):
    expire_access(clock)
    response = await probed_client.get("/auth/refresh", params={"next": evil}, allow_redirects=False)
    assert response.status == 307
    assert response.headers["Location"] == "/"


@pytest.mark.parametrize("left", [1.5, 0.2])
async def test_refresh_at_the_very_end_of_a_session_never_loops(make_settings, make_client, make_user, clock, left):
    # Access JWTs carry a whole-second exp capped at the session's end: a refresh in the session's
    # last second must not hand out a born-expired JWT that sends the browser round the hop forever.
    start = clock.now = 1_900_000_000.75
    client = await make_client(of=make_settings(tokens={"access_ttl": 60},
                                                sessions={"idle_timeout": "10m", "absolute_timeout": "1h"}))
    await make_user()
    await login(client)
    for _ in range(11):
        clock.advance(300)
        assert (await client.post("/auth/refresh")).status == 200
    clock.now = start + 3600 - left
    response = await client.get("/", headers=NAVIGATE)
    assert response.status == 200
    # With more than a second left the page shows; in the last second signing in again is fine too.
    assert response.url.path in (("/",) if left > 1 else ("/", "/login"))
    assert len(response.history) <= 3


async def test_a_fetch_delete_survives_expiry_through_the_hop(make_client, make_user, settings, clock):
    await make_user()
    laptop, phone = await make_client(), await make_client()
    token = (await login(laptop))["csrf_token"]
    phone_session = (await login(phone))["session"]
    clock.advance(settings.tokens.access_ttl + 1)
    response = await laptop.delete(f"/api/sessions/{phone_session}", headers={"X-CSRF-Token": token})
    assert response.status == 204
    assert [r.status for r in response.history] == [307, 307]
    sessions = (await (await laptop.get("/api/sessions")).json())["sessions"]
    assert [s["current"] for s in sessions] == [True]


async def test_options_never_rotates_a_refresh_token(client, make_user):
    await make_user()
    await login(client)
    response = await client.options("/auth/refresh", headers={"Origin": "https://evil.example"})
    assert response.status == 405
    assert "Set-Cookie" not in response.headers
