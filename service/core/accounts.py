"""Accounts: every change to a user, one place for the HTTP handlers and the CLI alike.

A rule such as "a new password ends every other session" or "disable ends every session" lives
here once. Each change to a password or the disabled flag is written in the same atomic Redis step
that ends the sessions (``SessionStore.revoke_all`` with the user's fields) and bumps the user's
credential generation. Session creation checks that generation against the one read with the hash
the password was verified against, and rotation reads the same record, so no sign-in verified and no
session refreshed under the old state outlives the change.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence

from ..errors import CredentialsChanged, InvalidInput
from ..storage.sessions import SessionInfo, SessionStore
from ..storage.users import User, UserStore, disabled_field, password_field
from . import usernames
from .access_tokens import AccessClaims
from .auth import Authenticator, Client
from .passwords import MAX_PASSWORD_LENGTH, Passwords

log = logging.getLogger("service.security")


@dataclasses.dataclass(frozen=True)
class Account:
    """A user as the operator's list shows it."""

    user: User
    sessions: int


class Accounts:
    """Create, list, change the password of, disable, enable and remove users."""

    def __init__(self, authenticator: Authenticator) -> None:
        self._auth = authenticator
        self._users: UserStore = authenticator.users
        self._sessions: SessionStore = authenticator.sessions
        self._passwords: Passwords = authenticator.passwords

    def check_policy(self, password: str) -> None:
        """Raises :class:`InvalidInput` for a password the length policy refuses."""
        self._passwords.check_policy(password)

    async def create(self, name: str, password: str, *, now: float) -> User:
        """A new user, unless the name mixes scripts or looks like an existing user's (usernames.py).

        Raises:
            UserError: the name is refused, taken or looks like one taken.
            InvalidInput: the password breaks the length policy.
        """
        self.check_policy(password)
        # Every name is read: creating users is an operator's step, rare enough to pay for a scan.
        usernames.check_new(name, [user.name for user in await self._users.all()])
        user = await self._users.create(name, await self._passwords.hash(password), now)
        log.info("user_created", extra={"event": "user_created", "user": user.id})
        return user

    async def require(self, name: str) -> User:
        """The user called ``name``; :class:`UserError` if there is none."""
        return await self._users.require(name)

    async def count(self) -> int:
        return await self._users.count()

    async def all(self) -> list[Account]:
        return [Account(user, len(await self._sessions.list(user.id))) for user in await self._users.all()]

    async def sessions_of(self, claims: AccessClaims) -> Sequence[SessionInfo]:
        """The signed-in user's live sessions, newest first."""
        return await self._sessions.list(claims.user_id)

    async def change_password(self, claims: AccessClaims, current: str, new: str, client: Client) -> int:
        """The signed-in user's new password, after checking the current one; every other session
        ends in the same step. Returns how many ended.

        Guesses of the current password count against the same windows as failed logins, so a stolen
        session cannot be used to brute-force the password (ASVS 5.0 6.2.3).

        Raises:
            StepUpRequired: the session's last authentication is older than ``sessions.step_up_window``.
            Throttled: too many recent failures for this user or from this client.
            InvalidInput: the current password is wrong or the new one breaks the length policy.
        """
        self._auth.require_recent(claims)
        attempt = await self._auth.admit(claims.username, client)
        user = await self._users.get(claims.user_id)
        if user is None or not await self._passwords.verify(user.password_hash, current[:MAX_PASSWORD_LENGTH + 1]):
            log.info("password_change_failed", extra={"event": "password_change_failed", "user": claims.user_id})
            raise InvalidInput("The current password is not correct.")
        await self._auth.admitted(attempt)
        self.check_policy(new)
        fields = password_field(await self._passwords.hash(new))
        try:  # only if the password is still the one just checked: another change may have won meanwhile
            ended = await self._end_sessions(user.id, keep=claims.session_id, fields=fields,
                                             if_generation=user.generation)
        except CredentialsChanged:
            raise InvalidInput("The password was changed meanwhile. Sign in again.") from None
        log.info("password_changed", extra={"event": "password_changed", "user": user.id})
        return ended

    async def set_password(self, name: str, password: str) -> tuple[User, int]:
        """An operator's new password for ``name``; every session of the user ends in the same step."""
        user = await self._users.require(name)
        self.check_policy(password)
        ended = await self._end_sessions(user.id, fields=password_field(await self._passwords.hash(password)))
        log.info("password_set", extra={"event": "password_set", "user": user.id, "count": ended})
        return user, ended

    async def disable(self, name: str) -> tuple[User, int]:
        """No more sign-in or refresh for ``name``; every session ends in the same step."""
        user = await self._users.require(name)
        ended = await self._end_sessions(user.id, fields=disabled_field(True))
        log.info("user_disabled", extra={"event": "user_disabled", "user": user.id, "count": ended})
        return user, ended

    async def enable(self, name: str) -> User:
        user = await self._users.require(name)
        await self._users.set_disabled(user.id, False)
        log.info("user_enabled", extra={"event": "user_enabled", "user": user.id})
        return user

    async def remove(self, name: str) -> tuple[User, int]:
        """Delete ``name``. It is disabled and its sessions end in one step first, so a sign-in or
        refresh racing the removal fails too; then the record and the name go."""
        user, ended = await self.disable(name)
        if self._auth.mfa is not None:
            await self._auth.mfa.remove(user.id)
        await self._users.remove(user)
        log.info("user_removed", extra={"event": "user_removed", "user": user.id, "count": ended})
        return user, ended

    async def reset_mfa(self, name: str) -> tuple[User, bool, int]:
        """An operator's reset of a user who lost their authenticator app and recovery codes: TOTP off,
        the recovery codes gone, and every session of the user ended. Returns whether TOTP was on and
        how many sessions ended."""
        user = await self._users.require(name)
        was_on = await self._auth.mfa.remove(user.id) if self._auth.mfa is not None else False
        ended = await self._end_sessions(user.id, fields={})
        log.info("mfa_reset", extra={"event": "mfa_reset", "user": user.id, "count": ended})
        return user, was_on, ended

    async def clear_throttle(self, target: str) -> tuple[str, int]:
        """Forget the failed sign-ins counted against a username or a client address (``throttle clear``)."""
        scope, held = await self._auth.throttle.clear(target)
        log.info("throttle_cleared", extra={"event": "throttle_cleared", "reason": scope, "count": held,
                                            **({"ip": target} if scope == "ip" else {})})
        return scope, held

    async def _end_sessions(self, user_id: str, *, keep: str | None = None, fields: dict[str, str],
                            if_generation: str | None = None) -> int:
        ended = await self._sessions.revoke_all(user_id, keep=keep, user_fields=fields, if_generation=if_generation)
        self._auth.ended(user_id, ended)
        return len(ended)
