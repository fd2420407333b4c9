"""g. The hot path on each event loop, alternated: a bare handler and the service (its ``GET /api/me``)
on each loop, all running at once, loaded in turn in ABBA rounds, so that a machine that gets busier
during the run favours neither loop (the two passes of the main table run one after the other)."""

from __future__ import annotations

import dataclasses
import json
import secrets
import statistics
from collections.abc import Sequence

from . import BenchError, client
from .load import Load, wrk
from .processes import Servers
from .scenarios import USER, Context, expect_user

TARGETS = ("bare", "service")


@dataclasses.dataclass(frozen=True)
class Alternated:
    loops: tuple[str, ...]
    rounds: int
    duration: int  # whole seconds per wrk run
    rps: dict[str, dict[str, list[float]]]  # target -> loop -> req/s, round by round
    problems: tuple[str, ...]

    def median(self, target: str, loop: str) -> float:
        return statistics.median(self.rps[target][loop])


async def alternated(ctx: Context, loops: Sequence[str], rounds: int, duration: int) -> Alternated:
    """Start a bare handler and a service instance (sharing instance 1's Redis and keys) on each of
    ``loops``, then ``rounds`` rounds of wrk on each, the order of the loops reversed every other round."""
    status, body = await client.me(ctx.http, ctx.base, ctx.cookie)
    if status != 200 or body is None:
        raise BenchError(f"GET /api/me with a fresh access cookie answered {status}")
    bases: dict[tuple[str, str], str] = {}
    for loop in loops:
        ctx.servers.loop = loop
        bases[("bare", loop)], _ = await ctx.servers.start_bare(ctx.http, json.dumps(body))
        bases[("service", loop)] = await ctx.servers.start_service(ctx.http, f"service-{loop}",
                                                                  redis__url=ctx.servers.shared_redis)
    rps: dict[str, dict[str, list[float]]] = {target: {loop: [] for loop in loops} for target in TARGETS}
    problems = []
    for number in range(rounds):
        for loop in (loops if number % 2 == 0 else loops[::-1]):
            for target in TARGETS:
                base = bases[(target, loop)]
                if number == 0:
                    await wrk(base + "/api/me", ctx.cookie, ctx.load, duration=ctx.warmup)
                run = await wrk(base + "/api/me", ctx.cookie, ctx.load, duration=duration)
                rps[target][loop].append(run.rps)
                if run.errors.status or run.errors.of_sockets():
                    problems.append(f"g: {target} on {loop}: {run.errors}")
        found = await expect_user(ctx, "g", bases[("service", loops[-1])] + "/api/me", "after")
        problems += [found] if found else []
    return Alternated(loops=tuple(loops), rounds=rounds, duration=duration, rps=rps, problems=tuple(problems))


async def run(servers: Servers, load: Load, warmup: int, loops: Sequence[str], rounds: int,
              duration: int) -> Alternated:
    """g on servers of its own, after the passes: a user, instance 1 (the embedded Redis), its cookie."""
    password = secrets.token_urlsafe(18)
    servers.add_user(USER, password)
    async with client.session() as http:
        one = await servers.start_service(http, "service1")
        ctx = Context(servers=servers, http=http, load=load, warmup=warmup, password=password, base=one,
                      cookie=(await client.sign_in(http, one, USER, password)).cookie)
        return await alternated(ctx, loops, rounds, duration)
