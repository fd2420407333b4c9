"""Child processes the tests start and end by PID: the service as an operator runs it
(``python -m service`` with its embedded Redis), and the bounded wait for any child to be ready."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import aiohttp

from tests.support.cli import Cli
from tests.support.ports import free_port
from tests.support.redis_server import redis_servers_in, remove_root

START_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0


@contextlib.contextmanager
def service_process_in_fresh_dir(prefix: str, what: str) -> Iterator[ServiceProcess]:
    """``python -m service`` (not yet started) in a fresh directory under /tmp, on a free port;
    killed and checked for leftover redis-servers (named ``what`` in the failure) afterwards."""
    root = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    (root / "cwd").mkdir()
    running = ServiceProcess(Cli(root, root / "cwd", root / "data"), free_port())
    try:
        yield running
    finally:
        running.kill()
        remove_root(root, what)


class ServiceProcess:
    """One ``python -m service`` process at a time, run with ``cli``'s settings on ``port``; every
    wait is bounded, only our PIDs are signalled."""

    def __init__(self, cli: Cli, port: int) -> None:
        self.cli = cli
        self.port = port
        self.origin = f"http://127.0.0.1:{port}"
        self.env = cli.env(SERVICE__SERVER__PORT=str(port))
        self.process: subprocess.Popen[bytes] | None = None
        self.runs = 0
        self.args: list[str] = []
        self.umask = -1  # the umask it starts with; -1 keeps this process's

    @property
    def log(self) -> Path:
        return self.cli.root / f"service-{self.runs}.log"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    async def start(self, session: aiohttp.ClientSession) -> None:
        """Start it and poll ``/readyz`` through ``session`` until it answers 200."""
        assert self.process is None
        self.runs += 1
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "service", *self.args], cwd=self.cli.cwd,
                                            env=self.env, stdin=subprocess.DEVNULL, stdout=log,
                                            stderr=subprocess.STDOUT, umask=self.umask)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            assert self.process.poll() is None, f"the service exited early:\n{self.log_text()}"
            assert time.monotonic() < deadline, f"not ready within {START_TIMEOUT}s:\n{self.log_text()}"
            with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
                async with session.get(self.origin + "/readyz", timeout=aiohttp.ClientTimeout(total=2)) as r:
                    if r.status == 200:
                        return
            await asyncio.sleep(0.05)  # bounded polling of the child's readiness

    def stop(self) -> int:
        """SIGTERM, as systemd and docker stop do; returns the exit status."""
        process, self.process = self.process, None
        assert process is not None
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT)
            raise AssertionError(f"the service ignored SIGTERM:\n{self.log_text()}") from None

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=STOP_TIMEOUT)
        self.process = None

    def cli_alongside(self, *args: str, stdin: str | None = None) -> str:
        """The CLI while the service runs: it must attach to the live redis-server, and not stop it."""
        result = self.cli.run(*args, env=self.env, stdin=stdin)
        assert result.returncode == 0, result.stderr
        assert (self.cli.data_dir / "redis.sock").exists()
        return result.stdout

    def assert_stopped_cleanly(self, status: int) -> None:
        """Exit status 0, its redis-server gone with it, and no traceback in its log."""
        assert status == 0, self.log_text()
        assert not (self.cli.data_dir / "redis.sock").exists()
        assert redis_servers_in(self.cli.root) == []
        assert "Traceback" not in self.log_text()


def children_of(pid: int) -> list[int]:
    """Direct children of ``pid``, from /proc (every thread's ``children`` list)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            found += [int(child) for child in (task / "children").read_text().split()]
    return found


def workers_of(pid: int) -> list[int]:
    """The worker processes of a ``--workers`` supervisor: its children that run ``serve`` (not Redis)."""
    found = []
    for child in children_of(pid):
        with contextlib.suppress(OSError):
            if b"serve" in Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0"):
                found.append(child)
    return sorted(found)


def wait_ready(check: Callable[[], bool], what: str, process: subprocess.Popen[bytes], log: Path) -> None:
    """Poll ``check`` (an OSError counts as not yet) until it holds; fail if ``process`` exits first or
    after :data:`START_TIMEOUT`, showing its ``log``."""
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        assert process.poll() is None, f"{what} exited early:\n{log.read_text(errors='replace')}"
        assert time.monotonic() < deadline, f"{what} not ready in {START_TIMEOUT}s:\n{log.read_text(errors='replace')}"
        with contextlib.suppress(OSError):
            if check():
                return
        time.sleep(0.05)  # bounded polling of a child's readiness


def http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 — loopback only
        return bool(response.status == 200)


def port_open(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=1):
        return True


class Processes:
    """Children started here in ``root``/cwd, each logging to ``root``/NAME.log; stopped here by PID,
    last started first."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.children: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, argv: list[str],
              env: dict[str, str] | None = None) -> tuple[subprocess.Popen[bytes], Path]:
        log = self.root / f"{name}.log"
        with open(log, "wb") as out:
            process = subprocess.Popen(argv, cwd=self.root / "cwd", env=env, stdin=subprocess.DEVNULL, stdout=out,
                                       stderr=subprocess.STDOUT)
        self.children.append((name, process))
        return process, log

    def stop_all(self) -> None:
        for _name, process in reversed(self.children):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=STOP_TIMEOUT)
