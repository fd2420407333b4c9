"""What a run reports: the machine, the table (req/s, p50, p99, ratio to the ceiling, one set of
columns per event loop, and uvloop's req/s over asyncio's), the notes on each scenario, the performance targets of issue 5 (reported, never enforced), the service's logged
warnings; printed, and written as JSON to ``bench/results.json``."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import platform
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp

from .load import wrk_version
from .alternated import TARGETS, Alternated
from .scenarios import AtCap, Ceiling, Logins, Measured, Plain, Revocation, Workers
from .storm import ACCESS_TTL, Storm

RESULTS = Path(__file__).resolve().parent / "results.json"

# Performance targets of issue 5, reported (never enforced) next to the numbers.
TARGET_B_RATIO = 0.75
TARGET_D_P99_FACTOR = 2.0
TARGET_REVOCATION_MS = 100.0


@dataclasses.dataclass(frozen=True)
class Machine:
    nproc: int
    cpu: str
    python: str
    aiohttp: str
    kernel: str
    wrk: str
    loadavg_start: tuple[str, ...]


def loadavg() -> tuple[str, ...]:
    return tuple(Path("/proc/loadavg").read_text().split()[:3])


def machine() -> Machine:
    """This machine, as far as the numbers depend on it (call it before pinning this process: nproc
    counts the CPUs we may use)."""
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return Machine(nproc=len(os.sched_getaffinity(0)), cpu=model, python=platform.python_version(),
                   aiohttp=aiohttp.__version__, kernel=platform.release(), wrk=wrk_version(), loadavg_start=loadavg())


@dataclasses.dataclass(frozen=True)
class Setup:
    threads: int
    connections: int
    duration: int
    warmup: int
    placement: str
    storm_clients: int
    login_rate: float
    list_rate: float
    max_per_user: int
    loops: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Results:
    """Every scenario's result, in the order they ran."""

    ceiling: Ceiling
    plain: Plain
    logins: Logins
    workers: Workers
    at_cap: AtCap
    revocation: Revocation
    storm: Storm

    @property
    def problems(self) -> list[str]:
        return [problem for result in (self.ceiling, self.plain, self.logins, self.workers, self.at_cap,
                                       self.revocation, self.storm) for problem in result.problems]


@dataclasses.dataclass(frozen=True)
class Row:
    loop: str  # the event loop of the servers (and the bare handler) measured
    run: str
    what: str
    rps: float
    p50_ms: float
    p99_ms: float
    ratio: float  # rps over the ceiling's, measured in the same run
    non_2xx: int
    parts: int  # wrk processes summed


def table(by_loop: dict[str, Results]) -> list[Row]:
    """The table rows, loop by loop; e1/e2 sum their two wrk processes; each ratio is to the ceiling
    measured on the same loop."""
    rows = []
    for loop, results in by_loop.items():
        measured: dict[str, tuple[Measured, str]] = {
            "a": (results.ceiling.a, "bare aiohttp handler (ceiling)"),
            "b": (results.plain.b, "service GET /api/me, valid access cookie"),
            "d0": (results.logins.d0, "service GET /api/me, no logins"),
            "d": (results.logins.d, f"service GET /api/me + logins {results.logins.logins.rate_target:g}/s"),
            "e1": (results.workers.e1, "1 process (2 wrk x 1 thread x 25 conns)"),
            "e2": (results.workers.e2, f"{results.workers.flag} (2 wrk on it)"),
            "f": (results.at_cap.f, f"service GET /api/me, another user at cap {results.at_cap.cap}"),
        }
        ceiling = results.ceiling.a.rps
        rows += [Row(loop=loop, run=key, what=what, rps=round(m.rps, 1), p50_ms=round(m.p50_ms, 2),
                     p99_ms=round(m.p99_ms, 2), ratio=round(m.rps / ceiling, 3), non_2xx=m.non_2xx, parts=len(m.parts))
                 for key, (m, what) in measured.items()]
    return rows


@dataclasses.dataclass(frozen=True)
class Target:
    value: float | str | None
    target: str
    met: bool


