"""``make bench``: measure the service against a bare aiohttp handler, over loopback, in one run.

What runs, each as its own process on a free 127.0.0.1 port, all ended by PID when the run ends:

* ``bench/bare.py`` — a bare aiohttp handler answering ``GET /api/me`` with the very JSON the service
  answers there (fetched from the service first): the *ceiling*.
* ``python -m service`` (instance 1) with ``settings.toml`` defaults (default argon2 cost) plus
  environment overrides: its port, a short data dir from ``tempfile.mkdtemp(dir="/tmp")``, the
  embedded Redis, and ``SERVICE__COOKIES__SECURE=false`` so that wrk can send a plain ``access`` cookie.
  The user ``bench`` is created with ``python -m service users add bench --password-stdin``.
* instance 2 (for e) and the storm instance (for c, ``SERVICE__TOKENS__ACCESS_TTL=2s``) share instance
  1's data dir (its signing keys) and its embedded Redis through ``SERVICE__REDIS__URL=unix://…``.

What is measured (wrk from Debian's package, ``-t2 -c50 -d10s`` after a 2 s warm-up, same request
bytes — the same ``Cookie`` header — for the ceiling and the service; latency percentiles come from
``bench/latency.lua``):

a. the bare handler; b. authenticated ``GET /api/me`` with a valid access cookie;
c. a refresh storm: 200 clients signed in over HTTP (4 at a time), whose access tokens are then all
   expired, call ``GET /api/me`` at once and follow the 307 refresh hop (Python aiohttp clients, one
   cookie jar each); then each checks that its session still answers (else it counts as revoked);
d. ``GET /api/me`` again without (d0) and with (d) JSON logins (argon2 verify) started at a steady
   5/s by a task of this script, at most 4 in flight (the login throttle counts attempts in flight);
e. 1 process vs 2: two wrk processes of 1 thread x 25 connections, both on instance 1 (e1), then one
   on each of 2 instances sharing the Redis (e2, "2 processes"); req/s summed. If
   ``python -m service [serve] --help`` shows a ``--workers`` flag, e2 is one service started with
   ``--workers 2`` instead, both wrk processes on it.

Then revocation is checked: the session behind b's cookie is signed out through instance 1 and both
instances are polled until they refuse that cookie.

CPU placement on a multi-core machine: wrk and this script (the login driver and storm clients) are
pinned with ``taskset`` to the last CPU; the servers and Redis are left to the kernel (the other core,
mostly). So every target sees the same load generator on one core.

Prints the machine and a table (req/s, p50, p99, ratio to the ceiling), writes the same as JSON to
``bench/results.json``, and exits non-zero if a correctness check fails: a non-2xx answer to an
authenticated request, a storm client that did not get its answer, or a revocation not honoured.
Performance targets (issue 5) are reported as met or missed but do not fail the run.

    python bench/run.py [--duration 10] [--keep]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import math
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp

from service.settings import load as load_settings

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
RESULTS = BENCH / "results.json"
LUA = BENCH / "latency.lua"
WRK = "/usr/bin/wrk"
HOST = "127.0.0.1"
USER = "bench"
# Sign-ins beyond sessions.max_per_user end the user's least recently used sessions, so the background
# logins of d and the storm clients sign in as users of their own: b's session stays alive.
LOGIN_USER = "bench-logins"
TIMEOUT = aiohttp.ClientTimeout(total=30)
JSON_ACCEPT = {"Accept": "application/json"}

# Performance targets of issue 5, reported (never enforced) next to the numbers.
TARGET_B_RATIO = 0.75
TARGET_D_P99_FACTOR = 2.0
TARGET_REVOCATION_MS = 100.0


class BenchError(Exception):
    """Something that stops the run: a process that does not start, a login that fails."""


# --- processes -------------------------------------------------------------------------------------

class Processes:
    """Every process this run starts, ended by PID (SIGTERM, then SIGKILL) by :meth:`stop_all`."""

    def __init__(self) -> None:
        self._started: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, argv: Sequence[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
        with open(log, "wb") as out:
            proc = subprocess.Popen(list(argv), cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT)
        self._started.append((name, proc))
        return proc

    def stop(self, proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)  # the service stops its embedded Redis on SIGTERM
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
        self._started = [(n, p) for n, p in self._started if p is not proc]

    def stop_all(self) -> None:
        for _, proc in reversed(list(self._started)):
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


# --- the machine -----------------------------------------------------------------------------------

def machine() -> dict[str, Any]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    wrk_version = subprocess.run([WRK, "-v"], capture_output=True, text=True).stdout.splitlines()
    return {"nproc": int(nproc) if nproc.isdigit() else os.cpu_count(), "cpu": model,
            "python": platform.python_version(), "aiohttp": aiohttp.__version__, "kernel": platform.release(),
            "wrk": wrk_version[0].split(" Copyright")[0].strip() if wrk_version else "?",
            "loadavg_start": Path("/proc/loadavg").read_text().split()[:3]}


# --- wrk -------------------------------------------------------------------------------------------

@dataclasses.dataclass
class Load:
    """How wrk loads a target."""

    threads: int
    connections: int
    duration: int
    cpu: int | None  # taskset CPU for wrk, or None


@dataclasses.dataclass
class WrkResult:
    url: str
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    errors: dict[str, int]  # connect, read, write, timeout, and status (>= 400: "Non-2xx or 3xx responses")


async def wrk(url: str, cookie: str, load: Load, *, duration: int | None = None) -> WrkResult:
    """One wrk run; its ``done`` callback (bench/latency.lua) prints one ``BENCH {json}`` line."""
    seconds = load.duration if duration is None else duration
    argv = [WRK, f"-t{load.threads}", f"-c{load.connections}", f"-d{seconds}s", "-s", str(LUA),
            "-H", f"Cookie: {cookie}", url]
    if load.cpu is not None:
        argv = ["taskset", "-c", str(load.cpu), *argv]
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), seconds + 30)
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            await proc.wait()
    text = out.decode(errors="replace")
    found = re.search(r"^BENCH (\{.*\})$", text, re.MULTILINE)
    if proc.returncode != 0 or not found:
        raise BenchError(f"wrk failed ({proc.returncode}) on {url}:\n{text}\n{err.decode(errors='replace')}")
    data = json.loads(found.group(1))
    secs = data["duration_us"] / 1e6
    return WrkResult(url=url, requests=data["requests"], seconds=secs, rps=data["requests"] / secs,
                     p50_ms=data["p50_us"] / 1000, p90_ms=data["p90_us"] / 1000, p99_ms=data["p99_us"] / 1000,
                     max_ms=data["max_us"] / 1000, errors=data["errors"])


# --- HTTP helpers ----------------------------------------------------------------------------------

def access_cookie(cookies: Any) -> str:
    """``name=value`` of the access cookie among a response's Set-Cookie (``access`` or ``__Host-access``)."""
    for name, morsel in cookies.items():
        if name.split("-", 1)[-1] == "access":
            return f"{name}={morsel.value}"
    raise BenchError(f"no access cookie was set (got {sorted(cookies)})")


