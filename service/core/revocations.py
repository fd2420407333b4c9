"""Is a session still live? A local answer kept current by the revocation channel, and Redis otherwise.

Every revocation publishes ``"<user id> <session id>"`` on the revocation channel in the same
Lua script that deletes the session. While this instance's subscription is *known*
to be live — its own heartbeat, published every second, came back within the last few seconds — a
session once seen live in Redis is answered from memory until a revocation for it arrives, which
takes milliseconds. Whenever the subscription is not known to be live (starting up, Redis restarting,
a silent network failure), every check goes to Redis, and memory is forgotten: nothing missed while
deaf can linger.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator

from ..storage.channel import RevocationChannel
from ..storage.sessions import SessionStore

log = logging.getLogger("service")

HEARTBEAT = 1.0  # seconds between heartbeats
DEAF_AFTER = 3.0  # no heartbeat back for this long: the subscription is not known to be live
_MAX_REMEMBERED = 100_000  # bounded memory: the oldest entries are forgotten first
_HEARTBEAT_PREFIX = "heartbeat "
LOST_REMINDER = 60.0  # while the channel stays lost: one reminder a minute, not one line per retry


class RevocationView:
    """Whether a session still exists, for the per-request check, with a local view kept by pub/sub."""

    def __init__(self, channel: RevocationChannel, sessions: SessionStore) -> None:
        self._channel = channel
        self._sessions = sessions
        self._live: dict[tuple[str, str], None] = {}  # seen live in Redis while subscribed
        self._revoked: dict[tuple[str, str], None] = {}  # revoked while subscribed
        self._heard = float("-inf")  # when our own heartbeat last came back (monotonic: real time)
        self._nonce = secrets.token_hex(8)
        self._loss = _LossLog()

    @property
    def subscribed(self) -> bool:
        return time.monotonic() - self._heard < DEAF_AFTER

    def known(self, user_id: str, session_id: str) -> bool | None:
        """The local answer while subscribed, else None: then only :meth:`is_live` (Redis) can say.
        Plain, not a coroutine: this runs on every request."""
        if time.monotonic() - self._heard < DEAF_AFTER:  # self.subscribed, inline
            key = (user_id, session_id)
            if key in self._live:
                return True
            if key in self._revoked:
                return False
        return None

    async def is_live(self, user_id: str, session_id: str) -> bool:
        known = self.known(user_id, session_id)
        if known is not None:
            return known
        key = (user_id, session_id)
        live = await self._sessions.is_live(user_id, session_id)
        if live and self.subscribed and key not in self._revoked:
            _remember(self._live, key)
        return live

    async def run(self) -> None:
        """Subscribe and listen until cancelled; re-subscribe after any failure."""
        while True:
            try:
                await self._listen()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # StoreUnavailable or a dropped connection: go deaf, retry
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise asyncio.CancelledError from exc  # redis-py may turn a cancellation into an error
                self._loss.lost(type(exc).__name__)
            self._forget()
            await asyncio.sleep(HEARTBEAT)

    async def _listen(self) -> None:
        async with self._channel.subscribed() as messages, _beating(self._channel, self._nonce):
            async for message in messages:
                self._on_message(message)

    def ended(self, user_id: str, session_id: str) -> None:
        """This instance ended the session: say so at once, not when its announcement comes back."""
        key = (user_id, session_id)
        self._live.pop(key, None)
        _remember(self._revoked, key)

    def _on_message(self, data: str) -> None:
        if data.startswith(_HEARTBEAT_PREFIX):
            if data == _HEARTBEAT_PREFIX + self._nonce:
                if not self.subscribed:
                    self._forget()  # deaf until now: whatever was remembered may be stale
                    self._loss.restored()
                self._heard = time.monotonic()
            return
        user_id, _, session_id = data.partition(" ")
        key = (user_id, session_id)
        self._live.pop(key, None)
        _remember(self._revoked, key)

    def _forget(self) -> None:
        self._heard = float("-inf")
        self._live.clear()
        self._revoked.clear()


class _LossLog:
    """Logs a lost channel once, then a reminder every :data:`LOST_REMINDER` while it stays lost (it is
    retried every second: an outage would otherwise write a line a second), and once when it is back."""

    def __init__(self) -> None:
        self._since: float | None = None
        self._reminded = 0.0
        self._retries = 0

    def lost(self, reason: str) -> None:
        now = time.monotonic()
        if self._since is None:
            self._since, self._reminded, self._retries = now, now, 0
            log.warning("revocation channel lost: %s", reason,
                        extra={"event": "revocation_channel_lost", "reason": reason})
            return
        self._retries += 1
        if now - self._reminded >= LOST_REMINDER:
            self._reminded = now
            log.warning("revocation channel still lost after %.0f s: %s", now - self._since, reason,
                        extra={"event": "revocation_channel_lost", "reason": reason, "count": self._retries})

    def restored(self) -> None:
        if self._since is not None:
            log.info("revocation channel restored after %.0f s", time.monotonic() - self._since,
                     extra={"event": "revocation_channel_restored", "count": self._retries})
            self._since = None


@contextlib.asynccontextmanager
async def _beating(channel: RevocationChannel, nonce: str) -> AsyncIterator[None]:
    """Publish our heartbeat every second while the block runs. Stopped by an event, not by
    cancellation alone: redis-py can swallow a cancellation that lands inside ``publish``."""
    stop = asyncio.Event()

    async def beat() -> None:
        while not stop.is_set():
            with contextlib.suppress(Exception):  # a lost heartbeat only makes us deaf, which is safe
                await channel.publish(_HEARTBEAT_PREFIX + nonce)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), HEARTBEAT)

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        stop.set()
        task.cancel()
        await asyncio.wait([task])


def _remember(table: dict[tuple[str, str], None], key: tuple[str, str]) -> None:
    table[key] = None
    if len(table) > _MAX_REMEMBERED:
        del table[next(iter(table))]
