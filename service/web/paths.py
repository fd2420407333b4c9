"""URL paths of the service under its configured prefix, and the check that keeps ``next`` on-site."""

from __future__ import annotations

import re
import urllib.parse

from ..settings import Settings

# Lone surrogates: invalid UTF-8 bytes as aiohttp decodes them (``surrogateescape``).
_UNSAFE = re.compile(r"[\x00-\x20\x7f\\\ud800-\udfff]")
# Once percent-decoded, a space is an ordinary path character (``/docs/My%20File``); the rest is not.
_UNSAFE_DECODED = re.compile(r"[\x00-\x1f\x7f\\]")
MAX_NEXT = 2048


class Paths:
    """Where each route lives, so links, redirects, form actions and cookie paths agree."""

    def __init__(self, settings: Settings) -> None:
        self.prefix = settings.server.url_prefix
        self.home = self.prefix + "/"
        self.login = self.prefix + "/login"
        self.login_code = self.login + "/code"
        # Sign-in steps before any session: their forms' CSRF tokens are bound to the login nonce cookie.
        self.pre_session = frozenset({self.login, self.login_code})
        self.logout = self.prefix + "/logout"
        self.account = self.prefix + "/account"
        self.confirm = self.account + "/confirm"
        # Pre-session JSON endpoints of a passkey sign-in: CSRF-checked like the login form (pipeline.py).
        self.passkey_login = self.login + "/passkey"
        self.passkey_login_options = self.passkey_login + "/options"
        # Pre-session too, but JSON only (the passkey sign-in's two steps): see pipeline._check_csrf.
        self.json_sign_in = frozenset({self.passkey_login, self.passkey_login_options})
        self.passkeys = self.account + "/passkeys"
        self.refresh_scope = self.prefix + settings.cookies.refresh_path
        self.refresh = self.refresh_scope + "/refresh"
        self.static = self.prefix + "/static"
        self.jwks = self.prefix + "/.well-known/jwks.json"
        self.healthz = self.prefix + "/healthz"
        self.readyz = self.prefix + "/readyz"
        self.metrics = self.prefix + "/metrics"
        self.verify = self.prefix + "/auth/verify"
        # Other apps on this origin behind nginx auth_request: ``next`` may return there too.
        self.protected = tuple(p for p in (p.strip() for p in settings.server.protected_prefixes.split(",")) if p)

    def safe_next(self, value: str | None) -> str:
        """``value`` if it is a relative path on this service, else the home page.

        .. warning:: every redirect to a user-supplied target must go through here (open redirects,
           OWASP Unvalidated Redirects CS): schemes, ``//host``, ``/\\host``, raw whitespace, and
           control characters raw or percent-encoded in the path, and ``..`` segments (browsers resolve
           ``/sso/../x`` and ``/sso/%2e%2e/x`` to ``/x``, out of the prefix; WHATWG URL §4.4) all fall back
           to home. Only the path can steer a browser elsewhere, so the query may carry any
           percent-encoded text (``?q=a%20b``). Under a prefix, the paths of ``server.protected_prefixes``
           (same-origin apps behind nginx ``auth_request``) are on-site too.
        """
        if not value or len(value) > MAX_NEXT or not value.startswith("/"):
            return self.home
        if _UNSAFE.search(value) or value.startswith("//"):
            return self.home
        decoded_path = urllib.parse.unquote(value.split("?", 1)[0].split("#", 1)[0])
        if _UNSAFE_DECODED.search(decoded_path) or decoded_path.startswith("//"):
            return self.home
        if ".." in decoded_path.split("/"):  # a dot segment climbs out of the prefix once a browser resolves it
            return self.home
        if self.prefix and not any(value == p or value.startswith(p + "/") for p in (self.prefix, *self.protected)):
            return self.home
        return value

    def login_url(self, next_path: str) -> str:
        return self.login + "?" + urllib.parse.urlencode({"next": next_path})

    def confirm_url(self, next_path: str) -> str:
        return self.confirm + "?" + urllib.parse.urlencode({"next": next_path})

    def refresh_url(self, next_path: str) -> str:
        return self.refresh + "?" + urllib.parse.urlencode({"next": next_path})
