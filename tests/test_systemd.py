"""deploy/systemd as an operator installs it: the unit and its drop-in pass ``systemd-analyze verify``,
its ``systemd-analyze security`` exposure is low, and its ExecStart with its Environment= (run here
without systemd, under its UMask and the kernel's write-xor-execute lock that MemoryDenyWriteExecute=
sets) serves on loopback: a user made with the CLI signs in over HTTP.

Locally the tests skip if systemd-analyze is absent; under ``CI=true`` they fail instead.
"""

from __future__ import annotations

import re
import signal
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.support.binaries import require_binary
from tests.support.cookies import browser_jar
from tests.support.ports import free_port
from tests.support.redis_server import remove_root
from tests.support.servers import STOP_TIMEOUT, http_ok, wait_ready
from tests.support.sign_in import PASSWORD
from tests.support.systemd import ANALYZE, copy_for_verify, deny_write_execute, service

MAX_EXPOSURE = 2.0  # systemd-analyze's scale: 0 (locked down) .. 10 (unprotected); "OK" is below 4.5
CHEAP = {"SERVICE__PASSWORDS__MEMORY_COST": "64", "SERVICE__PASSWORDS__TIME_COST": "1",
         "SERVICE__PASSWORDS__PARALLELISM": "1"}


@pytest.fixture
def root() -> Iterator[Path]:
    """A short directory under /tmp standing in for /var/lib (%S): the Redis socket lives under it."""
    path = Path(tempfile.mkdtemp(prefix="sd-", dir="/tmp"))
    yield path
    remove_root(path, "the unit's service")


def test_the_unit_and_its_drop_in_pass_systemd_analyze_verify(root: Path) -> None:
    require_binary(ANALYZE, package="systemd", needed_by="the systemd unit tests")
    unit = copy_for_verify(root)
    result = subprocess.run([str(ANALYZE), "verify", str(unit)], capture_output=True, text=True, timeout=60,
                            cwd=root)
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", result.stderr  # an unknown or misspelt key is only a warning


def test_the_units_exposure_is_low(root: Path) -> None:
    require_binary(ANALYZE, package="systemd", needed_by="the systemd unit tests")
    unit = copy_for_verify(root)
    result = subprocess.run([str(ANALYZE), "security", "--offline=true", "--no-pager", str(unit)],
                            capture_output=True, text=True, timeout=60, cwd=root)
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert found, (result.stdout, result.stderr)
    assert float(found.group(1)) <= MAX_EXPOSURE, result.stdout


async def test_exec_start_with_the_units_environment_serves_and_signs_in(root: Path) -> None:
    unit = service(state=root)
    port = free_port()
    env = {"PATH": "/usr/bin:/bin", **unit.environment, **CHEAP, "SERVICE__SERVER__PORT": str(port)}
    assert env["SERVICE__SERVER__HOST"] == "127.0.0.1"  # behind nginx: loopback only
    data_dir = Path(env["SERVICE__STORAGE__DATA_DIR"])
    assert data_dir == root / "cookie-session"  # StateDirectory=cookie-session
    log = root / "service.log"
    try:
        with open(log, "wb") as out:
            process = subprocess.Popen(unit.argv, cwd=root, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                       stderr=subprocess.STDOUT, umask=unit.umask, preexec_fn=deny_write_execute)
    except subprocess.SubprocessError as exc:
        pytest.skip(f"cannot deny write-execute memory here: {exc}")
    try:
        wait_ready(lambda: http_ok(f"http://127.0.0.1:{port}/readyz"), "the unit's ExecStart", process, log)
        cli = [*unit.argv[:unit.argv.index("serve")], "users", "add", "alice", "--password-stdin"]
        added = subprocess.run(cli, cwd=root, env=env, input=PASSWORD + "\n", capture_output=True, text=True,
                               timeout=60, umask=unit.umask)
        assert added.returncode == 0, added.stderr
        origin = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession(cookie_jar=browser_jar(port),
                                         timeout=aiohttp.ClientTimeout(total=30)) as browser:
            async with browser.post(origin + "/login", headers={"Origin": origin},
                                    json={"username": "alice", "password": PASSWORD}) as response:
                assert response.status == 200, await response.text()
            async with browser.get(origin + "/api/me") as response:
                assert response.status == 200
                assert (await response.json())["name"] == "alice"
        assert process.poll() is None, log.read_text(errors="replace")  # MDWE killed nothing
        for path in [data_dir, *data_dir.rglob("*")]:
            if not path.is_symlink() and not path.is_socket():
                assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, path
    finally:
        process.send_signal(signal.SIGTERM)
        status = process.wait(timeout=STOP_TIMEOUT)
    assert status == 0, log.read_text(errors="replace")
    assert "Traceback" not in log.read_text(errors="replace")
