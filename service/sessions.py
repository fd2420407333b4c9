"""Sessions: the Redis record behind both tokens, and its atomic steps as named Lua scripts.

Fields of a session hash (short names: they are stored once per session, see bench/memory.py):
``rt`` digest of the current refresh token, ``pv`` of its predecessor, ``g`` end of the
predecessor's grace (ms), ``c`` created, ``u`` last used, ``i`` idle deadline, ``a`` absolute
deadline (all ms), ``d`` device ("Firefox on Linux"), ``ip`` client address.

A session is a hash under its user's hash tag holding who, when, from where, the digest of the
current refresh token and of its immediate predecessor (forgiven for ``refresh_reuse_grace``), and
the idle and absolute deadlines. Revoking a session deletes it; an access token is honoured only
while its session exists, so revocation reaches every instance at once.
"""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Sequence
from typing import Any

from .errors import RefreshFailed
from .refresh import RefreshToken
from .settings import SessionSettings
from .store import KeySpace, Redis, text, translated

# Redis keeps a session key this much longer than its deadlines; the deadlines decide, the TTL only
# collects garbage (and lets a test clock run ahead of Redis's own).
_TTL_SLACK_MS = 60_000

# CREATE: start a session unless the user is missing or disabled.
# KEYS[1] session, KEYS[2] user, KEYS[3] the user's session index
# ARGV[1] session id, ARGV[2] refresh digest, ARGV[3] now ms, ARGV[4] idle deadline ms,
# ARGV[5] absolute deadline ms, ARGV[6] device ("Firefox on Linux"; short, so the hash stays compact), ARGV[7] client ip, ARGV[8] ttl ms, ARGV[9] index ttl ms
# Returns 1, or 0 if the user cannot sign in.
CREATE = """
local user = redis.call('HMGET', KEYS[2], 'name', 'disabled')
if not user[1] or user[2] == '1' then return 0 end
redis.call('HSET', KEYS[1], 'rt', ARGV[2], 'c', ARGV[3], 'u', ARGV[3],
  'i', ARGV[4], 'a', ARGV[5], 'd', ARGV[6], 'ip', ARGV[7])
redis.call('PEXPIRE', KEYS[1], ARGV[8])
redis.call('HSET', KEYS[3], ARGV[1], '')
redis.call('PEXPIRE', KEYS[3], ARGV[9])
return 1
"""

# ROTATE: exchange a refresh token for its successor, forgive the immediate predecessor within the
# grace window (same successor for every caller), and revoke the session on any other reuse.
# A current token that was itself issued within the grace window is kept, not rotated again: a
# browser limits parallel requests per host, so a burst reaches the refresh hop in waves carrying
# old and new tokens; rotating twice would turn the first wave's token into a "grandparent".
# KEYS[1] session, KEYS[2] user, KEYS[3] the user's session index
# ARGV[1] presented digest, ARGV[2] successor digest, ARGV[3] now ms, ARGV[4] grace ms,
# ARGV[5] idle timeout ms, ARGV[6] session id, ARGV[7] ttl slack ms, ARGV[8] revocation channel,
# ARGV[9] the revocation message
# Returns {verdict, username, absolute deadline ms}; verdict is rotated|kept|grace|gone|disabled|expired|reused.
ROTATE = """
local s = redis.call('HMGET', KEYS[1], 'rt', 'pv', 'g', 'i', 'a')
if not s[1] then return {'gone'} end
local now = tonumber(ARGV[3])
local user = redis.call('HMGET', KEYS[2], 'name', 'disabled')
local verdict = nil
if not user[1] or user[2] == '1' then verdict = 'disabled'
elseif now >= tonumber(s[4]) or now >= tonumber(s[5]) then verdict = 'expired'
elseif s[1] == ARGV[1] and s[3] and now <= tonumber(s[3]) then
  return {'kept', user[1], s[5]}
elseif s[1] == ARGV[1] then
  local idle = math.min(now + tonumber(ARGV[5]), tonumber(s[5]))
  redis.call('HSET', KEYS[1], 'rt', ARGV[2], 'pv', ARGV[1], 'g', now + tonumber(ARGV[4]),
    'u', now, 'i', idle)
  redis.call('PEXPIRE', KEYS[1], idle - now + tonumber(ARGV[7]))
  return {'rotated', user[1], s[5]}
elseif s[2] == ARGV[1] and s[1] == ARGV[2] and now <= tonumber(s[3]) then
  return {'grace', user[1], s[5]}
else verdict = 'reused' end
redis.call('DEL', KEYS[1])
redis.call('HDEL', KEYS[3], ARGV[6])
redis.call('PUBLISH', ARGV[8], ARGV[9])
return {verdict}
"""


@dataclasses.dataclass(frozen=True)
class Rotation:
    """A successful refresh: whose session, and until when it may live at most."""

    verdict: str
    username: str
    absolute_deadline: float


