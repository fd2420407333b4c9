"""Slow bodies (slowloris on POST): a sign-in whose body trickles in, a byte at a time, holds a
connection and a handler for as long as the client likes, unless the body has a deadline
(``server.body_timeout``): then it gets 408 and the connection is closed."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from tests.support.sign_in import PASSWORD

TIMEOUT = 0.5  # server.body_timeout in these tests, seconds
WAIT = 10.0  # the bound on every wait below


@pytest.fixture
async def port(make_client, make_settings, make_user) -> int:
    await make_user("alice")
    client = await make_client(of=make_settings(server={"body_timeout": f"{TIMEOUT}s"}))
    return int(client.server.port)


def head(port: int, length: int) -> bytes:
    return (f"POST /login HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {length}\r\n\r\n").encode()


BODY = json.dumps({"username": "alice", "password": PASSWORD}).encode()


async def test_a_body_sent_a_byte_at_a_time_gets_408_and_the_connection_is_closed(port):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head(port, len(BODY)))
    started = time.monotonic()
    answer = b""
    for byte in BODY:  # one byte every 0.2 s: the whole body would take about 10 s
        writer.write(bytes([byte]))
        await writer.drain()
        try:
            answer += await asyncio.wait_for(reader.read(65536), 0.2)
        except asyncio.TimeoutError:
            continue
        if answer:
            break
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert time.monotonic() - started < TIMEOUT + 2
    rest = await asyncio.wait_for(reader.read(), WAIT)  # EOF: the server closed the connection
    assert b"HTTP/1.1" not in rest
    assert b'"body_timeout"' in answer + rest and b"Connection: close" in answer
    writer.close()


async def test_a_body_that_arrives_within_the_timeout_signs_in(port):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head(port, len(BODY)))
    await writer.drain()
    await asyncio.sleep(TIMEOUT / 3)
    writer.write(BODY)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(65536), WAIT)
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
    writer.close()


async def test_a_keep_alive_connection_serves_requests_long_after_the_timeout(port):
    """The deadline is per body, not per connection: an idle keep-alive connection is not cut."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for _ in range(2):
        writer.write(head(port, len(BODY)) + BODY)
        await writer.drain()
        answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
        assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
        length = int(next(line.split(b":")[1] for line in answer.split(b"\r\n") if line.lower().startswith(b"content-length")))
        await asyncio.wait_for(reader.readexactly(length), WAIT)
        await asyncio.sleep(TIMEOUT * 2)
    writer.close()
