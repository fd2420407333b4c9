"""Signing keys over HTTP: rotation keeps every live token working, pruned and unknown keys open
nothing, the ring is re-read without letting hostile ``kid`` values cost more than one directory
listing per interval, and ``/.well-known/jwks.json`` publishes public keys only, usable by another
service with plain PyJWT."""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import jwt
import pytest
from aiohttp.test_utils import TestClient

from service.core import keyring
from service.clock import SettableClock
from service.core.keyring import RELOAD_INTERVAL, KeyRing
from service.settings import Settings
from tests.support.cookies import cookie, jar_snapshot, with_value
from tests.support.sign_in import login
from tests.support.tokens import DROP, b64, resign_token

JSON = {"Accept": "application/json"}
NAVIGATE = {"Sec-Fetch-Mode": "navigate", "Sec-Fetch-Site": "same-origin", "Accept": "text/html"}
JWKS = "/.well-known/jwks.json"
PRIVATE_JWK_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}  # RFC 7518 §6.2.2, §6.3.2, §6.4

Make = Callable[..., Awaitable[Any]]


def keys_dir(settings: Settings) -> Path:
    return settings.storage.data_dir / "keys"


def ring_of(settings: Settings) -> KeyRing:
    ring = keyring.load(keys_dir(settings), settings.tokens.algorithm)
    assert ring is not None
    return ring


def kid_of(client: TestClient) -> str:
    token = cookie(client, "access")
    assert token
    return str(jwt.get_unverified_header(token)["kid"])


@pytest.fixture
async def alice_client(client: TestClient, make_user: Make) -> TestClient:
    """``client``, signed in as alice."""
    await make_user("alice")
    await login(client)
    return client


async def another(another_client: Make, like: TestClient, *, access: str | None = None,
                  server: Any = None) -> TestClient:
    """A second browser for ``like``'s server (or ``server``): with ``like``'s cookies and ``access`` as
    its access cookie, or, without ``access``, with no cookies at all."""
    cookies = [] if access is None else with_value(jar_snapshot(like), "access", access)
    return await another_client(like, cookies=cookies, server=server)


async def assert_signed_out(client: TestClient) -> None:
    """JSON gets 401 JSON and a navigation goes to the login page; neither reaches the page."""
    response = await client.get("/api/me", headers=JSON, allow_redirects=False)
    assert response.status == 401
    assert (await response.json())["error"] == "unauthenticated"
    response = await client.get("/", headers=NAVIGATE, allow_redirects=False)
    assert response.status == 303
    assert response.headers["Location"].startswith("/login?next=")


async def assert_signed_in(client: TestClient) -> dict[str, Any]:
    response = await client.get("/api/me", headers=JSON, allow_redirects=False)
    assert response.status == 200, await response.text()
    return dict(await response.json())


async def live_sessions(authenticator: Any, client: TestClient) -> list[Any]:
    user_id = jwt.decode(cookie(client, "access") or "", options={"verify_signature": False})["sub"]
    return list(await authenticator.sessions.list(user_id))


# --- rotation ----------------------------------------------------------------------------------------

async def test_restarted_instance_after_rotation_keeps_old_tokens_and_signs_with_the_new_key(
        alice_client: TestClient, make_client: Make, another_client: Make, settings: Settings, make_user: Make) -> None:
    old_kid = kid_of(alice_client)
    new_kid = keyring.add_key(keys_dir(settings), settings.tokens.algorithm)
    restarted = await make_client()
    tab = await another(another_client, alice_client, access=cookie(alice_client, "access"), server=restarted.server)
    assert (await assert_signed_in(tab))["name"] == "alice"
    await login(restarted)
    assert kid_of(restarted) == new_kid != old_kid


async def test_running_instance_signs_with_a_rotated_key_within_the_reload_interval(
        alice_client: TestClient, another_client: Make, settings: Settings, clock: SettableClock) -> None:
    old_kid = kid_of(alice_client)
    new_kid = keyring.add_key(keys_dir(settings), settings.tokens.algorithm)
    clock.advance(RELOAD_INTERVAL)
    second = await another(another_client, alice_client)
    await login(second)
    assert kid_of(second) == new_kid
    assert kid_of(alice_client) == old_kid
    await assert_signed_in(alice_client)  # minted before the rotation, still verifies


