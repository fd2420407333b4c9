"""Access tokens: what verifies, and every hostile token an attacker might present instead.

Hostile tokens are crafted with PyJWT (or by hand where PyJWT refuses to help an attacker), so each
test states exactly which part of the token is wrong.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import stat
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from service.core import keyring
from service.clock import SettableClock
from service.errors import SettingsError, TokenError, TokenExpired
from service.core.keyring import KeyRing
from service.settings import TokenSettings
from service.core.access_tokens import MAX_TOKEN_LENGTH, TOKEN_TYPE, AccessClaims, TokenCodec
from tests.support.tokens import DROP, b64, forge_token, hand_made, unb64

ALGORITHMS = ("EdDSA", "ES256", "RS256", "HS256")
ASYMMETRIC = ("EdDSA", "ES256", "RS256")


@pytest.fixture(scope="module")
def rings(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, KeyRing]]:
    """One generated ring per algorithm (RSA key generation is slow: once per module)."""
    made = {}
    for algorithm in ALGORITHMS:
        directory = tmp_path_factory.mktemp(f"keys-{algorithm}") / "keys"
        made[algorithm] = (directory, keyring.load_or_create(directory, algorithm))  # type: ignore[arg-type]
    return made


@pytest.fixture(params=ALGORITHMS)
def algorithm(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def fixed_clock() -> SettableClock:
    """A clock at a fixed moment (2027-01-15), so that every token's times are known."""
    return SettableClock(1_800_000_000.0)


@pytest.fixture
def ring(rings: dict[str, tuple[Path, KeyRing]], algorithm: str) -> KeyRing:
    return rings[algorithm][1]


@pytest.fixture
def codec(ring: KeyRing, algorithm: str, fixed_clock: SettableClock) -> TokenCodec:
    return TokenCodec(TokenSettings(algorithm=algorithm, access_ttl=300), ring, fixed_clock)  # type: ignore[arg-type]


def mint(codec: TokenCodec, clock: SettableClock) -> tuple[AccessClaims, str]:
    claims = codec.mint(user_id="u-123456", session_id="s-abcdef", username="Alice", not_after=clock() + 86400)
    return claims, codec.encode(claims)


def valid_payload(clock: SettableClock, **changes: Any) -> dict[str, Any]:
    now = int(clock())
    payload: dict[str, Any] = {"iss": "cookie-session", "aud": "cookie-session", "sub": "u-123456",
                               "sid": "s-abcdef", "name": "Alice", "jti": "j-0123456789", "iat": now,
                               "exp": now + 300}
    payload.update(changes)
    return {k: v for k, v in payload.items() if v is not DROP}


# --- what verifies ---------------------------------------------------------------------------------

def test_mint_then_verify_roundtrip(codec: TokenCodec, fixed_clock: SettableClock, algorithm: str,
                                    ring: KeyRing) -> None:
    claims, token = mint(codec, fixed_clock)
    assert codec.verify(token) == claims
    assert claims.expires_at == int(fixed_clock()) + 300
    header = jwt.get_unverified_header(token)
    assert header["alg"] == algorithm
    assert header["typ"] == "at+jwt"
    assert header["kid"] == ring.current.kid
    payload = jwt.decode(token, options={"verify_signature": False})
    assert {"iss", "aud", "sub", "sid", "jti", "iat", "exp"} <= set(payload)


def test_every_token_has_its_own_id(codec: TokenCodec, fixed_clock: SettableClock) -> None:
    first, _ = mint(codec, fixed_clock)
    second, _ = mint(codec, fixed_clock)
    assert first.token_id != second.token_id


def test_token_never_outlives_its_session(codec: TokenCodec, fixed_clock: SettableClock) -> None:
    claims = codec.mint(user_id="u-1", session_id="s-1", username="a", not_after=fixed_clock() + 10)
    assert claims.expires_at == int(fixed_clock()) + 10


def test_key_files_are_private(rings: dict[str, tuple[Path, KeyRing]]) -> None:
    for directory, _ in rings.values():
        files = list(directory.iterdir())
        assert files
        for path in files:
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_ring_is_kept_across_loads(rings: dict[str, tuple[Path, KeyRing]], algorithm: str) -> None:
    directory, ring = rings[algorithm]
    again = keyring.load_or_create(directory, algorithm)  # type: ignore[arg-type]
    assert [k.kid for k in again.keys] == [k.kid for k in ring.keys]


