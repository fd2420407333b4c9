"""Prometheus metrics: the counters the core reports to, the per-route latency the web layer records,
build and process metrics.

Each application owns its own ``CollectorRegistry`` (tests build many apps in one process), served as
text by ``GET /metrics``. The core reports through :class:`Counts`, whose methods do nothing, so code
wired without metrics (the CLI) needs no checks. Every label value comes from a fixed set or from the
route table, never from a request, so the number of series stays bounded.

Under ``serve --workers N`` the supervisor sets ``PROMETHEUS_MULTIPROC_DIR``, which puts
prometheus-client in multiprocess mode: every process writes its numbers into memory-mapped files of
its own there, and whichever worker answers a scrape sums every file, those of dead workers included,
so each scrape describes the whole service and no counter goes backwards when a worker is replaced.
"""

from __future__ import annotations

import asyncio
import bisect
import importlib.metadata
import os
import platform
from collections.abc import Callable, Iterator
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, ProcessCollector, values
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.mmap_dict import MmapedDict, mmap_key
from prometheus_client.multiprocess import MultiProcessCollector

CONTENT_TYPE = CONTENT_TYPE_LATEST

# Every refresh outcome → its label: the verdicts of storage/sessions.py's ROTATE (rotated, kept and
# grace succeed; the rest are RefreshFailed reasons) and core's own RefreshFailed reasons (missing and
# unbound in core/auth.py, malformed and forged in core/refresh_tokens.py). One label each, so a kept token is
# not mistaken for an attack; an outcome missing here is a bug, raised, not counted under a catch-all.
REFRESH_OUTCOMES = {"rotated": "rotated", "kept": "kept", "grace": "grace", "reused": "reused",
                    "expired": "expired", "gone": "revoked", "disabled": "disabled", "missing": "missing",
                    "unbound": "unbound", "malformed": "malformed", "forged": "forged"}
_LOGIN_OUTCOMES = ("success", "failure", "throttled")
_REVOCATION_KINDS = ("logout", "revoke", "revoke_all", "evicted")
_THROTTLE_SCOPES = ("user", "ip")
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Latency buckets in seconds: the hot path is tens of µs; a login's argon2 hash is tens to hundreds of ms.
_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_BOUNDS = (*map(str, _BUCKETS), "+Inf")  # the buckets' `le` labels
_LATENCY = ("session_request_duration_seconds", "Time to produce a response, by route.")
_RESPONSES = ("session_responses", "Responses by route and status.")
try:  # the installed distribution's, which pyproject.toml takes from service.__version__
    VERSION = importlib.metadata.version("cookie-session-service")
except importlib.metadata.PackageNotFoundError:  # run from a checkout that was never installed
    VERSION = "unknown"
# In the multiprocess directory, one empty file per live worker, named after its PID: written and
# removed by the supervisor (service/workers.py), read here to find whose /proc to report.
WORKER_MARK = "worker-"


def shared_directory() -> Path | None:
    """The multiprocess directory, when prometheus-client runs in multiprocess mode (it decides once, at
    import, from ``PROMETHEUS_MULTIPROC_DIR``); None in a single process."""
    if getattr(values.ValueClass, "_multiprocess", False):
        return Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    return None


# (factor, outcome) of session_factor_events_total. step_up: the factor confirmed a sensitive action;
# replay: a TOTP code already used; counter_regression: a passkey's sign counter went back (a clone).
FACTOR_EVENTS = frozenset(
    [("password", "step_up")]
    + [(factor, outcome) for factor in ("passkey", "totp", "recovery") for outcome in ("success", "failure", "step_up")]
    + [("passkey", "enrolled"), ("passkey", "removed"), ("passkey", "counter_regression"),
       ("totp", "enrolled"), ("totp", "removed"), ("totp", "replay"), ("recovery", "generated")])


class Counts:
    """What the core reports. This base counts nothing: it is what the core uses when given no metrics."""

    def login(self, outcome: str) -> None:
        """``success``, ``failure`` or ``throttled``."""

    def refresh(self, outcome: str) -> None:
        """A rotation verdict or a RefreshFailed reason: a key of :data:`REFRESH_OUTCOMES`."""

    def revocation(self, kind: str, sessions: int = 1) -> None:
        """``logout``, ``revoke``, ``revoke_all`` or ``evicted`` (over ``sessions.max_per_user``);
        ``sessions`` is how many ended."""

    def throttle(self, scope: str) -> None:
        """A sign-in attempt (login or password change) refused by the ``user`` or ``ip`` window."""

    def store_error(self) -> None:
        """Redis could not answer a request (StoreUnavailable reached the error table)."""

    def factor(self, factor: str, outcome: str) -> None:
        """An event of one authentication factor: a pair of :data:`FACTOR_EVENTS`."""


