"""Sessions: the Redis record behind both tokens, and its atomic steps as named Lua scripts.

All sessions of a user are fields of one hash under the user's hash tag (``KeySpace.user_sessions``),
two fields a session, so a session has no key, TTL or index entry of its own (see bench/memory.py):

- ``<session id>``: its state, 63 bytes packed big-endian (Lua ``struct`` format ``STATE``): ``rt``
  digest of the current refresh token and ``pv`` of its predecessor (16 bytes each, see ``_digest``;
  ``pv`` is zeros until the first rotation), then ``t`` when the user last authenticated (the sign-in,
  or a later step-up: ``auth_time``), ``c`` created, ``u`` last used (the last rotation), ``i`` idle
  deadline and ``a`` absolute deadline, each in ms as a 6-byte unsigned integer, and ``f`` one byte of
  flags: how the session signed in (:data:`METHODS`) and whether it is remembered (:data:`REMEMBERED`).
  The predecessor's grace ends ``sessions.refresh_reuse_grace`` after ``u``. Schema 1 wrote 62 bytes,
  the grace's end where ``t`` is and no ``f``; the scripts read both (``fields``), so such a session
  reads as a remembered password sign-in at its creation, and is rewritten in the new layout when next
  rotated. Its presence is what ``is_live`` asks about.
- ``<session id>:d``: what the sessions page shows, the device ("Firefox on Linux"), a newline and
  the client address.

Every field fits ``hash-max-ziplist-value`` (64 bytes), so the hash stays a ziplist (a listpack from
Redis 7) up to ``hash-max-ziplist-entries`` (128 fields, 64 sessions): one longer value would turn the
user's whole hash into a hashtable several times the size.

The deadlines decide, read from the injected clock; Redis's TTL only collects garbage (and lets a
test clock run ahead of Redis's own). Every script that writes or lists the hash ends with ``tidy``,
which drops the user's sessions that have ended and makes the hash expire a minute after the latest
deadline among those left. So an ended session's fields stay only until the user's hash is next
touched or expires, and nothing of a user's outlives their last session's deadline by more than that.

Revoking a session deletes its fields and publishes ``"<user id> <session id>"`` on the revocation
channel in the same script (channel.py; core/revocations.py listens); an access token is honoured only while its session
exists, so revocation reaches every instance at once. A session that merely expires is dropped without
an announcement, as when it expired through a TTL: short-lived access tokens cover that.
"""

from __future__ import annotations

import dataclasses
import re
import secrets
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from ..clock import Clock
from ..errors import CredentialsChanged, RefreshFailed
from ..settings import SessionSettings
from .client import KeySpace, Redis, text, translated

# Redis keeps a user's sessions this much longer than their latest deadline.
_TTL_SLACK_MS = 60_000
_MAX_VALUE = 64  # bytes: Redis's default hash-max-ziplist-value (listpack-value in 7.x)
_DIGEST = 16  # bytes of a refresh token's SHA-256 that are stored
_SESSION_ID = re.compile(r"[A-Za-z0-9_-]{16}")
_DEVICE = 24  # characters of the device name kept: enough for any name devices.py gives

# How a session signed in: the low bits of its flags byte. The account page shows them.
METHODS = {"password": 1, "passkey": 2, "password+totp": 3, "password+recovery": 4}
REMEMBERED = 0x80  # "keep me signed in": the cookies outlive the browser session
_FLAGS_1 = METHODS["password"] | REMEMBERED  # every session schema 1 wrote