async def login(http: aiohttp.ClientSession, base: str, password: str) -> tuple[str, dict[str, Any]]:
    """Sign in with JSON; returns the access cookie (``name=value``) and the answer."""
    async with http.post(base + "/login", json={"username": USER, "password": password},
                         headers=JSON_ACCEPT) as response:
        if response.status != 200:
            raise BenchError(f"login on {base} answered {response.status}: {(await response.text())[:300]}")
        return access_cookie(response.cookies), await response.json()


async def me(http: aiohttp.ClientSession, base: str, cookie: str) -> tuple[int, dict[str, Any] | None]:
    """``GET /api/me`` with ``cookie``, no redirects followed: the status and the JSON (if 200)."""
    async with http.get(base + "/api/me", headers={"Cookie": cookie, **JSON_ACCEPT},
                        allow_redirects=False) as response:
        return response.status, (await response.json() if response.status == 200 else None)


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile; 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


# --- d: logins in the background -------------------------------------------------------------------

@dataclasses.dataclass
class LoginStats:
    rate: float
    attempted: int = 0
    ok: int = 0
    throttled: int = 0
    failed: int = 0
    skipped: int = 0  # ticks skipped because `cap` logins were already in flight
    seconds: float = 0.0
    latencies_ms: list[float] = dataclasses.field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {"rate_target": self.rate, "attempted": self.attempted, "ok": self.ok, "throttled": self.throttled,
                "failed": self.failed, "skipped": self.skipped,
                "rate_achieved": round(self.ok / self.seconds, 2) if self.seconds else 0.0,
                "p50_ms": round(percentile(self.latencies_ms, 50), 1),
                "p99_ms": round(percentile(self.latencies_ms, 99), 1)}


