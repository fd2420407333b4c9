"""The service on 127.0.0.1 in a thread of its own, for synchronous tests (Hypothesis drives requests
from plain sockets), with every log record it writes kept for inspection."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Iterator

from aiohttp import web

from service.settings import Settings
from service.web.app import create_app


class _Kept(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextlib.contextmanager
def threaded_service(settings: Settings) -> Iterator[tuple[int, list[logging.LogRecord], web.Application]]:
    """Serve ``create_app(settings)`` on a free port until the block ends; yields (port, log records, app)."""
    loop = asyncio.new_event_loop()
    app = create_app(settings)
    runner = web.AppRunner(app)
    kept = _Kept()
    logging.getLogger("service").addHandler(kept)
    logging.getLogger("aiohttp").addHandler(kept)

    async def start() -> int:
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        return int(runner.addresses[0][1])

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        port = asyncio.run_coroutine_threadsafe(start(), loop).result(30)
        yield port, kept.records, app
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
        loop.close()
        logging.getLogger("service").removeHandler(kept)
        logging.getLogger("aiohttp").removeHandler(kept)

