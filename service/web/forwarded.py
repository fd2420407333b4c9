"""The real client behind trusted reverse proxies: ``X-Forwarded-For``/``-Proto``/``-Host`` are believed
only when the peer is one of ``server.trusted_proxies``; from anyone else they are ignored.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_HOST = re.compile(r"^[A-Za-z0-9.-]{1,253}(:\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](:\d{1,5})?$")


def parse_networks(text: str) -> tuple[Network, ...]:
    """``"127.0.0.1, 10.0.0.0/8"`` → networks; raises ValueError on a bad entry."""
    return tuple(ipaddress.ip_network(part.strip(), strict=False) for part in text.split(",") if part.strip())


def forwarded_middleware(networks: tuple[Network, ...]) -> Middleware:
    def trusted(address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in networks)

    @web.middleware
    async def real_client(request: web.Request,
                          handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        if request.remote is None or not trusted(request.remote):
            return await handler(request)
        remote = request.remote
        # The rightmost address a trusted proxy did not add is the client (RFC 7239 §5.2 reasoning).
        for hop in reversed(request.headers.get("X-Forwarded-For", "").split(",")):
            hop = hop.strip()
            if not hop:
                continue
            remote = hop
            if not trusted(hop):
                break
        proto = request.headers.get("X-Forwarded-Proto", "").strip().lower()
        host = request.headers.get("X-Forwarded-Host", "").strip()
        return await handler(request.clone(
            remote=remote,
            scheme=proto if proto in ("http", "https") else request.scheme,
            host=host if _HOST.match(host) else request.host,
        ))

    return real_client
