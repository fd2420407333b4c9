"""CSRF over HTTP, as an attacker tries it: forged requests on every unsafe route are refused with 403
and change nothing — no session ended, none started, no stored byte different — while the same-origin
page, its forms and its ``fetch()`` calls (the documented ``X-CSRF-Token`` header) go through.

Two layers are checked separately. The token cases send no ``Origin`` and no fetch metadata (an old
browser, or a same-site attacker who got past the first layer), so only the token can stop them; the
cross-site cases carry the victim's *right* token, so only ``Origin`` / ``Sec-Fetch-Site`` can.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from aiohttp import web

from service.web import routes
from service.web.app import create_app
from service.web.pipeline import require_user
from tests.support.cookies import cookie, jar_snapshot, set_cookies
from tests.support.sign_in import PASSWORD, csrf_token, form_login, hidden_field, login, login_token

NEW_PASSWORD = "a brand new passphrase"
EVIL = "https://evil.example"
NAVIGATE = {"Sec-Fetch-Mode": "navigate", "Accept": "text/html"}
JSON = {"Accept": "application/json"}

# Cross-site signals a browser attaches; "{own}" is the service's own host:port.
CROSS_SITE = {
    "cross-site Origin": {"Origin": EVIL},
    "Origin null (sandboxed iframe, data: URL)": {"Origin": "null"},
    "Origin of another port": {"Origin": "http://127.0.0.1:1"},
    "Origin with another scheme": {"Origin": "https://{own}"},
    "Sec-Fetch-Site cross-site": {"Sec-Fetch-Site": "cross-site"},
    "Sec-Fetch-Site same-site (a sibling subdomain)": {"Sec-Fetch-Site": "same-site"},
    "same-origin Origin but Sec-Fetch-Site cross-site": {"Origin": "http://{own}", "Sec-Fetch-Site": "cross-site"},
}


@dataclasses.dataclass(frozen=True)
class Route:
    """An unsafe route that acts on the signed-in user's session; ``{other}`` is the victim's other session."""

    method: str
    path: str
    body: str  # "form": the token rides in the csrf field; "json" / "none": in the X-CSRF-Token header
    fields: dict[str, str] = dataclasses.field(default_factory=dict)


ROUTES = {
    "POST /logout": Route("POST", "/logout", "form"),
    "POST /account/sessions/{id}/revoke": Route("POST", "/account/sessions/{other}/revoke", "form"),
    "POST /account/sessions/revoke-all": Route("POST", "/account/sessions/revoke-all", "form"),
    "POST /account/password": Route("POST", "/account/password", "form",
                                    {"current": PASSWORD, "new": NEW_PASSWORD}),
    "DELETE /api/sessions/{id}": Route("DELETE", "/api/sessions/{other}", "none"),
    "DELETE /api/sessions": Route("DELETE", "/api/sessions", "none"),
    "POST /api/password": Route("POST", "/api/password", "json", {"current": PASSWORD, "new": NEW_PASSWORD}),
    "POST /account/confirm": Route("POST", "/account/confirm", "form", {"password": PASSWORD}),
    "POST /api/step-up": Route("POST", "/api/step-up", "json", {"password": PASSWORD}),
    "POST /account/totp/setup": Route("POST", "/account/totp/setup", "form"),
    "POST /account/totp": Route("POST", "/account/totp", "form", {"code": "123456"}),
    "POST /account/totp/disable": Route("POST", "/account/totp/disable", "form", {"code": "123456"}),
    "POST /account/recovery-codes": Route("POST", "/account/recovery-codes", "form"),
    "POST /api/totp/setup": Route("POST", "/api/totp/setup", "json"),
    "POST /api/totp": Route("POST", "/api/totp", "json", {"code": "123456"}),
    "POST /api/totp/disable": Route("POST", "/api/totp/disable", "json", {"code": "123456"}),
    "POST /api/recovery-codes": Route("POST", "/api/recovery-codes", "json"),
    "POST /probe form (test-only)": Route("POST", "/probe", "form", {"note": "pay mallory"}),
    "POST /probe JSON (test-only)": Route("POST", "/probe", "json", {"note": "pay mallory"}),
}


class Site:
    """The service with a test-only protected route, a victim signed in on two devices, and an attacker
    with an account of their own; it can tell whether anything stored has changed."""

    def __init__(self, redis: Any, prefix: str, authenticator: Any) -> None:
        self.redis = redis
        self.prefix = prefix
        self.authenticator = authenticator
        self.applied: list[dict[str, str]] = []
        self.victim: Any = None
        self.phone: Any = None
        self.mallory: Any = None
        self.signed: dict[str, Any] = {}
        self.devices: list[Any] = []  # every signed-in browser, checked to be still signed in
        self._stored: dict[bytes, bytes] = {}
        self._sessions: dict[str, set[str]] = {}

    async def probe(self, request: web.Request) -> web.StreamResponse:
        user = require_user(request)
        self.applied.append({"user": user.username, "body": await request.text()})
        return web.json_response({"applied": len(self.applied)})

    @property
    def own(self) -> str:
        return f"127.0.0.1:{self.victim.server.port}"

    async def stored(self) -> dict[bytes, bytes]:
        """Every key the service wrote under this test's prefix, with its serialized value."""
        keys = [key async for key in self.redis.scan_iter(match=self.prefix + "*")]
        return {key: await self.redis.dump(key) for key in sorted(keys)}

    async def sessions(self) -> dict[str, set[str]]:
        users = {name: self.signed[name]["user"]["id"] for name in ("victim", "mallory")}
        return {name: {s.session_id for s in await self.authenticator.sessions.list(user_id)}
                for name, user_id in users.items()}

    async def remember(self) -> None:
        self._stored = await self.stored()
        self._sessions = await self.sessions()

    async def assert_nothing_changed(self) -> None:
        """Nothing applied, no key written or deleted, no session started or ended; then every device is
        still signed in as itself, its refresh token still rotates, and Alice's password still works."""
        assert self.applied == []
        assert await self.stored() == self._stored
        assert await self.sessions() == self._sessions
        for device in self.devices:
            me = await device.get("/api/me", headers=JSON)
            assert me.status == 200
            assert (await me.json())["name"] in ("alice", "mallory")
            assert (await device.post("/auth/refresh", headers=JSON)).status == 200
        assert (await self.mallory.post("/login", json={"username": "alice", "password": PASSWORD})).status == 200

    def request(self, client: Any, route: Route, token: str | None, headers: dict[str, str] | None = None) -> Any:
        """Send ``route`` from ``client`` with ``token`` where its kind of page would put it."""
        path = route.path.format(other=self.signed["phone"]["session"])
        headers = {k: v.format(own=self.own) for k, v in (headers or {}).items()}
        kwargs: dict[str, Any] = {"allow_redirects": False}
        if route.body == "form":
            kwargs["data"] = {**route.fields, **({"csrf": token} if token is not None else {})}
        else:
            if token is not None:
                headers["X-CSRF-Token"] = token
            if route.body == "json":
                kwargs["json"] = route.fields
        return client.request(route.method, path, headers=headers, **kwargs)


