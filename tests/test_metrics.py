"""GET /metrics: Prometheus text without a cookie, counters that move with what happens over HTTP, and a
latency histogram labelled by route name, never by raw path."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from tests.support.cookies import jar_snapshot, with_value
from tests.support.metrics import scrape, value
from tests.support.sign_in import PASSWORD, login

GRACE = 10  # sessions.refresh_reuse_grace's default, in seconds
FETCH = {"Sec-Fetch-Mode": "cors", "Accept": "application/json"}


async def test_metrics_is_prometheus_text_and_needs_no_cookie(client):
    response = await client.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    assert response.headers["Cache-Control"] == "no-store"
    assert not response.headers.getall("Set-Cookie", [])
    names = {family.name for family in text_string_to_metric_families(await response.text())}
    assert {"session_logins", "session_refreshes", "session_revocations", "session_throttles",
            "session_store_errors", "session_request_duration_seconds", "session_responses"} <= names


async def test_metrics_lives_under_the_url_prefix(make_client, make_settings):
    client = await make_client(of=make_settings(server={"url_prefix": "/sso"}))
    assert (await client.get("/sso/metrics")).status == 200


async def test_each_app_has_its_own_registry(make_client, make_user):
    await make_user()
    first, second = await make_client(), await make_client()
    await login(first)
    assert value(await scrape(first), "session_logins_total", outcome="success") == 1
    assert value(await scrape(second), "session_logins_total", outcome="success") == 0


async def test_logins_are_counted_by_outcome_and_throttles_by_window(client, make_user):
    await make_user()
    await login(client)
    for guess in range(6):  # throttle.per_user is 5: the sixth is refused before any check
        response = await client.post("/login", json={"username": "alice", "password": f"guess {guess}"})
    assert response.status == 429
    samples = await scrape(client)
    assert value(samples, "session_logins_total", outcome="success") == 1
    assert value(samples, "session_logins_total", outcome="failure") == 5
    assert value(samples, "session_logins_total", outcome="throttled") == 1
    assert value(samples, "session_throttles_total", scope="user") == 1


async def test_refreshes_are_counted_by_outcome(client, make_user, another_client, clock):
    await make_user()
    await login(client)
    old_tab, thief = await another_client(client), await another_client(client)
    forged = await another_client(client, cookies=with_value(jar_snapshot(client), "refresh", "a.b.c.d"))
    nothing = await another_client(client, cookies=[])
    assert (await client.post("/auth/refresh", headers=FETCH)).status == 200  # rotated
    assert (await old_tab.post("/auth/refresh", headers=FETCH)).status == 200  # its predecessor, in grace
    clock.advance(GRACE + 1)
    assert (await thief.post("/auth/refresh", headers=FETCH)).status == 401  # reused: the session ends
    clock.advance(300)  # tokens.access_ttl: the client's access token has expired, as on the hop
    assert (await client.post("/auth/refresh", headers=FETCH)).status == 401  # revoked by that reuse
    assert (await forged.post("/auth/refresh", headers=FETCH)).status == 401
    assert (await nothing.post("/auth/refresh", headers=FETCH)).status == 401
    samples = await scrape(client)
    for outcome, count in {"rotated": 1, "grace": 1, "reused": 1, "revoked": 1, "malformed": 1,
                           "missing": 1}.items():
        assert value(samples, "session_refreshes_total", outcome=outcome) == count, outcome


async def test_revocations_are_counted_by_kind(client, make_user, another_client):
    await make_user()
    laptop, phone, tablet = client, await another_client(client, cookies=[]), await another_client(client, cookies=[])
    token = (await login(laptop))["csrf_token"]
    phone_session = (await login(phone))["session"]
    await login(tablet)
    csrf = {"X-CSRF-Token": token, **FETCH}
    assert (await laptop.delete(f"/api/sessions/{phone_session}", headers=csrf)).status == 204
    assert (await laptop.delete("/api/sessions", headers=csrf)).status == 204  # laptop and tablet
    tablet_token = (await login(tablet))["csrf_token"]
    assert (await tablet.post("/logout", headers={"X-CSRF-Token": tablet_token, **FETCH})).status == 204
    samples = await scrape(laptop)
    assert value(samples, "session_revocations_total", kind="revoke") == 1
    assert value(samples, "session_revocations_total", kind="revoke_all") == 2
    assert value(samples, "session_revocations_total", kind="logout") == 1


async def test_latency_is_labelled_by_route_name_never_by_raw_path(client, make_user):
    await make_user()
    await login(client)
    assert (await client.get("/api/me", headers=FETCH)).status == 200
    assert (await client.get("/no/such/page-12345", headers=FETCH)).status == 404
    samples = await scrape(client)
    assert value(samples, "session_request_duration_seconds_count", route="me", method="GET") == 1
    assert value(samples, "session_request_duration_seconds_count", route="login", method="POST") == 1
    assert value(samples, "session_responses_total", route="me", method="GET", status="200") == 1
    assert value(samples, "session_responses_total", route="unmatched", method="GET", status="404") == 1
    text = await (await client.get("/metrics")).text()
    assert "page-12345" not in text


async def test_an_unknown_method_is_one_label_value(client):
    for verb in ("PROPFIND", "MKCOL", "LOCK"):  # methods aiohttp parses but no route has
        await client.request(verb, "/healthz")
    samples = await scrape(client)
    assert value(samples, "session_request_duration_seconds_count", route="unmatched", method="other") == 3


async def test_redis_errors_are_counted(make_client, make_settings, tmp_path):
    client = await make_client(of=make_settings(redis={"url": f"unix://{tmp_path}/nobody-listens.sock"}))
    response = await client.post("/login", json={"username": "alice", "password": PASSWORD})
    assert response.status == 503
    assert value(await scrape(client), "session_store_errors_total") == 1
