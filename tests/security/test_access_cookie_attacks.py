"""Hostile access cookies, sent over HTTP by a stranger with an empty cookie jar.

Every case builds one defect into an otherwise perfect token (signed with the test's real key ring,
so the defect is the only thing wrong) and expects the exact safe answer: JSON → 401 JSON naming the
login page, HTML → 303 to ``/login?next=…``, never a 5xx, no cookie that starts a session, nothing
stored in Redis changed, and the real sessions of the victim (alice) and of the attacker's own
account (mallory) still working afterwards. RFC 8725 and the security anchors §A–D name the attacks.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import hmac
import json
from typing import Any

import jwt
import pytest
from aiohttp import DummyCookieJar, web
from aiohttp.test_utils import TestClient
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from service.core import keyring
from service.core.keyring import KeyRing, SigningKey
from service.settings import Settings
from tests.support.cookies import browser_jar, cookie, jar_snapshot, set_cookies, with_value
from tests.support.raw_http import raw_exchange
from tests.support.sign_in import login
from tests.support.tokens import DROP, b64, forge_token, hand_made, unb64

ACCESS = "__Host-access"
JSON_GET = {"Accept": "application/json"}
NAVIGATE = {"Sec-Fetch-Mode": "navigate", "Sec-Fetch-Site": "none", "Sec-Fetch-Dest": "document",
            "Accept": "text/html,application/xhtml+xml"}
TRACEBACK_MARKERS = ("Traceback", 'File "', "Error:", "Exception")


# --- the scene: a victim and an attacker signed in, a stranger with an empty jar --------------------

@dataclasses.dataclass
class Scene:
    settings: Settings
    clock: Any
    redis: Any
    ring: KeyRing
    victim: TestClient  # alice, signed in
    attacker: TestClient  # mallory, signed in with her own account
    stranger: TestClient  # sends hand-written Cookie headers; its jar stays empty
    alice: dict[str, Any]  # alice's login answer
    mallory: dict[str, Any]
    before: dict[str, Any]  # everything stored under the test's key prefix after both sign-ins

    @property
    def now(self) -> int:
        return int(self.clock())

    def claims_of(self, who: str, **changes: Any) -> dict[str, Any]:
        """The payload of ``who``'s real access token, with ``changes`` (DROP removes a claim)."""
        payload = jwt.decode(self.token_of(who), options={"verify_signature": False})
        payload.update(changes)
        return {name: value for name, value in payload.items() if value is not DROP}

    def token_of(self, who: str) -> str:
        client = {"alice": self.victim, "mallory": self.attacker}[who]
        token = cookie(client, "access")
        assert token
        return token

    def sign(self, payload: dict[str, Any] | bytes, *, key: SigningKey | None = None,
             **header: Any) -> str:
        """A token signed with the service's own current key (or ``key``): only what the test
        changes is wrong."""
        return forge_token(key or self.ring.current, payload, **header)


async def stored(redis: Any, prefix: str) -> dict[bytes, Any]:
    """Every key under ``prefix`` with its value, whatever the type, to compare before and after."""
    found: dict[bytes, Any] = {}
    async for key in redis.scan_iter(match=prefix + "*"):
        kind = (await redis.type(key)).decode()
        if kind == "string":
            found[key] = await redis.get(key)
        elif kind == "hash":
            found[key] = await redis.hgetall(key)
        elif kind == "set":
            found[key] = frozenset(await redis.smembers(key))
        elif kind == "zset":
            found[key] = await redis.zrange(key, 0, -1, withscores=True)
        elif kind == "list":
            found[key] = await redis.lrange(key, 0, -1)
        else:
            pytest.fail(f"unexpected key type {kind} at {key!r}")
    return found


@pytest.fixture
async def scene(make_client, make_user, settings, clock, redis_client, aiohttp_client) -> Scene:
    await make_user("alice")
    await make_user("mallory")
    victim = await make_client()
    attacker = await aiohttp_client(victim.server, cookie_jar=browser_jar(victim.server.port))
    alice = await login(victim, "alice")
    mallory = await login(attacker, "mallory")
    stranger = await aiohttp_client(victim.server, cookie_jar=DummyCookieJar())
    ring = keyring.load(settings.storage.data_dir / "keys", settings.tokens.algorithm)
    assert ring is not None
    before = await stored(redis_client, settings.redis.key_prefix)
    return Scene(settings, clock, redis_client, ring, victim, attacker, stranger, alice, mallory, before)


# --- what a refusal looks like ------------------------------------------------------------------------

