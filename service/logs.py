"""Log lines as JSON objects, one per line, with the structured fields of security events.

Events pass their fields through ``extra=``; only names listed in ``FIELDS`` are written, so a
token, cookie or password handed to a logger by mistake never reaches the log. Lines logged while a
request is handled carry its ``request_id`` (set by the request pipeline, stamped by
:class:`RequestIdFilter`), the same id the response returns as ``X-Request-ID``.
"""

from __future__ import annotations

import contextvars
import itertools
import json
import logging
import re
import secrets
import time

from aiohttp.http_exceptions import HttpProcessingError

FIELDS = ("event", "reason", "user", "sid", "ip", "count", "path", "status", "retry_after", "request_id", "kid",
          "actor", "method", "route", "duration_ms")

# The id of the request being handled, per asyncio task; None outside requests.
current_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
# An incoming X-Request-ID (from nginx's $request_id, say) is kept only if it is short and plain, so a
# client cannot put anything else into the log through it.
_SAFE_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


_ID_PREFIX = secrets.token_hex(4)
_ID_COUNTER = itertools.count(1)


def request_id_from(incoming: str | None) -> str:
    """The incoming id if it is a short safe token, else a new random one."""
    if incoming and _SAFE_ID.fullmatch(incoming):
        return incoming
    return f"{_ID_PREFIX}{next(_ID_COUNTER):08x}"  # unique per process and cheap: this runs per request


class RequestIdFilter(logging.Filter):
    """Stamps each record with the current request's id, when there is one (a handler filter: it runs
    where the record is logged, so it sees the request's context)."""

    def filter(self, record: logging.LogRecord) -> bool:
        request_id = current_request_id.get()
        if request_id is not None and "request_id" not in record.__dict__:
            record.request_id = request_id
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in FIELDS:
            if name in record.__dict__:
                entry[name] = record.__dict__[name]
        if record.exc_info and record.exc_info[0] is not None:
            entry["error"] = record.exc_info[0].__name__
            entry["trace"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class BadRequestFilter(logging.Filter):
    """aiohttp logs every request it cannot parse (answered 400 or 431 before any handler) as an error
    with a traceback: anyone can send those, so they become one warning line without a traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, HttpProcessingError) and 400 <= error.code < 500:
            status = error.code
            record.msg, record.args = "bad request: %s", (str(error.message).split("\n")[0][:200],)
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.__dict__.update(event="bad_request", status=status)
        return True


def quiet_bad_requests() -> None:
    """Install :class:`BadRequestFilter` on aiohttp's server logger, once."""
    server = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, BadRequestFilter) for f in server.filters):
        server.addFilter(BadRequestFilter())


class ActorFilter(logging.Filter):
    """Stamps each record with who ran an operator's command, for the audit trail."""

    def __init__(self, actor: str) -> None:
        super().__init__()
        self.actor = actor

    def filter(self, record: logging.LogRecord) -> bool:
        record.actor = self.actor
        return True


def configure(level: str = "info", *, actor: str | None = None) -> None:
    """JSON lines on stderr from ``level`` up (``log.level``); with ``actor`` (the CLI's commands), every
    line names the account that ran it."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestIdFilter())
    if actor is not None:
        handler.addFilter(ActorFilter(actor))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
