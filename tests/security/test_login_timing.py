"""Telling users apart by how long a failed sign-in takes. A user whose hash was made with older argon2
parameters (cheaper or costlier than today's) is checked against that hash, an unknown name against a
dummy of today's: without a floor, the time alone says which is which (9 or 80 ms against 30 ms)."""

from __future__ import annotations

import statistics
import time
from typing import Any

import argon2

from service.web.app import build_authenticator
from tests.support.sign_in import PASSWORD

TODAY = {"time_cost": 1, "memory_cost": 8192, "parallelism": 1}  # about 10 ms here
OLDER = {
    "cheaper": argon2.PasswordHasher(time_cost=1, memory_cost=64, parallelism=1),  # well under 1 ms
    "costlier": argon2.PasswordHasher(time_cost=3, memory_cost=65536, parallelism=1),  # about 100 ms or more
}
ROUNDS = 5


async def failed_sign_in_time(client: Any, username: str) -> float:
    started = time.perf_counter()
    response = await client.post("/login", json={"username": username, "password": PASSWORD + " wrong"})
    spent = time.perf_counter() - started
    assert response.status == 401, await response.text()
    return spent


async def test_failed_sign_ins_take_the_same_time_whatever_the_stored_hashs_parameters(
        make_settings, make_client, redis_client, clock):
    settings = make_settings(passwords=TODAY, throttle={"per_user": 1000, "per_ip": 1000})
    auth = build_authenticator(settings, redis_client, clock)
    for name, hasher in OLDER.items():
        await auth.users.create(name, hasher.hash(PASSWORD), clock())
    client = await make_client(of=settings)
    await failed_sign_in_time(client, "costlier")  # the instance learns its slowest check

    times: dict[str, list[float]] = {"nobody": [], "cheaper": [], "costlier": []}
    for _ in range(ROUNDS):  # interleaved, so that the machine's load falls on every kind alike
        for name in times:
            times[name].append(await failed_sign_in_time(client, name))
    medians = {name: statistics.median(spent) for name, spent in times.items()}
    slowest = max(medians.values())
    # Without the floor, "nobody" and "cheaper" take a tenth of "costlier" or less.
    assert all(median > 0.7 * slowest for median in medians.values()), medians