async def test_rolling_restart_old_instance_accepts_tokens_of_the_key_a_new_instance_signs_with(
        alice_client: TestClient, make_client: Make, another_client: Make,
        settings: Settings, clock: SettableClock) -> None:
    """Instance A runs; the key is rotated; instance B starts and signs with it. A, meeting the new
    kid, looks at the directory (once the interval since its last look has passed) and accepts it."""
    new_kid = keyring.add_key(keys_dir(settings), settings.tokens.algorithm)
    b = await make_client()
    await login(b)
    assert kid_of(b) == new_kid
    clock.advance(RELOAD_INTERVAL)
    on_a = await another(another_client, alice_client, access=cookie(b, "access"))
    await assert_signed_in(on_a)


# --- pruned, unknown and hostile kids ----------------------------------------------------------------

async def test_token_of_a_pruned_key_is_rejected_after_a_restart(
        alice_client: TestClient, make_client: Make, another_client: Make,
        settings: Settings, authenticator: Any) -> None:
    old = ring_of(settings).current
    keyring.add_key(keys_dir(settings), settings.tokens.algorithm)
    keyring.remove_key(keys_dir(settings), old)  # what `keys prune` does once its tokens expired
    sessions = await live_sessions(authenticator, alice_client)
    restarted = await make_client()
    stale = await another(another_client, alice_client, access=cookie(alice_client, "access"), server=restarted.server)
    await assert_signed_out(stale)
    assert await live_sessions(authenticator, alice_client) == sessions  # nothing stored changed


async def test_token_of_a_pruned_key_is_rejected_by_a_running_instance(
        alice_client: TestClient, another_client: Make, settings: Settings, clock: SettableClock) -> None:
    old = ring_of(settings).current
    keyring.add_key(keys_dir(settings), settings.tokens.algorithm)
    clock.advance(RELOAD_INTERVAL)
    await assert_signed_in(alice_client)  # this request made the instance re-read keys/: the new key signs
    keyring.remove_key(keys_dir(settings), old)
    clock.advance(RELOAD_INTERVAL)
    await assert_signed_out(alice_client)  # and this one re-read it without the old key


HOSTILE_KIDS = {
    "unknown": "20990101T000000.000000-deadbeef",
    "random": "k-" + secrets.token_hex(8),
    "traversal": "../../etc/passwd",
    "traversal into data dir": "../attacker",
    "absolute path": "/etc/passwd",
    "current kid plus suffix": "{kid}.ed25519.pem",
    "current kid, case swapped": "{KID}",
    "current kid with NUL": "{kid}\x00",
    "current kid with space": "{kid} ",
    "empty": "",
    "number": 42,
    "null": None,
    "list": ["{kid}"],
    "object": {"kid": "{kid}"},
    "missing": DROP,
}


def _hostile(kid: Any, current: str) -> Any:
    if isinstance(kid, str):
        return kid.replace("{kid}", current).replace("{KID}", current.swapcase())  # the "T" always changes
    if isinstance(kid, list):
        return [_hostile(item, current) for item in kid]
    if isinstance(kid, dict):
        return {name: _hostile(value, current) for name, value in kid.items()}
    return kid


@pytest.mark.parametrize("kid", list(HOSTILE_KIDS.values()), ids=list(HOSTILE_KIDS))
async def test_hostile_kid_signed_with_our_own_key_is_rejected(
        alice_client: TestClient, another_client: Make, settings: Settings, clock: SettableClock, authenticator: Any,
        kid: Any) -> None:
    """Our real signing key, our own claims: only the kid is wrong, so only the kid lookup can refuse it."""
    current = ring_of(settings).current
    forged = resign_token(cookie(alice_client, "access") or "", current, kid=_hostile(kid, current.kid))
    sessions = await live_sessions(authenticator, alice_client)
    clock.advance(RELOAD_INTERVAL)  # the unknown kid gets its look at the directory, and still fails
    await assert_signed_out(await another(another_client, alice_client, access=forged))
    assert await live_sessions(authenticator, alice_client) == sessions
    await assert_signed_in(alice_client)


