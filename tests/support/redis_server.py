"""Real redis-server processes for the tests: started from the machine's binary, ended by PID, and
never outliving a killed test run; and the check that none is left behind."""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import IO

import redis as sync_redis

from service.storage.embedded import die_with_parent, find_redis_server

WAIT = 10.0  # seconds: the bound on starting and stopping one server


def spawn_redis_server(*arguments: str, cwd: Path, output: IO[bytes] | int = subprocess.DEVNULL
                       ) -> subprocess.Popen[bytes]:
    """The one place a test starts a redis-server: in ``cwd``, dying with this process."""
    return subprocess.Popen([find_redis_server(), *arguments], cwd=cwd, stdin=subprocess.DEVNULL,
                            stdout=output, stderr=output,
                            preexec_fn=functools.partial(die_with_parent, os.getpid()))


class RedisServer:
    """A redis-server of our own on a short unix socket in ``directory``; with ``persistent``, an
    append-only file synced on every write, so that a restart keeps the data."""

    def __init__(self, directory: Path, *, persistent: bool = False) -> None:
        self.directory = directory
        self.socket = directory / "redis.sock"
        self.url = f"unix://{self.socket}"
        self.persistence = ["--appendonly", "yes", "--appendfsync", "always"] if persistent else ["--appendonly", "no"]
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start it and wait (bounded) until it answers PING."""
        assert self.process is None
        self.process = spawn_redis_server(
            "--port", "0", "--unixsocket", str(self.socket), "--unixsocketperm", "700", "--dir", str(self.directory),
            "--save", "", *self.persistence, "--daemonize", "no", cwd=self.directory)
        client = sync_redis.Redis(unix_socket_path=str(self.socket))
        deadline = time.monotonic() + WAIT
        try:
            while True:
                try:
                    client.ping()
                    return
                except sync_redis.exceptions.ConnectionError:
                    if self.process.poll() is not None or time.monotonic() > deadline:
                        self.stop()
                        raise AssertionError("the test redis-server did not start") from None
                    time.sleep(0.02)
        finally:
            client.close()

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it has not exited within the bound."""
        process, self.process = self.process, None
        if process is not None:
            process.terminate()
            try:
                process.wait(timeout=WAIT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=WAIT)


def redis_servers_in(root: Path) -> list[int]:
    """PIDs of redis-servers working in ``root`` (their cwd is their --dir, their title names the socket)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if "redis-server" in cmdline and (str(root) in cmdline or cwd.startswith(str(root))):
            found.append(int(entry.name))
    return found


def remove_root(root: Path, outlived: str) -> None:
    """Teardown of a test's temporary root: SIGKILL any redis-server still working there (only ours
    can be), delete the root, and fail if there was one."""
    leftovers = redis_servers_in(root)
    for pid in leftovers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    shutil.rmtree(root, ignore_errors=True)
    assert leftovers == [], f"a redis-server outlived {outlived}"
