"""Access tokens: mint and verify the short-lived JWT that names a user and a session.

The only module that touches PyJWT. Verification pins the configured algorithm, requires every
claim the service relies on, and checks time against the injected clock (RFC 8725 §3.1, §3.11).
"""

from __future__ import annotations

import dataclasses
import re
import secrets
from collections.abc import Callable
from typing import Any

import jwt

from ..clock import Clock
from ..errors import TokenError, TokenExpired
from ..settings import TokenSettings
from .keyring import KeyDirectory, KeyRing, SigningKey

TOKEN_TYPE = "at+jwt"  # RFC 9068 §2.1: a refresh or ID token can never pass as an access token
MAX_TOKEN_LENGTH = 4096
MAX_VERIFIED = 50_000  # cached verified tokens (~1 KB each with the key text)
_REQUIRED = ("iss", "aud", "sub", "sid", "jti", "iat", "exp")
_FORMAT = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$")
_FORBIDDEN_HEADERS = ("jku", "x5u", "jwk", "x5c", "crit")


@dataclasses.dataclass(frozen=True)
class AccessClaims:
    """What a verified access token says: the signed-in user, as ``require_user`` gives it."""

    user_id: str  # ``sub``: the user's stable id (the logs and ``X-Auth-Subject`` use it)
    session_id: str  # ``sid``: the session, as listed on the account page and in ``/api/sessions``
    username: str  # ``name``: the name the user signs in with, as it was when the token was minted
    token_id: str  # ``jti``
    issued_at: int  # ``iat``, Unix seconds
    expires_at: int  # ``exp``, Unix seconds; the refresh hop mints a successor after it
    # ``auth_time`` (OpenID Connect Core §2), Unix seconds: when the user last authenticated in this
    # session, at sign-in or a step-up; refreshes carry it over. 0 in tokens minted before it existed.
    auth_time: int = 0


