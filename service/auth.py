"""The Authenticator: login, refresh, logout and per-request authentication, with no HTTP in sight.

``refresh`` is the one refresh code path; the refresh endpoint calls it, whether a client asked
for it or the auto-refresh middleware sent the browser there.
"""

from __future__ import annotations

import dataclasses
import logging

from .clock import Clock
from .errors import AuthenticationRequired, CredentialsError, RefreshFailed, TokenError, TokenExpired
from .passwords import MAX_PASSWORD_LENGTH, Passwords
from .refresh import RefreshTokens
from .sessions import SessionStore
from .tokens import AccessClaims, TokenCodec
from .users import User, UserStore

log = logging.getLogger("service.security")


@dataclasses.dataclass(frozen=True)
class Issued:
    """A fresh pair of credentials for one session."""

    access: str
    claims: AccessClaims
    refresh: str
    refresh_expires: float


@dataclasses.dataclass(frozen=True)
class Client:
    """Where a request comes from, as recorded on the session."""

    user_agent: str
    ip: str


class Authenticator:
    def __init__(self, *, users: UserStore, sessions: SessionStore, passwords: Passwords,
                 codec: TokenCodec, refresh_tokens: RefreshTokens, clock: Clock) -> None:
        self.users = users
        self.sessions = sessions
        self.passwords = passwords
        self._codec = codec
        self._refresh = refresh_tokens
        self._clock = clock

    async def login(self, username: str, password: str, client: Client) -> Issued:
        """Check the password and start a new session.

        Raises:
            CredentialsError: for an unknown user, a wrong password or a disabled user alike.
        """
        user = await self.users.by_name(username)
        password = password[:MAX_PASSWORD_LENGTH + 1]
        ok = await self.passwords.verify(user.password_hash if user else None, password)
        if not ok or user is None or user.disabled or len(password) > MAX_PASSWORD_LENGTH:
            log.info("login_failed", extra={"event": "login_failed", "ip": client.ip})
            raise CredentialsError()
        if self.passwords.needs_rehash(user.password_hash):
            await self.users.set_password_hash(user.id, await self.passwords.hash(password))
        issued = await self._start_session(user, client)
        log.info("login", extra={"event": "login", "user": user.id, "sid": issued.claims.session_id})
        return issued

    async def _start_session(self, user: User, client: Client) -> Issued:
        token = self._refresh.new(user.id, self.sessions.new_id())
        deadline = await self.sessions.create(token, now=self._clock(), user_agent=client.user_agent, ip=client.ip)
        if deadline is None:  # disabled or removed between the password check and now
            raise CredentialsError()
        return self._issue(user.id, token.session_id, user.name, token.value, deadline)

    async def refresh(self, presented: str | None) -> Issued:
        """Exchange a refresh token for a new pair; within the grace window, the same successor.

        Raises:
            RefreshFailed: missing, malformed, forged, expired, revoked, disabled or reused.
        """
        if not presented:
            raise RefreshFailed("missing")
        token = self._refresh.parse(presented)
        successor = self._refresh.successor(token)
        try:
            rotation = await self.sessions.rotate(token, successor, now=self._clock())
        except RefreshFailed as failure:
            event = "refresh_reused" if failure.reason == "reused" else "refresh_failed"
            log.warning(event, extra={"event": event, "reason": failure.reason, "user": token.user_id,
                                      "sid": token.session_id})
            raise
        return self._issue(token.user_id, token.session_id, rotation.username, successor.value,
                           rotation.absolute_deadline)

    def _issue(self, user_id: str, session_id: str, username: str, refresh: str, deadline: float) -> Issued:
        claims = self._codec.mint(user_id=user_id, session_id=session_id, username=username, not_after=deadline)
        return Issued(self._codec.encode(claims), claims, refresh, deadline)

    async def authenticate(self, access: str) -> AccessClaims:
        """The claims of a usable access token.

        Raises:
            TokenExpired: authentic but expired; a refresh may help.
            TokenError: not a token this service issued.
            AuthenticationRequired: its session has ended (logout, revocation, expiry).
        """
        claims = self._codec.verify(access)
        if not await self.sessions.is_live(claims.user_id, claims.session_id):
            raise AuthenticationRequired("session ended")
        return claims

    def identify(self, access: str) -> AccessClaims | None:
        """The claims of an authentic access token, expired or not; None if it is not authentic."""
        try:
            return self._codec.verify(access)
        except TokenExpired as expired:
            return expired.claims  # type: ignore[return-value]
        except TokenError:
            return None

    async def logout(self, claims: AccessClaims) -> None:
        if await self.sessions.revoke(claims.user_id, claims.session_id):
            log.info("logout", extra={"event": "logout", "user": claims.user_id, "sid": claims.session_id})

    async def logout_everywhere(self, user_id: str, *, keep: str | None = None) -> int:
        ended = await self.sessions.revoke_all(user_id, keep=keep)
        log.info("revoke_all", extra={"event": "revoke_all", "user": user_id, "count": ended})
        return ended
