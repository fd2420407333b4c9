"""c. The refresh storm: many clients, one cookie jar each, whose access tokens all expired, call
``GET /api/me`` at once and must each come back with their own session, never a login page."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
import time

import aiohttp

from . import client
from .load import percentile
from .scenarios import SIGN_IN_CONCURRENCY, Context

ACCESS_TTL = "2s"  # the storm instance's tokens.access_ttl: expired after a short wait


def storm_users(clients: int, cap: int) -> list[str]:
    """Enough users that none of them has more than ``cap`` (sessions.max_per_user) of the clients:
    a sign-in beyond the cap ends the user's least recently used session."""
    return [f"storm-{n}" for n in range(1, math.ceil(clients / cap) + 1)]


@dataclasses.dataclass
class StormClient:
    """One client's state while the storm runs."""

    user: str
    http: aiohttp.ClientSession
    session_id: str = ""
    access_expires: float = 0.0
    ms: float = 0.0
    status: int = 0
    hopped: bool = False  # went through the refresh endpoint
    saw_login: bool = False  # a 401 or the login page anywhere on the way
    alive_after: bool = False  # its session still answers afterwards
    error: str = ""


@dataclasses.dataclass(frozen=True)
class Storm:
    clients: int
    users: int  # the clients are spread over this many users
    ok: int  # its own user's answer, never a login page
    saw_login: int
    no_login_page: int
    revoked: int  # sessions that no longer answered afterwards
    hopped: int  # went through /auth/refresh (a service may one day refresh an expired token in place)
    errors: tuple[str, ...]  # up to 5 distinct ones
    statuses: dict[str, int]
    total_ms: float  # from the gate opening to the last answer
    p50_ms: float  # per client
    p99_ms: float
    login_seconds: float  # signing every client in first

    @property
    def all_ok(self) -> bool:
        return self.ok == self.clients and not self.revoked and not self.saw_login

    @property
    def problems(self) -> tuple[str, ...]:
        if self.all_ok:
            return ()
        return (f"c: storm: {self.ok}/{self.clients} ok, {self.saw_login} saw a login page or 401, {self.revoked} "
                f"sessions revoked; statuses {self.statuses} {list(self.errors)}",)


async def storm(ctx: Context, users: list[str], clients: int) -> Storm:
    """Start an instance with short-lived access tokens on instance 1's Redis, sign ``clients`` clients
    in (spread over ``users``), wait for every access token to expire, then have all of them call
    ``GET /api/me`` at once, following the 307 hop through the refresh endpoint and back."""
    base = await ctx.servers.start_service(ctx.http, "storm", redis__url=ctx.servers.shared_redis,
                                           tokens__access_ttl=ACCESS_TTL)
    crowd = [StormClient(users[n % len(users)], client.session(cookie_jar=True)) for n in range(clients)]
    try:
        started = time.perf_counter()
        await sign_in_all(ctx, base, crowd)
        login_seconds = time.perf_counter() - started
        # Every access token expired (exp has 1 s resolution), every session alive.
        await asyncio.sleep(max(0.0, max(c.access_expires for c in crowd) + 1.0 - time.time()))
        total_ms = await call_at_once(base, crowd)
        checks = asyncio.Semaphore(20)
        await asyncio.gather(*(still_alive(base, c, checks) for c in crowd))
    finally:
        await asyncio.gather(*(c.http.close() for c in crowd))
    ok = [c for c in crowd if c.status == 200 and not c.saw_login and not c.error]
    saw_login = sum(c.saw_login for c in crowd)
    times = [c.ms for c in crowd]
    return Storm(clients=clients, users=len(users), ok=len(ok), saw_login=saw_login,
                 no_login_page=clients - saw_login, revoked=sum(not c.alive_after for c in crowd),
                 hopped=sum(c.hopped for c in crowd), errors=tuple(sorted({c.error for c in crowd if c.error})[:5]),
                 statuses={str(s): sum(c.status == s for c in crowd) for s in sorted({c.status for c in crowd})},
                 total_ms=round(total_ms, 1), p50_ms=round(percentile(times, 50), 1),
                 p99_ms=round(percentile(times, 99), 1), login_seconds=round(login_seconds, 1))


async def sign_in_all(ctx: Context, base: str, crowd: list[StormClient]) -> None:
    """Each client signs in through its own session (its jar keeps the cookies), a few at a time."""
    slots = asyncio.Semaphore(SIGN_IN_CONCURRENCY)

    async def one(c: StormClient) -> None:
        async with slots:
            signed = await client.sign_in(c.http, base, c.user, ctx.password)
            c.session_id, c.access_expires = signed.session, signed.access_expires

    await asyncio.gather(*(one(c) for c in crowd))


async def call_at_once(base: str, crowd: list[StormClient]) -> float:
    """Every client's ``GET /api/me``, released together; ms from the release to the last answer."""
    gate = asyncio.Event()

    async def call(c: StormClient) -> float:
        await gate.wait()
        began = time.perf_counter()
        try:
            async with c.http.get(base + "/api/me", headers=client.JSON_ACCEPT) as response:
                body = await response.json() if response.status == 200 else None
                c.status = response.status
                steps = [*response.history, response]
                c.hopped = any("/auth/refresh" in r.url.path for r in steps)
                c.saw_login = response.status == 401 or any(
                    r.url.path.endswith("/login") or "/login" in r.headers.get("Location", "") for r in steps)
                if body is not None and body.get("session") != c.session_id:
                    c.error = "answered for another session"
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            c.error = f"{type(exc).__name__}: {exc}"
        ended = time.perf_counter()
        c.ms = (ended - began) * 1000
        return ended

    tasks = [asyncio.create_task(call(c)) for c in crowd]
    await asyncio.sleep(0.1)  # every task is waiting at the gate
    opened = time.perf_counter()
    gate.set()
    return (max(await asyncio.gather(*tasks)) - opened) * 1000


async def still_alive(base: str, c: StormClient, checks: asyncio.Semaphore) -> None:
    """Whether the client's session still answers; follows a refresh hop again if the fresh 2 s token
    has expired meanwhile."""
    async with checks:
        with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
            async with c.http.get(base + "/api/me", headers=client.JSON_ACCEPT) as response:
                body = await response.json() if response.status == 200 else {}
                c.alive_after = body.get("session") == c.session_id