class TokenCodec:
    """Mints and verifies access JWTs with one key ring and one clock.

    Given a :class:`~service.core.keyring.KeyDirectory` rather than a fixed ring, it follows the directory
    (re-read at most once per interval, whatever the traffic): signing picks up a rotated key, a kid
    another instance just started using becomes known, and a removed key stops verifying.
    """

    def __init__(self, settings: TokenSettings, ring: KeyRing | KeyDirectory, clock: Clock) -> None:
        self._settings = settings
        self._ring: Callable[[], KeyRing] = ring.rescan if isinstance(ring, KeyDirectory) else lambda: ring
        self._clock = clock
        # Tokens whose signature and claims were verified, by their exact text: a browser sends the
        # same token for minutes, and the signature check is most of the cost of a request. Only
        # the expiry is re-checked on a hit. Bounded; the oldest entries go first.
        # A change of the ring empties it, so a removed (compromised) key stops verifying at once.
        self._verified: dict[str, AccessClaims] = {}
        self._verified_ring: KeyRing | None = None
        self._verified_kids: frozenset[str] = frozenset()
        self._leeway = settings.leeway

    def mint(self, *, user_id: str, session_id: str, username: str, not_after: float,
             auth_time: float | None = None) -> AccessClaims:
        """Claims for a new access token, expiring after ``access_ttl`` or at ``not_after``; the user
        authenticated at ``auth_time`` (None: now, a fresh sign-in)."""
        now = int(self._clock())
        expires = min(now + int(self._settings.access_ttl), int(not_after))
        authenticated = now if auth_time is None else int(auth_time)
        return AccessClaims(user_id, session_id, username, secrets.token_urlsafe(16), now, expires, authenticated)

    def encode(self, claims: AccessClaims) -> str:
        key = self._ring().current
        payload = {
            "iss": self._settings.issuer,
            "aud": self._settings.audience,
            "sub": claims.user_id,
            "sid": claims.session_id,
            "name": claims.username,
            "jti": claims.token_id,
            "iat": claims.issued_at,
            "exp": claims.expires_at,
            "auth_time": claims.auth_time,
        }
        return jwt.encode(payload, key.private, algorithm=key.algorithm, headers={"kid": key.kid, "typ": TOKEN_TYPE})

    def verify(self, token: str) -> AccessClaims:
        """Check signature, type, issuer, audience and time.

        Raises:
            TokenExpired: authentic but past ``exp`` (the claims ride on the exception).
            TokenError: anything else wrong with it.
        """
        ring = self._ring()
        if ring is not self._verified_ring:
            self._follow(ring)
        claims = self._verified.get(token)
        if claims is not None:  # the hot path: a token seen before
            if claims.expires_at <= self._clock() - self._leeway:
                raise TokenExpired(claims)
            return claims
        if len(token) > MAX_TOKEN_LENGTH or not _FORMAT.match(token):
            raise TokenError("malformed token")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise TokenError("malformed header") from None
        key = self._check_header(header)
        try:
            payload = jwt.decode(
                token,
                key.public,
                algorithms=[key.algorithm],
                audience=self._settings.audience,
                issuer=self._settings.issuer,
                options={"require": list(_REQUIRED), "verify_exp": False, "verify_iat": False,
                         "verify_nbf": False, "strict_aud": True},
            )
        except jwt.PyJWTError as exc:
            raise TokenError(type(exc).__name__) from None
        claims = _claims(payload)
        self._check_time(claims, payload)
        self._verified[token] = claims
        if len(self._verified) > MAX_VERIFIED:
            del self._verified[next(iter(self._verified))]
        return claims

    def _follow(self, ring: KeyRing) -> None:
        kids = frozenset(key.kid for key in ring.keys)
        if kids != self._verified_kids:
            self._verified.clear()
            self._verified_kids = kids
        self._verified_ring = ring

    def _check_header(self, header: dict[str, Any]) -> Any:
        if header.get("typ") != TOKEN_TYPE:
            raise TokenError("wrong token type")
        if any(name in header for name in _FORBIDDEN_HEADERS):
            raise TokenError("forbidden header")  # SECURITY: RFC 8725 §3.10, keys only from our ring
        key = self._ring().get(header.get("kid"))  # SECURITY: a kid is looked up, never used as a path
        if key is None or header.get("alg") != key.algorithm:
            raise TokenError("unknown key")
        return key

    def public_jwks(self) -> dict[str, Any]:
        """The ring's public keys as a JWK Set (RFC 7517 §5), for other services to verify access
        tokens with. HS256 keys are secrets: with HS256 the set is empty."""
        return {"keys": [_public_jwk(key) for key in self._ring().keys if key.algorithm != "HS256"]}

    def _check_time(self, claims: AccessClaims, payload: dict[str, Any]) -> None:
        now = self._clock()
        leeway = self._settings.leeway
        if claims.issued_at > now + leeway + 1:
            raise TokenError("issued in the future")
        if "nbf" in payload and not (isinstance(payload["nbf"], int) and payload["nbf"] <= now + leeway):
            raise TokenError("not yet valid")
        if claims.expires_at <= now - leeway:
            raise TokenExpired(claims)


def _public_jwk(key: SigningKey) -> dict[str, Any]:
    jwk: dict[str, Any] = jwt.get_algorithm_by_name(key.algorithm).to_jwk(key.public, as_dict=True)
    jwk.pop("key_ops", None)  # RFC 7517 §4.3: not together with "use"
    return {**jwk, "kid": key.kid, "alg": key.algorithm, "use": "sig"}


def _claims(payload: dict[str, Any]) -> AccessClaims:
    strings = [payload.get(name) for name in ("sub", "sid", "jti")]
    times = [payload.get(name) for name in ("iat", "exp")] + [payload.get("auth_time", 0)]
    name = payload.get("name", "")
    if not all(isinstance(s, str) and 0 < len(s) <= 128 for s in strings) or not isinstance(name, str):
        raise TokenError("bad claims")
    if not all(isinstance(t, int) and not isinstance(t, bool) for t in times):
        raise TokenError("bad time claims")
    return AccessClaims(payload["sub"], payload["sid"], name, payload["jti"], payload["iat"], payload["exp"],
                        payload.get("auth_time", 0))