async def login_driver(base: str, password: str, stats: LoginStats, stop: asyncio.Event, cap: int = 4) -> None:
    """Start a JSON login every 1/rate s until ``stop``; at most ``cap`` in flight (the login throttle
    counts attempts in flight against a username)."""
    loop = asyncio.get_running_loop()
    inflight: set[asyncio.Task[None]] = set()

    async def one(http: aiohttp.ClientSession) -> None:
        started = time.perf_counter()
        async with http.post(base + "/login", json={"username": LOGIN_USER, "password": password},
                             headers=JSON_ACCEPT) as response:
            await response.read()
            if response.status == 200:
                stats.ok += 1
                stats.latencies_ms.append((time.perf_counter() - started) * 1000)
            elif response.status == 429:
                stats.throttled += 1
            else:
                stats.failed += 1

    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar(), timeout=TIMEOUT) as http:
        began = tick = loop.time()
        while not stop.is_set():
            if len(inflight) < cap:
                stats.attempted += 1
                task = asyncio.create_task(one(http))
                inflight.add(task)
                task.add_done_callback(inflight.discard)
            else:
                stats.skipped += 1
            tick += 1 / stats.rate
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), max(0.0, tick - loop.time()))
        stats.seconds = loop.time() - began
        for result in await asyncio.gather(*inflight, return_exceptions=True):
            if isinstance(result, BaseException):
                stats.failed += 1


# --- c: the refresh storm --------------------------------------------------------------------------

@dataclasses.dataclass
class StormClient:
    user: str
    http: aiohttp.ClientSession
    session_id: str = ""
    access_expires: float = 0.0
    ms: float = 0.0
    status: int = 0
    hopped: bool = False  # went through the refresh endpoint
    saw_login: bool = False  # a 401 or the login page anywhere on the way
    alive_after: bool = False  # its session still answers afterwards
    error: str = ""


def storm_users(clients: int, cap: int) -> list[str]:
    """Enough users that none has more than ``cap`` (sessions.max_per_user) of the storm's clients."""
    return [f"storm-{n}" for n in range(1, math.ceil(clients / cap) + 1)]


async def storm(base: str, password: str, clients: int, users: Sequence[str],
                login_concurrency: int = 4) -> dict[str, Any]:
    """Sign ``clients`` clients in (spread over ``users``), wait for every access token to expire, then
    have all of them call ``GET /api/me`` at once, following the 307 hop through the refresh endpoint and back."""
    crowd = [StormClient(users[n % len(users)],
                         aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True), timeout=TIMEOUT))
             for n in range(clients)]
    try:
        slots = asyncio.Semaphore(login_concurrency)  # the login throttle counts attempts in flight

        async def sign_in(client: StormClient) -> None:
            async with slots:
                for _ in range(5):
                    async with client.http.post(base + "/login", json={"username": client.user,
                                                                       "password": password},
                                                headers=JSON_ACCEPT) as response:
                        if response.status == 429:
                            await asyncio.sleep(min(5.0, float(response.headers.get("Retry-After", "1"))))
                            continue
                        if response.status != 200:
                            raise BenchError(f"storm login answered {response.status}: {await response.text()}")
                        body = await response.json()
                        client.session_id = body["session"]
                        client.access_expires = float(body["access_expires"])
                        return
                raise BenchError("storm login: still throttled after 5 tries")

        started = time.perf_counter()
        await asyncio.gather(*(sign_in(c) for c in crowd))
        login_seconds = time.perf_counter() - started
        # Every access token expired (exp has 1 s resolution), every session alive.
        await asyncio.sleep(max(0.0, max(c.access_expires for c in crowd) + 1.0 - time.time()))

        gate = asyncio.Event()

        async def call(client: StormClient) -> float:
            await gate.wait()
            began = time.perf_counter()
            try:
                async with client.http.get(base + "/api/me", headers=JSON_ACCEPT) as response:
                    body = await response.json() if response.status == 200 else None
                    client.status = response.status
                    steps = [*response.history, response]
                    client.hopped = any("/auth/refresh" in r.url.path for r in steps)
                    client.saw_login = response.status == 401 or any(r.url.path.endswith("/login") or
                                                                     "/login" in r.headers.get("Location", "")
                                                                     for r in steps)
                    if body is not None and body.get("session") != client.session_id:
                        client.error = "answered for another session"
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                client.error = f"{type(exc).__name__}: {exc}"
            ended = time.perf_counter()
            client.ms = (ended - began) * 1000
            return ended

        tasks = [asyncio.create_task(call(c)) for c in crowd]
        await asyncio.sleep(0.1)  # every task is waiting at the gate
        opened = time.perf_counter()
        gate.set()
        total_ms = (max(await asyncio.gather(*tasks)) - opened) * 1000

        checks = asyncio.Semaphore(20)

        async def still_alive(client: StormClient) -> None:
            async with checks:  # follows a refresh hop again if the fresh 2 s token has expired meanwhile
                with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
                    async with client.http.get(base + "/api/me", headers=JSON_ACCEPT) as response:
                        body = await response.json() if response.status == 200 else {}
                        client.alive_after = body.get("session") == client.session_id

        await asyncio.gather(*(still_alive(c) for c in crowd))
    finally:
        await asyncio.gather(*(c.http.close() for c in crowd))

    # Success: its own user's answer, never a login page. (Whether it went through /auth/refresh is
    # reported as `hopped`: a service may one day refresh an expired token in place.)
    ok = [c for c in crowd if c.status == 200 and not c.saw_login and not c.error]
    saw_login = sum(c.saw_login for c in crowd)
    times = [c.ms for c in crowd]
    return {"clients": clients, "ok": len(ok), "saw_login": saw_login, "no_login_page": clients - saw_login,
            "revoked": sum(not c.alive_after for c in crowd), "hopped": sum(c.hopped for c in crowd),
            "errors": sorted({c.error for c in crowd if c.error})[:5],
            "statuses": {str(s): sum(c.status == s for c in crowd) for s in sorted({c.status for c in crowd})},
            "total_ms": round(total_ms, 1), "p50_ms": round(percentile(times, 50), 1),
            "p99_ms": round(percentile(times, 99), 1), "login_seconds": round(login_seconds, 1)}


