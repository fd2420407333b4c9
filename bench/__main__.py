"""``python -m bench``: its arguments, and the run — the scenarios in order, once on each event loop,
the table printed and written to ``bench/results.json``. Exits 1 if a correctness check fails (a non-2xx answer to an
authenticated request, a storm client that did not get its answer, a revocation not honoured)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

from . import BenchError, alternated, client, report, scenarios
from .load import WRK, Load
from .processes import ROOT, Servers
from .report import Report, Results, Setup
from .scenarios import CAPPED_USER, LOGIN_USER, USER, Context
from .storm import storm, storm_users

WORKERS = ("--workers", "2")  # e2: the service with two worker processes
LOOPS = ("asyncio", "uvloop")  # every scenario runs once on each (server.event_loop), bare handler included


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=(__doc__ or "").split("\n\n", 1)[0])
    parser.add_argument("--duration", type=int, default=10, help="whole seconds per wrk run (default 10)")
    parser.add_argument("--warmup", type=int, default=2, help="whole seconds of wrk warm-up per target (default 2)")
    parser.add_argument("--clients", type=int, default=200, help="refresh storm clients (default 200)")
    parser.add_argument("--login-rate", type=float, default=5.0, help="background logins per second in d")
    parser.add_argument("--list-rate", type=float, default=20.0,
                        help="session list loads per second of the user at the cap in f")
    parser.add_argument("--time-limit", type=float, default=720.0,
                        help="abort the run after this many seconds (both event loops)")
    parser.add_argument("--loops", default=",".join(LOOPS),
                        help=f"the event loops to run on, in order, comma-separated (default {','.join(LOOPS)})")
    parser.add_argument("--rounds", type=int, default=4,
                        help="g: rounds of the loops alternated, half --duration each (default 4; 0: none)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, data)")
    args = parser.parse_args(argv)
    args.loops = tuple(args.loops.split(","))
    if not args.loops or not set(args.loops) <= set(LOOPS):
        parser.error(f"--loops takes some of {', '.join(LOOPS)}")
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


async def main_async(args: argparse.Namespace) -> int:
    cpus = sorted(os.sched_getaffinity(0))
    wrk_cpu = cpus[-1] if len(cpus) >= 2 else None
    load = Load(threads=2, connections=50, duration=args.duration, cpu=wrk_cpu)
    about = report.machine()  # before pinning this process
    server_cpus, placement = pin(cpus, wrk_cpu)
    max_per_user = Servers(tmp=Path("/nonexistent")).settings().sessions.max_per_user
    setup = Setup(threads=load.threads, connections=load.connections, duration=load.duration, warmup=args.warmup,
                  placement=placement, storm_clients=args.clients, login_rate=args.login_rate,
                  list_rate=args.list_rate, max_per_user=max_per_user, loops=args.loops)
    started = time.monotonic()
    main_task = asyncio.current_task()
    assert main_task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)  # still stop what we started
    results: dict[str, Results] = {}
    findings: dict[str, report.LogFindings] = {}
    g = None
    async with asyncio.timeout(args.time_limit):
        for loop in args.loops:
            print(f"event loop {loop}:", flush=True)
            async with fresh_servers(args, loop, server_cpus) as servers:
                try:
                    results[loop] = await run(servers, setup, load)
                finally:
                    findings[loop] = report.log_findings(servers.logs)
        if len(args.loops) > 1 and args.rounds > 0:
            print(f"g: GET /api/me, {' and '.join(args.loops)} alternated, {args.rounds} rounds ...", flush=True)
            async with fresh_servers(args, args.loops[0], server_cpus) as servers:
                g = await alternated.run(servers, load, args.warmup, args.loops, args.rounds,
                                         max(1, args.duration // 2))
    rows = report.table(results)
    done = Report(machine=about, loadavg_end=report.loadavg(), setup=setup, seconds=round(time.monotonic() - started, 1),
                  results=results, table=rows, targets={loop: report.targets(loop, r, rows) for loop, r in results.items()},
                  service_log=findings, alternated=g,
                  problems=[*(f"{loop}: {problem}" for loop, r in results.items() for problem in r.problems),
                            *(g.problems if g else ())])
    report.write_json(done)
    print()
    print(report.text(done))
    print(f"\n{done.seconds:g} s; written to {report.RESULTS.relative_to(ROOT)}")
    if done.problems:
        print("\nFAILED:", *done.problems, sep="\n  ", file=sys.stderr)
        return 1
    return 0


@contextlib.asynccontextmanager
async def fresh_servers(args: argparse.Namespace, loop: str, cpus: str) -> AsyncIterator[Servers]:
    """Servers on ``loop`` in a temporary directory of their own (short: Redis's socket is in it),
    every process stopped and the directory removed (unless ``--keep``) on the way out."""
    servers = Servers(tmp=Path(tempfile.mkdtemp(prefix="bench-", dir="/tmp")), loop=loop, cpus=cpus)
    try:
        yield servers
    finally:
        servers.procs.stop_all()
        if args.keep:
            print(f"kept {servers.tmp}", file=sys.stderr)
        else:
            shutil.rmtree(servers.tmp, ignore_errors=True)


def pin(cpus: list[int], wrk_cpu: int | None) -> tuple[str, str]:
    """With two CPUs or more: wrk and this process (its load drivers, the storm clients) on the last,
    the servers left to the kernel on all of them. The servers' taskset CPU list, and what was done."""
    if wrk_cpu is None:
        return "", "one CPU: nothing pinned"
    server_cpus = ",".join(map(str, cpus))  # servers may use every CPU, not only ours
    os.sched_setaffinity(0, {wrk_cpu})
    return server_cpus, (f"wrk and python -m bench (login driver, session lists, storm clients) pinned to CPU "
                         f"{wrk_cpu} with taskset; servers and Redis unpinned (CPUs {server_cpus})")


async def run(servers: Servers, setup: Setup, load: Load) -> Results:
    """Every scenario, in order; ``c`` last, as its sign-ins fill Redis with sessions."""
    password = secrets.token_urlsafe(18)
    storm_names = storm_users(setup.storm_clients, setup.max_per_user)
    # The users first (the CLI runs the embedded Redis while it works), then instance 1, which owns
    # the embedded Redis from then on.
    for name in (USER, LOGIN_USER, CAPPED_USER, *storm_names):
        servers.add_user(name, password)
    async with client.session() as http:
        one = await servers.start_service(http, "service1")
        ctx = Context(servers=servers, http=http, load=load, warmup=setup.warmup, password=password, base=one,
                      cookie=(await client.sign_in(http, one, USER, password)).cookie)
        print("a: bare handler ...", flush=True)
        ceiling = await scenarios.ceiling(ctx)
        print("b: service GET /api/me ...", flush=True)
        plain = await scenarios.plain(ctx)
        print(f"d: GET /api/me without, then with logins at {setup.login_rate:g}/s ...", flush=True)
        logins = await scenarios.logins(ctx, setup.login_rate)
        print(f"e: 1 process vs {' '.join(WORKERS)} ...", flush=True)
        two = await servers.start_service(http, "service2", *WORKERS, redis__url=servers.shared_redis)
        workers = await scenarios.workers(ctx, two, " ".join(WORKERS))
        print(f"f: GET /api/me while another user sits at the cap of {setup.max_per_user} sessions ...", flush=True)
        at_cap = await scenarios.at_cap(ctx, setup.max_per_user, setup.list_rate)
        print("revocation: sign out through instance 1 ...", flush=True)
        revocation = await scenarios.revocation(ctx, [one, two])
        print(f"c: refresh storm, {setup.storm_clients} clients (signing them in first) ...", flush=True)
        crowd = await storm(ctx, storm_names, setup.storm_clients)
    return Results(ceiling=ceiling, plain=plain, logins=logins, workers=workers, at_cap=at_cap,
                   revocation=revocation, storm=crowd)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