def test_rotated_ring_signs_with_the_new_key_and_still_verifies_old_tokens(tmp_path: Path,
                                                                          fixed_clock: SettableClock) -> None:
    directory = tmp_path / "keys"
    old_ring = keyring.load_or_create(directory, "EdDSA")
    old_codec = TokenCodec(TokenSettings(), old_ring, fixed_clock)
    old_claims, old_token = mint(old_codec, fixed_clock)
    new_kid = keyring.add_key(directory, "EdDSA")
    new_ring = keyring.load_or_create(directory, "EdDSA")
    assert new_ring.current.kid == new_kid != old_ring.current.kid
    codec = TokenCodec(TokenSettings(), new_ring, fixed_clock)
    _, token = mint(codec, fixed_clock)
    assert jwt.get_unverified_header(token)["kid"] == new_kid
    assert codec.verify(old_token) == old_claims


def test_expired_token_raises_token_expired_with_its_claims(codec: TokenCodec, fixed_clock: SettableClock) -> None:
    claims, token = mint(codec, fixed_clock)
    fixed_clock.advance(299)
    assert codec.verify(token) == claims
    fixed_clock.advance(1)
    with pytest.raises(TokenExpired) as info:
        codec.verify(token)
    assert info.value.claims == claims
    assert isinstance(info.value, TokenError)


def test_leeway_tolerates_clock_skew(ring: KeyRing, algorithm: str, fixed_clock: SettableClock) -> None:
    codec = TokenCodec(TokenSettings(algorithm=algorithm, leeway=5), ring, fixed_clock)  # type: ignore[arg-type]
    claims, token = mint(codec, fixed_clock)
    fixed_clock.advance(304)
    assert codec.verify(token) == claims
    fixed_clock.advance(1)
    with pytest.raises(TokenExpired):
        codec.verify(token)


# --- forged and tampered tokens ---------------------------------------------------------------------

def test_tampered_payload_is_rejected(codec: TokenCodec, fixed_clock: SettableClock) -> None:
    _, token = mint(codec, fixed_clock)
    header, payload, signature = token.split(".")
    claims = json.loads(unb64(payload))
    claims["sub"] = "someone-else"
    with pytest.raises(TokenError) as info:
        codec.verify(".".join([header, b64(json.dumps(claims).encode()), signature]))
    assert not isinstance(info.value, TokenExpired)


def test_extended_expiry_is_rejected(codec: TokenCodec, fixed_clock: SettableClock) -> None:
    _, token = mint(codec, fixed_clock)
    header, payload, signature = token.split(".")
    claims = json.loads(unb64(payload))
    claims["exp"] += 10 ** 6
    with pytest.raises(TokenError):
        codec.verify(".".join([header, b64(json.dumps(claims).encode()), signature]))


def test_tampered_signature_is_rejected(codec: TokenCodec, fixed_clock: SettableClock) -> None:
    _, token = mint(codec, fixed_clock)
    header, payload, signature = token.split(".")
    raw = bytearray(unb64(signature))
    raw[0] ^= 0x01
    with pytest.raises(TokenError):
        codec.verify(".".join([header, payload, b64(bytes(raw))]))


def test_signature_of_another_token_is_rejected(codec: TokenCodec, fixed_clock: SettableClock) -> None:
    _, first = mint(codec, fixed_clock)
    _, second = mint(codec, fixed_clock)
    with pytest.raises(TokenError):
        codec.verify(".".join(first.split(".")[:2] + second.split(".")[2:]))


@pytest.mark.parametrize("signature", ["", "AAAA"], ids=["empty signature", "junk signature"])
def test_alg_none_is_rejected(codec: TokenCodec, fixed_clock: SettableClock, ring: KeyRing, signature: str) -> None:
    unsigned = jwt.encode(valid_payload(fixed_clock), None, algorithm="none",
                          headers={"kid": ring.current.kid, "typ": TOKEN_TYPE})
    assert unsigned.endswith(".")
    with pytest.raises(TokenError):
        codec.verify(unsigned + signature)


@pytest.mark.parametrize("victim", ASYMMETRIC)
def test_hs256_signed_with_the_public_key_is_rejected(rings: dict[str, tuple[Path, KeyRing]],
                                                       fixed_clock: SettableClock, victim: str) -> None:
    """Algorithm confusion (CVE-2015-9235 family): the attacker knows the public key from the JWKS
    and uses its bytes as an HMAC secret, hoping the verifier feeds its public key to HMAC."""
    ring = rings[victim][1]
    codec = TokenCodec(TokenSettings(algorithm=victim), ring, fixed_clock)  # type: ignore[arg-type]
    public_pem = ring.current.public.public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo)
    header = {"alg": "HS256", "typ": TOKEN_TYPE, "kid": ring.current.kid}
    for secret in (public_pem, public_pem.strip()):
        token = hand_made(header, valid_payload(fixed_clock),
                          lambda data, s=secret: hmac.new(s, data, hashlib.sha256).digest())
        with pytest.raises(TokenError):
            codec.verify(token)