@pytest.fixture
async def csrf_site(settings, clock, make_client, make_user, redis_client, authenticator, another_client) -> Site:
    site = Site(redis_client, settings.redis.key_prefix, authenticator)
    app = create_app(settings, clock=clock)
    routes.add(app, "POST", "/probe", site.probe, "probe")
    await make_user("alice")
    await make_user("mallory")
    site.victim = await make_client(app)
    site.phone = await another_client(site.victim, cookies=[])
    site.mallory = await another_client(site.victim, cookies=[])
    site.signed = {"victim": await login(site.victim, "alice"), "phone": await login(site.phone, "alice"),
                   "mallory": await login(site.mallory, "mallory")}
    site.devices = [site.victim, site.phone, site.mallory]
    return site


@pytest.fixture
def fresh(csrf_site, another_client):
    """A new browser on the site, with no cookies yet."""

    async def make() -> Any:
        return await another_client(csrf_site.victim, cookies=[])

    return make


async def assert_refused(response: Any) -> None:
    """403, said plainly, with no cookie set or cleared."""
    assert response.status == 403, await response.text()
    assert "Set-Cookie" not in response.headers
    if response.content_type == "application/json":
        assert (await response.json())["error"] == "csrf"
    else:
        assert "another site" in await response.text()


# --- forged requests on the routes that act on a session --------------------------------------------

