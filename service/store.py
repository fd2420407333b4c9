"""Redis plumbing: the client built from ``redis.url``, every key name, and redis error translation.

Keys that belong to one user share the hash tag ``{<user id>}``, so each atomic step (a Lua script
or a MULTI) touches one Cluster slot.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import redis.asyncio
import redis.exceptions

from .errors import StoreUnavailable
from .settings import RedisSettings

Redis = redis.asyncio.Redis
MAX_CONNECTIONS = 64  # per process; Redis answers one command at a time anyway


def connect(url: str, settings: RedisSettings) -> Redis:
    """A pooled client for ``url`` (``redis://``, ``rediss://`` or ``unix://``); nothing is sent yet.

    The pool *waits* (up to ``redis.timeout``) for a free connection: redis-py's default pool fails
    at once past its size, which turned a burst of 200 refreshes into 503s.
    """
    pool = redis.asyncio.BlockingConnectionPool.from_url(
        url,
        max_connections=MAX_CONNECTIONS,
        timeout=settings.timeout,
        socket_timeout=settings.timeout,
        socket_connect_timeout=settings.timeout,
        health_check_interval=30,
        decode_responses=False,
    )
    return redis.asyncio.Redis.from_pool(pool)  # the client owns the pool: aclose() closes it


@contextlib.contextmanager
def translated() -> Iterator[None]:
    """Turn any redis or connection failure inside the block into :class:`StoreUnavailable`."""
    try:
        yield
    except (redis.exceptions.RedisError, OSError) as exc:
        raise StoreUnavailable(f"redis: {type(exc).__name__}") from exc


class KeySpace:
    """Builds every Redis key name the service uses, under one prefix."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def user(self, user_id: str) -> str:
        return f"{self.prefix}u:{{{user_id}}}"

    def user_sessions(self, user_id: str) -> str:
        """A hash of session id → '' (a small hash is far more compact than a set in Redis 6.2)."""
        return f"{self.prefix}u:{{{user_id}}}:sessions"

    def session(self, user_id: str, session_id: str) -> str:
        return f"{self.prefix}u:{{{user_id}}}:s:{session_id}"

    def username(self, normalized: str) -> str:
        return f"{self.prefix}name:{normalized}"

    def all_users(self) -> str:
        return f"{self.prefix}users"

    def revocations(self) -> str:
        """The pub/sub channel on which every revocation is announced (see liveness.py)."""
        return f"{self.prefix}revoked"

    def throttle_user(self, name_digest: str) -> str:
        """Failed sign-ins for one typed username (hashed); its own hash tag, as each call takes one key."""
        return f"{self.prefix}throttle:user:{{{name_digest}}}"

    def throttle_ip(self, bucket: str) -> str:
        """Failed sign-ins from one client address (an IPv6 /64)."""
        return f"{self.prefix}throttle:ip:{{{bucket}}}"


def text(value: bytes | str) -> str:
    """A reply as text (the client is built with ``decode_responses=False``)."""
    return value.decode() if isinstance(value, bytes) else value


async def ping(client: Redis) -> bool:
    """True if Redis answers; never raises."""
    try:
        return bool(await client.ping())
    except (redis.exceptions.RedisError, OSError):
        return False
