"""Prometheus metrics: the counters the core reports to, and the per-route latency the web layer records.

Each application owns its own ``CollectorRegistry`` (tests build many apps in one process), served as
text by ``GET /metrics``. The core reports through :class:`Counts`, whose methods do nothing, so code
wired without metrics (the CLI) needs no checks. Every label value comes from a fixed set or from the
route table, never from a request, so the number of series stays bounded.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

CONTENT_TYPE = CONTENT_TYPE_LATEST

# Every refresh outcome → its label: the verdicts of storage/sessions.py's ROTATE (rotated, kept and
# grace succeed; the rest are RefreshFailed reasons) and core's own RefreshFailed reasons (missing and
# unbound in core/auth.py, malformed and forged in core/refresh_tokens.py). One label each, so a kept token is
# not mistaken for an attack; an outcome missing here is a bug, raised, not counted under a catch-all.
REFRESH_OUTCOMES = {"rotated": "rotated", "kept": "kept", "grace": "grace", "reused": "reused",
                    "expired": "expired", "gone": "revoked", "disabled": "disabled", "missing": "missing",
                    "unbound": "unbound", "malformed": "malformed", "forged": "forged"}
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Latency buckets in seconds: the hot path is tens of µs; a login's argon2 hash is tens to hundreds of ms.
_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


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


class Metrics(Counts):
    """The real thing, on a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self._logins = Counter("session_logins", "Sign-in attempts by outcome.", ["outcome"], registry=r)
        self._refreshes = Counter("session_refreshes", "Refresh token uses by outcome.", ["outcome"], registry=r)
        self._revocations = Counter("session_revocations", "Sessions ended by a user, by kind.", ["kind"],
                                    registry=r)
        self._throttles = Counter("session_throttles", "Sign-in attempts refused by the throttle, by window.",
                                  ["scope"], registry=r)
        self._store_errors = Counter("session_store_errors", "Requests that failed because Redis did not answer.",
                                     registry=r)
        for label in REFRESH_OUTCOMES.values():  # every series from the start, so a rate() sees its first event
            self._refreshes.labels(label)
        self._requests = _Requests()
        r.register(self._requests)

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
        label = method if method in _METHODS else "other"
        latency = self._latency.setdefault((route, label), [0.0] * (len(_BUCKETS) + 2))
        return latency, self._responses.setdefault((route, label), {})

    def collect(self) -> Iterator[Metric]:
        latency = HistogramMetricFamily("session_request_duration_seconds", "Time to produce a response, by route.",
                                        labels=["route", "method"])
        for (route, method), series in sorted(self._latency.items()):
            cumulative, buckets = 0.0, []
            for bound, count in zip((*map(str, _BUCKETS), "+Inf"), series[:-1]):
                cumulative += count
                buckets.append((bound, cumulative))
            latency.add_metric([route, method], buckets, series[-1])
        yield latency
        responses = CounterMetricFamily("session_responses", "Responses by route and status.",
                                        labels=["route", "method", "status"])
        for (route, method), by_status in sorted(self._responses.items()):
            for status, count in sorted(by_status.items()):
                responses.add_metric([route, method, str(status)], count)
        yield responses
