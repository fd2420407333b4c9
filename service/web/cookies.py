"""The cookie policy: names and attributes of the two session cookies, read, set and cleared in pairs.

No other module knows a cookie's name or path. Setting and clearing read the same attributes, so a
clear always matches what was set (a clear with another Path is a silent no-op in browsers).

SECURITY: cookie tossing. A page on a sibling host can set cookies for the whole parent domain
(``Domain=example.com``), and ``__Secure-`` does not forbid it, so a request may carry several cookies
of one name, some planted. Only ``__Host-`` cookies (no ``Domain``, ``Path=/``) come from this host
alone (RFC 6265bis §4.1.3.2). Hence: the access cookie is ``__Host-access``; the refresh token is used
only beside the access token of its own session (:meth:`~service.core.auth.Authenticator.rotate`); and
where the access cookie must be path-scoped (``__Secure-access`` under ``server.url_prefix``), a
``__Host-`` *anchor* cookie holding a digest of the access token picks the authentic one.
"""

from __future__ import annotations

import base64
import hashlib
import re

from aiohttp import hdrs, web

from ..clock import Clock
from ..core.auth import Issued
from ..settings import Settings
from .paths import Paths

_SEEN_HEADERS = 5_000  # Cookie headers remembered ...
_SEEN_HEADER_LENGTH = 2_048  # ... of at most this many characters: 10 MB at most