def assert_no_credentials(response: Any, *, cleared: bool) -> None:
    """No Set-Cookie hands out a credential; with ``cleared`` the access cookie is removed (Max-Age=0
    on Path=/, so the browser actually drops it), else no cookie is touched at all."""
    cookies = set_cookies(response)
    for name, morsel in cookies.items():
        assert morsel.value == "" and morsel["max-age"] == "0", f"{name} set to a value"
    if cleared:
        assert set(cookies) == {ACCESS}
        assert cookies[ACCESS]["path"] == "/" and cookies[ACCESS]["secure"]
    else:
        assert cookies == {}


async def assert_unharmed(scene: Scene) -> None:
    """Nothing stored changed, and both real sessions still work as before."""
    assert await stored(scene.redis, scene.settings.redis.key_prefix) == scene.before
    for client, signed in ((scene.victim, scene.alice), (scene.attacker, scene.mallory)):
        response = await client.get("/api/me", headers=JSON_GET, allow_redirects=False)
        assert response.status == 200
        me = await response.json()
        assert (me["name"], me["session"]) == (signed["user"]["name"], signed["session"])


def cookie_header(value: str, name: str = ACCESS) -> dict[str, str]:
    return {"Cookie": f"{name}={value}"}


async def refused(scene: Scene, token: str, *, cleared: bool = True, name: str = ACCESS,
                  extra: dict[str, str] | None = None) -> None:
    """The token in the access cookie gets a JSON 401 from the API and a 303 to the login page from
    a page, hands out nothing and harms no one."""
    headers = {**cookie_header(token, name), **(extra or {})}
    api = await scene.stranger.get("/api/me", headers={**JSON_GET, **headers}, allow_redirects=False)
    assert api.status == 401, await api.text()
    assert api.content_type == "application/json"
    assert await api.json() == {"error": "unauthenticated", "login": "/login?next=%2Fapi%2Fme"}
    assert_no_credentials(api, cleared=cleared)

    page = await scene.stranger.get("/account", headers={**NAVIGATE, **headers}, allow_redirects=False)
    assert page.status == 303, await page.text()
    assert page.headers["Location"] == "/login?next=%2Faccount"
    assert_no_credentials(page, cleared=cleared)
    await assert_unharmed(scene)


# --- raw HTTP, for bytes an HTTP client library would refuse or rewrite -------------------------------

@dataclasses.dataclass
class RawResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key.lower() == name.lower()]


async def raw_get(client: TestClient, path: str, cookie_value: bytes, *, accept: bytes = b"application/json",
                  name: bytes = ACCESS.encode()) -> RawResponse:
    port = client.server.port
    data = await raw_exchange(port, b"GET " + path.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n" % port
                              + b"Accept: " + accept + b"\r\nConnection: close\r\n"
                              + b"Cookie: " + name + b"=" + cookie_value + b"\r\n\r\n")
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = [tuple(part.strip() for part in line.split(":", 1)) for line in lines[1:]]
    return RawResponse(int(lines[0].split()[1]), headers, body)  # type: ignore[arg-type]


def assert_no_traceback(body: bytes | str) -> None:
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    for marker in TRACEBACK_MARKERS:
        assert marker not in text, text[:500]


# --- A. forgery and tampering -------------------------------------------------------------------------

def _one_char_changed(token: str) -> str:
    head, payload, signature = token.split(".")
    i = len(signature) // 2  # not the last character, whose low bits may be unused
    swapped = "A" if signature[i] != "A" else "B"
    return f"{head}.{payload}.{signature[:i]}{swapped}{signature[i + 1:]}"


@pytest.mark.parametrize("variant", ["one character", "another token's signature", "all zero"])
async def test_forged_signature_is_refused(scene, variant):
    token = scene.token_of("alice")
    head, payload, signature = token.split(".")
    forged = {
        "one character": lambda: _one_char_changed(token),
        "another token's signature": lambda: f"{head}.{payload}.{scene.token_of('mallory').split('.')[2]}",
        "all zero": lambda: f"{head}.{payload}.{b64(bytes(len(unb64(signature))))}",
    }[variant]()
    await refused(scene, forged)


@pytest.mark.parametrize("variant", ["sub and sid of another user", "exp a year later", "name changed"])
async def test_tampered_payload_with_the_original_signature_is_refused(scene, variant):
    """mallory edits her own token's payload (RFC 8725 §2.1) and keeps her genuine signature."""
    head, _, signature = scene.token_of("mallory").split(".")
    changes = {
        "sub and sid of another user": dict(sub=scene.alice["user"]["id"], sid=scene.alice["session"],
                                            name="alice"),
        "exp a year later": dict(exp=scene.now + 365 * 86400),
        "name changed": dict(name="alice"),
    }[variant]
    payload = b64(json.dumps(scene.claims_of("mallory", **changes)).encode())
    await refused(scene, f"{head}.{payload}.{signature}")


@pytest.mark.parametrize(("sub", "sid"), [("mallory", "alice"), ("alice", "mallory")],
                         ids=["mallory's sub with alice's sid", "alice's sub with mallory's sid"])