@pytest.mark.parametrize("route", ROUTES.values(), ids=ROUTES.keys())
async def test_forged_request_without_a_token_is_refused(csrf_site, route):
    await csrf_site.remember()
    await assert_refused(await csrf_site.request(csrf_site.victim, route, None))
    await csrf_site.assert_nothing_changed()


@pytest.mark.parametrize("route", ROUTES.values(), ids=ROUTES.keys())
@pytest.mark.parametrize("token", ["", "x", "A" * 43, "not-the-token-" * 3, "A" * 5000],
                         ids=["empty", "one char", "right shape", "guess", "oversized"])
async def test_forged_request_with_a_wrong_token_is_refused(csrf_site, route, token):
    await csrf_site.remember()
    await assert_refused(await csrf_site.request(csrf_site.victim, route, token))
    await csrf_site.assert_nothing_changed()


@pytest.mark.parametrize("route", ROUTES.values(), ids=ROUTES.keys())
@pytest.mark.parametrize("whose", ["mallory", "phone"], ids=["the attacker's own session",
                                                              "the victim's other session"])
async def test_forged_request_with_the_token_of_another_session_is_refused(csrf_site, route, whose):
    await csrf_site.remember()
    await assert_refused(await csrf_site.request(csrf_site.victim, route, csrf_site.signed[whose]["csrf_token"]))
    await csrf_site.assert_nothing_changed()


@pytest.mark.parametrize("route", ROUTES.values(), ids=ROUTES.keys())
@pytest.mark.parametrize("signal", CROSS_SITE.values(), ids=CROSS_SITE.keys())
async def test_cross_site_request_is_refused_even_with_the_right_token(csrf_site, route, signal):
    await csrf_site.remember()
    token = csrf_site.signed["victim"]["csrf_token"]
    await assert_refused(await csrf_site.request(csrf_site.victim, route, token, signal))
    await csrf_site.assert_nothing_changed()


async def test_forged_request_with_an_expired_access_jwt_is_refused_before_any_refresh(csrf_site, clock):
    # The session lives on; a forged POST must not even get the refresh hop (which would rotate).
    clock.advance(3600)
    await csrf_site.remember()
    before = jar_snapshot(csrf_site.victim)
    await assert_refused(await csrf_site.request(csrf_site.victim, ROUTES["POST /probe form (test-only)"], None))
    assert [m.value for m in jar_snapshot(csrf_site.victim)] == [m.value for m in before]
    await csrf_site.assert_nothing_changed()


@pytest.mark.parametrize("where", ["query string", "JSON body", "cookie (tossed by a sibling subdomain)"])
async def test_token_in_a_place_the_service_never_reads_is_refused(csrf_site, where):
    token = csrf_site.signed["victim"]["csrf_token"]
    await csrf_site.remember()
    if where == "query string":
        response = await csrf_site.victim.post(f"/probe?csrf={token}", data={"note": "x"})
    elif where == "JSON body":
        response = await csrf_site.victim.post("/probe", json={"note": "x", "csrf": token})
    else:
        response = await csrf_site.victim.post("/probe", data={"note": "x"},
                                               headers={"Cookie": f"csrf={token}; X-CSRF-Token={token}"})
    await assert_refused(response)
    await csrf_site.assert_nothing_changed()