async def test_path_traversal_kid_never_loads_a_key_file_from_outside_the_ring(
        alice_client: TestClient, another_client: Make,
        settings: Settings, clock: SettableClock, tmp_path: Path) -> None:
    """A key file an attacker got into the data dir (one level above keys/) under the kid
    ``../attacker``: a service that built a path from the kid would load it and accept the forgery."""
    attacker = keyring.load_or_create(tmp_path / "attacker", settings.tokens.algorithm)
    [planted] = (tmp_path / "attacker").iterdir()
    planted.rename(settings.storage.data_dir / ("attacker" + planted.name[len(attacker.current.kid):]))
    forged = resign_token(cookie(alice_client, "access") or "", attacker.current, kid="../attacker")
    clock.advance(RELOAD_INTERVAL)
    await assert_signed_out(await another(another_client, alice_client, access=forged))


async def test_flood_of_unknown_kids_costs_one_directory_listing_per_interval(
        alice_client: TestClient, another_client: Make, settings: Settings, clock: SettableClock,
        monkeypatch: pytest.MonkeyPatch) -> None:
    current = ring_of(settings).current
    listings: list[Path] = []
    real_load = keyring.load

    def counting_load(directory: Path, *args: Any, **kwargs: Any) -> Any:
        listings.append(directory)
        return real_load(directory, *args, **kwargs)

    monkeypatch.setattr(keyring, "load", counting_load)
    token = cookie(alice_client, "access") or ""
    clock.advance(RELOAD_INTERVAL)
    for round_ in range(3):
        for _ in range(20):
            forged = resign_token(token, current, kid="k-" + secrets.token_hex(8))
            response = await (await another(another_client, alice_client, access=forged)).get("/api/me", headers=JSON)
            assert response.status == 401
        assert len(listings) == round_ + 1
        clock.advance(RELOAD_INTERVAL)


# --- the ring is re-read, but never loses the key that signs -----------------------------------------

async def test_reload_never_drops_the_current_key(alice_client: TestClient, another_client: Make, settings: Settings,
                                                  clock: SettableClock) -> None:
    kid = kid_of(alice_client)
    for path in keys_dir(settings).iterdir():
        if not path.name.startswith("refresh"):
            path.unlink()
    clock.advance(RELOAD_INTERVAL)
    await assert_signed_in(alice_client)
    second = await another(another_client, alice_client)
    await login(second)
    assert kid_of(second) == kid
    jwks = await (await second.get(JWKS)).json()
    assert [key["kid"] for key in jwks["keys"]] == [kid]


async def test_reload_keeps_the_current_key_when_only_its_file_goes(
        alice_client: TestClient, another_client: Make,
        settings: Settings, clock: SettableClock, tmp_path: Path) -> None:
    """An older key stays on disk and the current one's file is deleted by mistake: the service does
    not fall back to signing with the older key, and its live tokens keep working."""
    kid = kid_of(alice_client)
    spare = keyring.load_or_create(tmp_path / "spare", settings.tokens.algorithm)
    [path] = (tmp_path / "spare").iterdir()
    path.rename(keys_dir(settings) / path.name.replace(spare.current.kid, "20000101T000000.000000-00000000"))
    clock.advance(RELOAD_INTERVAL)
    await login(await another(another_client, alice_client))  # the ring now holds the older key too
    (keys_dir(settings) / (kid + ".ed25519.pem")).unlink()
    clock.advance(RELOAD_INTERVAL)
    second = await another(another_client, alice_client)
    await login(second)
    assert kid_of(second) == kid
    await assert_signed_in(alice_client)


async def test_broken_key_file_appearing_later_keeps_the_ring_and_the_service_up(
        alice_client: TestClient, another_client: Make, settings: Settings, clock: SettableClock) -> None:
    kid = kid_of(alice_client)
    (keys_dir(settings) / "29990101T000000.000000-ffffffff.ed25519.pem").write_text("half a key")
    clock.advance(RELOAD_INTERVAL)
    await assert_signed_in(alice_client)
    second = await another(another_client, alice_client)
    await login(second)
    assert kid_of(second) == kid


