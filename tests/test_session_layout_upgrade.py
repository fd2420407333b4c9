"""Sessions written by schema version 1 (a 62-byte state: the grace's end where the auth time now is, and
no flags byte) keep working after the upgrade: they refresh, list as remembered password sign-ins, and
take the new layout at their next rotation."""

from __future__ import annotations

from tests.support.sign_in import login

JSON = {"Accept": "application/json"}


async def test_a_schema_1_session_refreshes_and_is_rewritten_in_the_new_layout(client, make_user, redis_client,
                                                                                settings, clock):
    user = await make_user()
    signed = await login(client)
    key = f"{settings.redis.key_prefix}u:{{{user.id}}}:s"
    state = await redis_client.hget(key, signed["session"])
    assert len(state) == 63
    created = state[38:44]
    legacy = state[:32] + (0).to_bytes(6, "big") + state[38:62]  # rt pv g=0 c u i a, as version 1 wrote it
    await redis_client.hset(key, signed["session"], legacy)
    sessions = (await (await client.get("/api/sessions", headers=JSON)).json())["sessions"]
    assert [(s["sign_in"], s["remembered"]) for s in sessions] == [("password", True)]
    clock.advance(61)
    assert (await client.post("/auth/refresh", headers=JSON)).status == 200
    rewritten = await redis_client.hget(key, signed["session"])
    assert len(rewritten) == 63 and rewritten[32:38] == created  # its auth time: when it signed in
    assert rewritten[62] == 0x81  # a remembered password sign-in
    assert (await client.post("/auth/refresh", headers=JSON)).status == 200  # and again, within the grace