def targets(loop: str, results: Results, rows: Sequence[Row]) -> dict[str, Target]:
    """The targets on one event loop: its ``results`` and its rows among ``rows``."""
    by = {r.run: r for r in rows if r.loop == loop}
    d_factor = by["d"].p99_ms / by["d0"].p99_ms if by["d0"].p99_ms else math.inf
    refused = [r.ms for r in results.revocation.refusals]
    slowest = max((ms for ms in refused if ms is not None), default=None)
    storm = results.storm
    return {
        "b_over_a": Target(by["b"].ratio, f">= {TARGET_B_RATIO}", by["b"].ratio >= TARGET_B_RATIO),
        "d_p99_over_d0_p99": Target(round(d_factor, 2), f"<= {TARGET_D_P99_FACTOR:g}", d_factor <= TARGET_D_P99_FACTOR),
        "e2_over_e1": Target(round(by["e2"].rps / by["e1"].rps, 2), "> 1", by["e2"].rps > by["e1"].rps),
        "storm_all_ok": Target(f"{storm.ok}/{storm.clients}", "all, none revoked, no login page", storm.all_ok),
        "revocation_ms": Target(slowest, f"<= {TARGET_REVOCATION_MS:g} on every instance",
                                results.revocation.error is None and len(refused) == 2
                                and None not in refused and slowest is not None and slowest <= TARGET_REVOCATION_MS),
    }


@dataclasses.dataclass(frozen=True)
class LogFindings:
    counts: dict[str, int]  # "level: event (reason) [exception chain]" -> lines
    samples: tuple[str, ...]  # lines that are not JSON but look like errors


def log_findings(logs: Sequence[Path]) -> LogFindings:
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
                if isinstance(entry, dict) and entry.get("level") in ("warning", "error", "critical"):
                    key = log_key(entry)
                    counts[key] = counts.get(key, 0) + 1
    return LogFindings(counts, tuple(samples))


def log_key(entry: dict[str, Any]) -> str:
    key = f"{entry['level']}: {entry.get('event') or entry.get('message')}"
    if entry.get("reason"):
        key += f" ({entry['reason']})"
    # The exception lines of the trace, cause first: "…MaxConnectionsError: … -> …StoreUnavailable: …"
    chain = re.findall(r"^([A-Za-z_][\w.]*(?:Error|Exception|Unavailable|Timeout)\b.*)$",
                       str(entry.get("trace", "")), re.MULTILINE)
    if chain:
        key += " [" + " -> ".join(c[:120] for c in chain) + "]"
    return key


@dataclasses.dataclass(frozen=True)
class Report:
    machine: Machine
    loadavg_end: tuple[str, ...]
    setup: Setup
    seconds: float
    results: dict[str, Results]  # by event loop, as every dict here
    table: list[Row]
    targets: dict[str, dict[str, Target]]
    service_log: dict[str, LogFindings]
    alternated: Alternated | None
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems


def write_json(report: Report, path: Path = RESULTS) -> None:
    path.write_text(json.dumps({**rounded(dataclasses.asdict(report)), "ok": report.ok}, indent=2) + "\n")


def rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 3)
    if isinstance(value, (list, tuple)):
        return [rounded(v) for v in value]
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items()}
    return value


def text(report: Report) -> str:
    """The report as printed: the machine and the load, the table, then for each event loop a note on
    each scenario, the targets and what the service logged."""
    lines = [*heading(report), *rows(report.table, report.setup.loops), *alternated_rows(report.alternated)]
    for loop, results in report.results.items():
        logged = report.service_log[loop]
        lines += ["", f"== {loop}", *notes(results), "", "targets (issue 5; reported, not enforced):",
                  *(f"  {name:20} {str(t.value):>10}  target {t.target:34} {'met' if t.met else 'MISSED'}"
                    for name, t in report.targets[loop].items()),
                  "", "service log warnings/errors:" + ("" if logged.counts else " none"),
                  *(f"  {v:6} x {k}" for k, v in sorted(logged.counts.items())),
                  *(f"  {sample}" for sample in logged.samples)]
    return "\n".join(lines)


def heading(report: Report) -> list[str]:
    m, s = report.machine, report.setup
    lines = [f"machine: nproc {m.nproc}, {m.cpu}, Python {m.python}, aiohttp {m.aiohttp}, Linux {m.kernel}, "
             f"{m.wrk}; load average {' '.join(m.loadavg_start)} at start, {' '.join(report.loadavg_end)} at end",
             f"load: wrk -t{s.threads} -c{s.connections} -d{s.duration:g}s after a {s.warmup:g}s warm-up, "
             f"{s.placement}", ""]
    busy = float(m.loadavg_start[0])
    if busy > 0.5 * (m.nproc or 1):
        lines += [f"WARNING: load average {busy:g} at start: something else runs on this machine, so the numbers "
                  "are noisy; run again on an idle machine for numbers to quote", ""]
    return lines


