"""Session ids that are not ids (a device field's name ``<id>:d``, junk, an overlong string) sent to
``DELETE /api/sessions/<id>``: nothing is deleted, Redis is not blamed (no 503, no store-error count),
and the signed-in session carries on."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from service.storage.client import KeySpace
from tests.support.sign_in import login


@pytest.mark.parametrize("suffix", [":d", ":", "x" * 200, "%00", "AAAAAAAAAAAAAAA*"])
async def test_a_malformed_session_id_deletes_nothing_and_is_no_outage(
        client: TestClient, make_user: Any, redis_client: Any, settings: Any, suffix: str) -> None:
    alice = await make_user("alice")
    signed_in = await login(client)
    sessions = KeySpace(settings.redis.key_prefix).user_sessions(alice.id)
    before = await redis_client.hgetall(sessions)

    response = await client.delete(f"/api/sessions/{signed_in['session']}{suffix}",
                                   headers={"X-CSRF-Token": signed_in["csrf_token"]})

    assert response.status < 500, await response.text()
    assert await redis_client.hgetall(sessions) == before
    assert (await client.get("/api/me")).status == 200
    metrics = await (await client.get("/metrics")).text()
    assert "session_store_errors_total 0.0" in metrics
