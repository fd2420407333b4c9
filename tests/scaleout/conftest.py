"""The Redis Cluster and the Sentinel group (tests/support/redis_groups.py), each started once per
test run and stopped by PID.

Tests here run against both, through the ``backend`` fixture: settings made in this package carry its
``redis.url`` (and, for Sentinel, the recommended ``redis.replica_acks = 1``). A module that needs one
of them only says so with ``pytest.mark.parametrize("backend", [...], indirect=True)``.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from service.settings import Settings
from tests.support.redis_groups import Cluster, SentinelGroup, started


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    yield from started(Cluster)


@pytest.fixture(scope="session")
def sentinel_group() -> Iterator[SentinelGroup]:
    yield from started(SentinelGroup)


@pytest.fixture
def sentinel(sentinel_group: SentinelGroup) -> Iterator[SentinelGroup]:
    """The Sentinel group, healthy at the start of the test and put back together after it."""
    sentinel_group.restore()
    yield sentinel_group
    for port in list(sentinel_group.processes):
        sentinel_group.signal(port, signal.SIGCONT)  # a test that stopped a process may have failed
    sentinel_group.restore()


@pytest.fixture(params=["cluster", "sentinel"])
def backend(request: pytest.FixtureRequest) -> Cluster | SentinelGroup:
    """Each test in this package runs once against the Cluster and once against the Sentinel group."""
    found: Cluster | SentinelGroup = request.getfixturevalue(request.param)
    return found


@pytest.fixture
def make_settings(make_settings: Callable[..., Settings], backend: Cluster | SentinelGroup) -> Callable[..., Settings]:
    """The shared factory, extended: the backend's ``redis.url`` and ``redis.replica_acks`` unless a
    test says otherwise."""

    def make(**sections: dict[str, Any]) -> Settings:
        redis = {"url": backend.url, "replica_acks": backend.replica_acks, **sections.get("redis", {})}
        return make_settings(**{**sections, "redis": redis})

    return make