async def test_token_of_a_logged_out_session_is_refused(csrf_site):
    old = csrf_site.signed["victim"]["csrf_token"]
    logout = await csrf_site.victim.post("/logout", headers={"X-CSRF-Token": old})
    assert logout.status == 204
    csrf_site.signed["victim"] = await login(csrf_site.victim, "alice")  # a new session in the same browser
    assert csrf_site.signed["victim"]["csrf_token"] != old
    await csrf_site.remember()
    await assert_refused(await csrf_site.request(csrf_site.victim, ROUTES["POST /probe form (test-only)"], old))
    await csrf_site.assert_nothing_changed()


# --- refresh by POST: only the cross-site layer applies (the hop replays bodies it never reads) -------

@pytest.mark.parametrize("signal", CROSS_SITE.values(), ids=CROSS_SITE.keys())
async def test_cross_site_refresh_is_refused_and_rotates_nothing(csrf_site, signal):
    refresh = cookie(csrf_site.victim, "refresh")
    await csrf_site.remember()
    headers = {k: v.format(own=csrf_site.own) for k, v in signal.items()}
    response = await csrf_site.victim.post("/auth/refresh", headers=headers)
    await assert_refused(response)
    assert cookie(csrf_site.victim, "refresh") == refresh
    await csrf_site.assert_nothing_changed()  # includes: the untouched refresh token still rotates


@pytest.mark.parametrize("signal", CROSS_SITE.values(), ids=CROSS_SITE.keys())
async def test_cross_site_refresh_hop_with_a_replayed_form_is_refused(csrf_site, clock, signal):
    clock.advance(3600)
    await csrf_site.remember()
    headers = {k: v.format(own=csrf_site.own) for k, v in signal.items()}
    response = await csrf_site.victim.post("/auth/refresh?next=/probe", data={"note": "x"}, headers=headers,
                                           allow_redirects=False)
    await assert_refused(response)
    await csrf_site.assert_nothing_changed()


async def test_same_origin_refresh_by_post_needs_no_token(csrf_site):
    # By design (see the report): only the path-scoped refresh cookie rides here, and the hop's replayed
    # body is never read, so the refresh endpoint relies on the Origin / Sec-Fetch-Site layer alone.
    response = await csrf_site.victim.post("/auth/refresh", headers={"Origin": f"http://{csrf_site.own}",
                                                                     "Sec-Fetch-Site": "same-origin"})
    assert response.status == 200


# --- login CSRF: signing the victim in to the attacker's account --------------------------------------

async def attack_login(site, browser, token: str | None, signal: dict[str, str] | None = None) -> Any:
    """The attacker's auto-submitting form: the attacker's own name and password, and ``token``."""
    data = {"username": "mallory", "password": PASSWORD, "next": "/"}
    if token is not None:
        data["csrf"] = token
    headers = {**NAVIGATE, **{k: v.format(own=site.own) for k, v in (signal or {}).items()}}
    return await browser.post("/login", data=data, headers=headers, allow_redirects=False)


async def attackers_login_token(fresh) -> str:
    """A login-form token the attacker got by opening the login page in their own browser."""
    return await login_token(await fresh())


async def test_login_csrf_without_the_nonce_cookie_is_refused(csrf_site, fresh):
    # The victim signed in by JSON and never opened the login page: a token the attacker minted on
    # their own visit to it is bound to a nonce the victim's browser does not hold.
    attacker_token = await attackers_login_token(fresh)
    await csrf_site.remember()
    await assert_refused(await attack_login(csrf_site, csrf_site.victim, attacker_token))
    await csrf_site.assert_nothing_changed()  # the victim is still Alice: the login never ended her session


async def test_login_csrf_on_a_browser_with_no_cookies_is_refused(csrf_site, fresh):
    browser = await fresh()
    attacker_token = await attackers_login_token(fresh)
    await csrf_site.remember()
    await assert_refused(await attack_login(csrf_site, browser, attacker_token))
    assert cookie(browser, "access") is None and cookie(browser, "refresh") is None
    await csrf_site.assert_nothing_changed()


@pytest.mark.parametrize("token", ["minted for the attacker's nonce", "missing", "empty", "the session token",
                                   "guess"])
