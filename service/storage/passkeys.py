"""Passkeys in Redis: each user's WebAuthn credentials, the index from credential id to user, and the
single-use challenges of the ceremonies.

A user's credentials are fields of one hash under the user's hash tag (``KeySpace.user_passkeys``):
the credential id (base64url) maps to a JSON record (:class:`Passkey`). The owner index
(``KeySpace.passkey_owner``, keyed by a digest of the id) lets a usernameless sign-in find the user;
whoever claims it first owns the credential. A challenge lives ``passkeys.challenge_ttl`` under a key
bound to what it was issued for (the login nonce, or the session) and is read with GETDEL: a replayed
assertion finds nothing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

from .client import KeySpace, Redis, text, translated

MAX_PER_USER = 20  # bounds every step that reads all of a user's passkeys

# ADD: store a new credential unless the user already has MAX_PER_USER of them or this one.
# KEYS[1] the user's passkeys; ARGV[1] credential id, ARGV[2] its record (JSON), ARGV[3] the cap.
# Returns 1 if stored, 0 if the cap is reached, -1 if the credential is there already.
ADD = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return -1 end
if redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
"""

# USE: a verified assertion moves the credential's sign counter, unless it went back. WebAuthn §6.1.1:
# when either the stored or the new counter is nonzero, the new one must be greater; otherwise the
# authenticator may be a clone, and the sign-in is refused (the stored counter is left as it was).
# Checked and written in one step, so two racing assertions with the same counter cannot both pass.
# KEYS[1] the user's passkeys; ARGV[1] credential id, ARGV[2] new counter, ARGV[3] now (s), ARGV[4] backed
# up ('1' or '0'). Returns 1 if used, 0 for a counter regression, -1 if the credential is gone.
USE = """
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return -1 end
local record = cjson.decode(raw)
local new, stored = tonumber(ARGV[2]), tonumber(record['count'])
if (new > 0 or stored > 0) and new <= stored then return 0 end
record['count'] = new
record['last_used'] = tonumber(ARGV[3])
record['bs'] = ARGV[4] == '1'
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(record))
return 1
"""

# RENAME: a new name for a credential, in one step with any USE (a read-then-write could put back
# a counter USE just moved). KEYS[1] the user's passkeys; ARGV[1] credential id, ARGV[2] the name.
# Returns 1, or 0 if the user has no such credential.
RENAME = """
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return 0 end
local record = cjson.decode(raw)
record['name'] = ARGV[2]
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(record))
return 1
"""


@dataclasses.dataclass(frozen=True)
class Passkey:
    """One credential: its id and COSE public key (base64url), sign counter, backup eligibility and
    state (BE, BS flags), transports, the user's name for it, and when it was made and last used."""

    id: str
    public_key: str
    count: int
    backup_eligible: bool
    backed_up: bool
    transports: tuple[str, ...]
    name: str
    created: float
    last_used: float | None = None

    def record(self) -> str:
        return json.dumps({"pk": self.public_key, "count": self.count, "be": self.backup_eligible,
                           "bs": self.backed_up, "tr": list(self.transports), "name": self.name,
                           "created": self.created, "last_used": self.last_used or 0})

    @classmethod
    def parse(cls, credential_id: str, raw: bytes | str) -> Passkey:
        fields: dict[str, Any] = json.loads(raw)
        last_used = float(fields.get("last_used") or 0)
        return cls(credential_id, str(fields["pk"]), int(fields["count"]), bool(fields["be"]), bool(fields["bs"]),
                   tuple(str(t) for t in fields.get("tr") or ()), str(fields["name"]), float(fields["created"]),
                   last_used or None)


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:32]