# --- revocation ------------------------------------------------------------------------------------

async def revocation(http: aiohttp.ClientSession, bases: Sequence[str], cookie: str,
                     limit: float = 2.0) -> dict[str, Any]:
    """Sign the cookie's session out through ``bases[0]``; ms until each instance refuses the cookie."""
    status, body = await me(http, bases[0], cookie)
    if status != 200 or body is None:
        return {"error": f"/api/me answered {status} before sign-out"}
    headers = {"Cookie": cookie, "Origin": bases[0], **JSON_ACCEPT}
    if body.get("csrf_token"):
        headers["X-CSRF-Token"] = body["csrf_token"]
    async with http.post(bases[0] + "/logout", headers=headers, allow_redirects=False) as response:
        if response.status >= 400:
            return {"error": f"POST /logout answered {response.status}: {(await response.text())[:200]}"}
    signed_out = time.perf_counter()
    result: dict[str, Any] = {}
    for number, base in enumerate(bases, 1):
        while True:
            status, _ = await me(http, base, cookie)
            waited = (time.perf_counter() - signed_out) * 1000
            if status != 200:
                result[f"instance{number}_ms"] = round(waited, 1)
                result[f"instance{number}_status"] = status
                break
            if waited > limit * 1000:
                result[f"instance{number}_ms"] = None  # still accepted: revocation not honoured
                break
            await asyncio.sleep(0.005)
    return result


# --- service logs ----------------------------------------------------------------------------------

def log_findings(logs: Sequence[Path]) -> dict[str, Any]:
    """Warnings and errors the service logged (JSON lines), counted by level, message and exception chain;
    lines of output that are not JSON but look like errors, as samples."""
    counts: dict[str, int] = {}
    samples: list[str] = []
    for path in logs:
        with contextlib.suppress(OSError):
            for line in path.read_text(errors="replace").splitlines():
                try:
                    entry = json.loads(line)
                except ValueError:
                    if ("Traceback" in line or "Error" in line) and len(samples) < 5:
                        samples.append(f"{path.name}: {line[:200]}")
                    continue
                if not isinstance(entry, dict) or entry.get("level") not in ("warning", "error", "critical"):
                    continue
                key = f"{entry['level']}: {entry.get('event') or entry.get('message')}"
                if entry.get("reason"):
                    key += f" ({entry['reason']})"
                # The exception lines of the trace, cause first: "…MaxConnectionsError: … -> …StoreUnavailable: …"
                chain = re.findall(r"^([A-Za-z_][\w.]*(?:Error|Exception|Unavailable|Timeout)\b.*)$",
                                   str(entry.get("trace", "")), re.MULTILINE)
                if chain:
                    key += " [" + " -> ".join(c[:120] for c in chain) + "]"
                counts[key] = counts.get(key, 0) + 1
    return {"counts": counts, "samples": samples}


# --- the run ---------------------------------------------------------------------------------------

