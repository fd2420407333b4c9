"""Two services on one data directory: the second ``serve`` (plain or ``--workers``) finds the embedded
Redis owned by a running service (plain or a ``--workers`` supervisor), refuses in one line with exit
status 1, and leaves the running one, its Redis and every file of its data directory as they were."""

from __future__ import annotations

import aiohttp
import pytest

from tests.support.cookies import browser_jar
from tests.support.ports import free_port
from tests.support.servers import ServiceProcess, children_of
from tests.support.sign_in import PASSWORD

WORKERS = ["serve", "--workers", "2"]


def snapshot(service: ServiceProcess) -> dict[str, tuple[int, int]]:
    """Every file under the data directory: size and modification time."""
    root = service.cli.data_dir
    return {str(path.relative_to(root)): (path.stat().st_size, path.stat().st_mtime_ns)
            for path in root.rglob("*") if path.is_file()}


@pytest.mark.parametrize(("running", "second"), [([], ["serve"]), (WORKERS, ["serve"]), ([], WORKERS)],
                         ids=["serve-vs-serve", "serve-vs-workers-supervisor", "workers-vs-serve"])
async def test_a_second_service_on_a_data_dir_in_use_refuses_and_touches_nothing(
        service_process: ServiceProcess, running: list[str], second: list[str]) -> None:
    service_process.args = running
    async with aiohttp.ClientSession(cookie_jar=browser_jar(service_process.port),
                                     timeout=aiohttp.ClientTimeout(total=30)) as browser:
        await service_process.start(browser)
        service_process.cli_alongside("users", "add", "alice", "--password-stdin", stdin=PASSWORD + "\n")
        async with browser.post(service_process.origin + "/login", headers={"Origin": service_process.origin},
                                json={"username": "alice", "password": PASSWORD}) as response:
            assert response.status == 200, await response.text()
            session = (await response.json())["session"]
        assert service_process.process is not None
        children = children_of(service_process.process.pid)
        before = snapshot(service_process)

        port = free_port()
        refused = service_process.cli.run(*second, "--port", str(port), env=service_process.env, timeout=30)

        assert refused.returncode == 1, (refused.stdout, refused.stderr)
        lines = refused.stderr.splitlines()
        assert len(lines) == 1 and "Traceback" not in refused.stderr, refused.stderr
        assert "belongs to another running service" in lines[0]
        assert "set redis.url" in lines[0] and "another storage.data_dir" in lines[0]
        assert snapshot(service_process) == before
        assert children_of(service_process.process.pid) == children  # its redis-server (or workers) untouched
        for _ in range(4):  # with workers: several connections, so likely more than one worker answers
            async with browser.get(service_process.origin + "/api/me") as response:
                assert response.status == 200
                assert (await response.json())["session"] == session
        service_process.assert_stopped_cleanly(service_process.stop())
