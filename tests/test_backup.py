"""Backup and restore as the README's "Backup and restore" says: ``backup FILE`` taken while the
service runs and sessions are live, unpacked with tar into a fresh data directory and served by a
new process, keeps every session (the old cookies work, and refresh rotates them), every user and
the signing keys; and the live service is left as it was."""

from __future__ import annotations

import os
import stat
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
import redis

from tests.support.cli import Cli
from tests.support.cookies import browser_jar
from tests.support.servers import ServiceProcess, service_process_in_fresh_dir
from tests.support.sign_in import PASSWORD


def restore(archive: Path, data_dir: Path) -> None:
    """README's restore command, into a directory no service runs on."""
    data_dir.mkdir(mode=0o700)
    subprocess.run(["tar", "-xpf", str(archive), "-C", str(data_dir)], check=True, timeout=60)


@pytest.fixture
def restored_service() -> Iterator[ServiceProcess]:
    with service_process_in_fresh_dir("rsd-", "the restored service") as running:
        yield running


async def sign_in(origin: str, port: int, name: str) -> tuple[str, str]:
    """A browser signing in: its session id and the Cookie header its jar would send."""
    jar = browser_jar(port)
    async with aiohttp.ClientSession(cookie_jar=jar, timeout=aiohttp.ClientTimeout(total=30)) as browser:
        async with browser.post(origin + "/login", headers={"Origin": origin},
                                json={"username": name, "password": PASSWORD}) as response:
            assert response.status == 200, await response.text()
            session = (await response.json())["session"]
    return session, "; ".join(f"{m.key}={m.value}" for m in jar)


def rewrite_setting(data_dir: Path) -> str:
    with redis.Redis(unix_socket_path=str(data_dir / "redis.sock"), socket_timeout=5) as client:
        return str(client.config_get("auto-aof-rewrite-percentage")["auto-aof-rewrite-percentage"])


async def test_a_backup_of_a_running_service_restored_elsewhere_keeps_every_session_user_and_key(
        service_process: ServiceProcess, restored_service: ServiceProcess) -> None:
    live, restored = service_process, restored_service
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        await live.start(http)
        for name in ("alice", "bob"):
            live.cli_alongside("users", "add", name, "--password-stdin", stdin=PASSWORD + "\n")
        browsers = [await sign_in(live.origin, live.port, name) for name in ("alice", "alice", "bob")]
        users = live.cli_alongside("users", "list")

        archive = live.cli.root / "backup.tar"
        printed = live.cli_alongside("backup", str(archive))  # the service keeps running, its sessions live
        assert f"wrote {archive}" in printed
        assert stat.S_IMODE(archive.stat().st_mode) == 0o600  # it holds the keys and the password hashes
        with tarfile.open(archive) as contents:
            assert {"appendonly.aof", "keys"} <= set(contents.getnames())
            assert not {"redis.sock", "embedded.lock"} & set(contents.getnames())
        assert rewrite_setting(live.cli.data_dir) == "100"  # the live server's setting is back

        restore(archive, restored.cli.data_dir)
        assert sorted(p.name for p in restored.cli.keys.iterdir()) == sorted(p.name for p in live.cli.keys.iterdir())
        await restored.start(http)
        assert restored.cli_alongside("users", "list") == users
        for session, cookies in browsers:
            async with http.get(restored.origin + "/api/me", headers={"Cookie": cookies}) as response:
                assert response.status == 200, await response.text()  # signed by the copied keys
                assert (await response.json())["session"] == session
            async with http.post(restored.origin + "/auth/refresh",
                                 headers={"Cookie": cookies, "Origin": restored.origin}) as response:
                assert response.status == 200, await response.text()  # the refresh token's hash came along
        async with http.get(live.origin + "/api/me", headers={"Cookie": browsers[0][1]}) as response:
            assert response.status == 200  # the backup took nothing from the running service
        restored.assert_stopped_cleanly(restored.stop())
        live.assert_stopped_cleanly(live.stop())


def test_a_backup_without_a_running_service_starts_and_stops_the_embedded_redis(cli: Cli) -> None:
    assert cli.run("users", "add", "alice", "--password-stdin", env=cli.env(), stdin=PASSWORD + "\n").returncode == 0
    result = cli.run("backup", str(cli.root / "offline.tar"), env=cli.env())
    assert result.returncode == 0, result.stderr
    assert not (cli.data_dir / "redis.sock").exists()
    with tarfile.open(cli.root / "offline.tar") as contents:
        assert "keys" in contents.getnames()


def test_a_backup_that_cannot_be_written_is_one_line_and_leaves_nothing(cli: Cli) -> None:
    result = cli.run("backup", str(cli.root / "no" / "such" / "dir" / "x.tar"), env=cli.env())
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "No such file or directory" in errors[0] and "Traceback" not in result.stderr
    assert not (cli.data_dir / "redis.sock").exists()


def test_a_backup_with_an_external_redis_says_to_use_its_own_tools(cli: Cli) -> None:
    result = cli.run("backup", str(cli.root / "x.tar"), env=cli.env(SERVICE__REDIS__URL="redis://127.0.0.1:1"))
    assert result.returncode == 2
    assert "error: setting redis.url: backup copies the embedded Redis" in result.stderr
    assert not os.path.exists(cli.root / "x.tar")