# Shared by every script below. A session ends at the earlier of its idle and absolute deadlines.
# tidy(key, now): drop the sessions that have ended; the hash lives on until the latest end + slack.
_COMMON = f"""
local SLACK_MS = {_TTL_SLACK_MS}
local STATE = '>c{_DIGEST}c{_DIGEST}I6I6I6I6I6B'  -- rt pv t c u i a f, see the module docstring
local STATE_1 = '>c{_DIGEST}c{_DIGEST}I6I6I6I6I6'  -- schema 1: rt pv g c u i a (c u i a at the same places)
local FLAGS_1 = {_FLAGS_1}  -- what a schema 1 session was: a remembered password sign-in
local NO_DIGEST = string.rep('\\0', {_DIGEST})
""" + """
-- rt pv c u i a t f (this order) of a state in either layout.
local function fields(state)
  if #state < 63 then
    local rt, pv, _, c, u, i, a = struct.unpack(STATE_1, state)
    return rt, pv, c, u, i, a, c, FLAGS_1
  end
  local rt, pv, t, c, u, i, a, f = struct.unpack(STATE, state)
  return rt, pv, c, u, i, a, t, f
end

local function ends(state)
  local _, _, _, _, _, i, a = struct.unpack(STATE_1, state)  -- i and a sit where both layouts put them
  return math.min(i, a)
end

local function last_used(state)
  local _, _, _, _, u = struct.unpack(STATE_1, state)
  return u
end

-- A session id as SessionStore.new_id makes them; anything else (such as a device field's name,
-- '<id>:d') must not reach a write.
local function valid_id(id)
  return #id == 16 and not string.find(id, '[^%w_-]')
end

-- The user's sessions as {id, state} pairs; the other field of each, id..':d', is skipped.
local function sessions(key)
  local fields, found = redis.call('HGETALL', key), {}
  for n = 1, #fields, 2 do
    if not string.find(fields[n], ':', 1, true) then found[#found + 1] = {fields[n], fields[n + 1]} end
  end
  return found
end

local function tidy(key, now)
  local latest = nil
  for _, session in ipairs(sessions(key)) do
    local id, ending = session[1], ends(session[2])
    if now >= ending then redis.call('HDEL', key, id, id .. ':d')
    elseif not latest or ending > latest then latest = ending end
  end
  if latest then redis.call('PEXPIRE', key, latest - now + SLACK_MS) end
end
"""

# CREATE: start a session unless the user is missing or disabled, or their credentials changed since
# the caller checked them: the caller passes the credential generation it read with the password hash,
# and every credential change (REVOKE_ALL with user fields) bumps it, so a sign-in verified against the
# old password cannot create its session after the change ended the others. Then, if the user has more
# than the cap of live sessions, the least recently used end (announced, like any revocation).
# KEYS[1] the user's sessions, KEYS[2] the user
# ARGV[1] session id, ARGV[2] refresh digest, ARGV[3] now ms, ARGV[4] idle deadline ms,
# ARGV[5] absolute deadline ms, ARGV[6] device and client address ("Firefox on Linux\n203.0.113.7"),
# ARGV[7] the credential generation read with the hash, ARGV[8] the most sessions a user may have,
# ARGV[9] revocation channel, ARGV[10] user id, ARGV[11] a new hash of the same password ('' for none:
# written only if the generation still holds, so a rehash never undoes a password change),
# ARGV[12] the flags byte (how it signed in, whether remembered)
# Returns {1, ids of the sessions evicted...}, or {0} if the user cannot sign in.
CREATE = _COMMON + """
local user = redis.call('HMGET', KEYS[2], 'name', 'disabled', 'gen')
if not user[1] or user[2] == '1' or (user[3] or '0') ~= ARGV[7] then return {0} end
local now = tonumber(ARGV[3])
local state = struct.pack(STATE, ARGV[2], NO_DIGEST, now, now, now, tonumber(ARGV[4]), tonumber(ARGV[5]),
                          tonumber(ARGV[12]))
if ARGV[11] ~= '' then redis.call('HSET', KEYS[2], 'hash', ARGV[11]) end
redis.call('HSET', KEYS[1], ARGV[1], state, ARGV[1] .. ':d', ARGV[6])
tidy(KEYS[1], now)
local live = sessions(KEYS[1])
local reply = {1}
if #live > tonumber(ARGV[8]) then
  table.sort(live, function(x, y) return last_used(x[2]) < last_used(y[2]) end)
  for n = 1, #live - tonumber(ARGV[8]) do
    local id = live[n][1]
    redis.call('HDEL', KEYS[1], id, id .. ':d')
    redis.call('PUBLISH', ARGV[9], ARGV[10] .. ' ' .. id)
    reply[#reply + 1] = id
  end
end
return reply
"""

