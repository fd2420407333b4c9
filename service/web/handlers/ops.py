"""Operations endpoints: liveness, readiness (Redis answers) and Prometheus metrics.

None of them needs a cookie. ``/metrics`` shows traffic and security events (failed sign-ins,
reused refresh tokens): the reverse proxy must not expose it publicly (see README, Operating notes).
"""

from __future__ import annotations

import logging

from aiohttp import web

from ...metrics import CONTENT_TYPE
from ...errors import SchemaMismatch
from ...storage.client import ping
from .. import appkeys

log = logging.getLogger("service")


async def healthz(request: web.Request) -> web.StreamResponse:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.StreamResponse:
    """Ready once Redis answers and its data's schema has passed (storage/schema.py)."""
    if not await ping(request.app[appkeys.redis]):
        return web.json_response({"status": "not ready", "redis": "unreachable"}, status=503)
    try:
        await request.app[appkeys.schema].ensure()
    except SchemaMismatch as exc:  # logged: an operator must act; the instance stays out of rotation
        log.error("schema_mismatch", extra={"event": "schema_mismatch", "reason": str(exc)})
        return web.json_response({"status": "not ready", "redis": "schema mismatch"}, status=503)
    return web.json_response({"status": "ready", "redis": "ok"})


async def metrics(request: web.Request) -> web.StreamResponse:
    """Prometheus text exposition of this app's registry."""
    return web.Response(body=request.app[appkeys.metrics].render(), headers={"Content-Type": CONTENT_TYPE})
