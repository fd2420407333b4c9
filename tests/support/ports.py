"""Free TCP ports on 127.0.0.1 for the servers the tests start."""

from __future__ import annotations

import random
import socket

_handed_out: set[int] = set()


def bindable(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(*, bus: bool = False) -> int:
    """A free port on 127.0.0.1 not handed out before in this run; with ``bus``, port + 10000 (Redis
    6.2's cluster bus) is free too. Another process may still take it first (see
    :class:`tests.support.redis_groups.ServerExited`)."""
    for _ in range(1000):
        port = random.randint(20000, 29999)
        if port not in _handed_out and bindable(port) and (not bus or bindable(port + 10000)):
            _handed_out.add(port)
            return port
    raise AssertionError("no free port on 127.0.0.1")
