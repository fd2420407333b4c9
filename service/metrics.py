"""Prometheus metrics: the counters the core reports to, and the per-route latency the web layer records.

Each application owns its own ``CollectorRegistry`` (tests build many apps in one process), served as
text by ``GET /metrics``. The core reports through :class:`Counts`, whose methods do nothing, so code
wired without metrics (the CLI) needs no checks. Every label value comes from a fixed set or from the
route table, never from a request, so the number of series stays bounded.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

CONTENT_TYPE = CONTENT_TYPE_LATEST

# RefreshFailed reasons (sessions.py verdicts, refresh.py parsing) → the outcome label.
_REFRESH_OUTCOMES = {"rotated": "rotated", "grace": "grace", "reused": "reused", "expired": "expired",
                     "gone": "revoked", "disabled": "disabled", "missing": "missing"}
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Latency buckets in seconds: the hot path is tens of µs; a login's argon2 hash is tens to hundreds of ms.
_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Counts:
    """What the core reports. This base counts nothing: it is what the core uses when given no metrics."""

    def login(self, outcome: str) -> None:
        """``success``, ``failure`` or ``throttled``."""

    def refresh(self, outcome: str) -> None:
        """A rotation verdict or a RefreshFailed reason."""

    def revocation(self, kind: str, sessions: int = 1) -> None:
        """``logout``, ``revoke`` or ``revoke_all``; ``sessions`` is how many ended."""

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
        self._latency = Histogram("session_request_duration_seconds", "Time to produce a response, by route.",
                                  ["route", "method"], buckets=_BUCKETS, registry=r)
        self._responses = Counter("session_responses", "Responses by route and status.",
                                  ["route", "method", "status"], registry=r)
        self._series: dict[tuple[str, str, int], tuple[Histogram, Counter]] = {}  # label lookups are slow

    def login(self, outcome: str) -> None:
        self._logins.labels(outcome).inc()

    def refresh(self, outcome: str) -> None:
        self._refreshes.labels(_REFRESH_OUTCOMES.get(outcome, "invalid")).inc()

    def revocation(self, kind: str, sessions: int = 1) -> None:
        self._revocations.labels(kind).inc(sessions)

    def throttle(self, scope: str) -> None:
        self._throttles.labels(scope or "unknown").inc()

    def store_error(self) -> None:
        self._store_errors.inc()

    def request(self, route: str, method: str, status: int, seconds: float) -> None:
        """One histogram observation and one counter increment: this runs on every request."""
        key = (route, method if method in _METHODS else "other", status)  # bounded: any method may arrive
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = (self._latency.labels(route, key[1]),
                                          self._responses.labels(route, key[1], str(status)))
        series[0].observe(seconds)
        series[1].inc()

    def render(self) -> bytes:
        """The registry in Prometheus text format."""
        return generate_latest(self.registry)
