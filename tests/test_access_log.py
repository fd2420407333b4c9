"""The JSON access log (``log.access = true``) of the real service: one line per request with method,
route template, status, duration and request id; never a cookie, a token, a query string or a path as typed."""

from __future__ import annotations

import json

import aiohttp

from tests.support.cookies import browser_jar
from tests.support.servers import ServiceProcess
from tests.support.sign_in import PASSWORD


def access_lines(text: str) -> list[dict[str, object]]:
    entries = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    return [entry for entry in entries if entry.get("event") == "access"]


async def test_each_request_logs_one_access_line_without_secrets(service_process: ServiceProcess) -> None:
    service_process.env["SERVICE__LOG__ACCESS"] = "true"
    jar = browser_jar(service_process.port)
    origin = service_process.origin
    async with aiohttp.ClientSession(cookie_jar=jar, timeout=aiohttp.ClientTimeout(total=30)) as browser:
        await service_process.start(browser)
        service_process.cli_alongside("users", "add", "alice", "--password-stdin", stdin=PASSWORD + "\n")
        async with browser.post(origin + "/login", headers={"Origin": origin},
                                json={"username": "alice", "password": PASSWORD}) as response:
            assert response.status == 200
        async with browser.get(origin + "/api/me", headers={"X-Request-ID": "probe-1"}) as response:
            assert response.status == 200
        async with browser.get(origin + "/no/such/alice-secret-path?token=hunter2") as response:
            assert response.status == 404
            missing_id = response.headers["X-Request-ID"]
        secrets = [m.value for m in jar] + [PASSWORD, "hunter2", "alice-secret-path"]
        service_process.assert_stopped_cleanly(service_process.stop())
    log = service_process.log_text()
    lines = access_lines(log)
    assert all(secret not in json.dumps(lines) for secret in secrets)
    me = [line for line in lines if line["request_id"] == "probe-1"]
    assert len(me) == 1
    assert me[0]["method"] == "GET" and me[0]["route"] == "/api/me" and me[0]["status"] == 200
    assert isinstance(me[0]["duration_ms"], float) and me[0]["duration_ms"] >= 0
    assert {"POST", "GET"} <= {line["method"] for line in lines}
    [missing] = [line for line in lines if line["request_id"] == missing_id]
    assert missing["status"] == 404 and "alice" not in str(missing["route"])


async def test_no_access_log_by_default(service_process: ServiceProcess) -> None:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as browser:
        await service_process.start(browser)
        async with browser.get(service_process.origin + "/login") as response:
            assert response.status == 200
        service_process.assert_stopped_cleanly(service_process.stop())
    assert access_lines(service_process.log_text()) == []
