"""What an operator's dashboard shows of each refresh, honest or hostile: every outcome of
``/auth/refresh`` moves its own ``session_refreshes_total`` label by exactly one and no other, so a
browser's burst of refreshes is not counted as an attack and a forged token is not lost among typos."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from service.metrics import REFRESH_OUTCOMES, Metrics
from service.storage.sessions import ROTATE
from tests.support.cookies import cookie, jar_snapshot, with_value
from tests.support.metrics import by_label, scrape
from tests.support.sign_in import login

GRACE = 10  # sessions.refresh_reuse_grace's default, in seconds
ACCESS_TTL = 300  # tokens.access_ttl's default
IDLE = 12 * 3600  # sessions.idle_timeout's default
FETCH = {"Sec-Fetch-Mode": "cors", "Accept": "application/json"}
CORE = Path(__file__).resolve().parents[2] / "service" / "core"


async def refreshes_counted(client: Any, by: Any) -> dict[str, float]:
    """The labels of ``session_refreshes_total`` that moved while POSTing ``/auth/refresh`` from ``by``
    (``client`` scrapes), and by how much."""
    before = by_label(await scrape(client), "session_refreshes_total", "outcome")
    await by.post("/auth/refresh", headers=FETCH)
    after = by_label(await scrape(client), "session_refreshes_total", "outcome")
    assert before.keys() == after.keys() == set(REFRESH_OUTCOMES.values())  # every series, from the start
    return {label: after[label] - before[label] for label in after if after[label] != before[label]}


@pytest.fixture
async def signed_in(client: Any, make_user: Any) -> Any:
    await make_user()
    await login(client)
    return client


async def test_a_plain_rotation_is_counted_as_rotated(signed_in):
    assert await refreshes_counted(signed_in, signed_in) == {"rotated": 1}


async def test_a_burst_presenting_the_newest_token_again_is_counted_as_kept(signed_in):
    assert (await signed_in.post("/auth/refresh", headers=FETCH)).status == 200
    newest = cookie(signed_in, "refresh")
    assert await refreshes_counted(signed_in, signed_in) == {"kept": 1}
    assert cookie(signed_in, "refresh") == newest  # kept: the same token again, nothing rotated


async def test_an_old_tab_within_the_grace_window_is_counted_as_grace(signed_in, another_client):
    old_tab = await another_client(signed_in)
    assert (await signed_in.post("/auth/refresh", headers=FETCH)).status == 200
    assert await refreshes_counted(signed_in, old_tab) == {"grace": 1}


async def test_a_stolen_token_replayed_after_the_grace_window_is_counted_as_reused(signed_in, another_client,
                                                                                  clock):
    thief = await another_client(signed_in)
    assert (await signed_in.post("/auth/refresh", headers=FETCH)).status == 200
    clock.advance(GRACE + 1)
    assert await refreshes_counted(signed_in, thief) == {"reused": 1}
    # The reuse ended the session: when the victim's access token expires, the hop's refresh with their
    # own newest token is refused as revoked.
    clock.advance(ACCESS_TTL)
    assert await refreshes_counted(signed_in, signed_in) == {"revoked": 1}


async def test_a_token_of_an_idle_expired_session_is_counted_as_expired(signed_in, clock):
    clock.advance(IDLE + 1)
    assert await refreshes_counted(signed_in, signed_in) == {"expired": 1}


async def test_a_disabled_users_token_is_counted_as_disabled(signed_in, authenticator):
    user = await authenticator.users.by_name("alice")
    await authenticator.users.set_disabled(user.id, True)
    assert await refreshes_counted(signed_in, signed_in) == {"disabled": 1}


async def test_a_request_without_a_refresh_cookie_is_counted_as_missing(signed_in, another_client):
    assert await refreshes_counted(signed_in, await another_client(signed_in, cookies=[])) == {"missing": 1}


async def test_another_sessions_refresh_cookie_is_counted_as_unbound(signed_in, another_client):
    """Cookie tossing: a genuine refresh token beside the access token of another session is never used."""
    other = await another_client(signed_in, cookies=[])
    await login(other, "alice")
    tossed = await another_client(signed_in, cookies=with_value(jar_snapshot(signed_in), "refresh",
                                                                 cookie(other, "refresh")))
    assert await refreshes_counted(signed_in, tossed) == {"unbound": 1}


async def test_garbage_in_the_refresh_cookie_is_counted_as_malformed(signed_in, another_client):
    garbage = await another_client(signed_in, cookies=with_value(jar_snapshot(signed_in), "refresh", "a.b.c.d"))
    assert await refreshes_counted(signed_in, garbage) == {"malformed": 1}


async def test_a_well_formed_token_with_a_forged_tag_is_counted_as_forged(signed_in, another_client):
    user_id, session_id, secret, tag = cookie(signed_in, "refresh").split(".")
    forged_value = ".".join((user_id, session_id, secret, ("A" if tag[0] != "A" else "B") + tag[1:]))
    forger = await another_client(signed_in, cookies=with_value(jar_snapshot(signed_in), "refresh", forged_value))
    assert await refreshes_counted(signed_in, forger) == {"forged": 1}


def test_every_verdict_of_the_rotate_script_and_every_core_reason_has_its_own_label():
    verdicts = set(re.findall(r"return \{'(\w+)'", ROTATE)) | set(re.findall(r"verdict = '(\w+)'", ROTATE))
    reasons = {reason for path in CORE.glob("*.py")
               for reason in re.findall(r'RefreshFailed\("(\w+)"\)', path.read_text(encoding="utf-8"))}
    assert verdicts >= {"rotated", "kept", "grace", "gone", "disabled", "expired", "reused"}
    assert reasons >= {"missing", "malformed", "forged"}
    assert verdicts | reasons == REFRESH_OUTCOMES.keys()
    assert len(set(REFRESH_OUTCOMES.values())) == len(REFRESH_OUTCOMES)  # no two outcomes share a label


def test_an_outcome_without_a_label_is_a_programming_error_not_a_catch_all():
    with pytest.raises(ValueError, match="'surprise' has no label"):
        Metrics().refresh("surprise")
