"""The real service under faults: its embedded redis-server SIGKILLed (restarted, nothing lost) and
SIGTERM with a request in flight (finished, then a clean exit 0)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from pathlib import Path

import aiohttp
import pytest

from test_cli import PASSWORD, redis_servers_in
from test_restart import Service, _cli_alongside, assert_stopped_cleanly, browser_jar
from test_restart import service as service  # noqa: F401  (the fixture)

WAIT = 20.0  # seconds: the bound on every wait below


def children(pid: int) -> list[int]:
    """Direct children of ``pid``, from /proc (every thread's ``children`` list)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            found += [int(child) for child in (task / "children").read_text().split()]
    return found


def redis_child(service: Service) -> int:
    assert service.process is not None
    for pid in children(service.process.pid):
        with contextlib.suppress(OSError):
            if b"redis-server" in Path(f"/proc/{pid}/cmdline").read_bytes():
                return pid
    raise AssertionError("the service has no redis-server child")


async def sign_in(service: Service, browser: aiohttp.ClientSession) -> str:
    _cli_alongside(service, "users", "add", "alice", "--password-stdin", stdin=PASSWORD + "\n")
    async with browser.post(service.origin + "/login", headers={"Origin": service.origin},
                            json={"username": "alice", "password": PASSWORD}) as response:
        assert response.status == 200, await response.text()
        return str((await response.json())["session"])


@pytest.mark.parametrize("args", [[], ["--workers", "2"]], ids=["one process", "workers"])
async def test_a_killed_embedded_redis_is_restarted_and_keeps_every_session(service: Service,
                                                                           args: list[str]) -> None:
    """With ``--workers`` the parent owns the redis-server, and restarts it."""
    service.args = args
    jar = browser_jar(service.origin)
    async with aiohttp.ClientSession(cookie_jar=jar, timeout=aiohttp.ClientTimeout(total=30)) as browser:
        await service.start(browser)
        session_id = await sign_in(service, browser)
        killed = redis_child(service)

        os.kill(killed, signal.SIGKILL)  # our service's own child: found under its pid
        deadline = time.monotonic() + WAIT
        while True:
            assert time.monotonic() < deadline, f"redis was not restarted:\n{service.log_text()}"
            with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
                async with browser.get(service.origin + "/readyz") as response:
                    restarted = "embedded redis-server restarted" in service.log_text()  # logged once PING works
                    if response.status == 200 and redis_child(service) != killed and restarted:
                        break
            await asyncio.sleep(0.1)

        async with browser.get(service.origin + "/api/me") as response:
            assert response.status == 200, await response.text()
            assert (await response.json())["session"] == session_id
        async with browser.post(service.origin + "/auth/refresh", headers={"Origin": service.origin}) as response:
            assert response.status == 200, await response.text()
        async with browser.get(service.origin + "/api/me") as response:
            assert response.status == 200 and (await response.json())["session"] == session_id
        # Not assert_stopped_cleanly: requests during the outage log their 503 with its cause.
        assert service.stop() == 0, service.log_text()
        assert not (service.cli.data_dir / "redis.sock").exists()
        assert redis_servers_in(service.cli.root) == []


async def test_sigterm_finishes_the_request_in_flight_then_exits_cleanly(service: Service) -> None:
    # A costly password hash makes a sign-in slow enough to be in flight when SIGTERM lands. (A request
    # whose body is still arriving cannot finish: aiohttp stops reading once shutdown begins.)
    service.env.update(SERVICE__PASSWORDS__MEMORY_COST="131072", SERVICE__PASSWORDS__TIME_COST="4")
    jar = browser_jar(service.origin)
    async with aiohttp.ClientSession(cookie_jar=jar, timeout=aiohttp.ClientTimeout(total=30)) as browser:
        await service.start(browser)
        _cli_alongside(service, "users", "add", "alice", "--password-stdin", stdin=PASSWORD + "\n")
        assert service.process is not None
        redis_pid = redis_child(service)

        body = json.dumps({"username": "alice", "password": PASSWORD}).encode()
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", service.port), WAIT)
        writer.write(f"POST /login HTTP/1.1\r\nHost: 127.0.0.1:{service.port}\r\nOrigin: {service.origin}\r\n"
                     f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                     "Connection: close\r\n\r\n".encode() + body)
        await writer.drain()
        answer = asyncio.ensure_future(asyncio.wait_for(reader.read(), WAIT))
        await asyncio.sleep(0.1)  # the handler is hashing
        assert not answer.done(), "the sign-in finished too early to test anything"
        service.process.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.05)
        with pytest.raises(OSError):  # no longer accepting
            await asyncio.wait_for(asyncio.open_connection("127.0.0.1", service.port), WAIT)
        response = await answer
        writer.close()
        assert response.startswith(b"HTTP/1.1 200"), (response[:200], service.log_text())
        assert b"Set-Cookie" in response

        process, service.process = service.process, None
        status = await asyncio.to_thread(process.wait, WAIT)
        assert_stopped_cleanly(service, status)
        with pytest.raises(ProcessLookupError):
            os.kill(redis_pid, 0)