# ROTATE: exchange a refresh token for its successor, forgive the immediate predecessor within the
# grace window (same successor for every caller), and revoke the session on any other reuse.
# A current token that was itself issued within the grace window is kept, not rotated again: a
# browser limits parallel requests per host, so a burst reaches the refresh hop in waves carrying
# old and new tokens; rotating twice would turn the first wave's token into a "grandparent".
# KEYS[1] the user's sessions, KEYS[2] the user
# ARGV[1] session id, ARGV[2] presented digest, ARGV[3] successor digest, ARGV[4] now ms,
# ARGV[5] grace ms, ARGV[6] idle timeout ms, ARGV[7] revocation channel, ARGV[8] the revocation message
# Returns {verdict, username, absolute deadline ms, auth time ms, flags}; verdict is
# rotated|kept|grace (those three with the rest) or gone|disabled|expired|reused (alone).
ROTATE = _COMMON + """
if not valid_id(ARGV[1]) then return {'gone'} end
local state = redis.call('HGET', KEYS[1], ARGV[1])
if not state then return {'gone'} end
local rt, pv, c, u, i, a, t, f = fields(state)
local g = 0  -- the end of the predecessor's grace; none before the first rotation
if pv ~= NO_DIGEST then g = u + tonumber(ARGV[5]) end
local now = tonumber(ARGV[4])
local user = redis.call('HMGET', KEYS[2], 'name', 'disabled')
local verdict = nil
if not user[1] or user[2] == '1' then verdict = 'disabled'
elseif now >= i or now >= a then verdict = 'expired'
elseif rt == ARGV[2] and now <= g then
  return {'kept', user[1], a, t, f}
elseif rt == ARGV[2] then
  local idle = math.min(now + tonumber(ARGV[6]), a)
  state = struct.pack(STATE, ARGV[3], ARGV[2], t, c, now, idle, a, f)
  redis.call('HSET', KEYS[1], ARGV[1], state)
  tidy(KEYS[1], now)
  return {'rotated', user[1], a, t, f}
elseif pv == ARGV[2] and rt == ARGV[3] and now <= g then
  return {'grace', user[1], a, t, f}
else verdict = 'reused' end
redis.call('HDEL', KEYS[1], ARGV[1], ARGV[1] .. ':d')
redis.call('PUBLISH', ARGV[7], ARGV[8])
tidy(KEYS[1], now)
return {verdict}
"""

# STEP_UP: the user has just authenticated again in this session: move its auth time to now. A refresh
# never moves it (ROTATE carries it over), so only this proves a recent authentication.
# KEYS[1] the user's sessions; ARGV[1] session id, ARGV[2] now ms
# Returns {absolute deadline ms, flags} of the live session, or false if it has ended.
STEP_UP = _COMMON + """
if not valid_id(ARGV[1]) then return false end
local state = redis.call('HGET', KEYS[1], ARGV[1])
local now = tonumber(ARGV[2])
if not state or now >= ends(state) then return false end
local rt, pv, c, u, i, a, _, f = fields(state)
redis.call('HSET', KEYS[1], ARGV[1], struct.pack(STATE, rt, pv, now, c, u, i, a, f))
return {a, f}
"""

# LIST: the user's sessions that have not ended, dropping those that have.
# KEYS[1] the user's sessions; ARGV[1] now ms
# Returns the hash as HGETALL does.
LIST = _COMMON + """
tidy(KEYS[1], tonumber(ARGV[1]))
return redis.call('HGETALL', KEYS[1])
"""