class PasskeyStore:
    """Reads and writes passkeys and their challenges; one Redis call (or Lua script) a step."""

    def __init__(self, redis: Redis, keys: KeySpace) -> None:
        self._redis = redis
        self._keys = keys
        self._add = redis.register_script(ADD)
        self._use = redis.register_script(USE)
        self._rename = redis.register_script(RENAME)

    async def of_user(self, user_id: str) -> list[Passkey]:
        """The user's passkeys, oldest first."""
        with translated():
            fields = await self._redis.hgetall(self._keys.user_passkeys(user_id))
        return sorted((Passkey.parse(text(name), raw) for name, raw in fields.items()), key=lambda p: p.created)

    async def get(self, user_id: str, credential_id: str) -> Passkey | None:
        """The user's own credential of that id; another user's is None, like an unknown one."""
        with translated():
            raw = await self._redis.hget(self._keys.user_passkeys(user_id), credential_id)
        return None if raw is None else Passkey.parse(credential_id, raw)

    async def owner(self, credential_id: str) -> str | None:
        """The id of the user who registered ``credential_id``, or None."""
        with translated():
            owner = await self._redis.get(self._keys.passkey_owner(_digest(credential_id)))
        return None if owner is None else text(owner)

    async def add(self, user_id: str, passkey: Passkey) -> bool:
        """Store a new passkey; False if its id is registered already (to anyone) or the user has
        :data:`MAX_PER_USER`. The owner index is another slot: claimed first, released on failure."""
        index = self._keys.passkey_owner(_digest(passkey.id))
        with translated():
            if not await self._redis.set(index, user_id, nx=True):
                return False
            stored = await self._add(keys=[self._keys.user_passkeys(user_id)],
                                     args=[passkey.id, passkey.record(), MAX_PER_USER])
            if int(stored) != 1:
                await self._redis.delete(index)
                return False
        return True

    async def use(self, user_id: str, credential_id: str, count: int, *, backed_up: bool, now: float) -> int:
        """Record a verified assertion (USE): 1 used, 0 a counter regression (refuse), -1 gone."""
        with translated():
            return int(await self._use(keys=[self._keys.user_passkeys(user_id)],
                                       args=[credential_id, count, repr(now), "1" if backed_up else "0"]))

    async def rename(self, user_id: str, credential_id: str, name: str) -> bool:
        """Name one of the user's passkeys anew (RENAME); False if it is not theirs."""
        with translated():
            return bool(await self._rename(keys=[self._keys.user_passkeys(user_id)], args=[credential_id, name]))

    async def remove(self, user_id: str, credential_id: str) -> bool:
        """Forget one of the user's passkeys; True if it was theirs."""
        index = self._keys.passkey_owner(_digest(credential_id))
        with translated():
            removed = await self._redis.hdel(self._keys.user_passkeys(user_id), credential_id)
            if removed and await self._redis.get(index) == user_id.encode():
                await self._redis.delete(index)
        return bool(removed)

    async def remove_all(self, user_id: str) -> None:
        """Every passkey of a user who is being removed."""
        for passkey in await self.of_user(user_id):
            await self.remove(user_id, passkey.id)

    async def issue(self, key: str, challenge: bytes, ttl: float) -> None:
        """Store ``challenge`` under ``key`` (from :meth:`login_key` or :meth:`session_key`) for ``ttl`` s."""
        with translated():
            await self._redis.set(key, challenge, px=max(1, int(ttl * 1000)))

    async def take(self, key: str) -> bytes | None:
        """The challenge stored under ``key``, deleted as it is read: each is good for one answer."""
        with translated():
            value = await self._redis.getdel(key)
        return value.encode() if isinstance(value, str) else value

    def login_key(self, nonce: str, challenge: str) -> str:
        """Where a sign-in challenge (base64url) issued to the holder of login nonce ``nonce`` lives.
        Keyed by the challenge too, so several ceremonies (tabs, autofill and the button) may be open."""
        return self._keys.login_challenge(_digest(nonce), _digest(challenge))

    def session_key(self, user_id: str, session_id: str, purpose: str, challenge: str) -> str:
        return self._keys.session_challenge(user_id, session_id, purpose, _digest(challenge))
