"""A real Redis Cluster (three primaries) and a real Sentinel group (a primary, two replicas, three
sentinels) on 127.0.0.1, built from redis-server processes that are stopped by PID. Every wait is
bounded and polls."""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import redis as sync_redis

from tests.support.ports import free_port
from tests.support.redis_server import spawn_redis_server

START_TIMEOUT = 20.0  # seconds: the bound on starting a group and on every wait below
SERVICE = "sessions"  # the name under which the sentinels know the primary
DOWN_AFTER_MS = 1000  # a primary silent this long is taken as down
SLOTS = 16384


def wait_until(condition: Callable[[], bool], what: str, timeout: float = START_TIMEOUT) -> None:
    """Poll ``condition`` (a Redis error counts as not yet) until it holds; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(sync_redis.RedisError):
            if condition():
                return
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout:g}s")
        time.sleep(0.05)


class ServerExited(AssertionError):
    """A redis-server exited while starting (most likely another process took its port)."""


class Servers:
    """redis-server processes of one group, in one temporary directory, by port."""

    def __init__(self, prefix: str) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
        self.processes: dict[int, subprocess.Popen[bytes]] = {}

    def spawn(self, port: int, *arguments: str) -> None:
        with open(self.directory / f"{port}.log", "ab") as log:  # the child writes to it
            self.processes[port] = spawn_redis_server(*arguments, cwd=self.directory, output=log)

    def client(self, port: int) -> sync_redis.Redis:
        return sync_redis.Redis(port=port, socket_timeout=2, socket_connect_timeout=2, decode_responses=True)

    def ask(self, port: int, *command: Any) -> Any:
        with self.client(port) as client:
            return client.execute_command(*command)

    def signal(self, port: int, signum: int) -> None:
        self.processes[port].send_signal(signum)

    def kill(self, port: int) -> None:
        process = self.processes.pop(port)
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGKILL)  # works on a stopped process too
        process.wait(timeout=START_TIMEOUT)

    def start(self) -> None:
        raise NotImplementedError

    def up(self, port: int) -> bool:
        if self.processes[port].poll() is not None:
            raise ServerExited(f"redis-server on port {port} exited: {self.log_tail()}")
        return bool(self.ask(port, "PING"))

    def stop(self) -> None:
        for port in list(self.processes):
            self.kill(port)
        shutil.rmtree(self.directory, ignore_errors=True)

    def log_tail(self) -> str:
        return "\n".join(f"{log.name}: {line}" for log in sorted(self.directory.glob("*.log"))
                         for line in log.read_text(errors="replace").splitlines()[-3:])


class Cluster(Servers):
    """Three primaries, each holding a third of the slots (no replicas: failover is Sentinel's part)."""

    replica_acks = 0

    def __init__(self) -> None:
        super().__init__("scale-cluster-")
        self.ports = [free_port(bus=True) for _ in range(3)]

    @property
    def url(self) -> str:
        # Two of the three nodes: the client learns the third from them.
        return "redis+cluster://" + ",".join(f"127.0.0.1:{port}" for port in self.ports[:2])

    def start(self) -> None:
        for port in self.ports:
            self.spawn(port, "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
                       "--cluster-config-file", f"nodes-{port}.conf", "--cluster-node-timeout", "2000",
                       "--save", "", "--appendonly", "no", "--daemonize", "no")
        for port in self.ports:
            wait_until(functools.partial(self.up, port), f"cluster node {port} answering PING")
        bounds = [SLOTS * n // 3 for n in range(4)]
        for n, port in enumerate(self.ports):
            self.ask(port, "CLUSTER ADDSLOTS", *range(bounds[n], bounds[n + 1]))
        for port in self.ports[1:]:
            self.ask(self.ports[0], "CLUSTER MEET", "127.0.0.1", port)
        wait_until(self.healthy, "the cluster reaching state ok on every node")

    def healthy(self) -> bool:
        return all(self.ask(port, "CLUSTER INFO")["cluster_state"] == "ok"
                   and len(self.ask(port, "CLUSTER SLOTS")) == 3 for port in self.ports)

    def slot(self, key: str) -> int:
        return int(self.ask(self.ports[0], "CLUSTER KEYSLOT", key))

    def keys(self, pattern: str) -> list[str]:
        """Every key matching ``pattern`` on every node."""
        return [key for port in self.ports for key in self.client(port).scan_iter(match=pattern)]

    def node_of(self, key: str) -> int:
        """The port of the primary serving ``key``'s slot."""
        slot = self.slot(key)
        for start, end, (_, port, *_), *_ in self.ask(self.ports[0], "CLUSTER SLOTS"):
            if start <= slot <= end:
                return int(port)
        raise AssertionError(f"slot {slot} is not served")


class SentinelGroup(Servers):
    """A primary and two replicas watched by three sentinels (quorum 2), failing over within seconds."""

    replica_acks = 1  # the setting the README recommends with Sentinel

    def __init__(self) -> None:
        super().__init__("scale-sentinel-")
        self.data_ports = [free_port() for _ in range(3)]
        self.sentinel_ports = [free_port() for _ in range(3)]

    @property
    def url(self) -> str:
        return "redis+sentinel://" + ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports) + f"/{SERVICE}"

    def start(self) -> None:
        first = self.data_ports[0]
        for port in self.data_ports:
            self.start_data_node(port, replica_of=None if port == first else first)
        for port in self.data_ports:
            wait_until(functools.partial(self.up, port), f"data node {port} answering PING")
        # Sentinels learn of replicas from the primary's INFO, asked at once and then every 10 s:
        # start them once both replicas are attached, or they may wait 10 s to know them.
        wait_until(lambda: self.replicated(first), "both replicas in sync with the first primary")
        for port in self.sentinel_ports:
            config = self.directory / f"sentinel-{port}.conf"
            config.write_text(f"port {port}\nbind 127.0.0.1\ndir {self.directory}\n"
                              f"sentinel monitor {SERVICE} 127.0.0.1 {first} 2\n"
                              f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}\n"
                              f"sentinel failover-timeout {SERVICE} 5000\n"
                              f"sentinel parallel-syncs {SERVICE} 2\n")
            self.spawn(port, str(config), "--sentinel")
        for port in self.sentinel_ports:
            wait_until(functools.partial(self.up, port), f"sentinel {port} answering PING")
        self.wait_healthy()

    def start_data_node(self, port: int, *, replica_of: int | None) -> None:
        self.spawn(port, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                   "--dbfilename", f"{port}.rdb", "--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0",
                   "--daemonize", "no", *(["--replicaof", "127.0.0.1", str(replica_of)] if replica_of else []))

    def replicated(self, primary: int) -> bool:
        """The primary has two replicas attached, both with their link up."""
        lines = self.ask(primary, "INFO", "replication")
        return (lines["role"] == "master" and lines["connected_slaves"] == 2
                and all(self.ask(port, "INFO", "replication")["master_link_status"] == "up"
                        for port in self.data_ports if port != primary))

    def agreed_primary(self) -> int | None:
        """The primary's port if every sentinel names the same one (not so during a failover)."""
        answers = {tuple(self.ask(port, "SENTINEL GET-MASTER-ADDR-BY-NAME", SERVICE)) for port in self.sentinel_ports}
        return int(answers.pop()[1]) if len(answers) == 1 else None

    def primary(self) -> int:
        port = self.agreed_primary()
        assert port is not None, "the sentinels disagree about the primary"
        return port

    def replicas(self) -> list[int]:
        return [port for port in self.processes if port in self.data_ports and port != self.primary()]

    def healthy(self) -> bool:
        return self.problem() is None

    def problem(self) -> str | None:
        """What keeps the group from being healthy: every data node runs; all sentinels know each
        other, name one primary and see two live, in-sync replicas; the primary has both attached."""
        primary = self.agreed_primary()
        if primary is None:
            return "the sentinels disagree about the primary"
        if gone := [port for port in self.data_ports if port not in self.processes]:
            return f"data nodes {gone} are not running"
        for port in self.sentinel_ports:
            if (known := len(self.ask(port, "SENTINEL SENTINELS", SERVICE))) != 2:
                return f"sentinel {port} knows {known} other sentinels"
            replicas = self.client(port).sentinel_slaves(SERVICE)
            if len(replicas) != 2 or any(r["is_sdown"] or r["master-link-status"] != "ok" for r in replicas):
                return f"sentinel {port} sees replicas {[(r['port'], r['flags'], r['master-link-status']) for r in replicas]}"
        if not self.replicated(primary):
            return f"primary {primary} does not have two replicas in sync"
        return None

    def wait_healthy(self) -> None:
        try:
            wait_until(self.healthy, "the Sentinel group healthy (one primary, two replicas in sync)")
        except AssertionError:
            raise AssertionError(f"the Sentinel group is not healthy: {self.problem()}; logs:\n"
                                 f"{self.log_tail()}") from None

    def wait_failover(self, old: int) -> int:
        """Wait until every sentinel names a primary other than ``old``; returns its port."""
        wait_until(lambda: self.agreed_primary() not in (None, old), "a failover away from the old primary")
        return self.primary()

    def restore(self) -> None:
        """Restart every data node that is gone as a replica of the current primary; wait until healthy."""
        wait_until(lambda: self.agreed_primary() is not None, "the sentinels agreeing on a primary")
        primary = self.primary()
        if primary not in self.processes:  # killed, and not yet replaced
            primary = self.wait_failover(primary)
        for port in self.data_ports:
            if port not in self.processes:
                self.start_data_node(port, replica_of=primary)
        self.wait_healthy()


def started(kind: type[Servers]) -> Iterator[Any]:
    """A started group of ``kind``, stopped by PID afterwards; tried again with other ports if one
    was taken meanwhile by another process."""
    for attempt in range(3):
        group = kind()
        try:
            group.start()
        except ServerExited:
            group.stop()
            if attempt == 2:
                raise
            continue
        except BaseException:
            group.stop()
            raise
        try:
            yield group
        finally:
            group.stop()
        return
