"""Real nginx (Debian's, with auth_request) in front of two real service instances and a second app,
configured as tests/support/nginx.py says. TLS uses a self-signed certificate generated here.
Everything runs as child processes started once per module and stopped by PID; every wait is bounded.

Locally the tests skip if nginx is absent; under ``CI=true`` they fail instead.
"""

from __future__ import annotations

import socket
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.support.binaries import require_binary
from tests.support.cli import Cli
from tests.support.nginx import ACCESS_TTL, APP, NGINX, SAMPLE, Stack, render, self_signed
from tests.support.ports import free_port
from tests.support.redis_server import remove_root
from tests.support.servers import Processes, http_ok, port_open, wait_ready
from tests.support.sign_in import PASSWORD


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    require_binary(NGINX, package="nginx-light", needed_by="the nginx tests")
    root = Path(tempfile.mkdtemp(prefix="ngx-", dir="/tmp"))  # short: the Redis unix socket lives under it
    (root / "cwd").mkdir()
    cli = Cli(root, root / "cwd", root / "data")
    children = Processes(root)
    try:
        services = (free_port(), free_port())
        base = cli.env(SERVICE__SERVER__URL_PREFIX="/sso", SERVICE__SERVER__TRUSTED_PROXIES="127.0.0.1",
                       SERVICE__SERVER__PROTECTED_PREFIXES="/app", SERVICE__TOKENS__ACCESS_TTL=f"{ACCESS_TTL}s",
                       SERVICE__TOKENS__LEEWAY="0s")
        envs = [dict(base, SERVICE__SERVER__PORT=str(services[0])),
                # The second instance shares the first one's embedded Redis and the data dir's keys.
                dict(base, SERVICE__SERVER__PORT=str(services[1]),
                     SERVICE__REDIS__URL=f"unix://{cli.data_dir}/redis.sock")]
        for index, env in enumerate(envs):
            process, log = children.start(f"service-{index}", [sys.executable, "-m", "service"], env)
            wait_ready(lambda: http_ok(f"http://127.0.0.1:{env['SERVICE__SERVER__PORT']}/sso/readyz"),
                       f"service instance {index}", process, log)
        added = cli.run("users", "add", "alice", "--password-stdin", env=envs[0], stdin=PASSWORD + "\n")
        assert added.returncode == 0, added.stderr

        app = free_port()
        process, log = children.start("app", [sys.executable, "-c", APP, str(app)])
        wait_ready(lambda: port_open(app), "the second app", process, log)

        cert, key = self_signed(root)
        tls, http, pinned = free_port(), free_port(), (free_port(), free_port())
        conf = root / "nginx.conf"
        conf.write_text(render(SAMPLE.read_text(), root=root, cert=cert, key=key, tls=tls, http=http, pinned=pinned,
                               services=services, app=app))
        process, log = children.start("nginx", [str(NGINX), "-c", str(conf), "-p", str(root)])
        wait_ready(lambda: port_open(tls), "nginx", process, log)
        yield Stack(tls, http, pinned)
    finally:
        children.stop_all()
        remove_root(root, "the service")


@pytest.fixture
async def tls_client() -> AsyncIterator[aiohttp.ClientSession]:
    """A client over TLS (self-signed: not verified) whose jar keeps every cookie, like a browser's."""
    connector = aiohttp.TCPConnector(ssl=False, family=socket.AF_INET)
    async with aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.CookieJar(unsafe=True),
                                     timeout=aiohttp.ClientTimeout(total=30)) as session:
        yield session
