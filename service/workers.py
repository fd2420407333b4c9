"""Several worker processes on one port (SO_REUSEPORT), supervised by a parent that owns the embedded Redis.

The parent creates the secret keys once (so workers never race to generate them), starts the
embedded redis-server when ``redis.url`` is empty (and restarts it should it die), and runs ``python -m service serve --reuse-port``
N times with ``SERVICE__REDIS__URL`` pointing every worker at that one server. A worker that dies is
started again; SIGTERM or SIGINT is passed on to every worker, and the parent waits for them
(``server.shutdown_timeout``) before it stops Redis and exits.

The workers share one ``PROMETHEUS_MULTIPROC_DIR`` (see service/metrics.py), ``metrics/`` in the data
directory: private, emptied at start and removed at exit (one supervisor per data directory), holding each worker's metric files and, while
a worker lives, a mark naming its PID. A dead worker's files stay, so its counts stay in the sums.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import shutil
import signal
import sys
from pathlib import Path

from .metrics import WORKER_MARK
from .settings import Settings
from .storage.embedded import EmbeddedRedis, die_with_parent
from .web.app import prepare_keys

log = logging.getLogger("service")
RESTART_DELAY = 1.0


async def supervise(settings: Settings, settings_path: Path | None, *, host: str, port: int, count: int) -> int:
    prepare_keys(settings)
    embedded = None if settings.redis.url else EmbeddedRedis(settings.storage.data_dir, exclusive=True)
    if embedded is not None:
        await embedded.start()
    shared = _empty_private(settings.storage.data_dir / "metrics")
    env = dict(os.environ, PROMETHEUS_MULTIPROC_DIR=str(shared))
    if embedded is not None:
        env["SERVICE__REDIS__URL"] = embedded.url
    command = [sys.executable, "-m", "service", *(["--settings", str(settings_path)] if settings_path else []),
               "serve", "--host", host, "--port", str(port), "--reuse-port"]
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    keeper = asyncio.create_task(embedded.keep_alive()) if embedded is not None else None
    try:
        await asyncio.gather(*(_keep_running(command, env, stopping, settings, shared) for _ in range(count)))
    finally:
        shutil.rmtree(shared, ignore_errors=True)
        if keeper is not None:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
        if embedded is not None:
            await embedded.stop()
    return 0


async def _keep_running(command: list[str], env: dict[str, str], stopping: asyncio.Event, settings: Settings,
                        shared: Path) -> None:
    """Run one worker until told to stop, starting it again whenever it dies on its own."""
    while not stopping.is_set():
        # SIGTERMed by the kernel should the supervisor die unannounced (SIGKILL, the OOM killer): no
        # orphaned worker keeps serving the port without its Redis and metrics directory.
        worker = await asyncio.create_subprocess_exec(*command, env=env,
                                                      preexec_fn=functools.partial(die_with_parent, os.getpid()))
        mark = shared / f"{WORKER_MARK}{worker.pid}"
        mark.touch()
        exited = asyncio.create_task(worker.wait())
        told = asyncio.create_task(stopping.wait())
        await asyncio.wait({exited, told}, return_when=asyncio.FIRST_COMPLETED)
        told.cancel()
        if stopping.is_set():
            await _stop(worker, exited, settings.server.shutdown_timeout + 5)
            return
        mark.unlink(missing_ok=True)
        log.warning("worker %s exited with %s; starting another", worker.pid, worker.returncode)
        await asyncio.sleep(RESTART_DELAY)


def _empty_private(directory: Path) -> Path:
    """``directory``, made anew, empty and mode 0700: what a supervisor killed before it could clean up
    left there would be summed with the new counts."""
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(mode=0o700)
    return directory


async def _stop(worker: asyncio.subprocess.Process, exited: asyncio.Task[int], timeout: float) -> None:
    with contextlib.suppress(ProcessLookupError):
        worker.send_signal(signal.SIGTERM)
    done, _ = await asyncio.wait({exited}, timeout=timeout)
    if not done:
        with contextlib.suppress(ProcessLookupError):
            worker.kill()
        await exited