# REVOKE: end one session and announce it.
# KEYS[1] the user's sessions; ARGV[1] session id, ARGV[2] now ms, ARGV[3] revocation channel,
# ARGV[4] the revocation message
# Returns 1 if the session was live, else 0.
REVOKE = _COMMON + """
if not valid_id(ARGV[1]) then return 0 end
local state = redis.call('HGET', KEYS[1], ARGV[1])
local now = tonumber(ARGV[2])
redis.call('HDEL', KEYS[1], ARGV[1], ARGV[1] .. ':d')
redis.call('PUBLISH', ARGV[3], ARGV[4])
tidy(KEYS[1], now)
if state and now < ends(state) then return 1 end
return 0
"""

# REVOKE_ALL: change the user's credentials (optionally) and end every session of the user but one,
# announcing each live one, in one step: no session signed in or refreshed under the old credentials
# outlives the change. A change also bumps the user's credential generation, which CREATE checks, so a
# sign-in verified against the old credentials fails too. With an expected generation, nothing happens
# unless the credentials are still those the caller checked (a password change racing another).
# KEYS[1] the user's sessions, KEYS[2] the user; ARGV[1] now ms, ARGV[2] revocation channel,
# ARGV[3] user id, ARGV[4] the session to keep ('' for none), ARGV[5] the expected generation ('' for
# any), ARGV[6..] field, value pairs to write on the user record (only if it exists: a removed user is
# not brought back).
# Returns the ids of the live sessions that ended, or false if the generation was not the expected one.
REVOKE_ALL = _COMMON + """
if ARGV[5] ~= '' and (redis.call('HGET', KEYS[2], 'gen') or '0') ~= ARGV[5] then return false end
if #ARGV > 5 and redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('HSET', KEYS[2], unpack(ARGV, 6))
  redis.call('HINCRBY', KEYS[2], 'gen', 1)
end
local now, ended = tonumber(ARGV[1]), {}
for _, session in ipairs(sessions(KEYS[1])) do
  local id = session[1]
  if id ~= ARGV[4] then
    redis.call('HDEL', KEYS[1], id, id .. ':d')
    if now < ends(session[2]) then
      redis.call('PUBLISH', ARGV[2], ARGV[3] .. ' ' .. id)
      ended[#ended + 1] = id
    end
  end
end
tidy(KEYS[1], now)
return ended
"""


class RefreshToken(Protocol):
    """What the store needs of a refresh token (core/refresh_tokens.py mints them): where its session
    lives and the SHA-256 of its text, of which only a prefix is kept."""

    @property
    def user_id(self) -> str: ...
    @property
    def session_id(self) -> str: ...
    @property
    def digest(self) -> bytes: ...


@dataclasses.dataclass(frozen=True)
class SignIn:
    """How a session began: the factors (a :data:`METHODS` name), whether it is remembered, and when
    the user last authenticated in it (the sign-in, or the latest step-up; Unix seconds)."""

    method: str
    remembered: bool
    auth_time: float

    @classmethod
    def unpacked(cls, flags: int, auth_time_ms: int) -> SignIn:
        method = next((name for name, bits in METHODS.items() if bits == flags & 0x0F), "password")
        return cls(method, bool(flags & REMEMBERED), auth_time_ms / 1000)


def flags(method: str, *, remembered: bool) -> int:
    """The flags byte of a new session."""
    return METHODS[method] | (REMEMBERED if remembered else 0)


@dataclasses.dataclass(frozen=True)
class Rotation:
    """A successful refresh: whose session, until when it may live at most, and how it signed in."""

    verdict: str
    username: str
    absolute_deadline: float
    sign_in: SignIn


@dataclasses.dataclass(frozen=True)
class Created:
    """A new session: until when it may live, and the user's sessions it pushed over the cap."""

    absolute_deadline: float
    evicted: list[str]