@dataclasses.dataclass
class Bench:
    load: Load
    warmup: int
    storm_clients: int
    login_rate: float
    tmp: Path
    procs: Processes = dataclasses.field(default_factory=Processes)
    password: str = dataclasses.field(default_factory=lambda: secrets.token_urlsafe(18))
    problems: list[str] = dataclasses.field(default_factory=list)
    server_cpus: str = ""  # taskset list for servers ("" = leave as inherited)
    logs: list[Path] = dataclasses.field(default_factory=list)

    def env(self, port: int | None, **overrides: str) -> dict[str, str]:
        """The caller's environment without its SERVICE__ keys, plus ours."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("SERVICE__")}
        env.update(SERVICE__STORAGE__DATA_DIR=str(self.tmp / "data"), SERVICE__COOKIES__SECURE="false")
        if port is not None:
            env["SERVICE__SERVER__PORT"] = str(port)
        env.update({f"SERVICE__{k.upper()}": v for k, v in overrides.items()})
        return env

    def argv(self, *args: str) -> list[str]:
        prefix = ["taskset", "-c", self.server_cpus] if self.server_cpus else []
        return [*prefix, sys.executable, *args]

    async def start_service(self, http: aiohttp.ClientSession, name: str, *args: str, **overrides: str) -> str:
        """``python -m service [args]`` on a free port, with ``SERVICE__<KEY>`` overrides; its base URL."""
        port = free_port()
        log = self.tmp / f"{name}.log"
        proc = self.procs.start(name, self.argv("-m", "service", *args), self.env(port, **overrides), log)
        self.logs.append(log)
        base = f"http://{HOST}:{port}"
        await wait_ready(http, base, proc, log)
        return base

    async def checked_wrk(self, http: aiohttp.ClientSession, label: str, urls: Sequence[str], cookie: str,
                          load: Load) -> list[WrkResult]:
        """wrk on each url at once; before and after, the cookie must get a 200 (wrk counts only
        statuses >= 400 as errors, so a 3xx — an expired token — would pass unseen)."""
        for url in urls:
            await self.expect_200(http, label, url, cookie, "before")
        results = await asyncio.gather(*(wrk(url, cookie, load) for url in urls))
        for url in urls:
            await self.expect_200(http, label, url, cookie, "after")
        for result in results:
            bad = result.errors["status"]
            if bad:
                self.problems.append(f"{label}: {bad} of {result.requests} authenticated requests got a "
                                     f"non-2xx/3xx answer (wrk 'Non-2xx or 3xx responses') from {result.url}")
            socket_errors = {k: v for k, v in result.errors.items() if k != "status" and v}
            if socket_errors:
                self.problems.append(f"{label}: wrk socket errors {socket_errors} on {result.url}")
        return list(results)

    async def expect_200(self, http: aiohttp.ClientSession, label: str, url: str, cookie: str, when: str) -> None:
        base = url.rsplit("/api/me", 1)[0]
        status, body = await me(http, base, cookie)
        if status != 200 or body is None or body.get("name") != USER:
            self.problems.append(f"{label}: GET /api/me {when} the run answered {status}, not 200 with the user")

    def workers_args(self) -> list[str]:
        """``[--workers 2]`` (or ``[serve, --workers 2]``) if ``python -m service`` has the flag, else []."""
        for args in ([], ["serve"]):
            shown = subprocess.run(self.argv("-m", "service", *args, "--help"), capture_output=True, text=True,
                                   cwd=ROOT, env=self.env(None), timeout=60).stdout
            if "--workers" in shown:
                return [*args, "--workers", "2"]
        return []

    async def run(self) -> dict[str, Any]:
        load = self.load
        half = dataclasses.replace(load, threads=max(1, load.threads // 2), connections=load.connections // 2)
        results: dict[str, Any] = {"runs": {}}
        runs = results["runs"]
        async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar(), timeout=TIMEOUT) as http:
            # The users first (the CLI runs the embedded Redis while it works), then instance 1, which
            # owns the embedded Redis from then on.
            settings_file = ROOT / "settings.toml"
            cap = load_settings(settings_file if settings_file.exists() else None,
                                self.env(None)).sessions.max_per_user
            storm_names = storm_users(self.storm_clients, cap)
            for name in (USER, LOGIN_USER, *storm_names):
                added = subprocess.run(self.argv("-m", "service", "users", "add", name, "--password-stdin"),
                                       input=self.password + "\n", capture_output=True, text=True, cwd=ROOT,
                                       env=self.env(None), timeout=120)
                if added.returncode != 0:
                    raise BenchError(f"users add {name} failed: {added.stdout}{added.stderr}")
            one = await self.start_service(http, "service1")
            cookie, _ = await login(http, one, self.password)
            status, body = await me(http, one, cookie)
            if status != 200 or body is None:
                raise BenchError(f"GET /api/me with a fresh access cookie answered {status}")

            # a. the ceiling, answering the very body the service answers, loaded with the same request.
            port = free_port()
            bare_log = self.tmp / "bare.log"
            bare = self.procs.start("bare", self.argv(str(BENCH / "bare.py"), str(port), json.dumps(body)),
                                    self.env(port), bare_log)
            ceiling = f"http://{HOST}:{port}"
            await wait_ready(http, ceiling, bare, bare_log)
            print("a: bare handler ...", flush=True)
            await wrk(ceiling + "/api/me", cookie, load, duration=self.warmup)
            runs["a"] = await wrk(ceiling + "/api/me", cookie, load)
            self.procs.stop(bare)

            print("b: service GET /api/me ...", flush=True)
            await wrk(one + "/api/me", cookie, load, duration=self.warmup)
            runs["b"] = (await self.checked_wrk(http, "b", [one + "/api/me"], cookie, load))[0]

            print(f"d: GET /api/me without, then with logins at {self.login_rate:g}/s ...", flush=True)
            runs["d0"] = (await self.checked_wrk(http, "d0", [one + "/api/me"], cookie, load))[0]
            stats = LoginStats(self.login_rate)
            stop = asyncio.Event()
            driver = asyncio.create_task(login_driver(one, self.password, stats, stop))
            try:
                await asyncio.sleep(1.0)  # logins in steady state before wrk starts
                runs["d"] = (await self.checked_wrk(http, "d", [one + "/api/me"], cookie, load))[0]
            finally:
                stop.set()
                await driver
            results["logins"] = stats.summary()
            if stats.failed:
                self.problems.append(f"d: {stats.failed} of {stats.attempted} background logins failed")

            # e. With a --workers flag: a second service started with --workers 2, both wrk on it.
            # Without: a second instance on the same Redis, one wrk on each ("2 processes").
            workers = self.workers_args()
            results["workers_flag"] = " ".join(workers) if workers else None
            shared = f"unix://{self.tmp / 'data' / 'redis.sock'}"
            print(f"e: 1 process vs {'2 workers' if workers else '2 processes'} ...", flush=True)
            two = await self.start_service(http, "service2", *workers, redis__url=shared)
            await wrk(two + "/api/me", cookie, load, duration=self.warmup)
            runs["e1"] = await self.checked_wrk(http, "e1", [one + "/api/me"] * 2, cookie, half)
            e2_urls = [two + "/api/me"] * 2 if workers else [one + "/api/me", two + "/api/me"]
            runs["e2"] = await self.checked_wrk(http, "e2", e2_urls, cookie, half)

            print("revocation: sign out through instance 1 ...", flush=True)
            results["revocation"] = await revocation(http, [one, two], cookie)
            revoked = results["revocation"]
            if "error" in revoked:
                self.problems.append(f"revocation: {revoked['error']}")
            for n in (1, 2):
                if f"instance{n}_ms" in revoked and revoked[f"instance{n}_ms"] is None:
                    self.problems.append(f"revocation: instance {n} still accepted the access cookie 2 s "
                                         "after its session was signed out")

            print(f"c: refresh storm, {self.storm_clients} clients (signing them in first) ...", flush=True)
            storm_base = await self.start_service(http, "storm", redis__url=shared, tokens__access_ttl="2s")
            results["storm"] = await storm(storm_base, self.password, self.storm_clients, storm_names)
            result = results["storm"]
            if result["ok"] != result["clients"] or result["revoked"] or result["saw_login"]:
                self.problems.append(f"c: storm: {result['ok']}/{result['clients']} ok, {result['saw_login']} "
                                     f"saw a login page or 401, {result['revoked']} sessions revoked; "
                                     f"statuses {result['statuses']} {result['errors']}")
        return results


def as_dict(value: Any) -> Any:
    if isinstance(value, WrkResult):
        return {k: round(v, 3) if isinstance(v, float) else v for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, list):
        return [as_dict(v) for v in value]
    if isinstance(value, dict):
        return {k: as_dict(v) for k, v in value.items()}
    return value


def summarize(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The table rows: req/s, p50, p99, ratio to the ceiling; e1/e2 sum their two wrk processes."""
    runs = results["runs"]
    ceiling = runs["a"].rps
    labels = {
        "a": "bare aiohttp handler (ceiling)",
        "b": "service GET /api/me, valid access cookie",
        "d0": "service GET /api/me, no logins",
        "d": f"service GET /api/me + logins {results['logins']['rate_target']:g}/s",
        "e1": "1 process (2 wrk x 1 thread x 25 conns)",
        "e2": "2 processes, same Redis (1 wrk each)",
    }
    if results.get("workers_flag"):
        labels["e2"] = f"{results['workers_flag']} (2 wrk on it)"
    rows = []
    for key, label in labels.items():
        run = runs[key]
        parts = run if isinstance(run, list) else [run]
        rps = sum(p.rps for p in parts)
        rows.append({"run": key, "what": label, "rps": round(rps, 1),
                     "p50_ms": round(max(p.p50_ms for p in parts), 2), "p99_ms": round(max(p.p99_ms for p in parts), 2),
                     "ratio": round(rps / ceiling, 3), "non_2xx": sum(p.errors["status"] for p in parts),
                     "parts": len(parts)})
    return rows


