"""Real nginx (Debian's, with auth_request) in front of two real service instances and a second app.

The nginx config is ``deploy/nginx/service.conf`` itself, with only its placeholders substituted
(listen ports on 127.0.0.1, ``sso.example.com`` → ``localhost``, certificate paths, upstream
addresses), plus two test-only HTTPS servers that are copies of its main server pinned to one
instance each. TLS uses a self-signed certificate generated here. Everything runs as child processes
started once per module and stopped by PID; every wait is bounded.

Locally the tests skip if nginx is absent; under ``CI=true`` they fail instead.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import ipaddress
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from test_cli import PASSWORD, remove_root

NGINX = Path("/usr/sbin/nginx")
SAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "nginx" / "service.conf"
START_TIMEOUT = 30.0
ACCESS_TTL = 2.0  # seconds; the expiry tests sleep just past it

APP = """
import sys
from aiohttp import web

async def echo(request):
    body = await request.text()
    return web.json_response({"path": request.path_qs, "method": request.method, "body": body,
                              **{k: v for k, v in request.headers.items() if k.lower().startswith("x-auth-")}})

app = web.Application()
app.router.add_route("*", "/{tail:.*}", echo)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None)
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclasses.dataclass
class Stack:
    """The running deployment: nginx's public HTTPS/HTTP ports and its two pinned HTTPS ports."""

    tls_port: int
    http_port: int
    pinned: tuple[int, int]

    @property
    def origin(self) -> str:
        return f"https://localhost:{self.tls_port}"

    def pinned_origin(self, instance: int) -> str:
        return f"https://localhost:{self.pinned[instance]}"


def self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def server_block(config: str, marker: str) -> str:
    """The whole ``server { ... }`` block of ``config`` that contains ``marker``."""
    start = config.rindex("server {", 0, config.index(marker))
    depth = 0
    for end in range(start, len(config)):
        depth += {"{": 1, "}": -1}.get(config[end], 0)
        if config[end] == "}" and depth == 0:
            return config[start:end + 1]
    raise AssertionError("unbalanced braces in the sample config")


def render(sample: str, *, root: Path, cert: Path, key: Path, tls: int, http: int, pinned: tuple[int, int],
           services: tuple[int, int], app: int) -> str:
    """The sample with its placeholders replaced, plus one HTTPS server per instance pinned to it."""
    config = re.sub(r"ssl_certificate\s+\S+;", f"ssl_certificate {cert};", sample)
    config = re.sub(r"ssl_certificate_key\s+\S+;", f"ssl_certificate_key {key};", config)
    config = config.replace("sso.example.com", "localhost")
    config = config.replace("server 127.0.0.1:8080;", f"server 127.0.0.1:{services[0]};")
    config = config.replace("server 127.0.0.1:8081;", f"server 127.0.0.1:{services[1]};")
    config = config.replace("server 127.0.0.1:9000;", f"server 127.0.0.1:{app};")
    main = server_block(config, "listen 443 ssl;")
    config = re.sub(r"listen 443\b", f"listen 127.0.0.1:{tls}", config)
    config = re.sub(r"listen 80\b", f"listen 127.0.0.1:{http}", config)
    for index, (port, service) in enumerate(zip(pinned, services)):
        config += f"\nupstream sso_{index} {{ server 127.0.0.1:{service}; }}\n"
        config += (main.replace("listen 443 ssl;", f"listen 127.0.0.1:{port} ssl;")
                   .replace("proxy_pass http://sso;", f"proxy_pass http://sso_{index};")) + "\n"
    user = "user root;\n" if os.geteuid() == 0 else ""
    return (f"{user}daemon off;\nworker_processes 1;\npid {root}/nginx.pid;\nerror_log stderr notice;\n"
            f"events {{ worker_connections 256; }}\n"
            f"http {{\n  access_log {root}/access.log;\n  client_body_temp_path {root}/body;\n"
            f"  proxy_temp_path {root}/proxy;\n  fastcgi_temp_path {root}/fastcgi;\n{config}\n}}\n")