@dataclasses.dataclass(frozen=True)
class SessionInfo:
    session_id: str
    created: float
    last_used: float
    idle_deadline: float
    absolute_deadline: float
    device: str
    ip: str
    sign_in: SignIn


class SessionStore:
    """Creates, rotates, lists and revokes sessions; each step is one call in one Cluster slot (a Lua script).

    ``create`` and ``rotate`` take the caller's ``now``, so the deadlines stored and those in the
    response agree to the millisecond; the other steps read ``clock``.
    """

    def __init__(self, redis: Redis, keys: KeySpace, settings: SessionSettings, clock: Clock) -> None:
        self._redis = redis
        self._keys = keys
        self._settings = settings
        self._clock = clock
        self._create = redis.register_script(CREATE)
        self._rotate = redis.register_script(ROTATE)
        self._list = redis.register_script(LIST)
        self._revoke = redis.register_script(REVOKE)
        self._revoke_all = redis.register_script(REVOKE_ALL)
        self._step_up = redis.register_script(STEP_UP)

    @staticmethod
    def new_id() -> str:
        return secrets.token_urlsafe(12)  # 16 characters of [A-Za-z0-9_-]: see is_session_id

    async def create(self, token: RefreshToken, *, now: float, device: str, ip: str, generation: str,
                     method: str = "password", remembered: bool = True, rehash: str | None = None) -> Created | None:
        """Store a new session for ``token``, unless the user cannot sign in (missing, disabled, or
        their credentials are no longer those of ``generation``: see CREATE). ``rehash`` replaces the
        password hash in the same step, under the same condition. A session not ``remembered`` lives
        at most ``sessions.short_absolute_timeout`` (``short_lifetime``)."""
        settings = self._settings
        absolute = settings.absolute_timeout if remembered else settings.short_lifetime
        idle = min(settings.idle_timeout, absolute)
        args: list[Any] = [token.session_id, _digest(token), _ms(now), _ms(now + idle), _ms(now + absolute),
                           _shown(device, ip), generation, settings.max_per_user, self._keys.revocations(),
                           token.user_id, rehash or "", flags(method, remembered=remembered)]
        with translated():
            reply = await self._create(keys=self._user_keys(token.user_id), args=args)
        if not int(reply[0]):
            return None
        return Created(now + absolute, [text(session_id) for session_id in reply[1:]])

    async def rotate(self, presented: RefreshToken, successor: RefreshToken, *, now: float) -> Rotation:
        """Atomically exchange ``presented`` for ``successor``.

        Raises:
            RefreshFailed: with the verdict as reason (gone, disabled, expired, reused).
        """
        args: list[Any] = [presented.session_id, _digest(presented), _digest(successor), _ms(now),
                           _ms(self._settings.refresh_reuse_grace), _ms(self._settings.idle_timeout),
                           self._keys.revocations(), f"{presented.user_id} {presented.session_id}"]
        with translated():
            reply = await self._rotate(keys=self._user_keys(presented.user_id), args=args)
        verdict = reply[0].decode()
        if verdict not in ("rotated", "kept", "grace"):
            raise RefreshFailed(verdict)
        return Rotation(verdict, reply[1].decode(), int(reply[2]) / 1000, SignIn.unpacked(int(reply[4]), int(reply[3])))

    async def step_up(self, user_id: str, session_id: str) -> tuple[float, SignIn] | None:
        """The user authenticated again in this session: its auth time becomes now (STEP_UP). Returns
        the session's absolute deadline and sign-in, or None if the session has ended."""
        now = self._clock()
        with translated():
            reply = await self._step_up(keys=[self._keys.user_sessions(user_id)], args=[session_id, _ms(now)])
        if not reply:
            return None
        return int(reply[0]) / 1000, SignIn.unpacked(int(reply[1]), _ms(now))

    async def is_live(self, user_id: str, session_id: str) -> bool:
        """Whether the session still exists: one HEXISTS, as the per-request check needs it cheap.

        Deadlines are not read here: an access token lives less than the idle timeout, and never past
        the absolute deadline.
        """
        with translated():
            return bool(await self._redis.hexists(self._keys.user_sessions(user_id), session_id))

    async def revoke(self, user_id: str, session_id: str) -> bool:
        """End one session; True if it was live. An id this store never makes matches nothing."""
        if not is_session_id(session_id):
            return False
        args: list[Any] = [session_id, _ms(self._clock()), self._keys.revocations(), f"{user_id} {session_id}"]
        with translated():
            return bool(await self._revoke(keys=[self._keys.user_sessions(user_id)], args=args))

    async def revoke_all(self, user_id: str, *, keep: str | None = None,
                         user_fields: Mapping[str, str] | None = None, if_generation: str | None = None) -> list[str]:
        """End every session of a user but ``keep``; returns the ids of the live ones that ended.

        ``user_fields`` (a new password hash, the disabled flag; see users.py) are written on the user
        record in the same atomic step, which also bumps the credential generation.

        Raises:
            CredentialsChanged: ``if_generation`` is given and the user's generation is another one;
                nothing was written or ended.
        """
        args: list[Any] = [_ms(self._clock()), self._keys.revocations(), user_id, keep or "", if_generation or ""]
        for field, value in (user_fields or {}).items():
            args += [field, value]
        with translated():
            ended = await self._revoke_all(keys=self._user_keys(user_id), args=args)
        if ended is None:
            raise CredentialsChanged()
        return [text(session_id) for session_id in ended]

    async def list(self, user_id: str) -> Sequence[SessionInfo]:
        """The user's live sessions, newest first; the ended ones are dropped on the way."""
        with translated():
            reply = await self._list(keys=[self._keys.user_sessions(user_id)], args=[_ms(self._clock())])
        fields = dict(zip(reply[0::2], reply[1::2]))
        infos = [_info(text(name), state, fields.get(name + b":d", b""))
                 for name, state in fields.items() if b":" not in name]
        return sorted(infos, key=lambda info: info.created, reverse=True)

    def _user_keys(self, user_id: str) -> Sequence[str]:
        return [self._keys.user_sessions(user_id), self._keys.user(user_id)]


