"""The TOTP second factor in Redis: each user's enrolment and recovery codes, and the short-lived state of
a sign-in between its password and its code. What is stored is opaque here (core/totp.py encrypts the
secret and hashes the codes); the atomic steps are named Lua scripts.

``u:{id}:mfa`` is a hash in the user's slot:

- ``totp``: the encrypted secret once enrolment is confirmed; ``pending``: one being enrolled, with
  ``pending_until`` (ms), replaced by each new enrolment and dropped when confirmed;
- ``step``: the last TOTP time step accepted, so a code is never accepted twice (RFC 6238 §5.2):
  only a later step passes;
- ``rc``: the digests of the unused recovery codes, space-separated; ``since``: enrolment time (ms).

``pending:{digest}`` is a hash that lives ``PENDING_TTL`` at most: the user, their credential
generation, "keep me signed in", the login nonce it is bound to, and the code attempts left.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from .client import KeySpace, Redis, text, translated

PENDING_TTL = 300  # seconds between the right password and its code
PENDING_TRIES = 5  # codes one pending sign-in may try (the throttle also counts each)

# USE_STEP: accept a TOTP time step only if it is later than the last one accepted.
# KEYS[1] the user's mfa hash; ARGV[1] the step. Returns 1 if accepted (and recorded), 0 for a replay,
# -1 if TOTP is not on.
USE_STEP = """
if redis.call('HEXISTS', KEYS[1], 'totp') == 0 then return -1 end
local last = tonumber(redis.call('HGET', KEYS[1], 'step') or '-1')
if tonumber(ARGV[1]) <= last then return 0 end
redis.call('HSET', KEYS[1], 'step', ARGV[1])
return 1
"""

# USE_RECOVERY: spend one recovery code. KEYS[1] the user's mfa hash; ARGV[1] the code's digest.
# Returns the codes left, or -1 if the digest is not among them.
USE_RECOVERY = """
local left, found = {}, false
for code in string.gmatch(redis.call('HGET', KEYS[1], 'rc') or '', '%S+') do
  if code == ARGV[1] and not found then found = true else left[#left + 1] = code end
end
if not found then return -1 end
redis.call('HSET', KEYS[1], 'rc', table.concat(left, ' '))
return #left
"""

# CONFIRM: make the pending secret the user's TOTP secret, if it is the one the caller checked and has not
# expired; the recovery codes and the step of the confirming code are written with it.
# KEYS[1] the user's mfa hash; ARGV[1] the pending secret as read, ARGV[2] now ms, ARGV[3] the step,
# ARGV[4] recovery digests. Returns 1, or 0 if the enrolment changed or expired meanwhile.
CONFIRM = """
local pending = redis.call('HMGET', KEYS[1], 'pending', 'pending_until')
if pending[1] ~= ARGV[1] or tonumber(pending[2] or '0') < tonumber(ARGV[2]) then return 0 end
redis.call('HDEL', KEYS[1], 'pending', 'pending_until')
redis.call('HSET', KEYS[1], 'totp', ARGV[1], 'step', ARGV[3], 'rc', ARGV[4], 'since', ARGV[2])
return 1
"""

# HOLD: a pending sign-in, whole and with its lifetime in one step (never one that outlives PENDING_TTL).
# KEYS[1] the pending sign-in; ARGV[1] user, ARGV[2] generation, ARGV[3] remember, ARGV[4] nonce digest,
# ARGV[5] tries, ARGV[6] ttl ms, ARGV[7] now ms (the service's clock decides; the TTL collects garbage)
HOLD = """
redis.call('HSET', KEYS[1], 'user', ARGV[1], 'gen', ARGV[2], 'remember', ARGV[3], 'nonce', ARGV[4], 'tries', ARGV[5],
           'until', tonumber(ARGV[7]) + tonumber(ARGV[6]))
redis.call('PEXPIRE', KEYS[1], ARGV[6])
return 1
"""

# TAKE_PENDING: one code attempt of a pending sign-in bound to one of the request's login nonces.
# KEYS[1] the pending sign-in; ARGV[1] now ms, ARGV[2..] the digests of the login nonces the request carries.
# Returns {user, generation, remember} and counts the attempt (the last one deletes it), or false
# if there is no such sign-in (unknown, expired, used up) or it is bound to another nonce.
TAKE_PENDING = """
local pending = redis.call('HMGET', KEYS[1], 'user', 'gen', 'remember', 'nonce', 'tries', 'until')
if not pending[1] then return false end
if tonumber(ARGV[1]) > tonumber(pending[6]) then
  redis.call('DEL', KEYS[1])
  return false
end
local bound = false
for n = 2, #ARGV do if ARGV[n] == pending[4] then bound = true end end
if not bound then return false end
if tonumber(pending[5]) <= 1 then redis.call('DEL', KEYS[1])
else redis.call('HINCRBY', KEYS[1], 'tries', -1) end
return {pending[1], pending[2], pending[3]}
"""


@dataclasses.dataclass(frozen=True)
class Enrolment:
    """What is stored of a user's second factor (the secret as core/totp.py sealed it)."""

    secret: bytes | None  # confirmed
    pending: bytes | None  # being enrolled, until ``pending_until``
    pending_until: float
    recovery_left: int
    since: float


@dataclasses.dataclass(frozen=True)
class PendingLogin:
    user_id: str
    generation: str
    remember: bool


class MfaStore:
    """Reads and writes the TOTP enrolment, the recovery codes and pending sign-ins."""

    def __init__(self, redis: Redis, keys: KeySpace) -> None:
        self._redis = redis
        self._keys = keys
        self._use_step = redis.register_script(USE_STEP)
        self._use_recovery = redis.register_script(USE_RECOVERY)
        self._confirm = redis.register_script(CONFIRM)
        self._take_pending = redis.register_script(TAKE_PENDING)
        self._hold = redis.register_script(HOLD)

    async def get(self, user_id: str) -> Enrolment:
        with translated():
            fields = await self._redis.hgetall(self._keys.user_mfa(user_id))
        codes = text(fields.get(b"rc", b"")).split()
        return Enrolment(_bytes(fields.get(b"totp")), _bytes(fields.get(b"pending")),
                         int(fields.get(b"pending_until", 0)) / 1000, len(codes), int(fields.get(b"since", 0)) / 1000)

    async def has_totp(self, user_id: str) -> bool:
        with translated():
            return bool(await self._redis.hexists(self._keys.user_mfa(user_id), "totp"))

    async def begin(self, user_id: str, sealed: bytes, *, until: float) -> None:
        """A new secret being enrolled (any earlier one being enrolled is dropped)."""
        with translated():
            await self._redis.hset(self._keys.user_mfa(user_id),
                                   mapping={"pending": sealed, "pending_until": _ms(until)})

    async def confirm(self, user_id: str, sealed: bytes, *, now: float, step: int, recovery: list[str]) -> bool:
        args: list[Any] = [sealed, _ms(now), step, " ".join(recovery)]
        with translated():
            return bool(await self._confirm(keys=[self._keys.user_mfa(user_id)], args=args))

    async def use_step(self, user_id: str, step: int) -> bool:
        """Record ``step`` as used; False if it (or a later one) was used already: a replay."""
        with translated():
            return int(await self._use_step(keys=[self._keys.user_mfa(user_id)], args=[step])) == 1

    async def use_recovery(self, user_id: str, digest: str) -> int | None:
        """Spend the recovery code with ``digest``: the codes left, or None if it is not one of them."""
        with translated():
            left = int(await self._use_recovery(keys=[self._keys.user_mfa(user_id)], args=[digest]))
        return None if left < 0 else left

    async def replace_recovery(self, user_id: str, digests: list[str]) -> bool:
        """New recovery codes in place of the old; False if TOTP is not on."""
        key = self._keys.user_mfa(user_id)
        with translated():
            if not await self._redis.hexists(key, "totp"):
                return False
            await self._redis.hset(key, "rc", " ".join(digests))
        return True

    async def remove(self, user_id: str) -> bool:
        """TOTP off and the recovery codes gone; True if it was on."""
        key = self._keys.user_mfa(user_id)
        with translated():
            was_on = bool(await self._redis.hexists(key, "totp"))
            await self._redis.delete(key)
        return was_on

    async def hold(self, digest: str, pending: PendingLogin, *, nonce: str, now: float) -> None:
        """Keep a sign-in whose password was right until its code comes, bound to the login nonce."""
        args: list[Any] = [pending.user_id, pending.generation, "1" if pending.remember else "0", nonce,
                           PENDING_TRIES, PENDING_TTL * 1000, _ms(now)]
        with translated():
            await self._hold(keys=[self._keys.pending_login(digest)], args=args)

    async def take(self, digest: str, nonces: list[str], *, now: float) -> PendingLogin | None:
        """One code attempt of the pending sign-in; None if there is none bound to these nonces."""
        with translated():
            reply = await self._take_pending(keys=[self._keys.pending_login(digest)], args=[_ms(now), *nonces])
        if not reply:
            return None
        return PendingLogin(text(reply[0]), text(reply[1]), reply[2] == b"1")

    async def drop(self, digest: str) -> None:
        """The pending sign-in is done (it succeeded): it cannot be used again."""
        with translated():
            await self._redis.delete(self._keys.pending_login(digest))


def _bytes(value: bytes | str | None) -> bytes | None:
    return value.encode() if isinstance(value, str) else value


def _ms(seconds: float) -> int:
    return int(seconds * 1000)