async def test_genuinely_signed_token_binding_one_user_to_another_users_session_is_refused(scene, sub, sid):
    """Even with the real key, sub and sid must name the same live session: a session is looked up
    under its own user, so a cross-bound pair names nothing."""
    people = {"alice": scene.alice, "mallory": scene.mallory}
    token = scene.sign(scene.claims_of("mallory", sub=people[sub]["user"]["id"], sid=people[sid]["session"]))
    await refused(scene, token)


@pytest.mark.parametrize("cut", ["last character", "ten characters", "signature", "signature but its dot",
                                 "payload and signature", "half"])
async def test_truncated_token_is_refused(scene, cut):
    token = scene.token_of("alice")
    head, payload, _ = token.split(".")
    truncated = {
        "last character": token[:-1],
        "ten characters": token[:-10],
        "signature": f"{head}.{payload}",
        "signature but its dot": f"{head}.{payload}.",
        "payload and signature": head,
        "half": token[: len(token) // 2],
    }[cut]
    await refused(scene, truncated)


async def test_oversized_token_signed_with_the_real_key_is_refused(scene):
    """A genuine signature does not buy a token past the 4096-character cap (ASVS 5.0 3.3.5); the
    cookie header (about 5 KB) is still within what the HTTP parser takes, so the app decides."""
    token = scene.sign(scene.claims_of("alice", pad="x" * 4000))
    assert 4096 < len(token) < 8000
    await refused(scene, token)


@pytest.mark.parametrize("size", [9 * 1024, 16 * 1024, 64 * 1024], ids=["9 KB", "16 KB", "64 KB"])
async def test_oversized_cookie_header_gets_400_without_a_traceback(scene, size):
    """Past aiohttp's 8190-byte field limit the request never reaches the app: a plain 400 that
    closes the connection, no cookie, no traceback (nginx answers the same with its own 400)."""
    answer = await raw_get(scene.stranger, "/api/me", b"x" * size)
    assert answer.status == 400
    assert answer.header("Set-Cookie") == []
    assert_no_traceback(answer.body)
    await assert_unharmed(scene)


def _signature_with_url_safe_characters(scene: Scene) -> str:
    """A genuine token of alice's whose signature has a ``-`` or ``_`` (so the standard alphabet
    differs); jti varies until one does (each try ~6% to miss)."""
    for attempt in range(200):
        token = scene.sign(scene.claims_of("alice", jti=f"reencode-{attempt}"))
        if set(token.split(".")[2]) & set("-_"):
            return token
    raise AssertionError("no signature with - or _ in 200 tries")


@pytest.mark.parametrize("variant", ["padding on the signature", "padding on every segment",
                                     "standard alphabet in the signature"])
async def test_re_encoded_token_is_refused(scene, variant):
    """PyJWT's lenient base64 decoder reads these as the very same bytes (security anchors A.12), so
    only the service's strict format check stands between them and acceptance: the control below
    shows the token itself is good."""
    token = _signature_with_url_safe_characters(scene)
    head, payload, signature = token.split(".")

    def padded(segment: str) -> str:
        return segment + "=" * (-len(segment) % 4)

    encoded = {
        "padding on the signature": f"{head}.{payload}.{padded(signature)}",
        "padding on every segment": ".".join(padded(s) for s in (head, payload, signature)),
        "standard alphabet in the signature": f"{head}.{payload}.{signature.translate(str.maketrans('-_', '+/'))}",
    }[variant]
    assert encoded != token and unb64(encoded.split(".")[2].rstrip("=")) == unb64(signature)
    control = await scene.stranger.get("/api/me", headers={**JSON_GET, **cookie_header(token)})
    assert control.status == 200
    await refused(scene, encoded)


@pytest.mark.parametrize("variant", ["as it was", "padding added", "junk inserted in the signature",
                                     "unused low bits of the signature flipped"])
async def test_logged_out_token_in_any_encoding_is_refused(scene, variant):
    """Revocation is keyed on the session id, never on the token's bytes (OWASP JWT CS "denylist";
    anchors A.12): re-encodings of a logged-out token that PyJWT still reads as validly signed
    are refused like the token itself."""
    token = scene.token_of("alice")
    response = await scene.victim.post("/logout", headers={"X-CSRF-Token": scene.alice["csrf_token"]})
    assert response.status == 204
    head, payload, signature = token.split(".")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    flipped = signature[:-1] + alphabet[alphabet.index(signature[-1]) ^ 1]
    replayed = {
        "as it was": token,
        "padding added": token + "=" * (-len(signature) % 4),
        "junk inserted in the signature": f"{head}.{payload}.{signature[:8]}!!!!{signature[8:]}",
        "unused low bits of the signature flipped": f"{head}.{payload}.{flipped}",
    }[variant]
    if variant == "unused low bits of the signature flipped":
        assert unb64(flipped) == unb64(signature)  # the same signature bytes to a lenient decoder
    scene.before = await stored(scene.redis, scene.settings.redis.key_prefix)
    api = await scene.stranger.get("/api/me", headers={**JSON_GET, **cookie_header(replayed)})
    assert api.status == 401
    assert_no_credentials(api, cleared=True)
    assert await stored(scene.redis, scene.settings.redis.key_prefix) == scene.before


# --- A. algorithm games ---------------------------------------------------------------------------------

@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
@pytest.mark.parametrize("signature", ["empty", "kept"])
async def test_alg_none_is_refused(scene, alg, signature):
    """RFC 8725 §3.1–3.2, every spelling (the 8725bis blocklist bypass), with an empty signature and
    with the original one kept."""
    token = scene.token_of("alice")
    header = {"alg": alg, "kid": scene.ring.current.kid, "typ": "at+jwt"}
    unsigned = b64(json.dumps(header).encode()) + "." + token.split(".")[1] + "."
    await refused(scene, unsigned + ("" if signature == "empty" else token.split(".")[2]))


def _attacker_key(algorithm: str, kid: str) -> SigningKey:
    if algorithm == "EdDSA":
        private: Any = ed25519.Ed25519PrivateKey.generate()
    elif algorithm == "ES256":
        private = ec.generate_private_key(ec.SECP256R1())
    elif algorithm == "RS256":
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    else:
        return SigningKey(kid, algorithm, private=b"secret", public=b"secret")  # type: ignore[arg-type]
    return SigningKey(kid, algorithm, private, private.public_key())  # type: ignore[arg-type]


@pytest.mark.parametrize("algorithm", ["EdDSA", "ES256", "RS256"])
async def test_token_signed_by_an_attacker_key_under_our_kid_is_refused(scene, algorithm):
    """RFC 8725 §3.1: keys come from our ring, and each key verifies exactly one algorithm."""
    key = _attacker_key(algorithm, scene.ring.current.kid)
    await refused(scene, scene.sign(scene.claims_of("alice"), key=key))


@pytest.mark.parametrize("alg", ["HS256", "HS384", "HS512"])
@pytest.mark.parametrize("secret", [b"secret", b"", b"cookie-session"], ids=["secret", "empty", "issuer"])
async def test_hmac_with_a_guessed_secret_is_refused(scene, alg, secret):
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[alg]
    header = {"alg": alg, "kid": scene.ring.current.kid, "typ": "at+jwt"}
    token = hand_made(header, scene.claims_of("alice"), lambda data: hmac.new(secret, data, digest).digest())
    await refused(scene, token)


def _public_key_forms(key: SigningKey) -> dict[str, bytes]:
    public = key.public
    pem = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return {
        "PEM": pem,
        "PEM without its newline": pem.strip(),
        "DER": public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo),
        "raw": raw,
        "OpenSSH": public.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH),
        "JWK": json.dumps({"kty": "OKP", "crv": "Ed25519", "x": b64(raw)}).encode(),
    }