async def test_login_csrf_with_a_token_not_minted_for_the_victims_nonce_is_refused(csrf_site, fresh, token):
    victim = await fresh()
    assert (await form_login(victim, "alice")).status == 303  # holds a nonce cookie and a session
    assert cookie(victim, "login")
    csrf_site.devices.append(victim)
    presented = {"minted for the attacker's nonce": await attackers_login_token(fresh), "missing": None, "empty": "",
                 "the session token": await csrf_token(victim), "guess": "A" * 43}[token]
    await csrf_site.remember()
    await assert_refused(await attack_login(csrf_site, victim, presented))
    await csrf_site.assert_nothing_changed()


@pytest.mark.parametrize("signal", CROSS_SITE.values(), ids=CROSS_SITE.keys())
async def test_cross_site_form_login_is_refused_even_with_the_right_token(csrf_site, fresh, signal):
    browser = await fresh()
    token = await login_token(browser)  # the browser's own, valid nonce-bound token
    await csrf_site.remember()
    await assert_refused(await attack_login(csrf_site, browser, token, signal))
    assert cookie(browser, "access") is None
    await csrf_site.assert_nothing_changed()


@pytest.mark.parametrize("signal", CROSS_SITE.values(), ids=CROSS_SITE.keys())
async def test_cross_site_json_login_is_refused(csrf_site, fresh, signal):
    browser = await fresh()
    headers = {k: v.format(own=csrf_site.own) for k, v in signal.items()}
    await csrf_site.remember()
    response = await browser.post("/login", json={"username": "mallory", "password": PASSWORD}, headers=headers)
    await assert_refused(response)
    await csrf_site.assert_nothing_changed()


async def test_login_csrf_by_a_text_plain_form_smuggling_json_is_rejected(csrf_site, fresh):
    # <form enctype="text/plain"> can send a JSON-looking body cross-site without a CORS preflight.
    browser = await fresh()
    await csrf_site.remember()
    body = '{"username": "mallory", "password": "' + PASSWORD + '", "x": "="}'
    response = await browser.post("/login", data=body, headers={"Content-Type": "text/plain"})
    assert response.status == 400
    assert "Set-Cookie" not in response.headers
    await csrf_site.assert_nothing_changed()


# --- what the same-origin page does passes -------------------------------------------------------------

def same_origin(site: Site, **headers: str) -> dict[str, str]:
    return {"Origin": f"http://{site.own}", "Sec-Fetch-Site": "same-origin", **headers}


async def test_same_origin_fetch_post_with_the_header_passes(csrf_site):
    token = await csrf_token(csrf_site.victim)
    headers = {**same_origin(csrf_site), "Sec-Fetch-Mode": "cors", "X-CSRF-Token": token}
    response = await csrf_site.victim.post("/probe", json={"note": "mine"}, headers=headers)
    assert response.status == 200
    assert csrf_site.applied == [{"user": "alice", "body": '{"note": "mine"}'}]


async def test_same_origin_form_post_with_the_field_passes(csrf_site):
    home = await csrf_site.victim.get("/", headers=NAVIGATE)
    token = hidden_field(await home.text(), "csrf")
    response = await csrf_site.victim.post("/probe", data={"note": "mine", "csrf": token},
                                           headers={**NAVIGATE, **same_origin(csrf_site)})
    assert response.status == 200
    assert len(csrf_site.applied) == 1


@pytest.mark.parametrize("headers", [{}, {"Sec-Fetch-Site": "none"}],
                         ids=["no fetch metadata (curl)", "Sec-Fetch-Site none (typed URL)"])
async def test_a_request_without_cross_site_signals_passes_with_the_token(csrf_site, headers):
    token = csrf_site.signed["victim"]["csrf_token"]
    response = await csrf_site.victim.post("/probe", json={"note": "mine"}, headers={**headers, "X-CSRF-Token": token})
    assert response.status == 200
    assert len(csrf_site.applied) == 1


