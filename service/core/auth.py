"""The Authenticator: login, refresh, logout and per-request authentication, with no HTTP in sight.

``rotate`` is the one refresh code path; the refresh endpoint calls it, whether a client asked
for it or the request pipeline's refresh hop sent the browser there.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import secrets
from collections.abc import Sequence

from ..clock import Clock
from ..errors import (
    AuthenticationRequired,
    CredentialsError,
    InvalidInput,
    RefreshFailed,
    SecondFactorRequired,
    StepUpRequired,
    StoreUnavailable,
    Throttled,
)
from ..metrics import Counts
from ..settings import Outage
from ..storage.mfa import PENDING_TTL, MfaStore, PendingLogin
from ..storage.sessions import SessionStore, SignIn
from ..storage.throttle import Attempt, LoginThrottle
from ..storage.users import User, UserStore
from .access_tokens import AccessClaims, TokenCodec
from .devices import describe
from .passwords import MAX_PASSWORD_LENGTH, Passwords
from .refresh_tokens import RefreshToken, RefreshTokens
from .revocations import RevocationView

log = logging.getLogger("service.security")


@dataclasses.dataclass(frozen=True)
class Issued:
    """Fresh credentials for one session: both tokens, or (after a step-up) a new access token alone,
    with ``refresh`` empty. Not ``remembered``: the cookies end with the browser session."""

    access: str
    claims: AccessClaims
    refresh: str
    refresh_expires: float
    remembered: bool = True


@dataclasses.dataclass(frozen=True)
class Client:
    """Where a request comes from, as recorded on the session."""

    user_agent: str
    ip: str


class Authenticator:
    def __init__(self, *, users: UserStore, sessions: SessionStore, passwords: Passwords,
                 codec: TokenCodec, refresh_tokens: RefreshTokens, throttle: LoginThrottle,
                 revocations: RevocationView, clock: Clock, outage: Outage = "fail-closed",
                 step_up_window: float = 600, mfa: MfaStore | None = None, metrics: Counts | None = None) -> None:
        self.users = users
        self.sessions = sessions
        self.revocations = revocations
        self.passwords = passwords
        self._codec = codec
        self._refresh_tokens = refresh_tokens
        self.throttle = throttle
        self._clock = clock
        self._outage = outage
        self._step_up_window = step_up_window
        self.mfa = mfa
        self._metrics = metrics or Counts()  # the CLI counts nothing

    @property
    def codec(self) -> TokenCodec:
        """The access-token codec, whose public keys the JWKS endpoint publishes."""
        return self._codec

    async def login(self, username: str, password: str, client: Client, *, remember: bool = True,
                    nonce: str | None = None) -> Issued:
        """Check the password and start a new session (``remember``: "keep me signed in"). A user with
        TOTP on gets no session yet: the sign-in waits for a code (core/totp.py), bound to ``nonce``,
        the browser's login nonce.

        The throttle admits the attempt before anything about the user is looked up, so a throttled
        real user and a throttled unknown name get the same answer; only a success frees its slots.

        Raises:
            Throttled: too many recent failures for this username or from this client.
            CredentialsError: for an unknown user, a wrong password or a disabled user alike.
            SecondFactorRequired: the password is right, and the user has TOTP on.
        """
        try:
            attempt = await self.admit(username, client)
        except Throttled:
            self._metrics.login("throttled")
            raise
        user = await self.users.by_name(username)
        password = password[:MAX_PASSWORD_LENGTH + 1]
        ok = await self.passwords.verify(user.password_hash if user else None, password)
        if not ok or user is None or user.disabled or len(password) > MAX_PASSWORD_LENGTH:
            log.info("login_failed", extra={"event": "login_failed", "ip": client.ip})
            self._metrics.login("failure")
            raise CredentialsError()
        if self.mfa is not None and await self.mfa.has_totp(user.id):
            await self.admitted(attempt, whole=False)
            raise await self._hold(user, remember=remember, nonce=nonce)
        rehash = await self.passwords.hash(password) if self.passwords.needs_rehash(user.password_hash) else None
        issued = await self.start_session(user, client, rehash, method="password", remember=remember)
        await self.admitted(attempt)
        self.counted_login(user.id, issued, "password")
        return issued

    def counted_login(self, user_id: str, issued: Issued, method: str) -> None:
        """A sign-in by any factor started a session: counted and logged."""
        self._metrics.login("success")
        log.info("login", extra={"event": "login", "user": user_id, "sid": issued.claims.session_id,
                                 "reason": method})

    async def _hold(self, user: User, *, remember: bool, nonce: str | None) -> SecondFactorRequired:
        """Keep the sign-in waiting for its code, bound to the login nonce of the browser that typed the
        password (storage/mfa.py). What the answer names is no session."""
        assert self.mfa is not None
        pending = secrets.token_urlsafe(32)
        await self.mfa.hold(pending_digest(pending), PendingLogin(user.id, user.generation, remember),
                            nonce=pending_digest(nonce) if nonce else "", now=self._clock())
        log.info("login_code_required", extra={"event": "login_code_required", "user": user.id})
        return SecondFactorRequired(pending, self._clock() + PENDING_TTL)

    async def admit(self, username: str, client: Client) -> Attempt:
        """Admit one password check for ``username`` from ``client`` (sign-in or password change).

        Raises:
            Throttled: too many recent failures for this username or from this client.
        """
        try:
            return await self.throttle.admit(username, client.ip, now=self._clock())
        except Throttled as throttled:
            self._metrics.throttle(throttled.scope)
            log.warning("login_throttled", extra={"event": "login_throttled", "reason": throttled.scope,
                                                  "ip": client.ip, "retry_after": throttled.retry_after})
            raise

    async def admitted(self, attempt: Attempt, *, whole: bool = True) -> None:
        """The password (or code) checked out: free the attempt's slots in the throttle windows; not
        ``whole`` (a password whose code is still to come): only its own, see LoginThrottle.succeeded."""
        await self.throttle.succeeded(attempt, whole=whole)

    async def start_session(self, user: User, client: Client, rehash: str | None, *, method: str,
                             remember: bool) -> Issued:
        """Start a session for ``user``, who has just authenticated by ``method`` (a sessions.METHODS
        name), with ``rehash`` (or None) as their password's new hash.

        It starts only if the user's credentials are still those just checked: a change of password, a
        disable or a removal since then fails the sign-in (the generation, sessions.CREATE).

        Raises:
            CredentialsError: the user changed meanwhile.
        """
        token = self._refresh_tokens.new(user.id, self.sessions.new_id())
        now = self._clock()
        created = await self.sessions.create(token, now=now, device=describe(client.user_agent), ip=client.ip,
                                             generation=user.generation, method=method, remembered=remember,
                                             rehash=rehash)
        if created is None:
            raise CredentialsError()
        if created.evicted:
            self.evicted(user.id, created.evicted)
        return self._issue(user.id, token.session_id, user.name, token.value, created.absolute_deadline,
                           SignIn(method, remember, now))

    def evicted(self, user_id: str, session_ids: list[str]) -> None:
        """A sign-in pushed the user past ``sessions.max_per_user``: the least recently used ended."""
        for session_id in session_ids:
            self.revocations.ended(user_id, session_id)
            log.info("session_evicted", extra={"event": "session_evicted", "user": user_id, "sid": session_id})
        self._metrics.revocation("evicted", len(session_ids))

    async def rotate(self, presented: Sequence[str], *, bound_to: AccessClaims | None) -> Issued:
        """Exchange the refresh token of ``bound_to``'s session for a new pair; within the grace window,
        the same successor. ``presented`` holds every refresh token the request carried.

        SECURITY: cookie tossing. A sibling host can plant its own user's refresh cookie beside the
        victim's, or instead of it, and a rotation would sign the victim in as that user. So a refresh
        token is used only with the authentic access token of the same session (an expired one is what
        the refresh hop carries), which a sibling host cannot plant; see web/cookies.py.

        Raises:
            RefreshFailed: missing, unbound (no token of the access token's session), malformed,
                forged, expired, revoked, disabled or reused.
        """
        try:
            token = self._bound(presented, bound_to)
        except RefreshFailed as failure:
            self._metrics.refresh(failure.reason)
            raise
        successor = self._refresh_tokens.successor(token)
        try:
            rotation = await self.sessions.rotate(token, successor, now=self._clock())
        except RefreshFailed as failure:  # the session is gone (or was): say so here at once
            self.revocations.ended(token.user_id, token.session_id)
            self._metrics.refresh(failure.reason)
            event = "refresh_reused" if failure.reason == "reused" else "refresh_failed"
            log.warning(event, extra={"event": event, "reason": failure.reason, "user": token.user_id,
                                      "sid": token.session_id})
            raise
        self._metrics.refresh(rotation.verdict)
        kept = token if rotation.verdict == "kept" else successor  # kept: issued moments ago, see sessions.ROTATE
        return self._issue(token.user_id, token.session_id, rotation.username, kept.value,
                           rotation.absolute_deadline, rotation.sign_in)

    def _bound(self, presented: Sequence[str], claims: AccessClaims | None) -> RefreshToken:
        """The presented token of ``claims``' session. Else the reason: missing, unbound (a genuine
        token of another session, or no access token), or what was wrong with a token."""
        if not presented:
            raise RefreshFailed("missing")
        failure: RefreshFailed | None = None
        for value in presented:
            try:
                token = self._refresh_tokens.parse(value)
            except RefreshFailed as wrong:
                failure = failure or wrong
                continue
            if claims and (token.user_id, token.session_id) == (claims.user_id, claims.session_id):
                return token
            failure = RefreshFailed("unbound")  # the planted one of cookie tossing; it outranks typos
        raise failure or RefreshFailed("unbound")

    def _issue(self, user_id: str, session_id: str, username: str, refresh: str, deadline: float,
               sign_in: SignIn) -> Issued:
        claims = self._codec.mint(user_id=user_id, session_id=session_id, username=username, not_after=deadline,
                                  auth_time=sign_in.auth_time)
        return Issued(self._codec.encode(claims), claims, refresh, deadline, sign_in.remembered)

    def require_recent(self, claims: AccessClaims) -> None:
        """Raises :class:`StepUpRequired` unless the user authenticated in this session within
        ``sessions.step_up_window`` (the access token's ``auth_time``, which a refresh never moves)."""
        if claims.auth_time + self._step_up_window < self._clock():
            raise StepUpRequired()

    async def confirm_password(self, claims: AccessClaims, password: str, client: Client) -> Issued:
        """Step up with the password. Guesses count against the sign-in throttle's windows.

        Raises:
            Throttled: too many recent failures for this user or from this client.
            InvalidInput: the password is wrong.
        """
        attempt = await self.admit(claims.username, client)
        user = await self.users.get(claims.user_id)
        password = password[:MAX_PASSWORD_LENGTH + 1]
        if user is None or not await self.passwords.verify(user.password_hash, password):
            log.info("step_up_failed", extra={"event": "step_up_failed", "user": claims.user_id, "reason": "password"})
            raise InvalidInput("That password is not correct.")
        await self.admitted(attempt)
        return await self.stepped_up(claims, "password")

    async def stepped_up(self, claims: AccessClaims, factor: str) -> Issued:
        """The user of ``claims`` just proved it is them again (``factor``: password, passkey, totp or a
        recovery code): the session's auth time becomes now, and so does a new access token's.

        Raises:
            AuthenticationRequired: the session ended meanwhile.
        """
        moved = await self.sessions.step_up(claims.user_id, claims.session_id)
        if moved is None:
            raise AuthenticationRequired("session ended")
        deadline, sign_in = moved
        self._metrics.factor(factor, "step_up")
        log.info("step_up", extra={"event": "step_up", "user": claims.user_id, "sid": claims.session_id,
                                   "reason": factor})
        return self._issue(claims.user_id, claims.session_id, claims.username, "", deadline, sign_in)

    async def authenticate(self, access: str) -> AccessClaims:
        """The claims of a usable access token.

        Raises:
            TokenExpired: authentic but expired; a refresh may help.
            TokenError: not a token this service issued.
            AuthenticationRequired: its session has ended (logout, revocation, expiry).
            StoreUnavailable: Redis cannot say whether the session lives, and ``redis.outage`` is
                ``fail-closed``; never a verdict, so the caller keeps the cookies.
        """
        claims, live = self._check(access)
        if live is None:
            try:
                live = await self.revocations.is_live(claims.user_id, claims.session_id)
            except StoreUnavailable:
                if self._outage != "serve-valid-tokens":
                    raise
                # redis.outage = serve-valid-tokens: signature and exp vouch for the token meanwhile. Not
                # logged per request (an outage would flood the log); the lost revocation channel is.
                return claims
        if not live:
            raise AuthenticationRequired("session ended")
        return claims

    def authenticate_known(self, access: str) -> AccessClaims | None:
        """:meth:`authenticate` without Redis, so not a coroutine (it runs on every request): the
        claims if this instance knows the session lives, None if only Redis can tell. Raises the same."""
        claims, live = self._check(access)
        if live is False:
            raise AuthenticationRequired("session ended")
        return claims if live else None

    def _check(self, access: str) -> tuple[AccessClaims, bool | None]:
        """The verified claims, and whether the local view knows the session lives (None: ask Redis)."""
        claims = self._codec.verify(access)
        return claims, self.revocations.known(claims.user_id, claims.session_id)

    async def logout(self, claims: AccessClaims) -> None:
        ended = await self.sessions.revoke(claims.user_id, claims.session_id)
        self.revocations.ended(claims.user_id, claims.session_id)
        if ended:
            self._metrics.revocation("logout")
            log.info("logout", extra={"event": "logout", "user": claims.user_id, "sid": claims.session_id})

    async def logout_everywhere(self, user_id: str, *, keep: str | None = None) -> int:
        ended = await self.sessions.revoke_all(user_id, keep=keep)
        self.ended(user_id, ended)
        return len(ended)

    def ended(self, user_id: str, session_ids: list[str]) -> None:
        """Sessions of the user just ended here (sign-out everywhere, or an account change): known at
        once to this instance, counted and logged."""
        for session_id in session_ids:
            self.revocations.ended(user_id, session_id)
        self._metrics.revocation("revoke_all", len(session_ids))
        log.info("revoke_all", extra={"event": "revoke_all", "user": user_id, "count": len(session_ids)})

    async def revoke_session(self, claims: AccessClaims, session_id: str) -> bool:
        """End one of the signed-in user's own sessions; another user's id simply matches nothing."""
        ended = await self.sessions.revoke(claims.user_id, session_id)
        self.revocations.ended(claims.user_id, session_id)
        if ended:
            self._metrics.revocation("revoke")
            log.info("revoke", extra={"event": "revoke", "user": claims.user_id, "sid": session_id})
        return ended


def pending_digest(value: str) -> str:
    """How a pending sign-in's name, and the login nonce it is bound to, are kept in Redis."""
    return hashlib.sha256(value.encode()).hexdigest()[:32]
