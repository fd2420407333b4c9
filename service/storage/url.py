"""What ``redis.url`` names: one server, a primary watched by Sentinel, or a Cluster; parsed once.

``redis://``, ``rediss://`` and ``unix://`` name one server, as redis-py reads them.
``redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/<service>[/<db>][?sentinel_password=…]``
names the primary that the listed sentinels (port 26379 by default) know as ``<service>``; the
password is the primary's, ``sentinel_password`` the sentinels' own (if they have one).
``redis+cluster://[[user]:password@]host[:port][,host[:port]...]`` names a Cluster by some of its
nodes (port 6379 by default), which tell the client about the rest.

Problems raise :class:`ValueError` with a message that never repeats the URL: it may hold a password.
"""

from __future__ import annotations

import dataclasses
import re
import urllib.parse
from typing import Literal

from redis.connection import parse_url

SERVER_SCHEMES = ("redis", "rediss", "unix")
SENTINEL_SCHEME = "redis+sentinel"
CLUSTER_SCHEME = "redis+cluster"
_SERVICE_NAME = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


@dataclasses.dataclass(frozen=True)
class RedisTarget:
    """A parsed ``redis.url``. For ``server``, ``url`` is handed to redis-py as it is."""

    kind: Literal["server", "sentinel", "cluster"]
    url: str = dataclasses.field(default="", repr=False)  # may hold a password
    nodes: tuple[tuple[str, int], ...] = ()  # the sentinels, or the Cluster's startup nodes
    service: str = ""  # sentinel: the primary's name
    db: int = 0
    username: str | None = None
    password: str | None = dataclasses.field(default=None, repr=False)  # secrets never print
    sentinel_password: str | None = dataclasses.field(default=None, repr=False)


def parse(url: str) -> RedisTarget:
    """The target ``url`` names; raises ValueError saying what is wrong (without the URL)."""
    scheme, _, rest = url.partition("://")
    scheme = scheme.lower()
    if scheme in SERVER_SCHEMES:
        parse_url(url)  # type: ignore[no-untyped-call]  # raises ValueError for a query redis-py refuses
        if scheme != "unix" and not re.fullmatch(r"/?\d*", urllib.parse.urlsplit(url).path):
            raise ValueError("the path after the address must be a database number: redis://host:6379/0")
        return RedisTarget("server", url=url)
    if scheme not in (SENTINEL_SCHEME, CLUSTER_SCHEME) or not rest:
        raise ValueError("must start with redis://, rediss://, unix://, redis+sentinel:// or redis+cluster://")
    parts = urllib.parse.urlsplit(url)
    if parts.fragment:
        raise ValueError("must not have a #fragment")
    userinfo, _, hosts = parts.netloc.rpartition("@")
    username, password = _credentials(userinfo)
    if scheme == CLUSTER_SCHEME:
        if parts.path not in ("", "/", "/0") or parts.query:
            raise ValueError("a Cluster has only database 0: nothing may follow the node addresses")
        return RedisTarget("cluster", nodes=_nodes(hosts, 6379), username=username, password=password)
    service, db = _service_and_db(parts.path)
    return RedisTarget("sentinel", nodes=_nodes(hosts, 26379), service=service, db=db, username=username,
                       password=password, sentinel_password=_sentinel_password(parts.query))


def _credentials(userinfo: str) -> tuple[str | None, str | None]:
    if not userinfo:
        return None, None
    user, colon, password = userinfo.partition(":")
    return urllib.parse.unquote(user) or None, urllib.parse.unquote(password) if colon else None


def _nodes(hosts: str, default_port: int) -> tuple[tuple[str, int], ...]:
    """``host[:port]`` pairs separated by commas; an IPv6 address goes in brackets."""
    nodes = []
    for part in hosts.split(","):
        match = re.fullmatch(r"\s*(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)(?::(\d{1,5}))?\s*", part)
        if not match:
            raise ValueError("needs host:port addresses separated by commas after ://")
        port = int(match.group(2) or default_port)
        if not 0 < port < 65536:
            raise ValueError(f"port {port} is not a port number (1-65535)")
        nodes.append((match.group(1).strip("[]"), port))
    return tuple(nodes)


def _service_and_db(path: str) -> tuple[str, int]:
    """``/<service>`` or ``/<service>/<db>``."""
    service, _, db = path.lstrip("/").partition("/")
    if not service:
        raise ValueError("needs the primary's Sentinel name after the addresses: redis+sentinel://host:port/NAME")
    if not _SERVICE_NAME.fullmatch(service):
        raise ValueError("the Sentinel service name is 1-64 letters, digits, '.', '_' or '-'")
    if db and not db.isdigit():
        raise ValueError("the database after the service name must be a number: /NAME/0")
    return service, int(db or 0)


def _sentinel_password(query: str) -> str | None:
    values = urllib.parse.parse_qs(query, keep_blank_values=True, strict_parsing=False)
    unknown = set(values) - {"sentinel_password"}
    if unknown:
        raise ValueError(f"unknown query parameter {sorted(unknown)[0]!r} (only sentinel_password is known)")
    found = values.get("sentinel_password")
    return found[-1] if found else None
