"""Property-based fuzzing of every route (Hypothesis): methods, paths, queries, headers, cookies and
bodies, valid and not, genuine session cookies among junk. Whatever arrives, the answer is never a 5xx
and the service logs no traceback. The budget is fixed and derandomized, so a run is repeatable and
bounded; new routes are fuzzed as soon as they exist, since the paths come from the app's router."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import tempfile
import urllib.parse
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from service import settings as settings_module
from service.clock import SettableClock
from service.storage.client import connect
from service.web.app import build_authenticator, create_app
from tests.support.sign_in import CHEAP_PASSWORDS, PASSWORD
from tests.support.raw_http import raw_exchange_blocking
from tests.support.threaded_service import threaded_service

EXAMPLES = 100  # per route: about 20 s in all here


def route_templates() -> list[str]:
    """Every route's path template, read from an app that is built but never started."""
    with tempfile.TemporaryDirectory() as data:
        settings = settings_module.validate(settings_module.build({"storage": {"data_dir": data}}))
        app = create_app(settings, redis=connect("redis://127.0.0.1:1", settings.redis))  # never used
        return sorted({resource.canonical for resource in app.router.resources()})


TEMPLATES = route_templates()


@pytest.fixture(scope="module")
def target(redis_url: str) -> Iterator[dict[str, Any]]:
    """The service behind a trusted proxy at 127.0.0.1, alice signed in: her genuine cookies and token."""
    with tempfile.TemporaryDirectory() as data:
        settings = settings_module.validate(settings_module.build({
            "storage": {"data_dir": data}, "redis": {"url": redis_url, "key_prefix": f"f{uuid.uuid4().hex[:12]}:"},
            "passwords": dict(CHEAP_PASSWORDS), "server": {"trusted_proxies": "127.0.0.1"},
            "throttle": {"per_user": 100000, "per_ip": 100000}}))
        with threaded_service(settings) as (port, records, _):
            async def add_alice() -> None:
                redis = connect(settings.redis.url, settings.redis)
                auth = build_authenticator(settings, redis, SettableClock())
                await auth.users.create("alice", await auth.passwords.hash(PASSWORD), 0)
                await redis.aclose()

            asyncio.run(add_alice())
            body = json.dumps({"username": "alice", "password": PASSWORD}).encode()
            answer = raw_exchange_blocking(port, b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                                    b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
            head, _, payload = answer.partition(b"\r\n\r\n")
            cookies = dict(re.findall(rb"Set-Cookie: ([^=]+)=([^;]*);", head))
            yield {"port": port, "records": records, "cookies": cookies, "csrf": json.loads(payload)["csrf_token"].encode()}


JUNK = st.binary(max_size=40).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))
# What aiohttp's parser lets through to the app (controls other than tab are answered 400 before it):
# printable ASCII and any byte from 0x80, so invalid UTF-8 is in, and mostly that.
_CONTROLS = bytes(c for c in range(32) if c != 9) + b"\x7f"
FIELD_VALUE = st.one_of(JUNK.map(lambda b: b.translate(None, _CONTROLS)), JUNK.map(lambda b: b.translate(None, _CONTROLS)),
                        JUNK.map(lambda b: b.translate(None, _CONTROLS)), JUNK)
NAMES = [b"Cookie", b"Content-Type", b"X-Forwarded-For", b"X-Forwarded-Proto", b"X-Forwarded-Host",
         b"X-Original-URI", b"Origin", b"Sec-Fetch-Site", b"Sec-Fetch-Mode", b"Accept", b"X-CSRF-Token",
         b"X-Request-ID", b"User-Agent", b"Referer"]
# Weighted by repetition towards what reaches handlers: the routes' own paths, POST, bodies that parse.
METHODS = [b"POST"] * 4 + [b"GET"] * 2 + [b"HEAD", b"PUT", b"PATCH", b"DELETE", b"OPTIONS", b"TRACE"]
SUFFIXES = [b""] * 6 + [b"/", b"/..", b"%2e%2e/x", b"%ff", b"//x"]
CONTENT_TYPES = [None, b"application/json", b"application/x-www-form-urlencoded", b"application/x-www-form-urlencoded", b"multipart/form-data; boundary=XYZ",
                 b"multipart/form-data", b"text/plain", b"application/json; charset=latin-1"]
