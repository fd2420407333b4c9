"""GET /metrics of the real ``python -m service``: under ``serve --workers 2`` whichever worker answers,
a scrape describes the whole service (counts summed over the workers, process metrics of each), and
no counter goes backwards, not even when a worker is killed and replaced; a single process reports
itself, and the event loop it runs on."""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import signal
import stat
import time
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from tests.support.metrics import Samples, documented, exposed, value
from tests.support.servers import START_TIMEOUT, ServiceProcess, children_of, workers_of
from tests.support.sign_in import PASSWORD

REQUESTS = 60
SCRAPES = 20
HEALTHZ = {"route": "healthz", "method": "GET", "status": "200"}


async def fresh_get(origin: str, path: str) -> str:
    """GET on a new connection: SO_REUSEPORT hands each new connection to either worker."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as fresh:
        async with fresh.get(origin + path) as response:
            assert response.status == 200
            return await response.text()


async def scrape_fresh(origin: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(await fresh_get(origin, "/metrics")):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


async def hits_and_scrapes(origin: str, requests: int, scrapes: int) -> list[float]:
    """``requests`` GET /healthz interleaved with ``scrapes`` scrapes: the healthz count each scrape saw."""
    seen = []
    for n in range(requests):
        await fresh_get(origin, "/healthz")
        if n % (requests // scrapes) == 0:
            seen.append(value(await scrape_fresh(origin), "session_responses_total", **HEALTHZ))
    return seen


def pids_reported(samples: Samples) -> set[int]:
    return {int(dict(labels)["pid"]) for name, labels in samples if name == "process_resident_memory_bytes"}


async def wait_for_replacement(supervisor: int, dead: int) -> list[int]:
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        workers = workers_of(supervisor)
        if len(workers) == 2 and dead not in workers:
            return workers
        assert time.monotonic() < deadline, f"no worker replaced {dead}: {workers}"
        await asyncio.sleep(0.1)  # bounded polling of the supervisor's restart


def multiproc_dir(worker: int) -> Path:
    environ = dict(entry.split(b"=", 1) for entry in Path(f"/proc/{worker}/environ").read_bytes().split(b"\0")
                   if b"=" in entry)
    return Path(os.fsdecode(environ[b"PROMETHEUS_MULTIPROC_DIR"]))


async def test_every_scrape_sums_the_workers_and_never_goes_backwards(service_process: ServiceProcess) -> None:
    service_process.args = ["serve", "--workers", "2"]
    origin = service_process.origin
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        try:
            await service_process.start(http)
            assert service_process.process is not None
            workers = workers_of(service_process.process.pid)
            assert len(workers) == 2
            service_process.cli_alongside("users", "add", "alice", "--password-stdin", stdin=PASSWORD + "\n")
            async with http.post(origin + "/login", headers={"Origin": origin},
                                 json={"username": "alice", "password": PASSWORD}) as response:
                assert response.status == 200
            before = await scrape_fresh(origin)
            assert exposed(await fresh_get(origin, "/metrics")) == documented()  # README's table holds here too
            seen = await hits_and_scrapes(origin, REQUESTS, SCRAPES)
            assert seen == sorted(seen), seen
            for _ in range(SCRAPES):  # every scrape, whichever worker answers it, sees every request
                samples = await scrape_fresh(origin)
                assert value(samples, "session_responses_total", **HEALTHZ) - value(
                    before, "session_responses_total", **HEALTHZ) == REQUESTS
                assert value(samples, "session_logins_total", outcome="success") == 1
                assert pids_reported(samples) == set(workers)
                assert value(samples, "session_build_info", version="0.1.0", python=platform.python_version(),
                             event_loop="uvloop") == 1
            service_process.assert_stopped_cleanly(service_process.stop())
        finally:
            service_process.kill()


async def test_a_killed_worker_keeps_its_counts_and_its_replacement_adds_to_them(
        service_process: ServiceProcess) -> None:
    service_process.args = ["serve", "--workers", "2"]
    origin = service_process.origin
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        try:
            await service_process.start(http)
            assert service_process.process is not None
            supervisor = service_process.process.pid
            dead, alive = workers_of(supervisor)
            shared = multiproc_dir(dead)
            assert stat.S_IMODE(shared.stat().st_mode) == 0o700  # another user may not read or plant counts
            first = await hits_and_scrapes(origin, REQUESTS, 10)
            os.kill(dead, signal.SIGKILL)  # the OOM killer, say: no chance to write anything on the way out
            replaced = await wait_for_replacement(supervisor, dead)
            second = await hits_and_scrapes(origin, REQUESTS, 10)
            seen = first + second
            assert seen == sorted(seen), seen
            samples = await scrape_fresh(origin)
            assert value(samples, "session_responses_total", **HEALTHZ) == 2 * REQUESTS
            assert pids_reported(samples) == set(replaced) and alive in replaced
            service_process.assert_stopped_cleanly(service_process.stop())
            assert not shared.exists()  # removed with the service
        finally:
            service_process.kill()


async def test_a_single_process_reports_itself_and_its_event_loop(service_process: ServiceProcess) -> None:
    service_process.args = ["serve"]
    service_process.env["SERVICE__SERVER__EVENT_LOOP"] = "asyncio"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        try:
            await service_process.start(http)
            assert service_process.process is not None
            seen = await hits_and_scrapes(service_process.origin, 20, 10)
            assert seen == list(range(1, 20, 2)), seen  # one process: the count is exact at every scrape
            samples = await scrape_fresh(service_process.origin)
            assert pids_reported(samples) == {service_process.process.pid}
            assert value(samples, "process_start_time_seconds", pid=str(service_process.process.pid)) > 0
            assert value(samples, "process_open_fds", pid=str(service_process.process.pid)) > 0
            assert value(samples, "session_build_info", version="0.1.0", python=platform.python_version(),
                         event_loop="asyncio") == 1
            service_process.assert_stopped_cleanly(service_process.stop())
        finally:
            service_process.kill()


async def test_workers_end_when_their_supervisor_is_killed(service_process: ServiceProcess) -> None:
    """SIGKILL (or the OOM killer) gives the supervisor no chance to stop its workers: the kernel tells
    them (PR_SET_PDEATHSIG), and none is left serving the port without its Redis."""
    service_process.args = ["serve", "--workers", "2"]
    workers: list[int] = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        try:
            await service_process.start(http)
            assert service_process.process is not None
            workers = workers_of(service_process.process.pid)
            assert len(workers) == 2
            children = children_of(service_process.process.pid)  # the workers and the embedded Redis
            service_process.process.kill()
            service_process.process.wait(timeout=10)
            deadline = time.monotonic() + 20
            while any(Path(f"/proc/{pid}").exists() and b"zombie" not in _state(pid) for pid in children):
                assert time.monotonic() < deadline, f"still running: {children} (workers {workers})"
                await asyncio.sleep(0.1)  # bounded: they stop within server.shutdown_timeout
        finally:
            for pid in workers:  # only if the test failed: they are gone otherwise
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            service_process.kill()


def _state(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/status").read_bytes().lower()
    except OSError:
        return b"zombie"
