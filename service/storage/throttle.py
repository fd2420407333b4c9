"""Login throttling: sliding windows of failed sign-ins per typed username and per client address, in Redis.

Each window is a sorted set of attempt ids scored by time. An attempt takes a slot *before* its
password is checked (one atomic script), so a burst of parallel requests cannot all slip past the
check; the slot stays as a failure unless the sign-in succeeds. Because the windows live in Redis,
every instance shares them and they survive restarts. Time comes from the injected clock.

The trade-off (OWASP Authentication CS, "Account Lockout"): the per-username window lets anyone slow
down sign-ins to any account, so it is a temporary slowdown, never a lockout. It slides — each
failure ages out after ``window`` — and refused attempts take no slot, so at most ``per_user`` guesses
per ``window`` reach the password check, and the real user gets in as soon as a slot frees up.
Unknown usernames are counted exactly like real ones, so the throttle reveals nothing about who exists.
"""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
import math
import secrets

from ..errors import Throttled
from ..settings import ThrottleSettings
from .client import KeySpace, Redis, translated
from .users import normalize

# ATTEMPT: take a slot in one sliding window of failed sign-ins, unless the window is full.
# KEYS[1] the window (sorted set: member = attempt id, score = time in ms)
# ARGV[1] now ms, ARGV[2] window ms, ARGV[3] limit, ARGV[4] attempt id
# Returns 0 when a slot was taken; else the ms until one frees up (always > 0). Nothing changes then,
# so hammering a full window does not keep it full.
ATTEMPT = """
local now, window, limit = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local taken = redis.call('ZCARD', KEYS[1])
if taken >= limit then
  local freeing = redis.call('ZRANGE', KEYS[1], taken - limit, taken - limit, 'WITHSCORES')
  return math.max(1, tonumber(freeing[2]) + window - now)
end
redis.call('ZADD', KEYS[1], now, ARGV[4])
redis.call('PEXPIRE', KEYS[1], window)
return 0
"""


@dataclasses.dataclass(frozen=True)
class Attempt:
    """The slots one sign-in attempt holds, so that a success can give them back."""

    id: str
    user_key: str
    ip_key: str


class LoginThrottle:
    """Admits or refuses sign-in attempts; every step is one single-key (so single-slot) Redis call."""

    def __init__(self, redis: Redis, keys: KeySpace, settings: ThrottleSettings) -> None:
        self._redis = redis
        self._keys = keys
        self._settings = settings
        self._attempt = redis.register_script(ATTEMPT)

    async def admit(self, username: str, ip: str, *, now: float) -> Attempt:
        """Take a slot in the client's and the username's windows.

        Raises:
            Throttled: either window is full; no slot is kept, and ``scope`` says which one.
        """
        attempt = Attempt(secrets.token_urlsafe(12), self._keys.throttle_user(username_digest(username)),
                          self._keys.throttle_ip(client_bucket(ip)))
        wait_ms = await self._take(attempt.ip_key, self._settings.per_ip, attempt.id, now)
        if wait_ms:
            raise Throttled(_seconds(wait_ms), scope="ip")
        wait_ms = await self._take(attempt.user_key, self._settings.per_user, attempt.id, now)
        if wait_ms:
            with translated():
                await self._redis.zrem(attempt.ip_key, attempt.id)  # a refused attempt is no failure
            raise Throttled(_seconds(wait_ms), scope="user")
        return attempt

    async def succeeded(self, attempt: Attempt, *, whole: bool = True) -> None:
        """A success clears the username's window; from the client's, it removes only its own slot.
        A success that is not the whole sign-in (a right password still waiting for its TOTP code)
        removes only its own slots, so re-typing the password never wipes out the failed codes."""
        with translated():
            if whole:
                await self._redis.delete(attempt.user_key)
            else:
                await self._redis.zrem(attempt.user_key, attempt.id)
            await self._redis.zrem(attempt.ip_key, attempt.id)

    async def clear(self, target: str) -> tuple[str, int]:
        """An operator's reset: an IP address empties that client's window (its /64 for IPv6), anything
        else the window of that username as typed. Returns the scope and how many failures it held."""
        try:
            ipaddress.ip_address(target)
        except ValueError:
            scope, key = "user", self._keys.throttle_user(username_digest(target))
        else:
            scope, key = "ip", self._keys.throttle_ip(client_bucket(target))
        with translated():
            held = int(await self._redis.zcard(key))
            await self._redis.delete(key)
        return scope, held

    async def _take(self, key: str, limit: int, attempt_id: str, now: float) -> int:
        args: list[int | str] = [int(now * 1000), int(self._settings.window * 1000), limit, attempt_id]
        with translated():
            return int(await self._attempt(keys=[key], args=args))


def username_digest(username: str) -> str:
    """The key for a typed name: its normalized form, hashed, so that whatever people type into the
    username field (sometimes their password) never appears in Redis in the clear."""
    return hashlib.sha256(normalize(username[:1024]).encode(errors="replace")).hexdigest()[:32]


def client_bucket(ip: str) -> str:
    """The address a per-client window counts: IPv4 as is, IPv6 by its /64 (one host's usual share)."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip[:64] or "-"
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def _seconds(ms: int) -> int:
    return max(1, math.ceil(ms / 1000))