@pytest.mark.parametrize("form", ["PEM", "PEM without its newline", "DER", "raw", "OpenSSH", "JWK"])
async def test_hs256_signed_with_the_eddsa_public_key_is_refused(scene, form):
    """Key confusion (CVE-2015-9235, PyJWT CVE-2022-29217): the public key, as published, used as an
    HMAC secret under our kid. The algorithm is pinned per key, never taken from the token."""
    assert scene.ring.current.algorithm == "EdDSA"
    secret = _public_key_forms(scene.ring.current)[form]
    header = {"alg": "HS256", "kid": scene.ring.current.kid, "typ": "at+jwt"}
    token = hand_made(header, scene.claims_of("alice"), lambda data: hmac.new(secret, data, hashlib.sha256).digest())
    await refused(scene, token)


@pytest.mark.parametrize("secret_file", ["csrf.key", "refresh.key"])
@pytest.mark.parametrize("kid", ["ours", "named after the file"])
async def test_hs256_signed_with_another_secret_of_the_service_is_refused(scene, secret_file, kid):
    """RFC 8725 §3.12: the CSRF and refresh-token HMAC keys never sign or verify access tokens."""
    secret = keyring.load_or_create_secret(scene.settings.storage.data_dir / "keys", secret_file)
    header = {"alg": "HS256", "typ": "at+jwt",
              "kid": scene.ring.current.kid if kid == "ours" else secret_file.removesuffix(".key")}
    token = hand_made(header, scene.claims_of("alice"), lambda data: hmac.new(secret, data, hashlib.sha256).digest())
    await refused(scene, token)


