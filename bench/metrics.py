"""What recording one request's metrics costs, in a single process and in multiprocess mode (``serve
--workers``): the per-request ``observe(method, status, seconds)`` of service/metrics.py, timed alone.

Run: ``.venv/bin/python -m bench.metrics [N]`` (default 200000 calls). Each mode runs in a process of
its own, as prometheus-client picks its mode once, at import, from ``PROMETHEUS_MULTIPROC_DIR``;
prints nanoseconds per request, best of 5, and the scrape's cost.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROUNDS = 5


def time_observe(count: int) -> tuple[float, float]:
    """(ns per observe, ms per render) in this process's mode."""
    from service.metrics import Metrics

    metrics = Metrics()
    observe = metrics.route("me")
    best = float("inf")
    for _ in range(ROUNDS):
        started = time.perf_counter_ns()
        for _ in range(count):
            observe("GET", 200, 0.0003)
        best = min(best, (time.perf_counter_ns() - started) / count)

    async def render() -> float:  # the build info reads the running loop
        started = time.perf_counter()
        metrics.render()
        return (time.perf_counter() - started) * 1000

    return best, asyncio.run(render())


def main(argv: list[str]) -> int:
    count = int(argv[0]) if argv else 200_000
    if os.environ.get("BENCH_METRICS_CHILD"):
        ns, ms = time_observe(count)
        print(f"{ns:.0f} {ms:.2f}")
        return 0
    shared = tempfile.mkdtemp(prefix="bench-metrics-")
    try:
        for mode, extra in (("single process", {}), ("multiprocess (--workers)", {"PROMETHEUS_MULTIPROC_DIR": shared})):
            env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
            out = subprocess.run([sys.executable, "-m", "bench.metrics", str(count)], env={**env, **extra,
                                 "BENCH_METRICS_CHILD": "1"}, capture_output=True, text=True, check=True, timeout=300)
            per_request, per_scrape = out.stdout.split()
            print(f"{mode:26} observe {per_request:>5} ns per request   render {per_scrape} ms per scrape")
    finally:
        shutil.rmtree(shared, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
