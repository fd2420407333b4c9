"""Bytes no browser sends, sent anyway: each gets a clear 4xx, never a 500 or a traceback, and stores
nothing. Exact bytes on a socket (tests/support/raw_http.py), since client libraries refuse to send them."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from tests.support.raw_http import raw_exchange
from tests.support.sign_in import PASSWORD, login


def request(port: int, method: str, path: str, headers: dict[str, bytes], body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1".encode(), f"Host: 127.0.0.1:{port}".encode(),
             f"Origin: http://127.0.0.1:{port}".encode(), b"Connection: close",
             f"Content-Length: {len(body)}".encode()]
    lines += [name.encode() + b": " + value for name, value in headers.items()]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


@pytest.fixture
async def site(make_client, make_user, make_settings, redis_client, caplog) -> Any:
    """The service behind a trusted proxy at 127.0.0.1, with alice; ``stored()`` lists the Redis keys."""
    settings = make_settings(server={"trusted_proxies": "127.0.0.1"})
    await make_user("alice")
    client = await make_client(of=settings)
    caplog.set_level(logging.INFO)

    class Site:
        port = client.server.port
        signed_in = client

        @staticmethod
        async def stored() -> list[bytes]:
            return sorted([key async for key in redis_client.scan_iter(match=settings.redis.key_prefix + "*")])

        @staticmethod
        def assert_no_traceback() -> None:
            assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR], caplog.text

    return Site


async def assert_refused_storing_nothing(site: Any, raw: bytes, status: int = 400) -> bytes:
    before = await site.stored()
    answer = await raw_exchange(site.port, raw)
    assert status_of(answer) == status, answer[:400]
    assert await site.stored() == before
    site.assert_no_traceback()
    return answer


FORM = {"Content-Type": b"application/x-www-form-urlencoded"}


@pytest.mark.parametrize(("body", "status"), [
    (b"username=\xff\xfe&password=x&csrf=t", 400),
    # Percent-decoding replaces what is not UTF-8 (U+FFFD): a readable form, whose token is then wrong.
    (b"username=%FF%FE&password=x&csrf=t", 403), (b"csrf=%ED%A0%80&username=alice&password=x", 403),
], ids=["raw invalid UTF-8", "percent-encoded invalid UTF-8", "an encoded surrogate"])
async def test_a_login_form_with_invalid_utf8_is_refused(site, body, status):
    await assert_refused_storing_nothing(site, request(site.port, "POST", "/login", FORM, body), status=status)


@pytest.mark.parametrize("body", [b"garbage", b"--XYZ\r\nContent-Disposition: form-data\r\n\r\nx",
                                  b"--XYZ\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\n\xff\xfe\r\n--XYZ--\r\n"],
                         ids=["no parts", "a part without a name, unterminated", "invalid UTF-8 in a part"])
async def test_a_broken_multipart_login_body_is_a_400(site, body):
    headers = {"Content-Type": b"multipart/form-data; boundary=XYZ"}
    answer = await raw_exchange(site.port, request(site.port, "POST", "/login", headers, body))
    assert status_of(answer) in (400, 403), answer[:400]  # 403: a body without the CSRF token
    site.assert_no_traceback()


@pytest.mark.parametrize("field", ["username", "password"])
async def test_a_lone_surrogate_in_json_login_fields_is_a_400(site, field):
    fields = {"username": "alice", "password": PASSWORD}
    body = json.dumps(fields).replace(json.dumps(fields[field]), '"a\\ud800b"').encode()
    headers = {"Content-Type": b"application/json"}
    await assert_refused_storing_nothing(site, request(site.port, "POST", "/login", headers, body))


@pytest.mark.parametrize("field", ["current", "new"])
async def test_a_lone_surrogate_in_a_password_change_is_a_400_and_changes_nothing(site, field):
    me = await login(site.signed_in, "alice")
    fields = {"current": PASSWORD, "new": PASSWORD + " v2"}
    body = json.dumps(fields).replace(json.dumps(fields[field]), '"a\\ud800b"').encode()
    cookie = "; ".join(f"{c.key}={c.value}" for c in site.signed_in.session.cookie_jar).encode()
    headers = {"Content-Type": b"application/json", "Cookie": cookie, "X-CSRF-Token": me["csrf_token"].encode()}
    await assert_refused_storing_nothing(site, request(site.port, "POST", "/api/password", headers, body))
    await login(site.signed_in, "alice")  # the old password still signs in


@pytest.mark.parametrize("value", [b"\xff\xfe", b"n\xc3\x28once", b"\xed\xa0\x80"],
                         ids=["invalid UTF-8", "a broken sequence", "an encoded surrogate"])
async def test_invalid_bytes_in_the_login_nonce_cookie_are_a_4xx(site, value):
    headers = {**FORM, "Cookie": b"__Host-login=" + value}
    answer = await assert_refused_storing_nothing(
        site, request(site.port, "POST", "/login", headers, b"username=alice&password=x&csrf=t"), status=403)
    assert b"csrf" in answer
    page = await raw_exchange(site.port, request(site.port, "GET", "/login", {"Cookie": b"__Host-login=" + value}))
    assert status_of(page) == 200  # a fresh nonce instead
    site.assert_no_traceback()


@pytest.mark.parametrize("uri", [b"/app/\xff\xfe", b"/\xed\xa0\x80", b"/app?q=\xc3\x28"])
async def test_invalid_bytes_in_x_original_uri_are_a_401_back_to_home(site, uri):
    answer = await assert_refused_storing_nothing(
        site, request(site.port, "GET", "/auth/verify", {"X-Original-URI": uri}), status=401)
    assert b"X-Auth-Redirect: /login?next=%2F\r\n" in answer


@pytest.mark.parametrize("value", [b"\xff\xfe", b"203.0.113.9\xff", b"not-an-ip", b"203.0.113.9, <script>",
                                   b"999.1.1.1"],
                         ids=["invalid UTF-8", "an address with a stray byte", "a word", "markup", "no such address"])
async def test_a_bad_x_forwarded_for_from_a_trusted_proxy_is_a_400_and_signs_no_one_in(site, value):
    headers = {"Content-Type": b"application/json", "X-Forwarded-For": value}
    body = json.dumps({"username": "alice", "password": PASSWORD}).encode()
    await assert_refused_storing_nothing(site, request(site.port, "POST", "/login", headers, body))