class Metrics(Counts):
    """The real thing, on a registry of its own; in multiprocess mode the registry that is served
    reads every process's files instead."""

    def __init__(self) -> None:
        # Registered below, as the mode says; in multiprocess mode they write to this process's files.
        self._logins = Counter("session_logins", "Sign-in attempts by outcome.", ["outcome"], registry=None)
        self._refreshes = Counter("session_refreshes", "Refresh token uses by outcome.", ["outcome"], registry=None)
        self._revocations = Counter("session_revocations", "Sessions ended by a user, by kind.", ["kind"],
                                    registry=None)
        self._throttles = Counter("session_throttles", "Sign-in attempts refused by the throttle, by window.",
                                  ["scope"], registry=None)
        self._store_errors = Counter("session_store_errors", "Requests that failed because Redis did not answer.",
                                     registry=None)
        self._factors = Counter("session_factor_events", "Events of each authentication factor, by outcome.",
                                ["factor", "outcome"], registry=None)
        for factor, outcome in FACTOR_EVENTS:
            self._factors.labels(factor, outcome)
        # Every series from the start, so a rate() sees its first event (and a worker's files list them all).
        for counter, labels in ((self._logins, _LOGIN_OUTCOMES), (self._refreshes, REFRESH_OUTCOMES.values()),
                                (self._revocations, _REVOCATION_KINDS), (self._throttles, _THROTTLE_SCOPES)):
            for label in labels:
                counter.labels(label)
        self._requests: _Requests | _SharedRequests
        shared = shared_directory()
        if shared is None:
            self.registry = CollectorRegistry(auto_describe=True)
            self._requests = _Requests()
            for collector in (self._logins, self._refreshes, self._revocations, self._throttles, self._store_errors,
                              self._factors, self._requests, _Process(lambda: [os.getpid()])):
                self.registry.register(collector)
        else:  # MultiProcessCollector sums every worker's files, those of dead workers too
            self.registry = CollectorRegistry()
            self._requests = _SharedRequests(shared)
            MultiProcessCollector(self.registry, path=str(shared))  # type: ignore[no-untyped-call]
            self.registry.register(_Process(lambda: _worker_pids(shared)))

    def login(self, outcome: str) -> None:
        self._logins.labels(outcome).inc()

    def refresh(self, outcome: str) -> None:
        label = REFRESH_OUTCOMES.get(outcome)
        if label is None:
            raise ValueError(f"refresh outcome {outcome!r} has no label in metrics.REFRESH_OUTCOMES")
        self._refreshes.labels(label).inc()

    def revocation(self, kind: str, sessions: int = 1) -> None:
        self._revocations.labels(kind).inc(sessions)

    def throttle(self, scope: str) -> None:
        self._throttles.labels(scope or "unknown").inc()

    def store_error(self) -> None:
        self._store_errors.inc()

    def factor(self, factor: str, outcome: str) -> None:
        if (factor, outcome) not in FACTOR_EVENTS:
            raise ValueError(f"factor event {factor!r} {outcome!r} is not in metrics.FACTOR_EVENTS")
        self._factors.labels(factor, outcome).inc()

    def route(self, name: str) -> Callable[[str, int, float], None]:
        """The recorder of one route's answers: ``observe(method, status, seconds)``, run per request."""
        return self._requests.route(name)

    def render(self) -> bytes:
        """The registry in Prometheus text format."""
        return generate_latest(self.registry)


class _Requests:
    """Per-route latency histogram and response counter, kept as plain numbers.

    prometheus-client's Histogram and Counter take a lock on every update, which cost several
    percent of the hot path (``make bench``); the event loop is one thread, so plain integers do,
    and the metric families are built only when ``/metrics`` is scraped.
    """

    def __init__(self) -> None:
        self._latency: dict[tuple[str, str], list[float]] = {}  # bucket counts..., then the sum
        self._responses: dict[tuple[str, str], dict[int, int]] = {}

    def route(self, route: str) -> Callable[[str, int, float], None]:
        by_method: dict[str, tuple[list[float], dict[int, int]]] = {}  # this route's series, by method

        def observe(method: str, status: int, seconds: float) -> None:
            series = by_method.get(method)
            if series is None:
                series = self._series(route, method)
                if method in _METHODS:  # an invented method is not kept as a key: memory stays bounded
                    by_method[method] = series
            latency, responses = series
            latency[bisect.bisect_left(_BUCKETS, seconds)] += 1  # index len(_BUCKETS) is +Inf
            latency[-1] += seconds
            responses[status] = responses.get(status, 0) + 1

        return observe

    def _series(self, route: str, method: str) -> tuple[list[float], dict[int, int]]:
        """The (latency, responses by status) series of a route and method; any method a client
        may invent shares ``other``, so labels stay bounded."""
        label = _label(method)
        latency = self._latency.setdefault((route, label), [0.0] * (len(_BUCKETS) + 2))
        return latency, self._responses.setdefault((route, label), {})

    def collect(self) -> Iterator[Metric]:
        latency = HistogramMetricFamily(*_LATENCY, labels=["route", "method"])
        for (route, method), series in sorted(self._latency.items()):
            cumulative, buckets = 0.0, []
            for bound, count in zip(_BOUNDS, series[:-1]):
                cumulative += count
                buckets.append((bound, cumulative))
            latency.add_metric([route, method], buckets, series[-1])
        yield latency
        responses = CounterMetricFamily(*_RESPONSES, labels=["route", "method", "status"])
        for (route, method), by_status in sorted(self._responses.items()):
            for status, count in sorted(by_status.items()):
                responses.add_metric([route, method, str(status)], count)
        yield responses


