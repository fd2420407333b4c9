"""Refresh-token attacks over HTTP: never-issued, truncated and re-addressed tokens, reuse after the
grace window, replay after logout, password change, disabling and signing out everywhere, a
grandparent inside the grace window, and a thief who refreshes first.

Each refused refresh is asserted exactly, both as a same-origin ``fetch()`` POST (401 JSON) and as the
browser's GET hop (303 to the login page): both cookies cleared with the attributes they were set
with (the refresh cookie on Path=/auth, else the clear is a no-op), no new session in Redis, and
where the token was forged, nothing stored changed at all (a forgery must never revoke; RFC 9700
§4.14.2, security anchors §E–F).
"""

from __future__ import annotations

import dataclasses
import secrets
from typing import Any

import pytest
from aiohttp import DummyCookieJar
from aiohttp.test_utils import TestClient
from yarl import URL

from tests.support.cookies import browser_jar, cookie, jar_snapshot, set_cookies
from tests.support.sign_in import PASSWORD, login

ACCESS, REFRESH = "__Host-access", "__Secure-refresh"
GRACE = 10  # sessions.refresh_reuse_grace's default, seconds
ABSOLUTE = 14 * 86400  # sessions.absolute_timeout's default
JSON_GET = {"Accept": "application/json"}
VIAS = ["fetch", "hop"]


@dataclasses.dataclass
class Site:
    settings: Any
    clock: Any
    redis: Any
    auth: Any  # the core, wired as the CLI wires it
    origin: str
    victim: TestClient  # alice's laptop
    attacker: TestClient  # mallory, with her own account
    stranger: TestClient  # an empty jar: sends hand-written Cookie headers
    alice: dict[str, Any]
    mallory: dict[str, Any]

    @property
    def alice_id(self) -> str:
        return str(self.alice["user"]["id"])

    @property
    def mallory_id(self) -> str:
        return str(self.mallory["user"]["id"])

    async def sessions(self, user_id: str) -> list[str]:
        return [info.session_id for info in await self.auth.sessions.list(user_id)]

    async def stored(self) -> dict[bytes, Any]:
        """Every key under the test's prefix with its value (sessions are hashes, indexes sets)."""
        found: dict[bytes, Any] = {}
        async for key in self.redis.scan_iter(match=self.settings.redis.key_prefix + "*"):
            kind = (await self.redis.type(key)).decode()
            reader = {"string": self.redis.get, "hash": self.redis.hgetall, "set": self.redis.smembers,
                      "zset": lambda k: self.redis.zrange(k, 0, -1, withscores=True)}.get(kind)
            assert reader is not None, f"unexpected key type {kind} at {key!r}"
            found[key] = await reader(key)
        return found


@pytest.fixture
async def refresh_site(make_client, make_user, settings, clock, redis_client, authenticator, aiohttp_client) -> Site:
    await make_user("alice")
    await make_user("mallory")
    victim = await make_client()
    attacker = await aiohttp_client(victim.server, cookie_jar=browser_jar(victim.server.port))
    stranger = await aiohttp_client(victim.server, cookie_jar=DummyCookieJar())
    alice = await login(victim, "alice")
    mallory = await login(attacker, "mallory")
    origin = f"http://127.0.0.1:{victim.server.port}"
    return Site(settings, clock, redis_client, authenticator, origin, victim, attacker, stranger, alice, mallory)


@pytest.fixture
async def device(refresh_site, aiohttp_client):
    """Make another client of the site (another browser or device), optionally signed in as alice."""

    async def make(*, signed_in: bool = True, cookies: Any = None) -> TestClient:
        server = refresh_site.victim.server
        client = await aiohttp_client(server, cookie_jar=browser_jar(server.port))
        if cookies is not None:
            client.session.cookie_jar.update_cookies([(m.key, m) for m in cookies],
                                                     response_url=URL(refresh_site.origin + "/"))
        elif signed_in:
            await login(client, "alice")
        return client

    return make


