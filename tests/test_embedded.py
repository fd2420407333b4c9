"""The embedded Redis against a real redis-server: spawn, attach, persistence across stops and SIGKILL."""

from __future__ import annotations

import os
import pathlib
import shutil
import signal
import stat
import tempfile
from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio as aioredis

from service.storage.embedded import EmbeddedRedis, find_redis_server
from service.errors import SettingsError, StoreUnavailable


@pytest.fixture
def data_dir() -> Iterator[pathlib.Path]:
    """A short directory under /tmp: pytest's tmp_path can exceed the 107-byte unix socket limit."""
    root = pathlib.Path(tempfile.mkdtemp(prefix="emb-", dir="/tmp"))
    yield root / "data"
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
async def started(data_dir: pathlib.Path) -> AsyncIterator[EmbeddedRedis]:
    server = EmbeddedRedis(data_dir)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def _command(url: str, *args: str) -> object:
    client = aioredis.Redis.from_url(url, decode_responses=True)
    try:
        return await client.execute_command(*args)  # type: ignore[no-untyped-call]
    finally:
        await client.aclose()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_find_redis_server_returns_an_executable() -> None:
    assert os.access(find_redis_server(), os.X_OK)


async def test_start_spawns_a_server_that_answers_ping(
    started: EmbeddedRedis, data_dir: pathlib.Path
) -> None:
    assert started.owned and started.pid is not None
    assert started.url == f"unix://{data_dir}/redis.sock"
    assert await _command(started.url, "PING") is True
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    assert await _command(started.url, "CONFIG", "GET", "appendfsync") == {"appendfsync": "everysec"}
    assert not list(data_dir.glob("*.pid"))


async def test_writes_persist_across_stop_and_start(data_dir: pathlib.Path) -> None:
    async with EmbeddedRedis(data_dir) as first:
        await _command(first.url, "SET", "k", "v")
    async with EmbeddedRedis(data_dir) as second:
        assert second.owned
        assert await _command(second.url, "GET", "k") == "v"


async def test_second_instance_attaches_and_its_stop_leaves_server_running(started: EmbeddedRedis,
                                                                         data_dir: pathlib.Path) -> None:
    other = EmbeddedRedis(data_dir)
    await other.start()
    assert not other.owned and other.pid is None
    assert other.url == started.url
    await other.stop()
    assert started.pid is not None and _alive(started.pid)
    assert await _command(started.url, "PING") is True


async def test_stop_is_idempotent(data_dir: pathlib.Path) -> None:
    server = EmbeddedRedis(data_dir)
    await server.stop()  # never started
    await server.start()
    pid = server.pid
    assert pid is not None
    await server.stop()
    await server.stop()
    assert not server.owned and server.pid is None
    assert not _alive(pid)
    assert not (data_dir / "redis.sock").exists()


async def test_acknowledged_writes_survive_sigkill_of_redis(data_dir: pathlib.Path) -> None:
    server = EmbeddedRedis(data_dir)
    await server.start()
    try:
        for i in range(100):
            await _command(server.url, "SET", f"k{i}", str(i))
        killed = server.pid
        assert killed is not None
        os.kill(killed, signal.SIGKILL)  # no shutdown fsync: only what write() put in the page cache
        assert (data_dir / "redis.sock").exists()  # left behind; the next start removes it
        await server.start()  # notices the dead child, reaps it and spawns a new server
        assert server.owned and server.pid not in (None, killed)
        assert await _command(server.url, "GET", "k99") == "99"
        assert await _command(server.url, "DBSIZE") == 100
    finally:
        await server.stop()
    async with EmbeddedRedis(data_dir) as again:  # and a fresh object sees the same data
        assert await _command(again.url, "DBSIZE") == 100


async def test_too_long_data_dir_is_a_settings_error(tmp_path: pathlib.Path) -> None:
    server = EmbeddedRedis(tmp_path / ("d" * 120))
    with pytest.raises(SettingsError) as info:
        await server.start()
    assert info.value.key == "storage.data_dir"
    assert "too long for a unix socket" in str(info.value)
    assert not (tmp_path / ("d" * 120)).exists()


async def test_missing_binary_is_store_unavailable(data_dir: pathlib.Path) -> None:
    server = EmbeddedRedis(data_dir, binary="/nonexistent/redis-server")
    with pytest.raises(StoreUnavailable, match="/nonexistent/redis-server"):
        await server.start()
    assert not server.owned and server.pid is None


async def test_server_that_exits_at_once_reports_redis_log(data_dir: pathlib.Path) -> None:
    server = EmbeddedRedis(data_dir, appendfsync="sometimes")  # redis rejects the value and exits
    with pytest.raises(StoreUnavailable, match="exited with status 1") as info:
        await server.start(timeout=5)
    assert "argument must be one of the following" in str(info.value)  # redis.log tail is in the message
    assert "\n" not in str(info.value)
    assert server.pid is None