class _SharedRequests(_Requests):
    """:class:`_Requests` whose every update is also written to this process's files in the multiprocess
    directory, in prometheus-client's own format, which MultiProcessCollector sums at a scrape.

    Not prometheus-client's Histogram and Counter: in multiprocess mode each of their updates takes a
    lock and checks the PID, 4.3 µs a request against 1.4 µs for these plain writes (bench/metrics.py).
    Written at once, not batched: a worker that is killed has lost nothing it counted.
    """

    def __init__(self, directory: Path) -> None:
        super().__init__()
        # Files of their own: prometheus-client's Counters above write counter_<pid>.db, and two writers
        # of one file would overwrite each other's entries. The collector reads the type before the "_".
        pid = os.getpid()
        self._histograms = MmapedDict(str(directory / f"histogram_requests-{pid}.db"))  # type: ignore[no-untyped-call]
        self._counters = MmapedDict(str(directory / f"counter_requests-{pid}.db"))  # type: ignore[no-untyped-call]

    def route(self, route: str) -> Callable[[str, int, float], None]:
        keep = super().route(route)
        write_latency: Callable[[str, float, float], None] = self._histograms.write_value
        write_count: Callable[[str, float, float], None] = self._counters.write_value
        by_method: dict[str, tuple[list[float], dict[int, int], list[str], dict[int, str]]] = {}

        def observe(method: str, status: int, seconds: float) -> None:
            keep(method, status, seconds)
            files = by_method.get(method)
            if files is None:  # keyed by label: invented methods share "other", whose zeros are written once
                label = _label(method)
                files = by_method.get(label) or by_method.setdefault(label, self._files(route, label))
            latency, responses, latency_keys, response_keys = files
            bucket = bisect.bisect_left(_BUCKETS, seconds)
            write_latency(latency_keys[bucket], latency[bucket], 0.0)
            write_latency(latency_keys[-1], latency[-1], 0.0)
            key = response_keys.get(status) or response_keys.setdefault(status, _key(
                _RESPONSES, "_total", ["route", "method", "status"], [route, _label(method), str(status)]))
            write_count(key, responses[status], 0.0)

        return observe

    def _files(self, route: str, method: str) -> tuple[list[float], dict[int, int], list[str], dict[int, str]]:
        """A route and method's series (as kept by :class:`_Requests`) and their keys in the files."""
        latency, responses = self._series(route, method)
        labels = [route, _label(method)]
        keys = [_key(_LATENCY, "_bucket", ["route", "method", "le"], [*labels, bound]) for bound in _BOUNDS]
        keys.append(_key(_LATENCY, "_sum", ["route", "method"], labels))
        for key in keys:  # every bucket from the start, +Inf included, as prometheus-client's Histogram does
            self._histograms.write_value(key, 0.0, 0.0)  # type: ignore[no-untyped-call]
        return latency, responses, keys, {}


def _label(method: str) -> str:
    return method if method in _METHODS else "other"


def _key(metric: tuple[str, str], suffix: str, labelnames: list[str], labelvalues: list[str]) -> str:
    name, documentation = metric
    return str(mmap_key(name, name + suffix, labelnames, labelvalues, documentation))


class _Process:
    """``session_build_info`` and, for each process of the service (the worker processes under
    ``--workers``), prometheus-client's process metrics labelled by ``pid``, read from /proc at scrape."""

    def __init__(self, pids: Callable[[], list[int]]) -> None:
        self._pids = pids

    def describe(self) -> list[Metric]:
        """Nothing: what collect() reports depends on the running loop and the live processes."""
        return []

    def collect(self) -> Iterator[Metric]:
        loop = type(asyncio.get_running_loop()).__module__.split(".")[0]  # uvloop or asyncio
        build = GaugeMetricFamily("session_build_info", "Always 1: the version running, its Python and event loop.",
                                  labels=["version", "python", "event_loop"])
        build.add_metric([VERSION, platform.python_version(), loop], 1)
        yield build
        families: dict[str, Metric] = {}
        for pid in self._pids():
            for found in ProcessCollector(pid=lambda: pid, registry=None).collect():
                family = families.setdefault(found.name, Metric(found.name, found.documentation, found.type))
                for sample in found.samples:
                    family.add_sample(sample.name, {"pid": str(pid)}, sample.value)
        yield from families.values()


def _worker_pids(shared: Path) -> list[int]:
    """The live workers, as the supervisor marked them; this process if none is marked."""
    pids = sorted(int(mark.name[len(WORKER_MARK):]) for mark in shared.glob(WORKER_MARK + "*")
                  if mark.name[len(WORKER_MARK):].isdigit())
    return pids or [os.getpid()]
