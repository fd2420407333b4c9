"""The load generators: wrk (``/usr/bin/wrk``, reporting through ``bench/latency.lua``) and paced
requests from this process; the percentile both are summarised with."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import math
import os
import re
import signal
import subprocess
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from . import BenchError

WRK = "/usr/bin/wrk"
LUA = Path(__file__).resolve().parent / "latency.lua"


@dataclasses.dataclass(frozen=True)
class Load:
    """How wrk loads a target."""

    threads: int
    connections: int
    duration: int  # whole seconds (wrk's -d)
    cpu: int | None  # the CPU wrk is pinned to with taskset, or None

    def halved(self) -> Load:
        """Half the threads and connections: two of these at once load like one of ``self``."""
        return dataclasses.replace(self, threads=max(1, self.threads // 2), connections=self.connections // 2)


@dataclasses.dataclass(frozen=True)
class WrkErrors:
    """wrk's error counts; ``status`` counts answers >= 400 ("Non-2xx or 3xx responses")."""

    connect: int
    read: int
    write: int
    status: int
    timeout: int

    def of_sockets(self) -> dict[str, int]:
        """The socket errors that occurred, by kind."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "status" and v}


@dataclasses.dataclass(frozen=True)
class WrkResult:
    url: str
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    errors: WrkErrors


async def wrk(url: str, cookie: str, load: Load, *, duration: int | None = None) -> WrkResult:
    """One wrk run sending ``Cookie: cookie``; ``duration`` overrides the load's (for a warm-up)."""
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
    return parse(url, json.loads(found.group(1)))


def parse(url: str, data: dict[str, Any]) -> WrkResult:
    """The ``BENCH {json}`` line of bench/latency.lua (microseconds) as a result (milliseconds)."""
    seconds = data["duration_us"] / 1e6
    return WrkResult(url=url, requests=data["requests"], seconds=seconds, rps=data["requests"] / seconds,
                     p50_ms=data["p50_us"] / 1000, p90_ms=data["p90_us"] / 1000, p99_ms=data["p99_us"] / 1000,
                     max_ms=data["max_us"] / 1000, errors=WrkErrors(**data["errors"]))


def wrk_version() -> str:
    """``wrk 4.1.0 [epoll]``, without the copyright notice; ``?`` if wrk does not say."""
    shown = subprocess.run([WRK, "-v"], capture_output=True, text=True, timeout=10).stdout.splitlines()
    return shown[0].split(" Copyright")[0].strip() if shown else "?"


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile; 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


# --- paced requests --------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Paced:
    """What :func:`paced` did: requests started, their answers, and the latency of the 200s."""

    rate_target: float
    attempted: int
    ok: int
    throttled: int  # answered 429
    failed: int  # any other answer, or none (status 0)
    skipped: int  # ticks skipped because `cap` requests were already in flight
    rate_achieved: float  # 200s per second
    p50_ms: float
    p99_ms: float


async def paced(request: Callable[[], Awaitable[int]], rate: float, stop: asyncio.Event, *, cap: int = 4) -> Paced:
    """Start ``request()`` (which answers an HTTP status, 0 for none) every 1/rate s until ``stop``,
    at most ``cap`` in flight, then wait for those in flight."""
    loop = asyncio.get_running_loop()
    inflight: set[asyncio.Task[None]] = set()
    statuses: list[int] = []
    latencies: list[float] = []
    skipped = 0

    async def one() -> None:
        started = time.perf_counter()
        status = await request()
        statuses.append(status)
        if status == 200:
            latencies.append((time.perf_counter() - started) * 1000)

    began = tick = loop.time()
    while not stop.is_set():
        if len(inflight) < cap:
            task = asyncio.create_task(one())
            inflight.add(task)
            task.add_done_callback(inflight.discard)
        else:
            skipped += 1
        tick += 1 / rate
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), max(0.0, tick - loop.time()))
    seconds = loop.time() - began
    await asyncio.gather(*inflight)
    ok, throttled = statuses.count(200), statuses.count(429)
    return Paced(rate_target=rate, attempted=len(statuses), ok=ok, throttled=throttled,
                 failed=len(statuses) - ok - throttled, skipped=skipped,
                 rate_achieved=round(ok / seconds, 2) if seconds else 0.0,
                 p50_ms=round(percentile(latencies, 50), 1), p99_ms=round(percentile(latencies, 99), 1))
