"""README's metrics table is the reference: every metric ``GET /metrics`` exposes is in it, with its
type and labels, and every metric in it is exposed (the multiprocess output of ``--workers`` is held to
the same table in tests/test_metrics_workers.py)."""

from __future__ import annotations

from tests.support.metrics import documented, exposed
from tests.support.sign_in import login

FETCH = {"Sec-Fetch-Mode": "cors", "Accept": "application/json"}


async def test_the_readme_table_names_every_metric_exposed_and_no_other(client, make_user):
    await make_user()
    await login(client)  # every labelled series has a sample to show its labels
    assert (await client.get("/api/me", headers=FETCH)).status == 200
    served = exposed(await (await client.get("/metrics")).text())
    table = documented()
    assert set(served) - set(table) == set(), "exposed but not in README's metrics table"
    assert set(table) - set(served) == set(), "in README's metrics table but not exposed"
    for name, (kind, labels) in table.items():
        assert served[name] == (kind, labels), name


def test_the_table_is_read_whole():
    """The parser must not miss rows: a reference it cannot read would check nothing."""
    table = documented()
    assert len(table) >= 14
    assert table["session_responses_total"] == ("counter", frozenset({"route", "method", "status"}))
    assert table["session_store_errors_total"] == ("counter", frozenset())
