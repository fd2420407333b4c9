"""Operations endpoints: liveness, readiness (Redis answers) and Prometheus metrics.

None of them needs a cookie. ``/metrics`` shows traffic and security events (failed sign-ins,
reused refresh tokens): the reverse proxy must not expose it publicly (see README, Operating notes).
"""

from __future__ import annotations

from aiohttp import web

from ...metrics import CONTENT_TYPE
from ...storage.client import ping
from .. import appkeys


async def healthz(request: web.Request) -> web.StreamResponse:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.StreamResponse:
    if await ping(request.app[appkeys.redis]):
        return web.json_response({"status": "ready", "redis": "ok"})
    return web.json_response({"status": "not ready", "redis": "unreachable"}, status=503)


async def metrics(request: web.Request) -> web.StreamResponse:
    """Prometheus text exposition of this app's registry."""
    return web.Response(body=request.app[appkeys.metrics].render(), headers={"Content-Type": CONTENT_TYPE})