def targets(results: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, Any]:
    by = {r["run"]: r for r in rows}
    storm = results["storm"]
    revoked = results["revocation"]
    slowest = max((v for k, v in revoked.items() if k.endswith("_ms") and v is not None), default=None)
    d_factor = by["d"]["p99_ms"] / by["d0"]["p99_ms"] if by["d0"]["p99_ms"] else math.inf
    return {
        "b_over_a": {"value": by["b"]["ratio"], "target": f">= {TARGET_B_RATIO}",
                     "met": by["b"]["ratio"] >= TARGET_B_RATIO},
        "d_p99_over_d0_p99": {"value": round(d_factor, 2), "target": f"<= {TARGET_D_P99_FACTOR:g}",
                              "met": d_factor <= TARGET_D_P99_FACTOR},
        "e2_over_e1": {"value": round(by["e2"]["rps"] / by["e1"]["rps"], 2), "target": "> 1", "met":
                       by["e2"]["rps"] > by["e1"]["rps"]},
        "storm_all_ok": {"value": f"{storm['ok']}/{storm['clients']}", "target": "all, none revoked, no login page",
                         "met": storm["ok"] == storm["clients"] and not storm["revoked"] and not storm["saw_login"]},
        "revocation_ms": {"value": slowest, "target": f"<= {TARGET_REVOCATION_MS:g} on every instance",
                          "met": slowest is not None and len([k for k in revoked if k.endswith("_ms")]) == 2
                          and all(v is not None for k, v in revoked.items() if k.endswith("_ms"))
                          and slowest <= TARGET_REVOCATION_MS},
    }


