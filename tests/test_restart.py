"""The real service as an operator runs it: ``python -m service`` with its embedded Redis, stopped with
SIGTERM and started again, keeps every session: the browser's cookies still work."""

from __future__ import annotations

import stat

import aiohttp
from yarl import URL

from tests.support.cookies import browser_jar
from tests.support.servers import ServiceProcess, children_of
from tests.support.sign_in import PASSWORD


async def test_sessions_survive_a_restart(service_process: ServiceProcess) -> None:
    jar = browser_jar(service_process.port)
    async with aiohttp.ClientSession(cookie_jar=jar, timeout=aiohttp.ClientTimeout(total=30)) as browser:
        try:
            await service_process.start(browser)  # first run: creates the data dir, keys and Redis files
            assert stat.S_IMODE(service_process.cli.data_dir.stat().st_mode) == 0o700
            service_process.cli_alongside("users", "add", "alice", "--password-stdin", stdin=PASSWORD + "\n")
            async with browser.post(service_process.origin + "/login", headers={"Origin": service_process.origin},
                                    json={"username": "alice", "password": PASSWORD}) as response:
                assert response.status == 200, await response.text()
                session_id = (await response.json())["session"]
            async with browser.get(service_process.origin + "/api/me") as response:
                assert response.status == 200
                assert (await response.json())["session"] == session_id
            cookies_before = {m.key: m.value for m in jar}
            assert len(cookies_before) == 2, cookies_before

            service_process.assert_stopped_cleanly(service_process.stop())

            await service_process.start(browser)
            async with browser.get(service_process.origin + "/api/me") as response:  # the access cookie
                assert response.status == 200, await response.text()
                body = await response.json()
                assert body["name"] == "alice" and body["session"] == session_id
            refresh_url = URL(service_process.origin + "/auth/refresh")
            assert any(m.key.endswith("refresh") for m in jar.filter_cookies(refresh_url).values())
            async with browser.post(refresh_url, headers={"Origin": service_process.origin}) as response:  # refresh
                assert response.status == 200, await response.text()
            cookies_after = {m.key: m.value for m in jar}
            assert cookies_after.keys() == cookies_before.keys()
            assert all(cookies_after[k] != cookies_before[k] for k in cookies_before)  # rotated, both
            async with browser.get(service_process.origin + "/api/me") as response:
                assert response.status == 200
                assert (await response.json())["session"] == session_id

            # The CLI shares the running service's Redis and leaves it running.
            listing = service_process.cli_alongside("users", "list")
            assert "\tactive\t" in listing and listing.startswith("alice\t") and "1 session(s)" in listing
            async with browser.get(service_process.origin + "/readyz") as response:
                assert response.status == 200

            service_process.assert_stopped_cleanly(service_process.stop())
        finally:
            service_process.kill()


async def test_workers_share_one_port_and_one_embedded_redis_and_stop_together(service_process: ServiceProcess) -> None:
    service_process.args = ["--workers", "2"]
    jar = browser_jar(service_process.port)
    async with aiohttp.ClientSession(cookie_jar=jar, timeout=aiohttp.ClientTimeout(total=30)) as browser:
        try:
            await service_process.start(browser)
            assert service_process.process is not None
            assert len(children_of(service_process.process.pid)) == 3  # two workers and the redis-server
            service_process.cli_alongside("users", "add", "alice", "--password-stdin", stdin=PASSWORD + "\n")
            async with browser.post(service_process.origin + "/login", headers={"Origin": service_process.origin},
                                    json={"username": "alice", "password": PASSWORD}) as response:
                assert response.status == 200, await response.text()
            for _ in range(20):  # new connections spread over both workers; all see the same session
                connector = aiohttp.TCPConnector(force_close=True)
                async with aiohttp.ClientSession(cookie_jar=jar, connector=connector) as fresh:
                    async with fresh.get(service_process.origin + "/api/me") as response:
                        assert response.status == 200
            service_process.assert_stopped_cleanly(service_process.stop())
        finally:
            service_process.kill()