def wait_until(check: object, what: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        assert process.poll() is None, f"{what} exited early:\n{log.read_text(errors='replace')}"
        assert time.monotonic() < deadline, f"{what} not ready in {START_TIMEOUT}s:\n{log.read_text(errors='replace')}"
        with contextlib.suppress(OSError):
            if check():  # type: ignore[operator]
                return
        time.sleep(0.05)  # bounded polling of a child's readiness


def http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 — loopback only
        return bool(response.status == 200)


def port_open(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=1):
        return True


class Processes:
    """Children started here, stopped here by PID, last started first."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.children: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> tuple[subprocess.Popen[bytes], Path]:
        log = self.root / f"{name}.log"
        with open(log, "wb") as out:
            process = subprocess.Popen(argv, cwd=self.root / "cwd", env=env, stdin=subprocess.DEVNULL, stdout=out,
                                       stderr=subprocess.STDOUT)
        self.children.append((name, process))
        return process, log

    def stop_all(self) -> None:
        for _name, process in reversed(self.children):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=20)


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    if not NGINX.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{NGINX} is missing: .ci/run installs nginx")
        pytest.skip(f"{NGINX} is not installed (apt-get install nginx-light); the nginx tests need it")
    root = Path(tempfile.mkdtemp(prefix="ngx-", dir="/tmp"))  # short: the Redis unix socket lives under it
    (root / "cwd").mkdir()
    data_dir = root / "data"
    children = Processes(root)
    try:
        services = (free_port(), free_port())
        base = {k: v for k, v in os.environ.items() if not k.startswith("SERVICE__")}
        base.update(SERVICE__STORAGE__DATA_DIR=str(data_dir), SERVICE__PASSWORDS__MEMORY_COST="64",
                    SERVICE__PASSWORDS__TIME_COST="1", SERVICE__PASSWORDS__PARALLELISM="1",
                    SERVICE__SERVER__URL_PREFIX="/sso", SERVICE__SERVER__TRUSTED_PROXIES="127.0.0.1",
                    SERVICE__SERVER__PROTECTED_PREFIXES="/app", SERVICE__TOKENS__ACCESS_TTL=f"{ACCESS_TTL}s",
                    SERVICE__TOKENS__LEEWAY="0s")
        envs = [dict(base, SERVICE__SERVER__PORT=str(services[0])),
                # The second instance shares the first one's embedded Redis and the data dir's keys.
                dict(base, SERVICE__SERVER__PORT=str(services[1]),
                     SERVICE__REDIS__URL=f"unix://{data_dir}/redis.sock")]
        for index, env in enumerate(envs):
            process, log = children.start(f"service-{index}", [sys.executable, "-m", "service"], env)
            wait_until(lambda: http_ok(f"http://127.0.0.1:{env['SERVICE__SERVER__PORT']}/sso/readyz"),
                       f"service instance {index}", process, log)
        added = subprocess.run([sys.executable, "-m", "service", "users", "add", "alice", "--password-stdin"],
                               cwd=root / "cwd", env=envs[0], input=PASSWORD + "\n", text=True,
                               capture_output=True, timeout=60)
        assert added.returncode == 0, added.stderr

        app = free_port()
        process, log = children.start("app", [sys.executable, "-c", APP, str(app)])
        wait_until(lambda: port_open(app), "the second app", process, log)

        cert, key = self_signed(root)
        ports = {"tls": free_port(), "http": free_port(), "pinned": (free_port(), free_port())}
        conf = root / "nginx.conf"
        conf.write_text(render(SAMPLE.read_text(), root=root, cert=cert, key=key, services=services, app=app,
                               **ports))  # type: ignore[arg-type]
        process, log = children.start("nginx", [str(NGINX), "-c", str(conf), "-p", str(root)])
        wait_until(lambda: port_open(ports["tls"]), "nginx", process, log)  # type: ignore[arg-type]
        yield Stack(ports["tls"], ports["http"], ports["pinned"])  # type: ignore[arg-type]
    finally:
        children.stop_all()
        remove_root(root, "the service")
