"""The layout version of everything under one key prefix, kept in Redis as ``<prefix>schema`` and checked
before any command or request touches the data.

A release that changes the layout raises :data:`SCHEMA_VERSION` and adds the step from the previous
one to :data:`MIGRATIONS`; a start on older data runs the steps in order, each stamping its version
once done, so an interrupted upgrade resumes. Data written by a newer release is refused, never
rewritten: rolling back the service must not corrupt what the newer one wrote.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from ..errors import SchemaMismatch
from .client import KeySpace, Redis, text, translated

SCHEMA_VERSION = 2
# Version 1 is the first layout with a stamp; data from before the stamp existed has that layout.
# Version 2: sessions hold their auth time and sign-in flags (63-byte state, sessions.py), and users may
# have a second factor (mfa.py). A release of version 1 would read a session's auth time as its grace
# and sign a TOTP user in with the password alone, so it must not run on this data.


async def _to_2(redis: Redis, keys: KeySpace) -> None:
    """Nothing to rewrite: the session scripts read the 62-byte states of version 1 as they are, and a
    session is written in the new layout at its next rotation."""


# version n -> the coroutine that turns layout n into n + 1
MIGRATIONS: dict[int, Callable[[Redis, KeySpace], Awaitable[None]]] = {1: _to_2}


async def check(redis: Redis, keys: KeySpace) -> int:
    """Stamp unversioned data with :data:`SCHEMA_VERSION`, migrate older data, and refuse newer data.

    Returns the version the data had before. Raises :class:`~service.errors.SchemaMismatch` for data
    of a newer release or a stamp that is not a version, and ``StoreUnavailable`` if Redis cannot answer.
    """
    with translated():
        if await redis.set(keys.schema(), SCHEMA_VERSION, nx=True):
            return SCHEMA_VERSION
        stored = await redis.get(keys.schema())
    found = text(stored or b"")
    if not found.isdigit():
        raise SchemaMismatch(f"redis key {keys.schema()} holds {found[:20]!r}, not a schema version: "
                             "another program writes under redis.key_prefix; give this service its own")
    version = int(found)
    if version > SCHEMA_VERSION:
        raise SchemaMismatch(f"the data under redis.key_prefix {keys.prefix!r} has schema version {version}, "
                             f"written by a newer release; this one reads version {SCHEMA_VERSION}. Run the "
                             "newer release (or restore a backup made before the upgrade)")
    for step in range(version, SCHEMA_VERSION):
        await MIGRATIONS[step](redis, keys)
        with translated():
            await redis.set(keys.schema(), step + 1)
    return version


class SchemaGate:
    """:func:`check` once per process: at start, or, if Redis could not answer then, at the first
    readiness probe that finds it (the instance is not ready until it has passed)."""

    def __init__(self, redis: Redis, keys: KeySpace) -> None:
        self._redis = redis
        self._keys = keys
        self.passed = False

    async def ensure(self) -> None:
        if not self.passed:
            await check(self._redis, self._keys)
            self.passed = True