# --- B. type, issuer, audience, claims and time ----------------------------------------------------------

@pytest.mark.parametrize("typ", ["JWT", "jwt", "rt+jwt", "", None, 1, DROP],
                         ids=["JWT", "jwt", "refresh type", "empty", "null", "number", "missing"])
async def test_wrong_token_type_is_refused(scene, typ):
    """RFC 8725 §3.11 / RFC 9068: only ``typ: at+jwt`` is an access token."""
    await refused(scene, scene.sign(scene.claims_of("alice"), typ=typ))


@pytest.mark.parametrize("iss", ["https://attacker.example", "cookie-sessio", "cookie-session.evil",
                                 "xcookie-session", ["cookie-session"], 1, None, DROP],
                         ids=["foreign", "prefix", "suffixed", "prefixed", "list", "number", "null", "missing"])
async def test_wrong_issuer_is_refused(scene, iss):
    """Exact match only (RFC 8725 §3.8; PyJWT CVE-2024-53861 was a partial match)."""
    await refused(scene, scene.sign(scene.claims_of("alice", iss=iss)))


@pytest.mark.parametrize("aud", ["another-service", ["cookie-session", "another-service"], ["cookie-session"],
                                 [], "", 1, None, DROP],
                         ids=["foreign", "list with ours", "list of ours", "empty list", "empty", "number",
                              "null", "missing"])
async def test_wrong_audience_is_refused(scene, aud):
    """RFC 8725 §3.9, strict: the audience is exactly our string."""
    await refused(scene, scene.sign(scene.claims_of("alice", aud=aud)))


@pytest.mark.parametrize("claim", ["sid", "exp", "sub", "jti", "iat"])
async def test_token_missing_a_required_claim_is_refused(scene, claim):
    """PyJWT checks exp/iat only if present unless required (anchors B.14): all are required."""
    await refused(scene, scene.sign(scene.claims_of("alice", **{claim: DROP})))


@pytest.mark.parametrize(("claim", "value"), [
    ("exp", "9999999999"), ("exp", 9999999999.5), ("exp", True), ("iat", "abc"), ("sub", 123),
    ("sid", None), ("sid", ["x"]), ("sid", "s" * 129), ("jti", ""), ("name", {"admin": True}),
], ids=["exp as text", "exp fractional", "exp boolean", "iat as text", "sub number", "sid null", "sid list",
        "sid too long", "jti empty", "name object"])
async def test_token_with_an_ill_typed_claim_is_refused(scene, claim, value):
    await refused(scene, scene.sign(scene.claims_of("alice", **{claim: value})))


async def test_token_issued_in_the_future_is_refused(scene):
    """RFC 7519 §4.1.6 with the configured leeway (0 s): a clock-skewed or pre-minted token."""
    iat = scene.now + 3600
    await refused(scene, scene.sign(scene.claims_of("alice", iat=iat, exp=iat + 60)))


@pytest.mark.parametrize("nbf", ["an hour ahead", "one second ahead", "as text"])
async def test_token_not_yet_valid_is_refused(scene, nbf):
    """RFC 7519 §4.1.5."""
    value = {"an hour ahead": scene.now + 3600, "one second ahead": scene.now + 1, "as text": "soon"}[nbf]
    await refused(scene, scene.sign(scene.claims_of("alice", nbf=value)))


@pytest.mark.parametrize("session", ["no longer exists", "is alice's live one"])
async def test_long_expired_token_without_a_refresh_cookie_ends_on_the_login_page(scene, session):
    """An authentic but expired token is sent through the refresh hop (it is not worth a Redis look-up
    before that); without a refresh cookie the hop clears both cookies and ends at 401 / the login
    page, creating nothing and leaving alice's session alone."""
    expired = scene.now - 30 * 86400
    sid = "a-session-long-gone" if session == "no longer exists" else scene.alice["session"]
    token = scene.sign(scene.claims_of("alice", sid=sid, iat=expired - 60, exp=expired))
    for path, headers, final in (("/api/me", JSON_GET, 401), ("/account", NAVIGATE, 303)):
        hop = await scene.stranger.get(path, headers={**headers, **cookie_header(token)}, allow_redirects=False)
        assert hop.status == 307
        assert hop.headers["Location"] == "/auth/refresh?next=" + path.replace("/", "%2F")
        assert set_cookies(hop) == {}
        answer = await scene.stranger.get(hop.headers["Location"], headers={**headers, **cookie_header(token)},
                                          allow_redirects=False)
        assert answer.status == final
        login_url = "/login?next=" + path.replace("/", "%2F")
        if final == 401:
            assert await answer.json() == {"error": "unauthenticated", "login": login_url}
        else:
            assert answer.headers["Location"] == login_url
        cleared = set_cookies(answer)
        assert {name: (m.value, m["max-age"], m["path"]) for name, m in cleared.items()} == {
            ACCESS: ("", "0", "/"), "__Secure-refresh": ("", "0", "/auth")}
    await assert_unharmed(scene)