# --- presenting a refresh token, and what a refusal looks like ------------------------------------------

def headers_for(site: Site, via: str) -> dict[str, str]:
    if via == "fetch":  # what fetch('/auth/refresh', {method: 'POST'}) sends from our own page
        return {"Accept": "application/json", "Origin": site.origin, "Sec-Fetch-Site": "same-origin",
                "Sec-Fetch-Mode": "cors", "Sec-Fetch-Dest": "empty"}
    return {"Accept": "text/html", "Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "navigate",
            "Sec-Fetch-Dest": "document"}


async def present(site: Site, via: str, *, token: str | None = None, access: str | None = None,
                  client: TestClient | None = None, cookie_header: str | None = None) -> Any:
    """One refresh: ``fetch`` is POST /auth/refresh answering JSON; ``hop`` is the browser's GET
    /auth/refresh?next=/account. ``token`` (beside ``access``, the access token a thief of both cookies
    also holds) goes in a hand-written Cookie header; else ``client``'s jar."""
    headers = headers_for(site, via)
    if token is not None or cookie_header is not None:
        headers["Cookie"] = cookie_header or f"{REFRESH}={token}" + (f"; {ACCESS}={access}" if access else "")
        client = site.stranger
    assert client is not None
    if via == "fetch":
        return await client.post("/auth/refresh", headers=headers, allow_redirects=False)
    return await client.get("/auth/refresh?next=%2Faccount", headers=headers, allow_redirects=False)


async def assert_refused(response: Any, via: str) -> None:
    """401 JSON (fetch) or 303 to the login page keeping ``next`` (hop); both cookies cleared with
    Max-Age=0 on the exact Path and flags they were set with, and nothing else set."""
    if via == "fetch":
        assert response.status == 401, await response.text()
        assert await response.json() == {"error": "unauthenticated", "login": "/login?next=%2F"}
    else:
        assert response.status == 303, await response.text()
        assert response.headers["Location"] == "/login?next=%2Faccount"
    cleared = {name: (m.value, m["max-age"], m["path"], bool(m["secure"]), bool(m["httponly"]), m["domain"])
               for name, m in set_cookies(response).items()}
    assert cleared == {ACCESS: ("", "0", "/", True, True, ""), REFRESH: ("", "0", "/auth", True, True, "")}
    assert response.headers["Cache-Control"] == "no-store"


async def api_status(site: Site, access: str) -> int:
    """What the API says to a stranger holding ``access`` (no refresh cookie, no redirects followed)."""
    response = await site.stranger.get("/api/me", headers={**JSON_GET, "Cookie": f"{ACCESS}={access}"},
                                       allow_redirects=False)
    return response.status


async def refresh_ok(site: Site, client: TestClient) -> None:
    response = await present(site, "fetch", client=client)
    assert response.status == 200, await response.text()


def tokens(client: TestClient) -> tuple[str, str]:
    access, refresh = cookie(client, "access"), cookie(client, "refresh")
    assert access and refresh
    return access, refresh


def parts(token: str) -> list[str]:
    """``<user id>.<session id>.<secret>.<tag>``"""
    return token.split(".")


# --- tokens the service never issued: refused, and nothing stored changes --------------------------------

def _random_part(n: int = 32) -> str:
    return secrets.token_urlsafe(n)


NEVER_ISSUED = {
    "random 43 characters": lambda site: _random_part(32),
    "random 256 characters": lambda site: _random_part(192),
    "random 257 characters": lambda site: _random_part(192) + "x",
    "well-formed, made-up ids and tag": lambda site: ".".join(_random_part(12) for _ in range(4)),
    "alice's ids with a made-up secret and tag": lambda site: ".".join(
        parts(tokens(site.victim)[1])[:2] + [_random_part(32), _random_part(16)]),
    "alice's token with a made-up tag": lambda site: ".".join(parts(tokens(site.victim)[1])[:3] + [_random_part(16)]),
    "dots only": lambda site: "...",
}


