"""Operations endpoints: liveness and readiness (Redis answers)."""

from __future__ import annotations

from aiohttp import web

from .. import appkeys
from ..store import ping


async def healthz(request: web.Request) -> web.StreamResponse:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.StreamResponse:
    if await ping(request.app[appkeys.redis]):
        return web.json_response({"status": "ready", "redis": "ok"})
    return web.json_response({"status": "not ready", "redis": "unreachable"}, status=503)