def rows(table: Sequence[Row], loops: Sequence[str]) -> list[str]:
    """One line a scenario, one set of columns per event loop, and the last loop's req/s over the first's."""
    cells = f"{'req/s':>8}{'p50 ms':>8}{'p99 ms':>8}{'x ceil':>8}{'non-2xx':>8}"
    by = {(r.loop, r.run): r for r in table}
    lines = [f"{'':3}{'':44}" + "".join(f"{loop:>40}" for loop in loops) + f"{'':>9}",
             f"{'':3}{'what':44}" + cells * len(loops) + f"{loops[-1][:2] + '/' + loops[0][:2]:>9}"]
    for run in dict.fromkeys(r.run for r in table):
        line = [by[(loop, run)] for loop in loops]
        lines.append(f"{run:3}{line[0].what:44}"
                     + "".join(f"{r.rps:>8.0f}{r.p50_ms:>8.2f}{r.p99_ms:>8.2f}{r.ratio:>8.3f}{r.non_2xx:>8}" for r in line)
                     + f"{line[-1].rps / line[0].rps:>9.3f}")
    return [*lines, "   (e1/e2: req/s summed over the two wrk processes; p50/p99 the worse of the two; x ceil: over the "
            "bare handler on the same loop)"]


def alternated_rows(g: Alternated | None) -> list[str]:
    """g: the median req/s of each target on each loop, and the last loop's over the first's."""
    if g is None:
        return []
    first, last = g.loops[0], g.loops[-1]
    return ["", f"g  GET /api/me with the loops alternated ({g.rounds} rounds of {g.duration} s, the order reversed "
            "every other round), median req/s:",
            f"{'':3}{'':44}" + "".join(f"{loop:>10}" for loop in g.loops) + f"{last[:2] + '/' + first[:2]:>9}",
            *(f"{'':3}{'bare aiohttp handler' if target == 'bare' else 'service GET /api/me, valid access cookie':44}"
              + "".join(f"{g.median(target, loop):>10.0f}" for loop in g.loops)
              + f"{g.median(target, last) / g.median(target, first):>9.3f}" for target in TARGETS)]


def notes(results: Results) -> list[str]:
    st, lg, cap = results.storm, results.logins.logins, results.at_cap
    lines = ["", f"c  refresh storm, {st.clients} clients ({st.users} user{'s' * (st.users != 1)}) with expired access tokens "
             f"(access_ttl {ACCESS_TTL}): {st.ok} ok, {st.no_login_page} never saw a login page ({st.saw_login} did), "
             f"{st.revoked} sessions revoked, {st.hopped} went through /auth/refresh; statuses {st.statuses}",
             f"   total {st.total_ms:.0f} ms; per client p50 {st.p50_ms:.0f} ms, p99 {st.p99_ms:.0f} ms "
             f"(their {st.clients} logins took {st.login_seconds:g} s)",
             f"d  background logins: {lg.ok} ok of {lg.attempted} at {lg.rate_achieved:g}/s "
             f"(target {lg.rate_target:g}/s; {lg.throttled} throttled, {lg.failed} failed, "
             f"{lg.skipped} ticks skipped with 4 in flight), login p50 {lg.p50_ms:.0f} ms, p99 {lg.p99_ms:.0f} ms",
             f"f  another user's /api/me p99 {cap.f.p99_ms:.2f} ms against {results.plain.b.p99_ms:.2f} ms plain (b) "
             f"while one user sat at the cap of {cap.cap} sessions ({cap.sessions_before} before, "
             f"{cap.sessions_after} after) loading their session list: {cap.listing.ok} ok of "
             f"{cap.listing.attempted} at {cap.listing.rate_achieved:g}/s, p50 {cap.listing.p50_ms:.0f} ms, "
             f"p99 {cap.listing.p99_ms:.0f} ms"]
    rv = results.revocation
    if rv.error is not None:
        lines.append(f"revocation: {rv.error}")
    else:
        lines.append("revocation: after sign-out through instance 1, the access cookie was refused by "
                     + ", ".join(f"instance {r.instance} after {r.ms} ms (HTTP {r.status})" if r.ms is not None
                                 else f"instance {r.instance} NEVER (2 s)" for r in rv.refusals))
    return lines