class CookiePolicy:
    """``access``: the JWT, Path=/ (or the prefix). ``refresh``: the opaque token, Path=the refresh prefix only."""

    def __init__(self, settings: Settings, paths: Paths, clock: Clock) -> None:
        secure = settings.cookies.secure
        # SECURITY: RFC 6265bis §4.1.3 — __Host- pins Secure, no Domain, Path=/; a path-scoped cookie
        # can only be __Secure- (ASVS 5.0 3.3.1). Without Secure the prefixes would be refused.
        # Under a prefix the access cookie is scoped to it, unless apps at other paths of this origin are
        # guarded by nginx auth_request (``server.protected_prefixes``): their requests must carry it.
        self._access_path = paths.home if paths.prefix and not paths.protected else "/"
        wide = self._access_path == "/"
        self.access_name = "__Host-access" if secure and wide else ("__Secure-access" if secure else "access")
        self.refresh_name = "__Secure-refresh" if secure else "refresh"
        # A tossed __Secure-access must never win: the __Host- anchor names the one this host set.
        self._anchor_name = "__Host-anchor" if secure and not wide else None
        self.login_name = "__Host-login" if secure and not paths.prefix else ("__Secure-login" if secure else "login")
        self._refresh_path = paths.refresh_scope
        # Cookie headers seen lately → the access token in each ('' for none): bounded, oldest out first.
        # The token handed out is then the same str object every time, whose hash Python keeps, so the
        # verified-token cache (core/access_tokens.py) finds it without hashing the whole JWT again.
        self._seen: dict[str, str] = {}
        self._access_pattern = _pattern(self.access_name)
        self._refresh_pattern = _pattern(self.refresh_name)
        self._login_pattern = _pattern(self.login_name)
        self._anchor_pattern = _pattern(self._anchor_name) if self._anchor_name else None
        self._secure = secure
        self._samesite = settings.cookies.samesite
        self._clock = clock

    def read_access(self, request: web.BaseRequest) -> str | None:
        """Read on every request, so without parsing every cookie (``request.cookies`` builds a
        SimpleCookie: about a third of a request's cost). Same answer: the last one of that name."""
        header = request.headers.get(hdrs.COOKIE)
        if not header:
            return None
        value = self._seen.get(header)
        if value is None:  # a browser sends the same header for minutes: parse it once
            value = self._parse_access(header)
            if len(header) <= _SEEN_HEADER_LENGTH:
                self._seen[header] = value
                if len(self._seen) > _SEEN_HEADERS:
                    del self._seen[next(iter(self._seen))]
        return value or None

    def _parse_access(self, header: str) -> str:
        if self.access_name not in header:
            return ""
        found = _values(self._access_pattern, header)
        if self._anchor_pattern is None:  # __Host-access, or plain HTTP: the last one, as browsers order them
            return found[-1] if found else ""
        anchors = _values(self._anchor_pattern, header)
        anchor = anchors[-1] if anchors else ""
        return next((value for value in found if anchor and _digest(value) == anchor), "")

    def read_refreshes(self, request: web.BaseRequest) -> list[str]:
        """Every refresh token the request carries: one is this session's, others may be planted."""
        return _ascii(_values(self._refresh_pattern, request.headers.get(hdrs.COOKIE, "")))

    def set_session(self, response: web.StreamResponse, issued: Issued) -> None:
        """Both cookies live until the session's absolute deadline: an expired access JWT must still
        reach the pipeline, which can only refresh what it can see. A session not remembered gets
        browser-session cookies (no Max-Age), which end when the browser does."""
        self.set_access(response, issued)
        response.set_cookie(self.refresh_name, issued.refresh, max_age=self._max_age(issued),
                            path=self._refresh_path, secure=self._secure, httponly=True, samesite=self._samesite)

    def set_access(self, response: web.StreamResponse, issued: Issued) -> None:
        """The access cookie alone (and its anchor): a step-up's new token, in the same session."""
        max_age = self._max_age(issued)
        response.set_cookie(self.access_name, issued.access, max_age=max_age, path=self._access_path,
                            secure=self._secure, httponly=True, samesite=self._samesite)
        if self._anchor_name:
            response.set_cookie(self._anchor_name, _digest(issued.access), max_age=max_age, path="/",
                                secure=True, httponly=True, samesite=self._samesite)

    def _max_age(self, issued: Issued) -> int | None:
        return max(0, int(issued.refresh_expires - self._clock())) if issued.remembered else None

    def clear_session(self, response: web.StreamResponse) -> None:
        self.clear_access(response)
        response.del_cookie(self.refresh_name, path=self._refresh_path, secure=self._secure, httponly=True,
                            samesite=self._samesite)

    def read_login_nonces(self, request: web.BaseRequest) -> list[str]:
        """Every login nonce the request carries (a planted one must not lock the user out)."""
        return _ascii(_values(self._login_pattern, request.headers.get(hdrs.COOKIE, "")))

    def set_login_nonce(self, response: web.StreamResponse, nonce: str) -> None:
        """The pre-session cookie that the login form's CSRF token is bound to; Strict, since only
        this service's own login page ever needs it."""
        response.set_cookie(self.login_name, nonce, max_age=86400, path=self._access_path,
                            secure=self._secure, httponly=True, samesite="Strict")

    def clear_access(self, response: web.StreamResponse) -> None:
        response.del_cookie(self.access_name, path=self._access_path, secure=self._secure, httponly=True,
                            samesite=self._samesite)
        if self._anchor_name:
            response.del_cookie(self._anchor_name, path="/", secure=True, httponly=True, samesite=self._samesite)


def _pattern(name: str) -> re.Pattern[str]:
    # ``name=value`` pairs are separated by ";" and optional spaces (RFC 6265 §4.2.1); values hold no ";".
    return re.compile(r"(?:^|;)[ \t]*" + re.escape(name) + r"[ \t]*=([^;]*)")


def _values(pattern: re.Pattern[str], header: str) -> list[str]:
    """The non-empty values of one cookie name in a Cookie header, in its order, quotes removed."""
    values = []
    for found in pattern.findall(header):
        value = found.strip()
        if len(value) > 1 and value[0] == value[-1] == '"':
            value = value[1:-1]
        if value:
            values.append(value)
    return values


def _ascii(values: list[str]) -> list[str]:
    """Cookie values are ASCII (RFC 6265 §4.1.1): others, invalid UTF-8 included, are no token of ours."""
    return [value for value in values if value.isascii()]


def _digest(access: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(access.encode()).digest()[:18]).decode()