FIELDS = ["username", "password", "current", "new", "confirm", "next", "csrf", "credential", "name", "remember"]
# The passkey routes (core/passkeys.py), listed so that the fuzzing of each is asserted, not assumed.
PASSKEY_ROUTES = {"/login/passkey/options", "/login/passkey", "/account/passkeys/options", "/account/passkeys",
                  "/account/passkeys/{credential_id}/remove",
                  "/account/passkeys/{credential_id}/rename", "/api/passkeys", "/api/passkeys/{credential_id}",
                  "/account/confirm/passkey/options", "/account/confirm/passkey"}


def test_every_passkey_route_is_fuzzed() -> None:
    assert PASSKEY_ROUTES <= set(TEMPLATES)


def path_of(template: str, filler: bytes, suffix: bytes) -> bytes:
    path = re.sub(r"\{[^}]*\}", "{}", template).encode()
    return path.replace(b"{}", urllib.parse.quote_from_bytes(filler).encode()) + suffix


@pytest.mark.parametrize("template", TEMPLATES)
@given(data=st.data())
@settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
def test_no_request_gets_a_5xx_or_a_traceback(target, template, data):
    port, genuine = target["port"], target["cookies"]
    method = data.draw(st.sampled_from(METHODS))
    path = path_of(template, data.draw(st.binary(max_size=20)),
                   data.draw(st.sampled_from(SUFFIXES)))
    query = data.draw(st.one_of(st.just(b""), JUNK.map(lambda b: b"?" + b.replace(b" ", b"%20").replace(b"#", b"")),
                                st.sampled_from([b"?next=//evil.example", b"?next=%2F%ff", b"?next=/\\evil"])))
    cookie_names = [*genuine, b"__Host-login", b"__Host-anchor", b"other"]
    cookies = data.draw(st.lists(st.tuples(st.sampled_from(cookie_names),
                                           st.one_of(st.sampled_from(list(genuine.values())), FIELD_VALUE)), max_size=4))
    headers = data.draw(st.lists(st.tuples(st.sampled_from(NAMES), FIELD_VALUE), max_size=5))
    if cookies:
        headers.append((b"Cookie", b"; ".join(name + b"=" + value.replace(b";", b"") for name, value in cookies)))
    if data.draw(st.booleans()):
        headers.append((b"X-CSRF-Token", target["csrf"]))
    content_type = data.draw(st.sampled_from(CONTENT_TYPES))
    if content_type:
        headers.append((b"Content-Type", content_type))
    body = data.draw(st.one_of(
        JUNK,
        st.dictionaries(st.sampled_from(FIELDS), st.one_of(st.text(max_size=20), st.integers(), st.none(),
                                                            st.just("a\ud800b")), max_size=4)
          .map(lambda d: json.dumps(d).encode()),
        st.dictionaries(st.sampled_from(FIELDS), JUNK, max_size=4)
          .map(lambda d: b"&".join(k.encode() + b"=" + v.replace(b"&", b"") for k, v in d.items())),
        st.just(b"--XYZ\r\nContent-Disposition: form-data; name=\"username\"\r\n\r\nalice\r\n--XYZ--\r\n"),
        JUNK.map(lambda b: b"--XYZ\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\n" + b),
    ))
    request = (method + b" " + path + query + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
               + b"".join(name + b": " + value + b"\r\n" for name, value in headers)
               + b"Content-Length: %d\r\n\r\n" % len(body) + body)
    target["records"].clear()
    answer = raw_exchange_blocking(port, request)
    found = re.match(rb"HTTP/1\.[01] (\d{3}) ", answer)
    status = int(found.group(1)) if found else 0
    assert 100 <= status < 500, (request, answer[:300])
    bad = [r for r in target["records"] if r.exc_info or r.levelno >= logging.ERROR]
    assert not bad, (request, [r.getMessage() for r in bad])