async def test_form_login_with_the_pages_own_token_passes(csrf_site, fresh):
    browser = await fresh()
    token = await login_token(browser)
    response = await browser.post("/login", data={"username": "alice", "password": PASSWORD, "csrf": token},
                                  headers={**NAVIGATE, **same_origin(csrf_site)}, allow_redirects=False)
    assert response.status == 303
    assert set(set_cookies(response)) == {"__Host-access", "__Secure-refresh"}


async def test_json_login_needs_no_token(csrf_site, fresh):
    browser = await fresh()
    response = await browser.post("/login", json={"username": "alice", "password": PASSWORD},
                                  headers=same_origin(csrf_site))
    assert response.status == 200
    assert (await response.json())["csrf_token"] == await csrf_token(browser)


async def test_every_place_the_token_is_published_agrees(csrf_site):
    from_login = csrf_site.signed["victim"]["csrf_token"]
    home = await (await csrf_site.victim.get("/", headers=NAVIGATE)).text()
    account = await (await csrf_site.victim.get("/account", headers=NAVIGATE)).text()
    assert f'<meta name="csrf-token" content="{from_login}">' in home
    assert hidden_field(home, "csrf") == from_login
    assert hidden_field(account, "csrf") == from_login
    assert await csrf_token(csrf_site.victim) == from_login
    assert from_login not in (csrf_site.signed["phone"]["csrf_token"], csrf_site.signed["mallory"]["csrf_token"])


async def test_the_token_survives_refreshes_and_stays_valid(csrf_site, clock):
    before = await csrf_token(csrf_site.victim)
    assert (await csrf_site.victim.post("/auth/refresh")).status == 200
    assert await csrf_token(csrf_site.victim) == before
    clock.advance(3600)  # the access JWT expires: the next request goes through the refresh hop
    hop = await csrf_site.victim.get("/api/me", headers=JSON)
    assert [r.status for r in hop.history] == [307, 307]
    assert (await hop.json())["csrf_token"] == before
    response = await csrf_site.victim.post("/probe", data={"note": "after refreshes", "csrf": before})
    assert response.status == 200
    assert len(csrf_site.applied) == 1


async def test_a_form_post_with_an_expired_access_jwt_keeps_its_token_through_the_hop(csrf_site, clock):
    token = csrf_site.signed["victim"]["csrf_token"]
    clock.advance(3600)
    response = await csrf_site.victim.post("/probe", data={"note": "late", "csrf": token}, headers=NAVIGATE)
    assert [r.status for r in response.history] == [307, 307]
    assert response.status == 200
    assert len(csrf_site.applied) == 1


# --- the second step of a sign-in with TOTP on ---------------------------------------------------------

async def test_a_forged_code_step_without_the_browsers_login_token_is_refused(csrf_site, fresh):
    """Login CSRF through the code step: the attacker's own pending sign-in, posted from the victim's
    browser, needs a token bound to the victim's login nonce, which the attacker cannot mint."""
    victim = await fresh()
    await login_token(victim)  # the victim opened the login page: a nonce of their own
    attacker_token = await attackers_login_token(fresh)
    await csrf_site.remember()
    response = await victim.post("/login/code", data={"csrf": attacker_token, "pending": "p" * 43, "code": "123456"},
                                 headers=NAVIGATE, allow_redirects=False)
    await assert_refused(response)
    assert cookie(victim, "access") is None
    await csrf_site.assert_nothing_changed()


@pytest.mark.parametrize("signal", CROSS_SITE.values(), ids=CROSS_SITE.keys())
async def test_a_cross_site_code_step_is_refused_even_with_the_right_token(csrf_site, fresh, signal):
    browser = await fresh()
    token = await login_token(browser)
    headers = {**NAVIGATE, **{k: v.format(own=csrf_site.own) for k, v in signal.items()}}
    await csrf_site.remember()
    response = await browser.post("/login/code", data={"csrf": token, "pending": "p" * 43, "code": "123456"},
                                  headers=headers, allow_redirects=False)
    await assert_refused(response)
    await csrf_site.assert_nothing_changed()