# --- JWKS ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("algorithm", ["EdDSA", "ES256", "RS256"])
async def test_jwks_publishes_every_ring_key_and_tokens_verify_against_it_with_pyjwt(
        make_settings: Callable[..., Settings], make_client: Make, make_user: Make, algorithm: str) -> None:
    settings = make_settings(tokens={"algorithm": algorithm})
    client = await make_client(of=settings)
    await make_user("alice", of=settings)
    await login(client)
    old_token = cookie(client, "access")
    keyring.add_key(keys_dir(settings), algorithm)  # type: ignore[arg-type]
    second = await make_client(of=settings)  # restarted: the settable clock stays on real time for PyJWT
    await login(second)

    response = await second.get(JWKS)
    assert response.status == 200
    assert response.content_type == "application/json"
    assert response.headers["Cache-Control"] == "public, max-age=300"
    body = await response.json()
    ring = ring_of(settings)
    assert sorted(key["kid"] for key in body["keys"]) == sorted(key.kid for key in ring.keys)
    expected = {"EdDSA": {"kty": "OKP", "crv": "Ed25519"}, "ES256": {"kty": "EC", "crv": "P-256"},
                "RS256": {"kty": "RSA", "e": "AQAB"}}[algorithm]
    for jwk in body["keys"]:
        assert expected.items() <= jwk.items()
        assert jwk["alg"] == algorithm and jwk["use"] == "sig"
        assert not PRIVATE_JWK_MEMBERS & set(jwk), jwk

    published = jwt.PyJWKSet.from_dict(body)  # what another service does with the document
    for token in (old_token, cookie(second, "access")):
        assert token
        kid = jwt.get_unverified_header(token)["kid"]
        claims = jwt.decode(token, published[kid].key, algorithms=[algorithm], audience=settings.tokens.audience,
                            issuer=settings.tokens.issuer)
        assert claims["name"] == "alice"
    assert jwt.get_unverified_header(old_token or "")["kid"] != jwt.get_unverified_header(
        cookie(second, "access") or "")["kid"]


async def test_jwks_for_hs256_publishes_nothing(make_settings: Callable[..., Settings], make_client: Make) -> None:
    settings = make_settings(tokens={"algorithm": "HS256"})
    client = await make_client(of=settings)
    response = await client.get(JWKS)
    assert response.status == 200
    text = await response.text()
    assert json.loads(text) == {"keys": []}
    secret = ring_of(settings).current.private
    for form in (b64(secret), base64.b64encode(secret).decode(), secret.hex()):
        assert form not in text


async def test_jwks_never_leaks_the_private_key(client: TestClient, settings: Settings) -> None:
    """The Ed25519 private key is 32 raw bytes: they appear in no form in the published document."""
    from cryptography.hazmat.primitives import serialization
    private = ring_of(settings).current.private
    raw = private.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                serialization.NoEncryption())
    text = await (await client.get(JWKS)).text()
    assert b64(raw) not in text and raw.hex() not in text


async def test_jwks_is_the_one_cacheable_answer(client: TestClient) -> None:
    assert (await client.get(JWKS)).headers["Cache-Control"] == "public, max-age=300"
    for path in ("/healthz", "/login", "/api/me"):
        assert (await client.get(path, allow_redirects=False)).headers["Cache-Control"] == "no-store", path
    refused = await client.post(JWKS)  # an error at the JWKS path is not cacheable either
    assert refused.status == 405
    assert refused.headers["Cache-Control"] == "no-store"


async def test_jwks_lives_under_the_url_prefix(make_settings: Callable[..., Settings], make_client: Make) -> None:
    client = await make_client(of=make_settings(server={"url_prefix": "/sso"}))
    response = await client.get("/sso" + JWKS)
    assert response.status == 200
    assert response.headers["Cache-Control"] == "public, max-age=300"
    assert len((await response.json())["keys"]) == 1
    assert (await client.get(JWKS)).status == 404
