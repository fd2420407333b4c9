"""Users: names, argon2 hashes and the disabled flag, stored in Redis.

Names are case-insensitive and unique: they are compared in NFKC case-folded form, and that form
maps to a random user id. Everything else about a user lives under the id's hash tag.
"""

from __future__ import annotations

import dataclasses
import re
import secrets
import unicodedata

from ..errors import UserError
from .client import KeySpace, Redis, text, translated

_NAME = re.compile(r"^[\w][\w.@+-]{0,63}$")


@dataclasses.dataclass(frozen=True)
class User:
    id: str
    name: str
    password_hash: str
    disabled: bool
    created: float
    # Bumped by every change of password or of the disabled flag (sessions.REVOKE_ALL), read with the
    # hash: a session starts only if it is still the same (sessions.CREATE).
    generation: str = "0"


def normalize(name: str) -> str:
    """The form in which names are compared: NFKC, case-folded, stripped."""
    return unicodedata.normalize("NFKC", name).casefold().strip()


def check_name(name: str) -> str:
    """Return the name as it will be displayed, or raise :class:`UserError` saying what is wrong."""
    shown = unicodedata.normalize("NFKC", name).strip()
    if not _NAME.match(shown):
        raise UserError("a username is 1-64 letters, digits or . _ @ + - and starts with a letter or digit")
    return shown


_HASH, _DISABLED = "hash", "disabled"  # the user record's fields that a credential change writes


def password_field(password_hash: str) -> dict[str, str]:
    """The user-record field of a new password, for a step that also ends sessions
    (:meth:`SessionStore.revoke_all`)."""
    return {_HASH: password_hash}


def disabled_field(disabled: bool) -> dict[str, str]:
    """The user-record field that stops (or allows) sign-in and refresh."""
    return {_DISABLED: "1" if disabled else "0"}


class UserStore:
    """Reads and writes users. A change that must also end sessions goes through
    :meth:`SessionStore.revoke_all` with :func:`password_field` or :func:`disabled_field`, in one step."""

    def __init__(self, redis: Redis, keys: KeySpace) -> None:
        self._redis = redis
        self._keys = keys

    async def by_name(self, name: str) -> User | None:
        if len(name) > 256:
            return None
        with translated():
            user_id = await self._redis.get(self._keys.username(normalize(name)))
        return None if user_id is None else await self.get(text(user_id))

    async def get(self, user_id: str) -> User | None:
        with translated():
            fields = await self._redis.hgetall(self._keys.user(user_id))
        if not fields:
            return None
        return User(
            id=user_id,
            name=text(fields[b"name"]),
            password_hash=text(fields[b"hash"]),
            disabled=fields.get(b"disabled") == b"1",
            created=float(fields[b"created"]),
            generation=text(fields.get(b"gen", b"0")),
        )

    async def create(self, name: str, password_hash: str, now: float) -> User:
        shown = check_name(name)
        user = User(secrets.token_urlsafe(12), shown, password_hash, False, now)
        with translated():
            await self._redis.hset(self._keys.user(user.id), mapping={
                "name": shown, "hash": password_hash, "disabled": "0", "created": repr(now)})
            # The name index is another slot: whoever claims it first owns the name.
            if not await self._redis.set(self._keys.username(normalize(shown)), user.id, nx=True):
                await self._redis.delete(self._keys.user(user.id))
                raise UserError(f"user {shown!r} already exists")
            await self._redis.sadd(self._keys.all_users(), user.id)
        return user

    async def set_disabled(self, user_id: str, disabled: bool) -> None:
        with translated():
            await self._redis.hset(self._keys.user(user_id), _DISABLED, "1" if disabled else "0")

    async def remove(self, user: User) -> None:
        with translated():
            await self._redis.delete(self._keys.user(user.id))
            await self._redis.delete(self._keys.username(normalize(user.name)))
            await self._redis.srem(self._keys.all_users(), user.id)

    async def all(self) -> list[User]:
        with translated():
            ids = await self._redis.smembers(self._keys.all_users())
        users = [await self.get(text(user_id)) for user_id in ids]
        return sorted((u for u in users if u is not None), key=lambda u: normalize(u.name))

    async def count(self) -> int:
        with translated():
            return int(await self._redis.scard(self._keys.all_users()))

    async def require(self, name: str) -> User:
        user = await self.by_name(name)
        if user is None:
            raise UserError(f"no user {name!r}")
        return user