def report(results: dict[str, Any]) -> str:
    m = results["machine"]
    s = results["setup"]
    lines = [f"machine: nproc {m['nproc']}, {m['cpu']}, Python {m['python']}, aiohttp {m['aiohttp']}, "
             f"Linux {m['kernel']}, {m['wrk']}; load average {' '.join(m['loadavg_start'])} at start, "
             f"{' '.join(m['loadavg_end'])} at end",
             f"load: wrk -t{s['threads']} -c{s['connections']} -d{s['duration']:g}s after a {s['warmup']:g}s warm-up, "
             f"{s['placement']}", ""]
    busy = float(m["loadavg_start"][0])
    if busy > 0.5 * int(m["nproc"] or 1):
        lines += [f"WARNING: load average {busy:g} at start: something else runs on this machine, so the numbers "
                  "are noisy; run again on an idle machine for numbers to quote", ""]
    lines.append(f"{'':3}{'what':46}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'x ceiling':>11}{'non-2xx':>9}")
    for r in results["table"]:
        lines.append(f"{r['run']:3}{r['what']:46}{r['rps']:>10.0f}{r['p50_ms']:>9.2f}{r['p99_ms']:>9.2f}"
                     f"{r['ratio']:>11.3f}{r['non_2xx']:>9}")
    lines.append("   (e1/e2: req/s summed over the two wrk processes; p50/p99 the worse of the two)")
    st = results["storm"]
    lines += ["", f"c  refresh storm, {st['clients']} clients with expired access tokens (access_ttl 2s): "
              f"{st['ok']} ok, {st['no_login_page']} never saw a login page ({st['saw_login']} did), "
              f"{st['revoked']} sessions revoked, {st['hopped']} went through /auth/refresh; statuses {st['statuses']}",
              f"   total {st['total_ms']:.0f} ms; per client p50 {st['p50_ms']:.0f} ms, p99 {st['p99_ms']:.0f} ms "
              f"(their {st['clients']} logins took {st['login_seconds']:g} s)"]
    lg = results["logins"]
    lines.append(f"d  background logins: {lg['ok']} ok of {lg['attempted']} at {lg['rate_achieved']:g}/s "
                 f"(target {lg['rate_target']:g}/s; {lg['throttled']} throttled, {lg['failed']} failed, "
                 f"{lg['skipped']} ticks skipped with 4 in flight), "
                 f"login p50 {lg['p50_ms']:.0f} ms, p99 {lg['p99_ms']:.0f} ms")
    rv = results["revocation"]
    if "error" in rv:
        lines.append(f"revocation: {rv['error']}")
    else:
        lines.append("revocation: after sign-out through instance 1, the access cookie was refused by "
                     + ", ".join(f"instance {n} after {rv[f'instance{n}_ms']} ms (HTTP {rv.get(f'instance{n}_status')})"
                                 if rv.get(f"instance{n}_ms") is not None else f"instance {n} NEVER (2 s)"
                                 for n in (1, 2)))
    lines += ["", "targets (issue 5; reported, not enforced):"]
    for name, t in results["targets"].items():
        lines.append(f"  {name:20} {str(t['value']):>10}  target {t['target']:34} {'met' if t['met'] else 'MISSED'}")
    found = results["service_log"]["counts"]
    lines += ["", "service log warnings/errors:" + ("" if found else " none")]
    lines += [f"  {v:6} x {k}" for k, v in sorted(found.items())]
    lines += [f"  {sample}" for sample in results["service_log"]["samples"]]
    return "\n".join(lines)


