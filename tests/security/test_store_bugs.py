"""A Redis script that fails is a bug, not an outage: a 500 and an error in the log, never the 503
"unavailable" answer that pages the on-call as an outage, and the store-error metric stays still."""

from __future__ import annotations

import logging

from service.storage.client import KeySpace
from tests.support.metrics import scrape, value
from tests.support.sign_in import login

JSON = {"Accept": "application/json"}


async def test_a_script_error_from_real_redis_is_a_500_and_no_outage(client, make_user, redis_client, settings,
                                                                    caplog):
    alice = await make_user("alice")
    await login(client, "alice")
    errors_before = value(await scrape(client), "session_store_errors_total")
    # The user's sessions hash turned into a string: every script reading it now fails (WRONGTYPE).
    key = KeySpace(settings.redis.key_prefix).user_sessions(alice.id)
    await redis_client.delete(key)
    await redis_client.set(key, "not a hash")
    with caplog.at_level(logging.ERROR, logger="service"):
        response = await client.get("/api/sessions", headers=JSON)
    assert response.status == 500, await response.text()
    assert (await response.json())["error"] == "internal"
    assert "Retry-After" not in response.headers
    assert [r for r in caplog.records if r.levelno == logging.ERROR and r.name == "service"]
    assert value(await scrape(client), "session_store_errors_total") == errors_before
