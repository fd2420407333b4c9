"""Users: names, argon2 hashes and the disabled flag, stored in Redis.

Names are case-insensitive and unique: they are compared in their :func:`canonical` form (PRECIS
UsernameCaseMapped, RFC 8265 §3.3), and that form maps to a random user id. Everything else about a
user lives under the id's hash tag. Users created before names were compared this way are indexed
under their :func:`normalize` form; :meth:`UserStore.by_name` still finds them there.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import secrets
import unicodedata

import precis_i18n

from ..errors import UserError
from .client import KeySpace, Redis, text, translated
from .passkeys import PasskeyStore

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
    """The form names were compared in before :func:`canonical` (NFKC, case-folded, stripped): the
    index key of users created then, and the throttle's key for any typed name."""
    return unicodedata.normalize("NFKC", name).casefold().strip()


@functools.cache
def _profile(name: str) -> precis_i18n.profile.Profile:
    return precis_i18n.get_profile(name)


def _enforce(profile: str, name: str) -> str | None:
    """``name`` (spaces around it dropped first, as people type them) under a PRECIS profile, or None
    if the profile refuses it (spaces inside, symbols, unassigned code points: RFC 8265 §3.3.4)."""
    try:
        return str(_profile(profile).enforce(name.strip()))
    except ValueError:  # precis_i18n raises UnicodeEncodeError, a ValueError, naming the code point
        return None


def canonical(name: str) -> str | None:
    """The form in which names are compared: PRECIS UsernameCaseMapped (RFC 8265 §3.3: width-mapped,
    lower-cased, NFC), so ``ALICE`` and a full-width ``ＡＬＩＣＥ`` are ``alice``; None if refused."""
    return _enforce("UsernameCaseMapped", name)


def check_name(name: str) -> str:
    """Return the name as it will be displayed, or raise :class:`UserError` saying what is wrong."""
    shown = _enforce("UsernameCasePreserved", name)  # RFC 8265 §3.4: as typed, but width-mapped and NFC
    if shown is None or not _NAME.match(shown):
        raise UserError("a username is 1-64 letters, digits or . _ @ + - and starts with a letter or digit")
    return shown


_HASH, _DISABLED = "hash", "disabled"  # the user record's fields that a credential change writes


def password_field(password_hash: str) -> dict[str, str]:
    """The user-record field of a new password, for a step that also ends sessions
    (:meth:`SessionStore.revoke_all`)."""
    return {_HASH: password_hash}


def passkeys_field(now: float) -> dict[str, str]:
    """The user-record field a change of passkeys writes: with it, the step that ends sessions also bumps
    the credential generation, so a sign-in verified against a passkey just removed starts no session."""
    return {"passkeys_changed": repr(now)}


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
        """The user whose name is ``name`` under :func:`canonical`; None for a name PRECIS refuses."""
        key = canonical(name) if len(name) <= 256 else None
        if key is None:
            return None
        user = await self._by_key(key)
        if user is None and (legacy := normalize(name)) != key:
            # Indexed before PRECIS: found under the old form only if that is where the user lives,
            # i.e. not a user whose own canonical form is the old key (which ``name`` did not match).
            user = await self._by_key(legacy)
            if user is not None and canonical(user.name) == legacy:
                return None
        return user

    async def _by_key(self, key: str) -> User | None:
        with translated():
            user_id = await self._redis.get(self._keys.username(key))
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
        key = canonical(shown)
        if key is None:  # cased by PRECIS into something it refuses: never seen, but never indexed either
            raise UserError(f"{shown!r} has no canonical form under RFC 8265")
        user = User(secrets.token_urlsafe(12), shown, password_hash, False, now)
        with translated():
            await self._redis.hset(self._keys.user(user.id), mapping={
                "name": shown, "hash": password_hash, "disabled": "0", "created": repr(now)})
            # The name index is another slot: whoever claims it first owns the name.
            if not await self._redis.set(self._keys.username(key), user.id, nx=True):
                await self._redis.delete(self._keys.user(user.id))
                raise UserError(f"user {shown!r} already exists")
            await self._redis.sadd(self._keys.all_users(), user.id)
        return user

    async def set_disabled(self, user_id: str, disabled: bool) -> None:
        with translated():
            await self._redis.hset(self._keys.user(user_id), _DISABLED, "1" if disabled else "0")

    async def remove(self, user: User) -> None:
        """Delete the user, their name and their passkeys (whose ids would otherwise still name them)."""
        await PasskeyStore(self._redis, self._keys).remove_all(user.id)
        with translated():
            await self._redis.delete(self._keys.user(user.id))
            for key in {form for form in (canonical(user.name), normalize(user.name)) if form}:  # either index
                name_key = self._keys.username(key)
                if await self._redis.get(name_key) == user.id.encode():
                    await self._redis.delete(name_key)
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
