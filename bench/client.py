"""The service's HTTP interface as the scenarios use it, over aiohttp: signing in and out, ``/api/me``,
the session list. JSON throughout; cookies are passed as one ``Cookie`` header, the way wrk sends them."""

from __future__ import annotations

import asyncio
import dataclasses
from http.cookies import BaseCookie
from typing import Any

import aiohttp

from . import BenchError

TIMEOUT = aiohttp.ClientTimeout(total=30)
JSON_ACCEPT = {"Accept": "application/json"}
SIGN_IN_TRIES = 5


def session(*, cookie_jar: bool = False) -> aiohttp.ClientSession:
    """A client session; with ``cookie_jar``, one that keeps the cookies it is sent (a browser's), else none."""
    jar: aiohttp.abc.AbstractCookieJar = aiohttp.CookieJar(unsafe=True) if cookie_jar else aiohttp.DummyCookieJar()
    return aiohttp.ClientSession(cookie_jar=jar, timeout=TIMEOUT)


@dataclasses.dataclass(frozen=True)
class SignIn:
    cookie: str  # the access cookie, ``name=value``
    session: str  # the session id
    access_expires: float  # when the access token expires, Unix seconds


def access_cookie(cookies: BaseCookie[str]) -> str:
    """``name=value`` of the access cookie among a response's Set-Cookie (``access`` or ``__Host-access``)."""
    for name, morsel in cookies.items():
        if name.split("-", 1)[-1] == "access":
            return f"{name}={morsel.value}"
    raise BenchError(f"no access cookie was set (got {sorted(cookies)})")


async def sign_in(http: aiohttp.ClientSession, base: str, user: str, password: str) -> SignIn:
    """A JSON sign-in, waiting out a 429 (the login throttle counts attempts in flight) up to
    :data:`SIGN_IN_TRIES` times."""
    for _ in range(SIGN_IN_TRIES):
        async with http.post(base + "/login", json={"username": user, "password": password},
                             headers=JSON_ACCEPT) as response:
            if response.status == 429:
                await asyncio.sleep(min(5.0, float(response.headers.get("Retry-After", "1"))))
                continue
            if response.status != 200:
                raise BenchError(f"sign-in of {user} on {base} answered {response.status}: "
                                 f"{(await response.text())[:300]}")
            body = await response.json()
            return SignIn(cookie=access_cookie(response.cookies), session=body["session"],
                          access_expires=float(body["access_expires"]))
    raise BenchError(f"sign-in of {user} on {base}: still throttled after {SIGN_IN_TRIES} tries")


async def sign_in_status(http: aiohttp.ClientSession, base: str, user: str, password: str) -> int:
    """One JSON sign-in attempt, for load: its status, 0 if it got no answer."""
    try:
        async with http.post(base + "/login", json={"username": user, "password": password},
                             headers=JSON_ACCEPT) as response:
            await response.read()
            return response.status
    except (aiohttp.ClientError, asyncio.TimeoutError):
        return 0


async def get_status(http: aiohttp.ClientSession, url: str, cookie: str) -> int:
    """``GET url`` with ``cookie``, for load: its status, 0 if it got no answer."""
    try:
        async with http.get(url, headers={"Cookie": cookie, **JSON_ACCEPT}, allow_redirects=False) as response:
            await response.read()
            return response.status
    except (aiohttp.ClientError, asyncio.TimeoutError):
        return 0


async def me(http: aiohttp.ClientSession, base: str, cookie: str) -> tuple[int, dict[str, Any] | None]:
    """``GET /api/me`` with ``cookie``, no redirects followed: the status and the JSON (if 200)."""
    async with http.get(base + "/api/me", headers={"Cookie": cookie, **JSON_ACCEPT},
                        allow_redirects=False) as response:
        return response.status, (await response.json() if response.status == 200 else None)


async def session_ids(http: aiohttp.ClientSession, base: str, cookie: str) -> list[str]:
    """The ids of the live sessions of ``cookie``'s user (``GET /api/sessions``)."""
    async with http.get(base + "/api/sessions", headers={"Cookie": cookie, **JSON_ACCEPT},
                        allow_redirects=False) as response:
        if response.status != 200:
            raise BenchError(f"GET /api/sessions on {base} answered {response.status}")
        return [entry["id"] for entry in (await response.json())["sessions"]]


async def sign_out(http: aiohttp.ClientSession, base: str, cookie: str) -> str | None:
    """``POST /logout`` with ``cookie`` and its CSRF token; what went wrong, or None."""
    status, body = await me(http, base, cookie)
    if status != 200 or body is None:
        return f"/api/me answered {status} before sign-out"
    headers = {"Cookie": cookie, "Origin": base, **JSON_ACCEPT}
    if body.get("csrf_token"):
        headers["X-CSRF-Token"] = body["csrf_token"]
    async with http.post(base + "/logout", headers=headers, allow_redirects=False) as response:
        if response.status >= 400:
            return f"POST /logout answered {response.status}: {(await response.text())[:200]}"
    return None
