"""The processes a run measures — ``python -m service`` (instance 1 runs the embedded Redis, on a unix
socket only) and ``bench/bare.py`` — each on a free 127.0.0.1 port and one event loop, every wait
bounded, each ended by its PID."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import aiohttp

from service.settings import Settings, load

from . import BenchError

ROOT = Path(__file__).resolve().parent.parent
BARE = ROOT / "bench" / "bare.py"
HOST = "127.0.0.1"


class Processes:
    """Every process this run starts, ended by PID (SIGTERM, then SIGKILL) by :meth:`stop_all`."""

    def __init__(self) -> None:
        self._started: list[subprocess.Popen[bytes]] = []

    def start(self, argv: Sequence[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
        with open(log, "wb") as out:
            proc = subprocess.Popen(list(argv), cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT)
        self._started.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)  # the service stops its workers and embedded Redis on SIGTERM
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
                proc.wait(5.0)
        self._started = [p for p in self._started if p is not proc]

    def stop_all(self) -> None:
        for proc in reversed(list(self._started)):
            self.stop(proc)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def log_tail(path: Path, lines: int = 8) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


async def wait_ready(http: aiohttp.ClientSession, base: str, proc: subprocess.Popen[bytes], log: Path,
                     timeout: float = 30.0) -> None:
    """Poll ``base/healthz`` until it answers 200; fail at once if the process exits."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise BenchError(f"{base} exited with status {proc.returncode}:\n{log_tail(log)}")
        with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
            async with http.get(base + "/healthz") as response:
                if response.status == 200:
                    return
        if time.monotonic() > deadline:
            raise BenchError(f"{base} not ready after {timeout:g}s:\n{log_tail(log)}")
        await asyncio.sleep(0.05)


@dataclasses.dataclass
class Servers:
    """Starts the service and the bare handler for one run, all sharing one temporary directory:
    instance 1 runs the embedded Redis in ``tmp/data``; later instances reach it through
    :attr:`shared_redis` and share instance 1's signing keys."""

    tmp: Path  # short: the Redis unix socket lives in it
    loop: str = "uvloop"  # server.event_loop of every process started, the bare handler's too
    cpus: str = ""  # taskset CPU list for the servers ("": leave them as inherited)
    procs: Processes = dataclasses.field(default_factory=Processes)
    logs: list[Path] = dataclasses.field(default_factory=list)  # the service's, for report.log_findings

    @property
    def shared_redis(self) -> str:
        return f"unix://{self.tmp / 'data' / 'redis.sock'}"

    def env(self, port: int | None, **overrides: str) -> dict[str, str]:
        """The caller's environment without its SERVICE__ keys, plus ours and ``SERVICE__<KEY>`` overrides."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("SERVICE__")}
        env.update(SERVICE__SERVER__HOST=HOST, SERVICE__STORAGE__DATA_DIR=str(self.tmp / "data"),
                   SERVICE__COOKIES__SECURE="false", SERVICE__SERVER__EVENT_LOOP=self.loop)  # plain HTTP: wrk sends a plain `access` cookie
        if port is not None:
            env["SERVICE__SERVER__PORT"] = str(port)
        env.update({f"SERVICE__{k.upper()}": v for k, v in overrides.items()})
        return env

    def settings(self) -> Settings:
        """The settings the service runs with here: ``settings.toml`` (as the service finds it, in its
        working directory) and the environment :meth:`env` gives it."""
        path = ROOT / "settings.toml"
        return load(path if path.exists() else None, self.env(None))

    def argv(self, *args: str) -> list[str]:
        prefix = ["taskset", "-c", self.cpus] if self.cpus else []
        return [*prefix, sys.executable, *args]

    def add_user(self, name: str, password: str) -> None:
        """``python -m service users add``; before instance 1 starts (the CLI runs the embedded Redis
        while it works)."""
        added = subprocess.run(self.argv("-m", "service", "users", "add", name, "--password-stdin"),
                               input=password + "\n", capture_output=True, text=True, cwd=ROOT,
                               env=self.env(None), timeout=120)
        if added.returncode != 0:
            raise BenchError(f"users add {name} failed: {added.stdout}{added.stderr}")

    async def start_service(self, http: aiohttp.ClientSession, name: str, *args: str, **overrides: str) -> str:
        """``python -m service [args]`` on a free port, with ``SERVICE__<KEY>`` overrides; its base URL."""
        port = free_port()
        log = self.tmp / f"{name}.log"
        proc = self.procs.start(self.argv("-m", "service", *args), self.env(port, **overrides), log)
        self.logs.append(log)
        base = f"http://{HOST}:{port}"
        await wait_ready(http, base, proc, log)
        return base

    async def start_bare(self, http: aiohttp.ClientSession, body: str) -> tuple[str, subprocess.Popen[bytes]]:
        """``bench/bare.py`` answering ``body`` on a free port: its base URL and process."""
        port = free_port()
        log = self.tmp / "bare.log"
        proc = self.procs.start(self.argv(str(BARE), str(port), body), self.env(port), log)
        base = f"http://{HOST}:{port}"
        await wait_ready(http, base, proc, log)
        return base, proc
