"""The optional JSON access log (``log.access``): one line per request, written by aiohttp after the answer.

Only the method, the route's template (never the path as requested, which may carry a token or a name),
the status, the duration and the request id are written; no header, cookie or query string ever is.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from ..settings import LogSettings

_UNMATCHED = "unmatched"


class JsonAccessLogger(AbstractAccessLogger):
    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info("access", extra={
            "event": "access",
            "method": request.method if len(request.method) <= 16 else request.method[:16],
            "route": _route(request),
            "status": response.status,
            "duration_ms": round(time * 1000, 3),
            "request_id": response.headers.get("X-Request-ID"),
        })


def _route(request: web.BaseRequest) -> str:
    match_info = getattr(request, "match_info", None)
    resource = match_info.route.resource if match_info is not None else None
    return resource.canonical if resource is not None else _UNMATCHED


def access_log(settings: LogSettings) -> dict[str, Any]:
    """``web.run_app`` keywords: the JSON access logger when ``log.access`` is on, no access log otherwise
    (aiohttp then skips the work entirely)."""
    if not settings.access:
        return {"access_log": None}
    return {"access_log": logging.getLogger("service.access"), "access_log_class": JsonAccessLogger}