async def main_async(args: argparse.Namespace) -> int:
    cpus = sorted(os.sched_getaffinity(0))
    wrk_cpu = cpus[-1] if len(cpus) >= 2 else None
    load = Load(threads=2, connections=50, duration=args.duration, cpu=wrk_cpu)
    about = machine()  # before pinning this process: nproc counts the CPUs we may use
    tmp = Path(tempfile.mkdtemp(prefix="bench-", dir="/tmp"))  # short: the Redis unix socket lives here
    bench = Bench(load=load, warmup=args.warmup, storm_clients=args.clients, login_rate=args.login_rate, tmp=tmp)
    if wrk_cpu is not None:
        bench.server_cpus = ",".join(map(str, cpus))  # servers may use every CPU, not only ours
        os.sched_setaffinity(0, {wrk_cpu})  # this script's clients share the load generator's CPU
        placement = (f"wrk and bench/run.py (login driver, storm clients) pinned to CPU {wrk_cpu} with taskset; "
                     f"servers and Redis unpinned (CPUs {bench.server_cpus})")
    else:
        placement = "one CPU: nothing pinned"
    results: dict[str, Any] = {"machine": about, "setup": {
        "threads": load.threads, "connections": load.connections, "duration": load.duration, "warmup": args.warmup,
        "placement": placement, "storm_clients": args.clients, "login_rate": args.login_rate}}
    started = time.monotonic()
    main_task = asyncio.current_task()
    assert main_task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)  # still stop what we started
    try:
        async with asyncio.timeout(args.time_limit):
            results.update(await bench.run())
    finally:
        bench.procs.stop_all()
        results["service_log"] = log_findings(bench.logs)
        if args.keep:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    results["machine"]["loadavg_end"] = Path("/proc/loadavg").read_text().split()[:3]
    results["seconds"] = round(time.monotonic() - started, 1)
    results["table"] = summarize(results)
    results["targets"] = targets(results, results["table"])
    results["problems"] = bench.problems
    results["ok"] = not bench.problems
    RESULTS.write_text(json.dumps(as_dict(results), indent=2) + "\n")
    print()
    print(report(results))
    print(f"\n{results['seconds']:g} s; written to {RESULTS.relative_to(ROOT)}")
    if bench.problems:
        print("\nFAILED:", *bench.problems, sep="\n  ", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0] if __doc__ else None)
    parser.add_argument("--duration", type=int, default=10, help="whole seconds per wrk run (default 10)")
    parser.add_argument("--warmup", type=int, default=2, help="whole seconds of wrk warm-up per target (default 2)")
    parser.add_argument("--clients", type=int, default=200, help="refresh storm clients (default 200)")
    parser.add_argument("--login-rate", type=float, default=5.0, help="background logins per second in d")
    parser.add_argument("--time-limit", type=float, default=360.0, help="abort the run after this many seconds")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, data)")
    args = parser.parse_args(argv)
    if args.duration < 1 or args.warmup < 1:
        parser.error("--duration and --warmup take whole seconds, at least 1 (wrk's -d)")
    if not os.access(WRK, os.X_OK):
        print(f"{WRK} not found. install wrk: apt-get install wrk", file=sys.stderr)
        return 2
    if shutil.which("taskset") is None:
        print("taskset not found (util-linux)", file=sys.stderr)
        return 2
    try:
        return asyncio.run(main_async(args))
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    except TimeoutError:
        print(f"bench: over the {args.time_limit:g} s time limit; stopped", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("bench: interrupted; every process it started was stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
