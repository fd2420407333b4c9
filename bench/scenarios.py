"""The scenarios measured against the service, one function each, each returning a frozen result that
lists the correctness problems it saw (the refresh storm, c, is in bench/storm.py)."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import time
from collections.abc import Sequence

import aiohttp

from . import BenchError, client
from .load import Load, Paced, WrkResult, paced, wrk
from .processes import Servers

USER = "bench"  # whose access cookie wrk sends
# Signs in during d. Not USER: sign-ins beyond sessions.max_per_user end the user's least recently
# used sessions, and USER's session behind the cookie wrk sends is the oldest.
LOGIN_USER = "bench-logins"
CAPPED_USER = "bench-capped"  # sits at sessions.max_per_user during f
SIGN_IN_CONCURRENCY = 4  # the login throttle counts attempts in flight against a username


@dataclasses.dataclass(frozen=True)
class Context:
    """What every scenario works with: the servers, instance 1 and the cookie wrk sends to it."""

    servers: Servers
    http: aiohttp.ClientSession
    load: Load
    warmup: int  # whole seconds of wrk before a new target is measured
    password: str  # every user's
    base: str  # instance 1
    cookie: str  # USER's access cookie, signed in on instance 1


@dataclasses.dataclass(frozen=True)
class Measured:
    """wrk on one or more URLs at once (their req/s add up), and what the checks around it found."""

    parts: tuple[WrkResult, ...]
    problems: tuple[str, ...] = ()

    @property
    def rps(self) -> float:
        return sum(part.rps for part in self.parts)

    @property
    def p50_ms(self) -> float:
        return max(part.p50_ms for part in self.parts)

    @property
    def p99_ms(self) -> float:
        return max(part.p99_ms for part in self.parts)

    @property
    def non_2xx(self) -> int:
        return sum(part.errors.status for part in self.parts)


async def measure(ctx: Context, label: str, urls: Sequence[str], load: Load | None = None) -> Measured:
    """wrk on each url at once, sending ``ctx.cookie``. Before and after, the cookie must get a 200
    with its user: wrk counts only statuses >= 400 as errors, so a 3xx (an expired token) would pass unseen."""
    problems = [found for url in urls if (found := await expect_user(ctx, label, url, "before"))]
    runs = await asyncio.gather(*(wrk(url, ctx.cookie, load or ctx.load) for url in urls))
    problems += [found for url in urls if (found := await expect_user(ctx, label, url, "after"))]
    for run in runs:
        if run.errors.status:
            problems.append(f"{label}: {run.errors.status} of {run.requests} authenticated requests got a "
                            f"non-2xx/3xx answer (wrk 'Non-2xx or 3xx responses') from {run.url}")
        if run.errors.of_sockets():
            problems.append(f"{label}: wrk socket errors {run.errors.of_sockets()} on {run.url}")
    return Measured(tuple(runs), tuple(problems))


async def expect_user(ctx: Context, label: str, url: str, when: str) -> str | None:
    status, body = await client.me(ctx.http, url.rsplit("/api/me", 1)[0], ctx.cookie)
    if status != 200 or body is None or body.get("name") != USER:
        return f"{label}: GET /api/me {when} the run answered {status}, not 200 with the user"
    return None


async def sign_in_many(ctx: Context, user: str, count: int) -> list[client.SignIn]:
    """``count`` sessions of ``user`` on instance 1, a few sign-ins at a time."""
    slots = asyncio.Semaphore(SIGN_IN_CONCURRENCY)

    async def one() -> client.SignIn:
        async with slots:
            return await client.sign_in(ctx.http, ctx.base, user, ctx.password)

    return list(await asyncio.gather(*(one() for _ in range(count))))


@dataclasses.dataclass(frozen=True)
class Ceiling:
    a: Measured  # the bare handler

    @property
    def problems(self) -> tuple[str, ...]:
        return ()


async def ceiling(ctx: Context) -> Ceiling:
    """a. The bare handler, answering the very body the service answers, loaded with the same request."""
    status, body = await client.me(ctx.http, ctx.base, ctx.cookie)
    if status != 200 or body is None:
        raise BenchError(f"GET /api/me with a fresh access cookie answered {status}")
    base, proc = await ctx.servers.start_bare(ctx.http, json.dumps(body))
    try:
        await wrk(base + "/api/me", ctx.cookie, ctx.load, duration=ctx.warmup)
        run = await wrk(base + "/api/me", ctx.cookie, ctx.load)
    finally:
        ctx.servers.procs.stop(proc)
    return Ceiling(a=Measured((run,)))


@dataclasses.dataclass(frozen=True)
class Plain:
    b: Measured  # authenticated GET /api/me with a valid access cookie

    @property
    def problems(self) -> tuple[str, ...]:
        return self.b.problems


async def plain(ctx: Context) -> Plain:
    """b. Authenticated ``GET /api/me`` on instance 1."""
    await wrk(ctx.base + "/api/me", ctx.cookie, ctx.load, duration=ctx.warmup)
    return Plain(b=await measure(ctx, "b", [ctx.base + "/api/me"]))


@dataclasses.dataclass(frozen=True)
class Logins:
    d0: Measured  # GET /api/me, no sign-ins
    d: Measured  # GET /api/me while sign-ins run
    logins: Paced  # the sign-ins

    @property
    def problems(self) -> tuple[str, ...]:
        failed = self.logins.failed
        return (*self.d0.problems, *self.d.problems,
                *([f"d: {failed} of {self.logins.attempted} background logins failed"] if failed else []))


async def logins(ctx: Context, rate: float) -> Logins:
    """d. ``GET /api/me`` without (d0), then with (d) JSON sign-ins (an argon2 verify each) started at
    ``rate``/s by this process, at most 4 in flight."""
    d0 = await measure(ctx, "d0", [ctx.base + "/api/me"])
    stop = asyncio.Event()
    async with client.session() as http:
        sign_in = functools.partial(client.sign_in_status, http, ctx.base, LOGIN_USER, ctx.password)
        driver = asyncio.create_task(paced(sign_in, rate, stop, cap=SIGN_IN_CONCURRENCY))
        try:
            await asyncio.sleep(1.0)  # sign-ins in steady state before wrk starts
            d = await measure(ctx, "d", [ctx.base + "/api/me"])
        finally:
            stop.set()
            stats = await driver
    return Logins(d0=d0, d=d, logins=stats)


@dataclasses.dataclass(frozen=True)
class Workers:
    e1: Measured  # two wrk processes on instance 1
    e2: Measured  # two wrk processes on the --workers 2 service
    flag: str

    @property
    def problems(self) -> tuple[str, ...]:
        return (*self.e1.problems, *self.e2.problems)


async def workers(ctx: Context, two: str, flag: str) -> Workers:
    """e. 1 process vs 2: two wrk processes of half the load each, both on instance 1 (e1), then both
    on ``two``, the service started with ``flag`` (e2); their req/s add up."""
    half = ctx.load.halved()
    await wrk(two + "/api/me", ctx.cookie, ctx.load, duration=ctx.warmup)
    e1 = await measure(ctx, "e1", [ctx.base + "/api/me"] * 2, half)
    e2 = await measure(ctx, "e2", [two + "/api/me"] * 2, half)
    return Workers(e1=e1, e2=e2, flag=flag)


@dataclasses.dataclass(frozen=True)
class AtCap:
    f: Measured  # USER's GET /api/me while CAPPED_USER sits at the cap
    cap: int  # sessions.max_per_user
    sessions_before: int  # CAPPED_USER's live sessions when wrk started
    sessions_after: int  # and when it ended
    listing: Paced  # CAPPED_USER loading their session list meanwhile

    @property
    def problems(self) -> tuple[str, ...]:
        found = list(self.f.problems)
        if self.listing.ok != self.listing.attempted:
            found.append(f"f: {self.listing.attempted - self.listing.ok} of {self.listing.attempted} "
                         "session list requests of the user at the cap did not answer 200")
        if not self.sessions_before == self.sessions_after == self.cap:
            found.append(f"f: the user at the cap had {self.sessions_before} sessions before and "
                         f"{self.sessions_after} after, not {self.cap}")
        return tuple(found)


async def at_cap(ctx: Context, cap: int, rate: float) -> AtCap:
    """f. USER's ``GET /api/me`` while another user has ``cap`` sessions, the most a user may have,
    and loads their session list (``GET /api/sessions``, every session read) at ``rate``/s."""
    cookie = (await sign_in_many(ctx, CAPPED_USER, cap))[0].cookie
    before = len(await client.session_ids(ctx.http, ctx.base, cookie))
    stop = asyncio.Event()
    async with client.session() as http:
        listing = functools.partial(client.get_status, http, ctx.base + "/api/sessions", cookie)
        driver = asyncio.create_task(paced(listing, rate, stop))
        try:
            await asyncio.sleep(1.0)  # the list loads in steady state before wrk starts
            f = await measure(ctx, "f", [ctx.base + "/api/me"])
        finally:
            stop.set()
            stats = await driver
    after = len(await client.session_ids(ctx.http, ctx.base, cookie))
    return AtCap(f=f, cap=cap, sessions_before=before, sessions_after=after, listing=stats)


@dataclasses.dataclass(frozen=True)
class Refusal:
    instance: int  # 1, 2, … in the order polled
    ms: float | None  # after sign-out, when it first refused the cookie; None: still accepted at the limit
    status: int | None  # what it answered then


@dataclasses.dataclass(frozen=True)
class Revocation:
    error: str | None  # the sign-out itself failed: nothing was polled
    refusals: tuple[Refusal, ...] = ()

    @property
    def problems(self) -> tuple[str, ...]:
        if self.error is not None:
            return (f"revocation: {self.error}",)
        return tuple(f"revocation: instance {r.instance} still accepted the access cookie 2 s after its "
                     "session was signed out" for r in self.refusals if r.ms is None)


async def revocation(ctx: Context, bases: Sequence[str], limit: float = 2.0) -> Revocation:
    """Sign the cookie's session out through ``bases[0]``; ms until each instance refuses the cookie."""
    error = await client.sign_out(ctx.http, bases[0], ctx.cookie)
    if error is not None:
        return Revocation(error=error)
    signed_out = time.perf_counter()
    refusals = []
    for number, base in enumerate(bases, 1):
        while True:
            status, _ = await client.me(ctx.http, base, ctx.cookie)
            waited = (time.perf_counter() - signed_out) * 1000
            if status != 200:
                refusals.append(Refusal(number, round(waited, 1), status))
                break
            if waited > limit * 1000:
                refusals.append(Refusal(number, None, None))  # revocation not honoured
                break
            await asyncio.sleep(0.005)
    return Revocation(error=None, refusals=tuple(refusals))
