"""Exact request bytes on a socket, for what an HTTP client library would refuse or rewrite."""

from __future__ import annotations

import asyncio


async def raw_exchange(port: int, request: bytes) -> bytes:
    """Send exact request bytes to 127.0.0.1:port and read the whole answer (``Connection: close``)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
        await writer.wait_closed()
