"""Hot backups of the embedded Redis: its append-only file and the signing keys, copied into one tar
while the service keeps serving.

Redis's own procedure for copying an AOF safely: stop automatic rewrites for the copy, wait for any
rewrite in progress to end, copy, then restore the setting. A copy is then a prefix of the command
stream, at worst cut inside its last command, which Redis drops when it loads the file
(``aof-load-truncated``, on by default). Writes of the last second before the copy may be missing
(``appendfsync everysec``).
"""

from __future__ import annotations

import asyncio
import os
import tarfile
import time
from pathlib import Path

from ..errors import StoreUnavailable
from .client import Redis, translated

REWRITE_WAIT = 60.0  # seconds a running AOF rewrite may take to finish before the backup gives up
_POLL = 0.05
# What the embedded server writes (storage/embedded.py): Redis 6's one file, Redis 7's directory.
AOF_NAMES = ("appendonly.aof", "appendonlydir")


async def write(redis: Redis, data_dir: Path, keys_dir: Path, destination: Path) -> list[str]:
    """Archive ``data_dir``'s AOF and ``keys_dir`` (as ``keys/``) into ``destination`` (mode 0600,
    written whole or not at all); returns the archived names."""
    with translated():
        setting = await redis.config_get("auto-aof-rewrite-percentage")
        previous = setting.get("auto-aof-rewrite-percentage") or "100"  # Redis's default
        await redis.config_set("auto-aof-rewrite-percentage", 0)
    try:
        with translated():
            await _rewrites_done(redis)
        return await asyncio.to_thread(_archive, data_dir, keys_dir, destination)  # file errors stay OSError
    finally:
        with translated():
            await redis.config_set("auto-aof-rewrite-percentage", previous)


async def _rewrites_done(redis: Redis) -> None:
    deadline = time.monotonic() + REWRITE_WAIT
    while True:
        info = await redis.info("persistence")
        if not info.get("aof_enabled"):
            raise StoreUnavailable("the embedded Redis has no append-only file to copy")
        if not info.get("aof_rewrite_in_progress") and not info.get("aof_rewrite_scheduled"):
            return
        if time.monotonic() > deadline:
            raise StoreUnavailable(f"an AOF rewrite is still running after {REWRITE_WAIT:.0f}s; try again later")
        await asyncio.sleep(_POLL)


def _archive(data_dir: Path, keys_dir: Path, destination: Path) -> list[str]:
    partial = destination.with_name(f".{destination.name}.partial")
    names: list[str] = []
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as stream, tarfile.open(fileobj=stream, mode="w") as archive:
            for name in AOF_NAMES:
                if (data_dir / name).exists():
                    archive.add(data_dir / name, arcname=name)
                    names.append(name)
            archive.add(keys_dir, arcname="keys")
            names.append("keys")
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(partial, destination)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return names
