"""On a Redis Cluster, everything of one user lives in one hash slot (so each atomic step, a Lua
script on that user's keys, runs on one node), while different users spread over the primaries."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from service.settings import Settings
from tests.support.redis_groups import Cluster
from tests.support.sign_in import login

pytestmark = pytest.mark.parametrize("backend", ["cluster"], indirect=True)

FETCH = {"Sec-Fetch-Mode": "cors", "Accept": "application/json"}


async def test_every_key_of_one_user_is_in_one_slot(
        cluster: Cluster, settings: Settings, make_client: Callable[..., Awaitable[TestClient]],
        make_user: Callable[..., Awaitable[Any]], clock: Any) -> None:
    users = [await make_user(name) for name in ("alice", "bob", "carol", "dave", "erin", "frank")]
    for user in users:
        for _ in range(2):  # two devices each
            client = await make_client()
            await login(client, user.name)
            clock.advance(11)
            assert (await client.post("/auth/refresh", headers=FETCH)).status == 200
        assert (await (await client.get("/api/sessions", headers=FETCH)).json())["sessions"]
    stored = cluster.keys(settings.redis.key_prefix + "*")
    for user in users:
        own = [key for key in stored if f"{{{user.id}}}" in key]
        assert len(own) >= 2, own  # the user record and the sessions
        assert len({cluster.slot(key) for key in own}) == 1, own
    # Different users are spread over the cluster rather than piled onto one node.
    assert len({cluster.node_of(f"{{{user.id}}}") for user in users}) > 1


async def test_failed_sign_ins_are_counted_under_keys_of_their_own(
        cluster: Cluster, settings: Settings, client: TestClient, make_user: Callable[..., Awaitable[Any]]) -> None:
    await make_user()
    response = await client.post("/login", json={"username": "alice", "password": "not the password"})
    assert response.status == 401
    throttles = [key for key in cluster.keys(settings.redis.key_prefix + "*") if ":throttle:" in key]
    assert len(throttles) == 2  # one window per typed username, one per client address
    assert all(key.count("{") == 1 and key.endswith("}") for key in throttles)
    assert len(await login(client)) > 0  # and the right password still gets in
