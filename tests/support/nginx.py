"""The nginx deployment under test: ``deploy/nginx/service.conf`` itself with only its placeholders
substituted (listen ports on 127.0.0.1, ``sso.example.com`` → ``localhost``, certificate paths,
upstream addresses), plus two test-only HTTPS servers that are copies of its main server pinned to one
instance each; a self-signed certificate; and the second app that ``auth_request`` guards."""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
import os
import re
from pathlib import Path
from typing import Any

import aiohttp
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support.sign_in import PASSWORD

NGINX = Path("/usr/sbin/nginx")
SAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "nginx" / "service.conf"
ACCESS_TTL = 2.0  # seconds; the expiry tests sleep just past it

# The second app behind nginx: echoes what reached it, with the X-Auth-* headers auth_request added.
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


async def sign_in(tls_client: aiohttp.ClientSession, origin: str) -> dict[str, Any]:
    """Sign in as alice through nginx with JSON; returns the body (session id, csrf_token)."""
    async with tls_client.post(origin + "/sso/login", headers={"Origin": origin},
                               json={"username": "alice", "password": PASSWORD}) as response:
        assert response.status == 200, await response.text()
        return dict(await response.json())
