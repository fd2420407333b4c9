"""Redis plumbing: the client built from ``redis.url``, every key name, and redis error translation.

Keys that belong to one user share the hash tag ``{<user id>}``, so each atomic step (a Lua script)
touches one Cluster slot; every other key is used alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import redis.asyncio
import redis.exceptions
from redis.asyncio.client import PubSub
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.commands.core import AsyncScript

from ..errors import SettingsError, StoreBug, StoreUnavailable
from ..settings import RedisSettings
from . import url as redis_url

Redis = redis.asyncio.Redis | RedisCluster
MAX_CONNECTIONS = 64  # per process; Redis answers one command at a time anyway
# Per Cluster node. redis-py's cluster client cannot wait for a free connection (it fails at once
# past this), so the bound is generous: it only stops a runaway burst.
CLUSTER_MAX_CONNECTIONS = 512


def connect(url: str, settings: RedisSettings) -> Redis:
    """A pooled client for ``url`` (any form url.py parses); nothing is sent yet.

    The pool *waits* (up to ``redis.timeout``) for a free connection: redis-py's default pool fails
    at once past its size, which turned a burst of 200 refreshes into 503s. A Sentinel client asks
    the sentinels for the primary on every new connection, so it follows a failover by itself.
    """
    try:
        target = redis_url.parse(url)
    except ValueError as exc:
        raise SettingsError("redis.url", str(exc)) from None
    timeouts: dict[str, Any] = {"socket_timeout": settings.timeout, "socket_connect_timeout": settings.timeout}
    if target.kind == "cluster":
        if settings.replica_acks:
            raise SettingsError("redis.replica_acks", "is not supported with redis+cluster:// (use 0)")
        return RedisCluster(startup_nodes=[ClusterNode(host, port) for host, port in target.nodes],
                            username=target.username, password=target.password, decode_responses=False,
                            max_connections=CLUSTER_MAX_CONNECTIONS, health_check_interval=30, **timeouts)
    if target.kind == "sentinel":
        sentinels = _Sentinel(target.nodes, sentinel_kwargs={**timeouts, "password": target.sentinel_password})
        client = sentinels.master_for(
            target.service, redis_class=AcknowledgedRedis, connection_pool_class=_SentinelPool,
            max_connections=MAX_CONNECTIONS, timeout=settings.timeout, db=target.db, username=target.username,
            password=target.password, health_check_interval=30, decode_responses=False, **timeouts)
    else:
        pool = redis.asyncio.BlockingConnectionPool.from_url(
            url, max_connections=MAX_CONNECTIONS, timeout=settings.timeout, health_check_interval=30,
            decode_responses=False, **timeouts)
        client = AcknowledgedRedis.from_pool(pool)  # the client owns the pool: aclose() closes it
    assert isinstance(client, AcknowledgedRedis)
    client.replica_acks = settings.replica_acks
    client.replica_wait_ms = int(settings.timeout * 1000 * REPLICA_WAIT_SHARE)
    return client


async def pubsub(client: Redis) -> PubSub:
    """A pub/sub connection (not yet subscribed) through ``client``.

    Under Cluster it goes to one primary picked at random, so a new one after each failure: Redis 6.2
    sends every PUBLISH to every node, so any one hears everything. redis-py would pick the node
    serving the channel's slot, but before the client has run a command it knows no slots (KeyError).
    """
    if isinstance(client, RedisCluster):
        await client.initialize()
        return client.pubsub(node=random.choice(client.get_primaries()))
    return client.pubsub()


# WAIT gives up after this share of redis.timeout, so that its answer arrives before the socket's
# own timeout would cut the connection.
REPLICA_WAIT_SHARE = 0.5


class AcknowledgedRedis(redis.asyncio.Redis):
    """A client whose Lua scripts answer only once ``replica_acks`` replicas also hold their writes.

    Replication is asynchronous: a primary that dies right after answering may take the write with
    it, and Sentinel then promotes a replica without it. So each script is pipelined with
    ``WAIT <replica_acks> <ms>`` on the same connection (WAIT counts that connection's writes, and
    every write before them). Sentinel promotes the replica with the most data, so whatever a replica
    acknowledged survives the failover; if too few acknowledge in time the step fails as
    :class:`StoreUnavailable` (503), never as a session the next primary may not have.
    """

    replica_acks = 0
    replica_wait_ms = 0

    def register_script(self, script: str | bytes) -> AsyncScript:  # type: ignore[override]
        return _AcknowledgedScript(self, script)


class _AcknowledgedScript(AsyncScript):
    async def __call__(self, keys: Sequence[Any] | None = None, args: Iterable[Any] | None = None,
                       client: Any = None) -> Any:
        owner = self.registered_client
        if client is not None or not isinstance(owner, AcknowledgedRedis) or not owner.replica_acks:
            return await super().__call__(keys, args, client)
        arguments = [*(keys or []), *(args or [])]
        for _ in range(2):  # a new primary may not know the script yet: load it once, then retry
            async with owner.pipeline(transaction=False) as pipe:
                pipe.evalsha(self.sha, len(keys or []), *arguments)
                pipe.wait(owner.replica_acks, owner.replica_wait_ms)
                reply, acked = await pipe.execute(raise_on_error=False)
            if not isinstance(reply, redis.exceptions.NoScriptError):
                break
            self.sha = await owner.script_load(self.script)
        for answer in (reply, acked):
            if isinstance(answer, Exception):
                raise answer
        if acked < owner.replica_acks:
            raise StoreUnavailable(f"redis: {acked} of {owner.replica_acks} replica(s) acknowledged a write "
                                   f"within {owner.replica_wait_ms} ms")
        return reply


class _SentinelPool(SentinelConnectionPool, redis.asyncio.BlockingConnectionPool):
    """Sentinel's pool for the primary, waiting for a free connection like the others. The client
    owns it, and through it the connections to the sentinels, which it closes too."""

    async def aclose(self) -> None:
        try:
            await super().aclose()  # raises the first error met disconnecting, after trying them all
        finally:
            await self.sentinel_manager.aclose()


class _Sentinel(Sentinel):
    """redis-py's Sentinel, asking the sentinels one discovery at a time.

    ``discover_master`` moves the sentinel that answered to the front of its list by index across an
    ``await``; run concurrently (a burst of new connections after a failover) it can write one
    sentinel twice and lose another, whose connections then never close and which is never asked again.
    """

    def __init__(self, sentinels: Sequence[tuple[str, int]], **kwargs: Any) -> None:
        super().__init__(sentinels, **kwargs)
        self._discovering = asyncio.Lock()

    async def discover_master(self, service_name: str) -> Any:
        async with self._discovering:
            return await super().discover_master(service_name)


@contextlib.contextmanager
def translated() -> Iterator[None]:
    """Turn any redis or connection failure inside the block into :class:`StoreUnavailable`, and a
    command or script that Redis refused as wrong into :class:`StoreBug` (a 500, not the outage answer)."""
    try:
        yield
    except redis.exceptions.ResponseError as exc:
        if is_bug(exc):
            raise StoreBug(f"redis refused a command: {str(exc)[:200]}") from exc
        raise StoreUnavailable(f"redis: {type(exc).__name__}") from exc
    except (redis.exceptions.RedisError, OSError) as exc:
        raise StoreUnavailable(f"redis: {type(exc).__name__}") from exc


def is_bug(exc: redis.exceptions.ResponseError) -> bool:
    """A script's runtime error, a wrong argument or a key of the wrong type: what retrying cannot fix.

    The subclasses (READONLY after a failover, CLUSTERDOWN, TRYAGAIN, MOVED, ...) and other replies
    such as OOM, LOADING, BUSY or MASTERDOWN describe a server that cannot serve right now: an outage.
    """
    return type(exc) is redis.exceptions.ResponseError and str(exc).startswith(("ERR", "WRONGTYPE", "user_script"))


class KeySpace:
    """Builds every Redis key name the service uses, under one prefix."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def user(self, user_id: str) -> str:
        return f"{self.prefix}u:{{{user_id}}}"

    def user_sessions(self, user_id: str) -> str:
        """A hash holding every session of the user, two fields each (see sessions.py).

        A new name for a new layout: the keys of the one before (a hash per session under
        ``u:{id}:s:<session id>``, indexed by ``u:{id}:sessions``) are never read and expire on their own.
        """
        return f"{self.prefix}u:{{{user_id}}}:s"

    def user_mfa(self, user_id: str) -> str:
        """The user's second factor (storage/mfa.py): a hash beside the user record, in its slot."""
        return f"{self.prefix}u:{{{user_id}}}:mfa"

    def pending_login(self, digest: str) -> str:
        """A sign-in between the right password and its TOTP code (storage/mfa.py); short-lived."""
        return f"{self.prefix}pending:{{{digest}}}"

    def user_passkeys(self, user_id: str) -> str:
        """A hash of the user's passkeys: credential id (base64url) -> its record (storage/passkeys.py)."""
        return f"{self.prefix}u:{{{user_id}}}:pk"

    def passkey_owner(self, credential_digest: str) -> str:
        """Which user a credential id belongs to, for usernameless sign-in; its own hash tag."""
        return f"{self.prefix}pk:{{{credential_digest}}}"

    def session_challenge(self, user_id: str, session_id: str, purpose: str, challenge_digest: str) -> str:
        """A WebAuthn challenge bound to one session (``register`` or ``step_up``), single-use."""
        return f"{self.prefix}u:{{{user_id}}}:pkc:{purpose}:{session_id}:{challenge_digest}"

    def login_challenge(self, nonce_digest: str, challenge_digest: str) -> str:
        """A WebAuthn sign-in challenge bound to the login nonce cookie (pre-session), single-use."""
        return f"{self.prefix}pkc:{{{nonce_digest}}}:{challenge_digest}"

    def username(self, normalized: str) -> str:
        return f"{self.prefix}name:{normalized}"

    def all_users(self) -> str:
        return f"{self.prefix}users"

    def schema(self) -> str:
        """The layout version of everything under this prefix (schema.py)."""
        return f"{self.prefix}schema"

    def revocations(self) -> str:
        """The pub/sub channel on which every revocation is announced (see core/revocations.py)."""
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