@pytest.mark.parametrize("via", VIAS)
@pytest.mark.parametrize("kind", list(NEVER_ISSUED))
async def test_never_issued_refresh_token_is_refused_and_changes_nothing(refresh_site, kind, via):
    """Anchors E.37: no Redis key is created, and a made-up token naming alice's session neither
    rotates nor revokes it (the tag proves issuance, so a forgery is never mistaken for a reuse)."""
    before = await refresh_site.stored()
    await assert_refused(await present(refresh_site, via, token=NEVER_ISSUED[kind](refresh_site)), via)
    assert await refresh_site.stored() == before
    assert await refresh_site.sessions(refresh_site.alice_id) == [refresh_site.alice["session"]]
    await refresh_ok(refresh_site, refresh_site.victim)


@pytest.mark.parametrize("via", VIAS)
@pytest.mark.parametrize("cut", ["last character", "whole tag", "tag and secret", "half", "first character"])
async def test_truncated_refresh_token_is_refused_and_changes_nothing(refresh_site, cut, via):
    real = tokens(refresh_site.victim)[1]
    truncated = {
        "last character": real[:-1],
        "whole tag": real.rsplit(".", 1)[0],
        "tag and secret": ".".join(parts(real)[:2]),
        "half": real[: len(real) // 2],
        "first character": real[1:],
    }[cut]
    before = await refresh_site.stored()
    await assert_refused(await present(refresh_site, via, token=truncated), via)
    assert await refresh_site.stored() == before
    await refresh_ok(refresh_site, refresh_site.victim)


@pytest.mark.parametrize("via", VIAS)
@pytest.mark.parametrize("swap", ["alice's token with mallory's user id", "mallory's token with alice's user id",
                                  "mallory's token with alice's user and session ids",
                                  "alice's token with mallory's session id"])
async def test_refresh_token_readdressed_to_another_user_is_refused_and_changes_nothing(refresh_site, swap, via):
    """The ids inside a refresh token are covered by its tag: pointing one at another user's session
    (to rotate it, or to get it revoked as a 'reuse') only gets a 401."""
    alice, mallory = parts(tokens(refresh_site.victim)[1]), parts(tokens(refresh_site.attacker)[1])
    readdressed = {
        "alice's token with mallory's user id": [mallory[0], *alice[1:]],
        "mallory's token with alice's user id": [alice[0], *mallory[1:]],
        "mallory's token with alice's user and session ids": [alice[0], alice[1], *mallory[2:]],
        "alice's token with mallory's session id": [alice[0], mallory[1], *alice[2:]],
    }[swap]
    before = await refresh_site.stored()
    await assert_refused(await present(refresh_site, via, token=".".join(readdressed)), via)
    assert await refresh_site.stored() == before
    await refresh_ok(refresh_site, refresh_site.victim)
    await refresh_ok(refresh_site, refresh_site.attacker)


@pytest.mark.parametrize("via", VIAS)
async def test_access_token_presented_as_refresh_token_is_refused_and_changes_nothing(refresh_site, via):
    """Anchors A.10: the access JWT is no refresh token."""
    before = await refresh_site.stored()
    await assert_refused(await present(refresh_site, via, token=tokens(refresh_site.victim)[0]), via)
    assert await refresh_site.stored() == before
    await refresh_ok(refresh_site, refresh_site.victim)


@pytest.mark.parametrize("order", ["forged last", "genuine last"])
async def test_tossed_duplicate_refresh_cookie_never_revokes_the_session(refresh_site, order):
    """Anchors D.28: a sibling subdomain can plant a ``__Secure-`` cookie with Domain=. Of two refresh
    cookies naming the access token's session, the genuine one is used wherever it stands; a planted
    forgery never counts as a reuse."""
    access, genuine = tokens(refresh_site.victim)
    forged = ".".join(parts(genuine)[:3] + [_random_part(16)])
    pair = [genuine, forged] if order == "forged last" else [forged, genuine]
    header = "; ".join(f"{REFRESH}={value}" for value in pair) + f"; {ACCESS}={access}"
    response = await present(refresh_site, "fetch", cookie_header=header)
    assert response.status == 200, await response.text()
    assert await refresh_site.sessions(refresh_site.alice_id) == [refresh_site.alice["session"]]
    assert refresh_site.alice["session"] in set_cookies(response)[REFRESH].value


# --- genuine tokens whose session has ended: refused, and no session comes back --------------------------

async def assert_session_ended(site: Site, *pairs: tuple[str, str], alice_left: int = 0) -> None:
    """Every (access, refresh) pair is refused from now on, and alice has ``alice_left`` sessions."""
    for access, refresh in pairs:
        assert await api_status(site, access) == 401
        await assert_refused(await present(site, "fetch", token=refresh, access=access), "fetch")
    assert len(await site.sessions(site.alice_id)) == alice_left
    assert await site.sessions(site.mallory_id) == [site.mallory["session"]]  # no one else is affected


@pytest.mark.parametrize("via", VIAS)
async def test_refresh_token_reused_after_grace_revokes_the_whole_session(refresh_site, via):
    """Anchors E.32: R1→R2, then R1 after the grace window. Nobody can tell thief from owner, so the
    session ends: R1, R2 and the access token issued with R2 are all refused."""
    a1, r1 = tokens(refresh_site.victim)
    await refresh_ok(refresh_site, refresh_site.victim)
    a2, r2 = tokens(refresh_site.victim)
    refresh_site.clock.advance(GRACE + 1)  # the access JWT (60 s) is still within its exp
    assert await api_status(refresh_site, a2) == 200
    await assert_refused(await present(refresh_site, via, token=r1, access=a1), via)
    await assert_session_ended(refresh_site, (a2, r2))


@pytest.mark.parametrize("via", VIAS)
async def test_refresh_token_replayed_after_logout_is_refused(refresh_site, via):
    """Anchors F.41: logout ends the session at once, not at the access token's exp."""
    a1, r1 = tokens(refresh_site.victim)
    response = await refresh_site.victim.post("/logout",
                                              headers={"X-CSRF-Token": refresh_site.alice["csrf_token"], **JSON_GET})
    assert response.status == 204
    await assert_refused(await present(refresh_site, via, token=r1, access=a1), via)
    await assert_session_ended(refresh_site, (a1, r1))


@pytest.mark.parametrize("via", VIAS)
async def test_refresh_token_of_another_device_replayed_after_password_change_is_refused(refresh_site, device, via):
    """Anchors F.46: changing the password (POST /api/password with the CSRF header) ends every other
    session; the device that changed it stays signed in."""
    phone = await device()
    a_phone, r_phone = tokens(phone)
    response = await refresh_site.victim.post("/api/password", json={"current": PASSWORD, "new": PASSWORD + " v2"},
                                              headers={"X-CSRF-Token": refresh_site.alice["csrf_token"], **JSON_GET})
    assert response.status == 204, await response.text()
    await assert_refused(await present(refresh_site, via, token=r_phone, access=a_phone), via)
    await assert_session_ended(refresh_site, (a_phone, r_phone), alice_left=1)
    assert await refresh_site.sessions(refresh_site.alice_id) == [refresh_site.alice["session"]]
    await refresh_ok(refresh_site, refresh_site.victim)


@pytest.mark.parametrize("via", VIAS)
@pytest.mark.parametrize("how", ["as the CLI does", "disabled flag alone"])
async def test_refresh_token_replayed_after_the_user_is_disabled_is_refused(refresh_site, device, how, via):
    """Anchors F.47: ``users disable`` sets the flag and signs out everywhere; even the flag alone stops
    the next refresh (and ends the session then)."""
    phone = await device()
    pairs = [tokens(refresh_site.victim), tokens(phone)]
    await refresh_site.auth.users.set_disabled(refresh_site.alice_id, True)
    if how == "as the CLI does":
        assert await refresh_site.auth.logout_everywhere(refresh_site.alice_id) == 2
    for access, refresh in pairs:
        await assert_refused(await present(refresh_site, via, token=refresh, access=access), via)
    await assert_session_ended(refresh_site, *pairs)
    response = await refresh_site.stranger.post("/login", json={"username": "alice", "password": PASSWORD})
    assert response.status == 401 and set_cookies(response) == {}


@pytest.mark.parametrize("via", VIAS)
@pytest.mark.parametrize("how", ["DELETE /api/sessions", "the account page's form"])
async def test_refresh_tokens_replayed_after_sign_out_everywhere_are_refused(refresh_site, device, how, via):
    """Anchors F.45: sign out everywhere from the phone ends the laptop's session and its own."""
    phone = await device()
    pairs = [tokens(refresh_site.victim), tokens(phone)]
    csrf = (await (await phone.get("/api/me", headers=JSON_GET)).json())["csrf_token"]
    if how == "DELETE /api/sessions":
        response = await phone.delete("/api/sessions", headers={"X-CSRF-Token": csrf, **JSON_GET})
        assert response.status == 204
    else:
        response = await phone.post("/account/sessions/revoke-all", data={"csrf": csrf},
                                    headers=headers_for(refresh_site, "hop"), allow_redirects=False)
        assert response.status == 303 and response.headers["Location"] == "/login"
    for access, refresh in pairs:
        await assert_refused(await present(refresh_site, via, token=refresh, access=access), via)
    await assert_session_ended(refresh_site, *pairs)


@pytest.mark.parametrize("via", VIAS)
async def test_grandparent_refresh_token_revokes_the_session(refresh_site, via):
    """Anchors E.36 (django-oauth-toolkit #1617): only the immediate predecessor is forgiven. R0→R1,
    then (a token issued within the grace window is kept, so only after it) R1→R2, then R0: the
    session ends. R0 can never be forgiven once R2 exists."""
    a0, r0 = tokens(refresh_site.victim)
    await refresh_ok(refresh_site, refresh_site.victim)
    _, r1 = tokens(refresh_site.victim)
    await refresh_ok(refresh_site, refresh_site.victim)
    assert tokens(refresh_site.victim)[1] == r1  # within the grace window: kept, not rotated again
    refresh_site.clock.advance(refresh_site.settings.sessions.refresh_reuse_grace + 1)
    await refresh_ok(refresh_site, refresh_site.victim)
    a2, r2 = tokens(refresh_site.victim)
    assert r2 != r1
    await assert_refused(await present(refresh_site, via, token=r0, access=a0), via)
    await assert_session_ended(refresh_site, (a2, r2))


@pytest.mark.parametrize("via", VIAS)
async def test_thief_who_refreshes_first_loses_the_session_when_the_victim_comes_back(refresh_site, device, via):
    """Anchors E.33: the thief uses stolen R1 first (gets R2'); the victim presents R1 after the grace
    window; the session ends, and the thief's R2' and access token are refused too."""
    thief = await device(cookies=jar_snapshot(refresh_site.victim))
    await refresh_ok(refresh_site, thief)
    stolen = tokens(thief)
    refresh_site.clock.advance(GRACE + 1)
    await assert_refused(await present(refresh_site, via, client=refresh_site.victim), via)
    await assert_session_ended(refresh_site, stolen)


@pytest.mark.parametrize("via", VIAS)
async def test_refresh_token_replayed_after_the_absolute_timeout_is_refused(refresh_site, via):
    """Anchors E.38: past the absolute deadline the session is gone for good."""
    pair = tokens(refresh_site.victim)
    refresh_site.clock.advance(ABSOLUTE + 1)
    await assert_refused(await present(refresh_site, via, token=pair[1], access=pair[0]), via)
    assert await refresh_site.sessions(refresh_site.alice_id) == []