@dataclasses.dataclass(frozen=True)
class SessionInfo:
    session_id: str
    created: float
    last_used: float
    idle_deadline: float
    absolute_deadline: float
    device: str
    ip: str


class SessionStore:
    """Creates, rotates, lists and revokes sessions; every step is one atomic Redis call."""

    def __init__(self, redis: Redis, keys: KeySpace, settings: SessionSettings) -> None:
        self._redis = redis
        self._keys = keys
        self._settings = settings
        self._create = redis.register_script(CREATE)
        self._rotate = redis.register_script(ROTATE)

    @staticmethod
    def new_id() -> str:
        return secrets.token_urlsafe(12)

    async def create(self, token: RefreshToken, *, now: float, device: str, ip: str) -> float | None:
        """Store a new session for ``token``; returns its absolute deadline, or None if the user can't sign in."""
        idle, absolute = self._settings.idle_timeout, self._settings.absolute_timeout
        args: list[Any] = [token.session_id, token.digest, _ms(now), _ms(now + idle), _ms(now + absolute),
                device[:48], ip[:64], _ms(idle) + _TTL_SLACK_MS, _ms(absolute) + _TTL_SLACK_MS]
        with translated():
            created = await self._create(keys=self._session_keys(token), args=args)
        return now + absolute if created else None

    async def rotate(self, presented: RefreshToken, successor: RefreshToken, *, now: float) -> Rotation:
        """Atomically exchange ``presented`` for ``successor``.

        Raises:
            RefreshFailed: with the verdict as reason (gone, disabled, expired, reused).
        """
        args: list[Any] = [presented.digest, successor.digest, _ms(now), _ms(self._settings.refresh_reuse_grace),
                _ms(self._settings.idle_timeout), presented.session_id, _TTL_SLACK_MS,
                self._keys.revocations(), f"{presented.user_id} {presented.session_id}"]
        with translated():
            reply = await self._rotate(keys=self._session_keys(presented), args=args)
        verdict = reply[0].decode()
        if verdict not in ("rotated", "kept", "grace"):
            raise RefreshFailed(verdict)
        return Rotation(verdict, reply[1].decode(), int(reply[2]) / 1000)

    async def is_live(self, user_id: str, session_id: str) -> bool:
        with translated():
            return bool(await self._redis.exists(self._keys.session(user_id, session_id)))

    async def revoke(self, user_id: str, session_id: str) -> bool:
        """End one session; True if it was live."""
        with translated():
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.delete(self._keys.session(user_id, session_id))
                pipe.hdel(self._keys.user_sessions(user_id), session_id)
                pipe.publish(self._keys.revocations(), f"{user_id} {session_id}")
                deleted, _, _ = await pipe.execute()
        return bool(deleted)

    async def revoke_all(self, user_id: str, *, keep: str | None = None) -> int:
        """End every session of a user but ``keep``; returns how many ended."""
        index = self._keys.user_sessions(user_id)

        async def delete_all(pipe: Any) -> None:  # re-run by redis-py if the index changes meanwhile
            ids = [text(i) for i in await pipe.hkeys(index) if text(i) != keep]
            pipe.multi()
            for session_id in ids:
                pipe.delete(self._keys.session(user_id, session_id))
                pipe.hdel(index, session_id)
                pipe.publish(self._keys.revocations(), f"{user_id} {session_id}")

        with translated():
            results = await self._redis.transaction(delete_all, index)
        return sum(results[0::3])  # each session: DEL, HDEL, PUBLISH

    async def list(self, user_id: str) -> Sequence[SessionInfo]:
        """The user's live sessions, newest first; forgets index entries whose session is gone."""
        index = self._keys.user_sessions(user_id)
        with translated():
            ids = [text(i) for i in await self._redis.hkeys(index)]
            async with self._redis.pipeline(transaction=False) as pipe:
                for session_id in ids:
                    pipe.hgetall(self._keys.session(user_id, session_id))
                records = await pipe.execute()
            gone = [session_id for session_id, record in zip(ids, records) if not record]
            if gone:
                await self._redis.hdel(index, *gone)
        infos = [_info(i, r) for i, r in zip(ids, records) if r]
        return sorted(infos, key=lambda info: info.created, reverse=True)

    def _session_keys(self, token: RefreshToken) -> Sequence[str]:
        keys = self._keys
        return [keys.session(token.user_id, token.session_id), keys.user(token.user_id),
                keys.user_sessions(token.user_id)]


def _ms(seconds: float) -> int:
    return int(seconds * 1000)


def _info(session_id: str, record: dict[bytes, Any]) -> SessionInfo:
    def seconds(name: bytes) -> float:
        return int(record.get(name, 0)) / 1000

    return SessionInfo(
        session_id=session_id,
        created=seconds(b"c"),
        last_used=seconds(b"u"),
        idle_deadline=seconds(b"i"),
        absolute_deadline=seconds(b"a"),
        device=record.get(b"d", b"").decode(errors="replace"),
        ip=record.get(b"ip", b"").decode(errors="replace"),
    )
