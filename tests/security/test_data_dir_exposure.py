"""Another account on the host reading the data directory: the AOF holds every password hash and
session, redis.log what the server did. Whatever the umask, and in a directory made beforehand with
mode 0755 (systemd's StateDirectory=, a docker volume), nothing in it is group or other readable."""

from __future__ import annotations

import asyncio
import stat
import subprocess
import time
from pathlib import Path

import aiohttp
import redis.asyncio as aioredis

from tests.support.cookies import browser_jar
from tests.support.servers import ServiceProcess
from tests.support.sign_in import PASSWORD

REWRITE_TIMEOUT = 10.0


def readable_by_others(data_dir: Path) -> dict[str, str]:
    """Every path under ``data_dir`` (itself included) with a group or other bit set, and its mode."""
    found = {}
    for path in [data_dir, *data_dir.rglob("*")]:
        mode = stat.S_IMODE(path.lstat().st_mode)
        if mode & 0o077:
            found[str(path.relative_to(data_dir.parent))] = f"{mode:04o}"
    return found


async def rewrite_aof(socket: Path) -> None:
    """BGREWRITEAOF and wait for it: redis writes a whole new AOF file, as it does by itself when
    the file grows, so the new file's mode comes from redis-server's own umask."""
    client = aioredis.Redis(unix_socket_path=str(socket))
    try:
        await client.bgrewriteaof()
        deadline = time.monotonic() + REWRITE_TIMEOUT
        while True:
            info = await client.info("persistence")
            if not info["aof_rewrite_in_progress"] and not info["aof_rewrite_scheduled"]:
                return
            assert time.monotonic() < deadline, info
            await asyncio.sleep(0.05)  # bounded wait for the child that rewrites the AOF
    finally:
        await client.aclose()


async def test_other_local_users_cannot_read_password_hashes_or_the_redis_log(
        service_process: ServiceProcess) -> None:
    data_dir = service_process.cli.data_dir
    # Made beforehand as a provisioning tool would, with an earlier run's log left world-readable.
    subprocess.run(["sh", "-c", f"umask 022 && mkdir -m 755 {data_dir} && echo earlier > {data_dir}/redis.log"],
                   check=True)
    assert readable_by_others(data_dir) == {"data": "0755", "data/redis.log": "0644"}
    service_process.umask = 0o022
    async with aiohttp.ClientSession(cookie_jar=browser_jar(service_process.port),
                                     timeout=aiohttp.ClientTimeout(total=30)) as browser:
        await service_process.start(browser)
        service_process.cli_alongside("users", "add", "alice", "--password-stdin", stdin=PASSWORD + "\n")
        async with browser.post(service_process.origin + "/login", headers={"Origin": service_process.origin},
                                json={"username": "alice", "password": PASSWORD}) as response:
            assert response.status == 200, await response.text()
        await rewrite_aof(data_dir / "redis.sock")

        aof = [path for path in data_dir.rglob("appendonly*") if path.is_file()]  # redis 7: appendonlydir/
        assert aof and any(b"$argon2id$" in path.read_bytes() for path in aof), "no password hash in the AOF"
        assert readable_by_others(data_dir) == {}
        assert "made the data directory" in service_process.log_text()
        service_process.assert_stopped_cleanly(service_process.stop())
    assert (data_dir / "redis.log").stat().st_size > len("earlier\n")  # the log this run wrote
    assert readable_by_others(data_dir) == {}
