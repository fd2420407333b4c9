"""The real service as an operator runs it: ``python -m service`` with its embedded Redis, stopped with
SIGTERM and started again, keeps every session: the browser's cookies still work."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from yarl import URL

from test_cli import PASSWORD, Cli, redis_servers_in, remove_root

START_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Service:
    """One ``python -m service`` process at a time; every wait is bounded, only our PIDs are signalled."""

    def __init__(self, cli: Cli, port: int) -> None:
        self.cli = cli
        self.port = port
        self.origin = f"http://127.0.0.1:{port}"
        self.env = cli.env(SERVICE__SERVER__PORT=str(port))
        self.process: subprocess.Popen[bytes] | None = None
        self.runs = 0
        self.args: list[str] = []

    @property
    def log(self) -> Path:
        return self.cli.root / f"service-{self.runs}.log"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    async def start(self, session: aiohttp.ClientSession) -> None:
        assert self.process is None
        self.runs += 1
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "service", *self.args], cwd=self.cli.cwd, env=self.env,
                                            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
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


@pytest.fixture
def service() -> Iterator[Service]:
    root = Path(tempfile.mkdtemp(prefix="rst-", dir="/tmp"))
    (root / "cwd").mkdir()
    running = Service(Cli(root, root / "cwd", root / "data"), free_port())
    try:
        yield running
    finally:
        running.kill()
        remove_root(root, "the service")


def browser_jar(origin: str) -> aiohttp.CookieJar:
    """Like a browser on http://127.0.0.1, which counts as a secure origin for Secure cookies."""
    return aiohttp.CookieJar(unsafe=True, treat_as_secure_origin=[origin])


def assert_stopped_cleanly(service: Service, status: int) -> None:
    assert status == 0, service.log_text()
    assert not (service.cli.data_dir / "redis.sock").exists()
    assert redis_servers_in(service.cli.root) == []
    assert "Traceback" not in service.log_text()


async def test_sessions_survive_a_restart(service: Service) -> None:
    jar = browser_jar(service.origin)
    async with aiohttp.ClientSession(cookie_jar=jar, timeout=aiohttp.ClientTimeout(total=30)) as browser:
        try:
            await service.start(browser)  # first run: creates the data dir, keys and Redis files
            assert stat.S_IMODE(service.cli.data_dir.stat().st_mode) == 0o700
            _cli_alongside(service, "users", "add", "alice", "--password-stdin", stdin=PASSWORD + "\n")
            async with browser.post(service.origin + "/login", headers={"Origin": service.origin},
                                    json={"username": "alice", "password": PASSWORD}) as response:
                assert response.status == 200, await response.text()
                session_id = (await response.json())["session"]
            async with browser.get(service.origin + "/api/me") as response:
                assert response.status == 200
                assert (await response.json())["session"] == session_id
            cookies_before = {m.key: m.value for m in jar}
            assert len(cookies_before) == 2, cookies_before

            assert_stopped_cleanly(service, service.stop())

            await service.start(browser)
            async with browser.get(service.origin + "/api/me") as response:  # the access cookie
                assert response.status == 200, await response.text()
                body = await response.json()
                assert body["name"] == "alice" and body["session"] == session_id
            refresh_url = URL(service.origin + "/auth/refresh")
            assert any(m.key.endswith("refresh") for m in jar.filter_cookies(refresh_url).values())
            async with browser.post(refresh_url, headers={"Origin": service.origin}) as response:  # refresh
                assert response.status == 200, await response.text()
            cookies_after = {m.key: m.value for m in jar}
            assert cookies_after.keys() == cookies_before.keys()
            assert all(cookies_after[k] != cookies_before[k] for k in cookies_before)  # rotated, both
            async with browser.get(service.origin + "/api/me") as response:
                assert response.status == 200
                assert (await response.json())["session"] == session_id

            # The CLI shares the running service's Redis and leaves it running.
            listing = _cli_alongside(service, "users", "list")
            assert "alice\tactive" in listing and "1 session(s)" in listing
            async with browser.get(service.origin + "/readyz") as response:
                assert response.status == 200

            assert_stopped_cleanly(service, service.stop())
        finally:
            service.kill()


def _cli_alongside(service: Service, *args: str, stdin: str | None = None) -> str:
    """The CLI while the service runs: it must attach to the live redis-server, and not stop it."""
    result = subprocess.run([sys.executable, "-m", "service", *args], cwd=service.cli.cwd, env=service.env,
                            text=True, input=stdin, stdin=subprocess.DEVNULL if stdin is None else None,
                            capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert (service.cli.data_dir / "redis.sock").exists()
    return result.stdout


def children_of(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(child) for child in (task / "children").read_text().split()]
    return found


async def test_workers_share_one_port_and_one_embedded_redis_and_stop_together(service: Service) -> None:
    service.args = ["--workers", "2"]
    jar = browser_jar(service.origin)
    async with aiohttp.ClientSession(cookie_jar=jar, timeout=aiohttp.ClientTimeout(total=30)) as browser:
        try:
            await service.start(browser)
            assert service.process is not None
            assert len(children_of(service.process.pid)) == 3  # two workers and the redis-server
            _cli_alongside(service, "users", "add", "alice", "--password-stdin", stdin=PASSWORD + "\n")
            async with browser.post(service.origin + "/login", headers={"Origin": service.origin},
                                    json={"username": "alice", "password": PASSWORD}) as response:
                assert response.status == 200, await response.text()
            for _ in range(20):  # new connections spread over both workers; all see the same session
                connector = aiohttp.TCPConnector(force_close=True)
                async with aiohttp.ClientSession(cookie_jar=jar, connector=connector) as fresh:
                    async with fresh.get(service.origin + "/api/me") as response:
                        assert response.status == 200
            assert_stopped_cleanly(service, service.stop())
        finally:
            service.kill()