async def test_expired_token_of_the_victim_beside_the_attackers_refresh_cookie_is_sent_to_sign_in(
        scene, another_client):
    """Anchors B.22: a refresh token is used only beside the access token of its own session. mallory
    puts an (authentic, expired) token of alice's next to her own refresh cookie: the hop sends her to
    sign in and clears both cookies, mallory's session is not rotated, and alice's is untouched."""
    expired = scene.sign(scene.claims_of("alice", iat=scene.now - 120, exp=scene.now - 60))
    mallory = await another_client(scene.attacker, cookies=with_value(jar_snapshot(scene.attacker), "access", expired))
    response = await mallory.get("/api/me", headers=JSON_GET)
    assert response.status == 401 and (await response.json())["error"] == "unauthenticated"
    now = await stored(scene.redis, scene.settings.redis.key_prefix)
    alice_keys = [key for key in scene.before if scene.alice["user"]["id"].encode() in key]
    assert alice_keys and all(now.get(key) == scene.before[key] for key in alice_keys)
    mallory_keys = [key for key in scene.before if scene.mallory["user"]["id"].encode() in key]
    assert mallory_keys and all(now.get(key) == scene.before[key] for key in mallory_keys)
    assert (await scene.victim.get("/api/me", headers=JSON_GET)).status == 200


# --- C. kid and key selection -------------------------------------------------------------------------

@pytest.mark.parametrize("kid", [
    "no-such-key", "", "../../../../dev/null", "../keys/{kid}", "{kid}.ed25519.pem", "{kid}/", "{KID}",
    "' OR '1'='1", "${{jndi:ldap://127.0.0.1:1/x}}", "k" * 2000, "refresh", "csrf",
], ids=["unknown", "empty", "path traversal", "traversal to our key", "our key's file name",
        "our kid with a slash", "our kid case-swapped", "sql", "jndi", "2000 characters", "refresh key name",
        "csrf key name"])
async def test_unknown_or_hostile_kid_is_refused(scene, kid):
    """Anchors C.23: the kid only ever selects a key already in the ring (no file or database look-up
    keyed by it); every token here is signed with our real key."""
    real = scene.ring.current.kid
    chosen = kid.format(kid=real, KID=real.swapcase())  # swapcase: the "T" in every kid always changes
    await refused(scene, scene.sign(scene.claims_of("alice"), kid=chosen))


@pytest.mark.parametrize("kid", [123, 1.5, True, None, {}, ["{kid}"], {"kid": "{kid}"}, DROP],
                         ids=["number", "float", "boolean", "null", "object", "list holding ours",
                              "object holding ours", "missing"])
async def test_non_string_kid_is_refused(scene, kid):
    real = scene.ring.current.kid
    if isinstance(kid, list):
        kid = [real]
    elif isinstance(kid, dict) and kid:
        kid = {"kid": real}
    await refused(scene, scene.sign(scene.claims_of("alice"), kid=kid))


@dataclasses.dataclass
class Canary:
    url: str
    hits: list[str]
    key: SigningKey  # the attacker's, published by the canary as a JWKS