def test_token_of_another_algorithm_is_rejected(rings: dict[str, tuple[Path, KeyRing]],
                                                fixed_clock: SettableClock) -> None:
    codec = TokenCodec(TokenSettings(algorithm="EdDSA"), rings["EdDSA"][1], fixed_clock)
    for other in ("ES256", "RS256", "HS256"):
        with pytest.raises(TokenError):
            codec.verify(forge_token(rings[other][1].current, valid_payload(fixed_clock)))


def test_alg_header_not_matching_the_key_is_rejected(rings: dict[str, tuple[Path, KeyRing]],
                                                     fixed_clock: SettableClock) -> None:
    """Our kid and our secret, but HS512: the alg is pinned per key, never taken from the token."""
    ring = rings["HS256"][1]
    codec = TokenCodec(TokenSettings(algorithm="HS256"), ring, fixed_clock)
    header = {"alg": "HS512", "typ": TOKEN_TYPE, "kid": ring.current.kid}
    token = hand_made(header, valid_payload(fixed_clock),
                      lambda data: hmac.new(ring.current.private, data, hashlib.sha512).digest())
    with pytest.raises(TokenError):
        codec.verify(token)


def test_key_of_an_attacker_under_our_kid_is_rejected(codec: TokenCodec, ring: KeyRing, algorithm: str,
                                                     fixed_clock: SettableClock, tmp_path: Path) -> None:
    attacker = keyring.load_or_create(tmp_path / "attacker", algorithm)  # type: ignore[arg-type]
    token = forge_token(attacker.current, valid_payload(fixed_clock), kid=ring.current.kid)
    with pytest.raises(TokenError):
        codec.verify(token)


@pytest.mark.parametrize("kid", ["no-such-key", "", 42, None, ["x"], DROP],
                         ids=["unknown", "empty", "number", "null", "list", "missing"])
def test_unknown_kid_is_rejected(codec: TokenCodec, ring: KeyRing, fixed_clock: SettableClock, kid: Any) -> None:
    with pytest.raises(TokenError):
        codec.verify(forge_token(ring.current, valid_payload(fixed_clock), kid=kid))


@pytest.mark.parametrize("typ", ["JWT", "jwt", "rt+jwt", "", None, DROP],
                         ids=["JWT", "jwt", "refresh", "empty", "null", "missing"])
def test_wrong_token_type_is_rejected(codec: TokenCodec, ring: KeyRing, fixed_clock: SettableClock, typ: Any) -> None:
    with pytest.raises(TokenError):
        codec.verify(forge_token(ring.current, valid_payload(fixed_clock), typ=typ))


def _attacker_jwk() -> dict[str, Any]:
    public = ed25519.Ed25519PrivateKey.generate().public_key()
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return {"kty": "OKP", "crv": "Ed25519", "x": b64(raw)}


@pytest.mark.parametrize(("name", "value"), [
    ("jku", "https://attacker.example/jwks.json"),
    ("x5u", "https://attacker.example/cert.pem"),
    ("jwk", _attacker_jwk()),
    ("x5c", ["MIIB"]),
    ("crit", ["exp"]),
])
def test_key_supplying_and_critical_headers_are_rejected(codec: TokenCodec, ring: KeyRing,
                                                        fixed_clock: SettableClock, name: str, value: Any) -> None:
    """RFC 8725 §3.10: keys come from our ring only, and no extension we do not understand is honoured;
    these tokens are otherwise perfectly signed by our own key."""
    with pytest.raises(TokenError):
        codec.verify(forge_token(ring.current, valid_payload(fixed_clock), **{name: value}))


@pytest.mark.parametrize(("claim", "value"), [
    ("iss", "https://attacker.example"), ("iss", DROP),
    ("aud", "another-service"), ("aud", ["cookie-session", "another-service"]), ("aud", DROP),
])
def test_wrong_issuer_or_audience_is_rejected(codec: TokenCodec, ring: KeyRing, fixed_clock: SettableClock,
                                              claim: str, value: Any) -> None:
    with pytest.raises(TokenError):
        codec.verify(forge_token(ring.current, valid_payload(fixed_clock, **{claim: value})))


@pytest.mark.parametrize("claim", ["sub", "sid", "jti", "iat", "exp"])
def test_missing_required_claim_is_rejected(codec: TokenCodec, ring: KeyRing, fixed_clock: SettableClock,
                                            claim: str) -> None:
    with pytest.raises(TokenError) as info:
        codec.verify(forge_token(ring.current, valid_payload(fixed_clock, **{claim: DROP})))
    assert not isinstance(info.value, TokenExpired)


@pytest.mark.parametrize(("claim", "value"), [
    ("sid", ""), ("sid", 123), ("sid", None), ("sid", "x" * 129), ("sub", ["u"]), ("name", 5),
    ("exp", "soon"), ("exp", True), ("iat", 1.5),
])
def test_ill_typed_claim_is_rejected(codec: TokenCodec, ring: KeyRing, fixed_clock: SettableClock,
                                     claim: str, value: Any) -> None:
    with pytest.raises(TokenError):
        codec.verify(forge_token(ring.current, valid_payload(fixed_clock, **{claim: value})))


