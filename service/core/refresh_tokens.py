"""Refresh tokens: the opaque credential in the path-scoped cookie, as pure functions of a server secret.

A token reads ``<user id>.<session id>.<secret>.<tag>``: the ids say where its session lives, the
secret is 256 bits, and the tag (an HMAC) proves the service issued it, so a forged token can never
be mistaken for a stolen one and trigger a revocation. Only 128 bits of its ``digest`` are stored.

Rotation is deterministic: the successor's secret is an HMAC of its predecessor. Every caller that
presents the same token within the grace window therefore receives the same successor, with nothing
but hashes in Redis (RFC 9700 §4.14.2; Auth0's reuse interval; FAPI 2.0 on retries).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import re
import secrets

from ..errors import RefreshFailed

_PART = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
MAX_LENGTH = 256


@dataclasses.dataclass(frozen=True)
class RefreshToken:
    user_id: str
    session_id: str
    value: str

    @property
    def digest(self) -> bytes:
        return hashlib.sha256(self.value.encode()).digest()


class RefreshTokens:
    """Mints, parses and rotates refresh tokens with one secret key."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def new(self, user_id: str, session_id: str) -> RefreshToken:
        return self._seal(user_id, session_id, _b64(secrets.token_bytes(32)))

    def successor(self, token: RefreshToken) -> RefreshToken:
        secret = hmac.new(self._key, b"next|" + token.value.encode(), hashlib.sha256).digest()
        return self._seal(token.user_id, token.session_id, _b64(secret))

    def parse(self, value: str) -> RefreshToken:
        """Check format and tag; raises :class:`RefreshFailed` for anything the service did not issue."""
        parts = value.split(".") if len(value) <= MAX_LENGTH else []
        if len(parts) != 4 or not all(_PART.match(p) for p in parts):
            raise RefreshFailed("malformed")
        user_id, session_id, secret, tag = parts
        if not hmac.compare_digest(tag, self._tag(user_id, session_id, secret)):
            raise RefreshFailed("forged")
        return RefreshToken(user_id, session_id, value)

    def _seal(self, user_id: str, session_id: str, secret: str) -> RefreshToken:
        tag = self._tag(user_id, session_id, secret)
        return RefreshToken(user_id, session_id, f"{user_id}.{session_id}.{secret}.{tag}")

    def _tag(self, user_id: str, session_id: str, secret: str) -> str:
        message = f"tag|{user_id}|{session_id}|{secret}".encode()
        return _b64(hmac.new(self._key, message, hashlib.sha256).digest()[:16])


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
