"""Exact request bytes on a socket, for what an HTTP client library would refuse or rewrite."""

from __future__ import annotations

import asyncio
import socket


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


def raw_exchange_blocking(port: int, request: bytes, *, timeout: float = 10.0) -> bytes:
    """Send exact bytes (ending in ``Connection: close``) and read the whole answer, blocking."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as connection:
        connection.sendall(request)
        chunks = []
        while chunk := connection.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)
