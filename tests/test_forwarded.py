"""X-Forwarded-* headers: believed from configured proxies only, so spoofing from clients changes nothing."""

from __future__ import annotations

from tests.support.sign_in import PASSWORD, login


async def _recorded_ip(client) -> str:
    sessions = (await (await client.get("/api/sessions")).json())["sessions"]
    return sessions[0]["ip"]


async def test_forwarded_for_is_ignored_without_trusted_proxies(client, make_user):
    await make_user()
    client.session.headers["X-Forwarded-For"] = "203.0.113.9"
    await login(client)
    assert await _recorded_ip(client) == "127.0.0.1"


async def test_forwarded_for_from_a_trusted_proxy_names_the_real_client(make_client, make_settings, make_user):
    settings = make_settings(server={"trusted_proxies": "127.0.0.1"})
    await make_user(of=settings)
    client = await make_client(of=settings)
    client.session.headers["X-Forwarded-For"] = "198.51.100.7, 203.0.113.9"
    await login(client)
    assert await _recorded_ip(client) == "203.0.113.9"  # the rightmost hop the proxy itself saw


async def test_origin_is_checked_against_the_forwarded_scheme_and_host(make_client, make_settings, make_user):
    settings = make_settings(server={"trusted_proxies": "127.0.0.0/8"})
    await make_user(of=settings)
    client = await make_client(of=settings)
    proxy = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "sso.example"}
    ok = await client.post("/login", json={"username": "alice", "password": PASSWORD},
                           headers={**proxy, "Origin": "https://sso.example"})
    assert ok.status == 200
    refused = await client.post("/login", json={"username": "alice", "password": PASSWORD},
                                headers={**proxy, "Origin": "http://sso.example"})
    assert refused.status == 403


async def test_spoofed_forwarded_host_does_not_pass_the_origin_check(client, make_user):
    await make_user()
    response = await client.post("/login", json={"username": "alice", "password": PASSWORD},
                                 headers={"X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "https",
                                          "Origin": "https://evil.example"})
    assert response.status == 403
