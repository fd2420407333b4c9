"""Callers of the guarded app that are not navigations (fetch, XHR, API clients), told apart as the
service's own wants_html does: signed out they get 401 JSON naming the login page, not a redirect;
signed in, or with an expired access token that the refresh hop renews, they reach the app."""

from __future__ import annotations

import asyncio
import json
import urllib.parse

import aiohttp
import pytest
from yarl import URL

from tests.support.nginx import ACCESS_TTL, Stack, sign_in

FETCH = {"Sec-Fetch-Mode": "cors", "Sec-Fetch-Site": "same-origin", "Accept": "*/*"}


async def signed_out_answer(tls_client: aiohttp.ClientSession, url: str | URL, headers: dict[str, str],
                            method: str = "GET") -> tuple[int, str, str]:
    async with tls_client.request(method, url, headers=headers, allow_redirects=False) as response:
        return response.status, response.headers.get("Content-Type", ""), await response.text()


@pytest.mark.parametrize("headers", [
    FETCH,
    {"Sec-Fetch-Mode": "cors", "Accept": "text/html"},  # Sec-Fetch-Mode decides when present
    {"Accept": "application/json"},                   # no Sec-Fetch-Mode: an XHR, curl, an API client
    {},                                                # aiohttp's own Accept: */*
], ids=["fetch", "fetch-accepting-html", "xhr-json", "no-hints"])
async def test_a_signed_out_non_navigation_gets_401_json_with_the_login_url(stack: Stack, tls_client, headers):
    for method in ("GET", "POST"):
        status, content_type, body = await signed_out_answer(tls_client, stack.origin + "/app/data?x=1&y=2",
                                                             headers, method)
        assert (status, content_type) == (401, "application/json"), body
        answer = json.loads(body)
        assert answer["error"] == "unauthenticated"
        login = urllib.parse.urlsplit(answer["login"])
        assert login.path == "/sso/login"
        assert urllib.parse.parse_qs(login.query)["next"] == ["/app/data?x=1&y=2"]
    async with tls_client.get(stack.origin + answer["login"], headers={"Accept": "text/html"}) as response:
        assert response.status == 200  # the URL is one the page's script can send the browser to
        assert "text/html" in response.headers["Content-Type"]


@pytest.mark.parametrize("headers", [
    {"Sec-Fetch-Mode": "navigate", "Accept": "*/*"},
    {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"},  # a browser that sends no Sec-Fetch-*
], ids=["navigate", "accepts-html"])
async def test_a_signed_out_navigation_is_still_redirected_to_the_login_page(stack: Stack, tls_client, headers):
    status, _, _ = await signed_out_answer(tls_client, stack.origin + "/app/page", headers)
    assert status == 302


async def test_a_hostile_uri_cannot_break_out_of_the_json(stack: Stack, tls_client):
    url = URL(stack.origin + '/app/x"},"error":"none%0a\\', encoded=True)
    status, _, body = await signed_out_answer(tls_client, url, FETCH)
    assert status == 401
    answer = json.loads(body)
    assert set(answer) == {"error", "login"} and answer["error"] == "unauthenticated"


async def test_a_signed_in_fetch_reaches_the_app(stack: Stack, tls_client):
    session = (await sign_in(tls_client, stack.origin))["session"]
    for method in ("GET", "POST"):
        async with tls_client.request(method, stack.origin + "/app/data", headers=FETCH) as response:
            assert response.status == 200
            seen = await response.json()
        assert seen["X-Auth-User"] == "alice" and seen["X-Auth-Session"] == session


async def test_a_fetch_after_access_expiry_is_renewed_through_the_refresh_hop(stack: Stack, tls_client):
    session = (await sign_in(tls_client, stack.origin))["session"]
    await asyncio.sleep(ACCESS_TTL + 0.5)  # real time: the service runs in another process
    async with tls_client.post(stack.origin + "/app/data", data="n=1", headers=FETCH) as response:
        assert response.status == 200, await response.text()
        seen = await response.json()
        hops = [(r.status, r.url.path) for r in response.history]
    assert hops == [(307, "/app/data"), (307, "/sso/auth/refresh")]
    assert (seen["method"], seen["body"], seen["X-Auth-Session"]) == ("POST", "n=1", session)