@pytest.fixture
async def canary(aiohttp_server) -> Canary:
    """A listener that records every request: key URLs in a token header must never be fetched."""
    hits: list[str] = []
    attacker = ed25519.Ed25519PrivateKey.generate()
    raw = attacker.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)

    async def record(request: web.Request) -> web.StreamResponse:
        hits.append(request.path_qs)
        return web.json_response({"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "evil", "x": b64(raw)}]})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    server = await aiohttp_server(app, host="127.0.0.1")
    return Canary(f"http://127.0.0.1:{server.port}", hits, SigningKey("evil", "EdDSA", attacker, attacker.public_key()))


@pytest.mark.parametrize("header", ["jku", "x5u"])
@pytest.mark.parametrize("signer", ["our key", "the key the URL serves"])
async def test_jku_and_x5u_headers_are_refused_and_never_fetched(scene, canary, header, signer):
    """RFC 8725 §2.9, §3.10 (SSRF): the canary serves a JWKS with the attacker's key, and gets no call."""
    key = None if signer == "our key" else canary.key
    url = canary.url + ("/jwks.json" if header == "jku" else "/cert.pem")
    kid = {} if key is None else {"kid": "evil"}
    await refused(scene, scene.sign(scene.claims_of("alice"), key=key, **{header: url}, **kid))
    await asyncio.sleep(0.05)  # a background fetch, if any, would have landed by now
    assert canary.hits == []


@pytest.mark.parametrize("header", ["jwk", "x5c"])
@pytest.mark.parametrize("signer", ["our key", "the embedded key"])
async def test_embedded_key_headers_are_refused(scene, header, signer):
    """CVE-2018-0114: a token carrying the key that verifies it."""
    attacker = ed25519.Ed25519PrivateKey.generate()
    raw = attacker.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    value: Any = ({"kty": "OKP", "crv": "Ed25519", "x": b64(raw)} if header == "jwk"
                  else [base64.b64encode(raw).decode()])
    key = None if signer == "our key" else SigningKey(scene.ring.current.kid, "EdDSA", attacker, attacker.public_key())
    await refused(scene, scene.sign(scene.claims_of("alice"), key=key, **{header: value}))


@pytest.mark.parametrize("crit", [{"crit": ["x-policy"], "x-policy": 1}, {"crit": ["exp"]}, {"crit": []},
                                  {"crit": "b64"}, {"crit": ["b64"], "b64": False}, {"b64": False}],
                         ids=["unknown extension", "registered name", "empty", "not a list", "b64 false",
                              "b64 false without crit"])
async def test_critical_header_is_refused(scene, crit):
    """RFC 7515 §4.1.11, RFC 7797; PyJWT ≤2.11 ignored crit (CVE-2026-32597)."""
    await refused(scene, scene.sign(scene.claims_of("alice"), **crit))


# --- A.10 / D. confusion, garbage and odd channels ----------------------------------------------------------

async def test_refresh_token_in_the_access_cookie_is_refused(scene):
    """RFC 8725 §2.8: alice's real refresh token is no access token; and being shown in the wrong
    place neither consumes nor revokes it."""
    refresh = cookie(scene.victim, "refresh")
    assert refresh
    await refused(scene, refresh)
    response = await scene.victim.post("/auth/refresh", headers=JSON_GET)
    assert response.status == 200


GARBAGE = {
    "dot": ".", "two dots": "..", "three dots": "...", "two segments": "a.b", "three letters": "a.b.c",
    "four segments": "a.b.c.d", "five segments (JWE shape)": "e30.e30.e30.e30.e30", "punctuation": "!!!.!!!.!!!",
    "not base64": "%%%.%%%.%%%", "base64 of non-JSON": "bm90IGpzb24.e30.c2ln",
    "header a JSON array": b64(b"[1]") + ".e30.c2ln", "header a number": "MQ.e30.c2ln",
    "header a JSON string": b64(b'"x"') + ".e30.c2ln",
    "header UTF-16": b64('{"alg":"EdDSA"}'.encode("utf-16")) + ".e30.c2ln",
    "percent-encoded": "%7B%22alg%22%3A%22none%22%7D.e30.x",
    "nested header 1000 deep": b64(b"[" * 1000) + ".e30.x",
    "nested header object": b64(b'{"a":' * 600) + ".e30.x",
    "JWS JSON serialization": b64(json.dumps({"payload": "e30", "signatures": [{"signature": "x"}]}).encode()),
    "base64 junk": b64(bytes(range(256))),
    "spaces": "a b c",
}


@pytest.mark.parametrize("garbage", list(GARBAGE))
async def test_structural_garbage_is_refused(scene, garbage):
    """Anchors D.25–26: nothing parses into a 5xx, including JSON nested past the recursion limit."""
    await refused(scene, GARBAGE[garbage])


async def test_empty_access_cookie_is_anonymous(scene):
    await refused(scene, "", cleared=False)


@pytest.mark.parametrize("depth", [1000, 2000])
async def test_deeply_nested_payload_signed_with_the_real_key_is_refused(scene, depth):
    """Defence in depth: even a genuinely signed payload that blows the JSON recursion limit is a 401."""
    await refused(scene, scene.sign(b"[" * depth))


async def test_jws_json_serialization_of_a_real_token_is_refused(scene):
    """Anchors A.11: the compact form only; a genuine token re-wrapped as JWS JSON is not accepted."""
    head, payload, signature = scene.token_of("alice").split(".")
    wrapped = json.dumps({"payload": payload, "signatures": [{"protected": head, "signature": signature}]},
                         separators=(",", ":"))
    answer = await raw_get(scene.stranger, "/api/me", wrapped.encode())
    assert answer.status == 401
    await assert_unharmed(scene)


@pytest.mark.parametrize("value", ["ünïcødé.ünï.cødé", "\U0001f512.\U0001f511.x", "\u202eevil"],
                         ids=["latin letters", "emoji", "right-to-left override"])
async def test_non_ascii_access_cookie_is_refused(scene, value):
    """Anchors D.25: UTF-8 bytes in the Cookie header (a client library would refuse to send them)."""
    answer = await raw_get(scene.stranger, "/api/me", value.encode())
    assert answer.status == 401
    assert json.loads(answer.body) == {"error": "unauthenticated", "login": "/login?next=%2Fapi%2Fme"}
    assert [c.split(";")[0] for c in answer.header("Set-Cookie")] == [f'{ACCESS}=""']
    await assert_unharmed(scene)


@pytest.mark.parametrize("value", [b"a\x00b", b"\x00", b"eyJ\x00.e30.x", b"\x7f\x01\x02"],
                         ids=["NUL inside", "NUL alone", "NUL in a token", "control characters"])
async def test_nul_and_control_bytes_in_the_cookie_get_400_without_a_traceback(scene, value):
    """The HTTP parser refuses control bytes in a header before the app runs: a 400, no cookie."""
    answer = await raw_get(scene.stranger, "/api/me", value)
    assert answer.status == 400
    assert answer.header("Set-Cookie") == []
    assert_no_traceback(answer.body)
    await assert_unharmed(scene)


@pytest.mark.parametrize("value", [b"\xff\xfe\xfd", b"\xc3(", b"eyJ\xc0\xaf.e30.x"],
                         ids=["not UTF-8", "truncated UTF-8", "overlong slash"])
async def test_invalid_utf8_in_the_access_cookie_is_refused(scene, value):
    answer = await raw_get(scene.stranger, "/api/me", value)
    assert answer.status == 401
    assert json.loads(answer.body) == {"error": "unauthenticated", "login": "/login?next=%2Fapi%2Fme"}
    assert [c.split(";")[0] for c in answer.header("Set-Cookie")] == [f'{ACCESS}=""']
    await assert_unharmed(scene)


@pytest.mark.parametrize("name", ["__host-access", "__HOST-ACCESS", "__Host-Access", "access", "__Secure-access",
                                  "__Host-access_", "__Host-access%00"],
                         ids=["lower case", "upper case", "mixed case", "unprefixed", "secure prefix",
                              "suffixed", "encoded NUL suffix"])
async def test_access_cookie_under_a_look_alike_name_is_ignored(scene, name):
    """Anchors D.29: only the exact name is read (user agents fold prefix case; the server must not),
    so alice's genuine token under another name signs no one in, and clears nothing."""
    answer = await raw_get(scene.stranger, "/api/me", scene.token_of("alice").encode(), name=name.encode())
    assert answer.status == 401
    assert answer.header("Set-Cookie") == []
    await assert_unharmed(scene)


@pytest.mark.parametrize("order", ["forged last", "genuine last"])
async def test_duplicate_access_cookies_are_decided_by_the_last_one_and_never_mix(scene, order):
    """Anchors D.28 (cookie tossing): with two access cookies the last one decides (aiohttp's parser);
    a forged one never authenticates, and a genuine one only as its own user."""
    genuine = scene.token_of("mallory")
    forged = _one_char_changed(scene.token_of("alice"))
    pair = [genuine, forged] if order == "forged last" else [forged, genuine]
    answer = await scene.stranger.get("/api/me", headers={**JSON_GET, "Cookie": "; ".join(
        f"{ACCESS}={value}" for value in pair)})
    if order == "forged last":
        assert answer.status == 401
    else:
        assert answer.status == 200
        assert (await answer.json())["name"] == "mallory"
    await assert_unharmed(scene)


@pytest.mark.parametrize("channel", ["Authorization: Bearer", "access_token query parameter",
                                     "X-Access-Token header"])
async def test_access_token_in_another_channel_is_ignored(scene, channel):
    """Anchors D.30: cookie only; a genuine token in a URL or header authenticates nobody."""
    token = scene.token_of("alice")
    if channel == "access_token query parameter":
        response = await scene.stranger.get(f"/api/me?access_token={token}", headers=JSON_GET)
    else:
        header = {"Authorization: Bearer": ("Authorization", f"Bearer {token}"),
                  "X-Access-Token header": ("X-Access-Token", token)}[channel]
        response = await scene.stranger.get("/api/me", headers={**JSON_GET, header[0]: header[1]})
    assert response.status == 401
    assert set_cookies(response) == {}
    await assert_unharmed(scene)


async def test_forged_token_cannot_drive_an_unsafe_route(scene):
    """A forged token naming alice's session, with alice's own CSRF token, still signs no one in: sign
    out everywhere is a 401 and alice keeps her session; logout revokes nothing."""
    forged = _one_char_changed(scene.token_of("alice"))
    headers = {**JSON_GET, **cookie_header(forged), "X-CSRF-Token": scene.alice["csrf_token"]}
    response = await scene.stranger.delete("/api/sessions", headers=headers)
    assert response.status == 401
    assert_no_credentials(response, cleared=True)
    response = await scene.stranger.post("/logout", headers=headers)
    assert response.status == 204
    await assert_unharmed(scene)
