"""``redis.url`` forms: each documented one loads; a malformed one stops start-up with one line naming
``redis.url`` (exit status 2) that never repeats the password; ``redis.replica_acks`` only where
replicas can answer."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from service import settings as settings_module
from service.errors import SettingsError
from service.storage.url import RedisTarget, parse

ROOT = Path(__file__).resolve().parents[2]
SECRET = "hunter2-very-secret"


@pytest.mark.parametrize(("url", "target"), [
    ("redis://:pw@redis.internal:6379/0", RedisTarget("server", url="redis://:pw@redis.internal:6379/0")),
    ("unix:///run/redis/redis.sock", RedisTarget("server", url="unix:///run/redis/redis.sock")),
    (f"redis+sentinel://:{SECRET}@10.0.0.1:26379,10.0.0.2,sentinel-3.internal:26380/sessions",
     RedisTarget("sentinel", nodes=(("10.0.0.1", 26379), ("10.0.0.2", 26379), ("sentinel-3.internal", 26380)),
                 service="sessions", password=SECRET)),
    ("redis+sentinel://app:p%40ss@[::1]:26379/main/3?sentinel_password=s%26s",
     RedisTarget("sentinel", nodes=(("::1", 26379),), service="main", db=3, username="app", password="p@ss",
                 sentinel_password="s&s")),
    ("REDIS+CLUSTER://127.0.0.1:7000,127.0.0.1:7001/",
     RedisTarget("cluster", nodes=(("127.0.0.1", 7000), ("127.0.0.1", 7001)))),
    ("redis+cluster://:pw@node-a", RedisTarget("cluster", nodes=(("node-a", 6379),), password="pw")),
])
def test_documented_forms_name_their_target(url: str, target: RedisTarget) -> None:
    assert parse(url) == target
    assert settings_module.load(None, environ={"SERVICE__REDIS__URL": url}).redis.url == url


@pytest.mark.parametrize(("url", "problem"), [
    ("localhost:6379", "must start with redis://"),
    ("http://redis.internal:6379", "must start with redis://"),
    ("rediss+sentinel://h:26379/sessions", "must start with redis://"),
    ("redis+sentinel://", "must start with redis://"),
    (f"redis+sentinel://:{SECRET}@10.0.0.1:26379", "needs the primary's Sentinel name"),
    (f"redis+sentinel://:{SECRET}@10.0.0.1:26379/", "needs the primary's Sentinel name"),
    (f"redis+sentinel://:{SECRET}@10.0.0.1:26379/sessions/zero", "must be a number"),
    (f"redis+sentinel://:{SECRET}@10.0.0.1:26379/my service", "service name"),
    (f"redis+sentinel://:{SECRET}@10.0.0.1:26379/sessions?password=x", "unknown query parameter 'password'"),
    (f"redis+sentinel://:{SECRET}@10.0.0.1:99999/sessions", "99999 is not a port number"),
    (f"redis+sentinel://:{SECRET}@10.0.0.1:26379,,10.0.0.2/sessions", "host:port addresses"),
    (f"redis+cluster://:{SECRET}@10.0.0.1:7000/1", "only database 0"),
    (f"redis+cluster://:{SECRET}@", "host:port addresses"),
    (f"redis+cluster://:{SECRET}@10.0.0.1:port", "host:port addresses"),
    (f"redis://:{SECRET}@redis.internal:6379/db", "must be a database number"),
    ("redis://redis.internal:6379/0?socket_timeout=soon", "Invalid value"),
])
def test_a_malformed_url_names_redis_url_and_hides_the_password(url: str, problem: str) -> None:
    with pytest.raises(SettingsError) as raised:
        settings_module.load(None, environ={"SERVICE__REDIS__URL": url})
    assert raised.value.key == "redis.url"
    assert problem in raised.value.problem
    assert SECRET not in str(raised.value)


@pytest.mark.parametrize(("environ", "problem"), [
    ({"SERVICE__REDIS__REPLICA_ACKS": "1"}, "embedded Redis"),
    ({"SERVICE__REDIS__REPLICA_ACKS": "1", "SERVICE__REDIS__URL": "redis+cluster://h:7000"}, "redis+cluster"),
    ({"SERVICE__REDIS__REPLICA_ACKS": "-1", "SERVICE__REDIS__URL": "redis://h"}, "between 0 and 16"),
    ({"SERVICE__REDIS__REPLICA_ACKS": "one", "SERVICE__REDIS__URL": "redis://h"}, "not an integer"),
])
def test_replica_acks_needs_replicas_that_can_answer(environ: dict[str, str], problem: str) -> None:
    with pytest.raises(SettingsError) as raised:
        settings_module.load(None, environ=environ)
    assert raised.value.key == "redis.replica_acks" and problem in raised.value.problem


def test_replica_acks_loads_with_sentinel() -> None:
    settings = settings_module.load(None, environ={"SERVICE__REDIS__URL": "redis+sentinel://h/sessions",
                                                  "SERVICE__REDIS__REPLICA_ACKS": "1"})
    assert settings.redis.replica_acks == 1


def test_the_service_refuses_to_start_with_one_line_and_status_2() -> None:
    cwd = tempfile.mkdtemp(prefix="url-", dir="/tmp")
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("SERVICE__")}, "PYTHONPATH": str(ROOT),
           "SERVICE__REDIS__URL": f"redis+sentinel://:{SECRET}@127.0.0.1:1",
           "SERVICE__STORAGE__DATA_DIR": str(Path(cwd) / "data")}
    try:
        result = subprocess.run([sys.executable, "-m", "service"], cwd=cwd, env=env, capture_output=True,
                                text=True, timeout=60, stdin=subprocess.DEVNULL)
    finally:
        os.rmdir(cwd)  # nothing was written: no data directory, no keys
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [
        "error: setting redis.url: needs the primary's Sentinel name after the addresses: "
        "redis+sentinel://host:port/NAME (from env SERVICE__REDIS__URL)"]