def is_session_id(value: str) -> bool:
    """Whether ``value`` has the form of the ids :meth:`SessionStore.new_id` makes (the scripts check too)."""
    return _SESSION_ID.fullmatch(value) is not None


def _ms(seconds: float) -> int:
    return int(seconds * 1000)


def _digest(token: RefreshToken) -> bytes:
    """The first 128 bits of the token's SHA-256.

    Enough: Redis holds only these, and using one requires a token whose digest starts with them, a
    2^128 preimage search (collisions do not help, as the service mints every token, each with 256
    random bits and an HMAC tag). Two of these, five 6-byte times and a flags byte make the 63-byte state field.
    """
    return token.digest[:_DIGEST]


def _shown(device: str, ip: str) -> bytes:
    """The ``<session id>:d`` field: device, newline, address, cut to fit the listpack (see the top)."""
    return f"{' '.join(device.split())[:_DEVICE]}\n{ip}".encode()[:_MAX_VALUE]


def _info(session_id: str, state: bytes, shown: bytes) -> SessionInfo:
    auth, created, last_used, idle, absolute = (int.from_bytes(state[at:at + 6], "big")
                                                for at in range(2 * _DIGEST, 2 * _DIGEST + 30, 6))
    sign_in = SignIn.unpacked(state[62], auth) if len(state) > 62 else SignIn.unpacked(_FLAGS_1, created)
    device, _, ip = shown.decode(errors="replace").partition("\n")
    return SessionInfo(session_id=session_id, created=created / 1000, last_used=last_used / 1000,
                       idle_deadline=idle / 1000, absolute_deadline=absolute / 1000, device=device, ip=ip,
                       sign_in=sign_in)
