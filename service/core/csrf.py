"""CSRF defence, as pure functions: per-session tokens, login tokens, and the cross-site verdict.

Two layers, both required on unsafe methods (OWASP CSRF Prevention CS):
1. Fetch metadata and Origin: ``Sec-Fetch-Site`` other than same-origin/none, or an ``Origin`` that is
   not this service's, is cross-site (Go's ``CrossOriginProtection`` rule).
2. A synchronizer token: HMAC(key, session id) for signed-in requests — stable across refreshes, so
   a form POST replayed by the refresh hop still carries a valid one — and HMAC(key, nonce) bound to a
   pre-session cookie for the login form (login CSRF).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

FIELD = "csrf"  # form field
HEADER = "X-CSRF-Token"  # header for fetch() and API clients


class CsrfTokens:
    def __init__(self, key: bytes) -> None:
        self._key = key
        self._by_session: dict[str, str] = {}  # pages and /api/me ask for it on every request

    def for_session(self, session_id: str) -> str:
        token = self._by_session.get(session_id)
        if token is None:
            token = self._by_session[session_id] = self._mac(b"session|" + session_id.encode())
            if len(self._by_session) > 50_000:
                del self._by_session[next(iter(self._by_session))]
        return token

    def for_login(self, nonce: str) -> str:
        return self._mac(b"login|" + nonce.encode())

    @staticmethod
    def new_nonce() -> str:
        return secrets.token_urlsafe(24)

    @staticmethod
    def matches(expected: str | None, presented: str | None) -> bool:
        if not expected or not presented or len(presented) > 128:
            return False
        return hmac.compare_digest(expected.encode(), presented.encode())

    def _mac(self, message: bytes) -> str:
        digest = hmac.new(self._key, message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def is_cross_site(fetch_site: str | None, origin: str | None, own_origin: str) -> bool:
    """True if a browser says the request was made by another site (``Origin: null`` included)."""
    if fetch_site is not None and fetch_site not in ("same-origin", "none"):
        return True
    return origin is not None and origin != own_origin