def test_token_issued_in_the_future_is_rejected(codec: TokenCodec, ring: KeyRing, fixed_clock: SettableClock) -> None:
    now = int(fixed_clock())
    with pytest.raises(TokenError):
        codec.verify(forge_token(ring.current, valid_payload(fixed_clock, iat=now + 3600, exp=now + 3900)))


def test_token_not_yet_valid_is_rejected(codec: TokenCodec, ring: KeyRing, fixed_clock: SettableClock) -> None:
    with pytest.raises(TokenError):
        codec.verify(forge_token(ring.current, valid_payload(fixed_clock, nbf=int(fixed_clock()) + 3600)))


def test_expired_but_forged_token_is_not_reported_as_expired(codec: TokenCodec, fixed_clock: SettableClock) -> None:
    """Only authentic tokens may trigger a refresh; a forged expired one is just an error."""
    _, token = mint(codec, fixed_clock)
    fixed_clock.advance(3600)
    header, payload, signature = token.split(".")
    claims = json.loads(unb64(payload))
    claims["sub"] = "victim"
    with pytest.raises(TokenError) as info:
        codec.verify(".".join([header, b64(json.dumps(claims).encode()), signature]))
    assert not isinstance(info.value, TokenExpired)


def test_oversized_token_is_rejected(codec: TokenCodec, ring: KeyRing, fixed_clock: SettableClock) -> None:
    token = forge_token(ring.current, valid_payload(fixed_clock, padding="x" * MAX_TOKEN_LENGTH))
    assert len(token) > MAX_TOKEN_LENGTH
    with pytest.raises(TokenError):
        codec.verify(token)


@pytest.mark.parametrize("garbage", [
    "", ".", "..", "a.b.c", "abc", "a.b.c.d", "x" * 10_000, "é.é.é", "eyJ.eyJ.", "null", "\x00\x00",
    b64(b'{"alg":"EdDSA"') + "." + b64(b"{}") + ".AAAA",
    b64(b"[]") + "." + b64(b"[]") + ".AAAA",
    b64(b'{"typ":"at+jwt","kid":"k","alg":"EdDSA"}') + "." + b64(b"not json") + ".AAAA",
    "a.b.c ", " a.b.c", "a.b.c\n",
])
def test_garbage_is_rejected_with_token_error(codec: TokenCodec, garbage: str) -> None:
    with pytest.raises(TokenError) as info:
        codec.verify(garbage)
    assert not isinstance(info.value, TokenExpired)


def test_payload_that_is_not_an_object_is_rejected(codec: TokenCodec, ring: KeyRing) -> None:
    key = ring.current
    header = {"alg": key.algorithm, "typ": TOKEN_TYPE, "kid": key.kid}
    token = jwt.api_jws.encode(b"[1, 2, 3]", key.private, algorithm=key.algorithm, headers=header)
    with pytest.raises(TokenError):
        codec.verify(token)


# --- key files that cannot be used stop startup with a clear error ------------------------------------

def test_corrupt_private_key_file_is_a_settings_error(tmp_path: Path) -> None:
    directory = tmp_path / "keys"
    directory.mkdir()
    (directory / "20250101T000000-aaaaaaaa.ed25519.pem").write_text("not a key")
    with pytest.raises(SettingsError) as info:
        keyring.load_or_create(directory, "EdDSA")
    assert info.value.key == "storage.keys_dir"


def test_key_file_of_another_algorithm_is_a_settings_error(rings: dict[str, tuple[Path, KeyRing]],
                                                           tmp_path: Path) -> None:
    directory = tmp_path / "keys"
    directory.mkdir()
    rsa_pem = next(rings["RS256"][0].glob("*.pem")).read_bytes()
    (directory / "20250101T000000-aaaaaaaa.ed25519.pem").write_bytes(rsa_pem)
    with pytest.raises(SettingsError) as info:
        keyring.load_or_create(directory, "EdDSA")
    assert info.value.key == "storage.keys_dir"


@pytest.mark.parametrize("content", [b"", b"c2hvcnQ=", b"not base64 at all!"],
                         ids=["empty", "short", "garbage"])
def test_unusable_hmac_key_file_is_a_settings_error(tmp_path: Path, content: bytes) -> None:
    directory = tmp_path / "keys"
    directory.mkdir()
    (directory / "20250101T000000-aaaaaaaa.hs256").write_bytes(content)
    with pytest.raises(SettingsError) as info:
        keyring.load_or_create(directory, "HS256")
    assert info.value.key == "storage.keys_dir"
