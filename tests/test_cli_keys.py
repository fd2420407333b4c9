"""``python -m service keys rotate | prune | list`` as an operator runs them, in a fresh directory.

Key files are the state: tests plant keys under kids that say when they were made (a kid starts with
its UTC creation time), so pruning is checked against real time without waiting."""

from __future__ import annotations

import os
import secrets
import stat
import time

import jwt
import pytest

from service.core import keyring
from service.clock import SettableClock
from service.settings import Algorithm, TokenSettings
from service.core.access_tokens import TokenCodec
from tests.support.cli import Cli

SUFFIX = {"EdDSA": ".ed25519.pem", "ES256": ".p256.pem", "HS256": ".hs256"}


def kid_made_at(moment: float) -> str:
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime(moment)) + f".000000-{secrets.token_hex(4)}"


def plant(cli: Cli, kid: str, algorithm: Algorithm = "EdDSA") -> str:
    """A real key of ``algorithm`` in the CLI's keys directory under ``kid``."""
    scratch = cli.root / "scratch"
    made = keyring.add_key(scratch, algorithm)
    cli.keys.mkdir(parents=True, exist_ok=True)
    (scratch / (made + SUFFIX[algorithm])).rename(cli.keys / (kid + SUFFIX[algorithm]))
    return kid


def listed(cli: Cli) -> list[list[str]]:
    return [line.split("\t") for line in cli.ok("keys", "list")]


def pruned(lines: list[str]) -> tuple[set[str], set[str]]:
    """(removed kids, kept kids) from the output of ``keys prune``."""
    removed = {line.split()[1].rstrip(":") for line in lines if line.startswith("removed ")}
    kept = {line.split()[1].rstrip(":") for line in lines if line.startswith("kept ")}
    return removed, kept


# --- rotate and list ------------------------------------------------------------------------------------

def test_rotate_makes_a_new_current_key_and_keeps_the_old_one(cli: Cli) -> None:
    [first, _] = cli.ok("keys", "rotate")
    assert "0 older key(s)" in first
    [second, hint] = cli.ok("keys", "rotate")
    assert "1 older key(s) still verify" in second and "keys prune" in hint
    old_kid, new_kid = first.split()[3], second.split()[3]
    rows = listed(cli)
    assert [row[0] for row in rows] == [old_kid, new_kid]
    assert [row[1] for row in rows] == ["EdDSA", "EdDSA"]
    assert [row[3] for row in rows] == ["verifies", "current"]
    assert all(row[2].startswith("created ") and row[2].endswith(" UTC") for row in rows)
    for path in cli.keys.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert stat.S_IMODE(cli.keys.stat().st_mode) == 0o700


def test_list_shows_when_each_key_was_made(cli: Cli) -> None:
    kid = plant(cli, "20200102T030405.000000-abcdef01")
    assert listed(cli) == [[kid, "EdDSA", "created 2020-01-02 03:04:05 UTC", "current"]]


def test_token_minted_before_rotate_still_verifies_and_new_tokens_carry_the_new_kid(cli: Cli) -> None:
    clock = SettableClock()
    settings = TokenSettings(access_ttl=60)  # type: ignore[arg-type]
    running = TokenCodec(settings, keyring.KeyDirectory(cli.keys, "EdDSA", clock), clock)
    claims = running.mint(user_id="u-1", session_id="s-1", username="alice", not_after=clock() + 3600)
    before = running.encode(claims)
    new_kid = cli.ok("keys", "rotate")[0].split()[3]
    assert jwt.get_unverified_header(before)["kid"] != new_kid

    restarted = TokenCodec(settings, keyring.KeyDirectory(cli.keys, "EdDSA", clock), clock)
    assert restarted.verify(before) == claims
    assert jwt.get_unverified_header(restarted.encode(claims))["kid"] == new_kid

    clock.advance(keyring.RELOAD_INTERVAL)  # the instance that kept running follows within the interval
    assert jwt.get_unverified_header(running.encode(claims))["kid"] == new_kid
    assert running.verify(before) == claims


def test_rotate_with_hs256(cli: Cli) -> None:
    cli.ok("keys", "rotate", SERVICE__TOKENS__ALGORITHM="HS256")
    cli.ok("keys", "rotate", SERVICE__TOKENS__ALGORITHM="HS256")
    rows = [line.split("\t") for line in cli.ok("keys", "list", SERVICE__TOKENS__ALGORITHM="HS256")]
    assert [row[1] for row in rows] == ["HS256", "HS256"]
    assert all(name.endswith(".hs256") for name in cli.files())


def test_help_tells_operators_how_running_instances_pick_up_a_rotation(cli: Cli) -> None:
    text = " ".join(cli.ok("keys", "--help"))
    assert "No restart is needed" in text and "keys prune" in text and "tokens.access_ttl" in text
    assert "keys" in " ".join(cli.ok("--help"))


# --- prune ----------------------------------------------------------------------------------------------

def test_prune_removes_only_keys_whose_tokens_have_all_expired(cli: Cli) -> None:
    now = time.time()
    ancient = plant(cli, kid_made_at(now - 86400 * 2))  # replaced a day ago: removed
    old = plant(cli, kid_made_at(now - 86400))  # replaced an hour ago: removed
    recent = plant(cli, kid_made_at(now - 3600))  # replaced 30 s ago; its tokens live 60 s: kept
    previous = plant(cli, kid_made_at(now - 30))  # replaced just now: kept
    current = plant(cli, kid_made_at(now))
    removed, kept = pruned(cli.ok("keys", "prune", SERVICE__TOKENS__ACCESS_TTL="60s"))
    assert removed == {ancient, old}
    assert kept == {recent, previous, current}
    assert [row[0] for row in listed(cli)] == [recent, previous, current]


def test_prune_waits_access_ttl_plus_leeway_after_the_next_key_took_over(cli: Cli) -> None:
    now = time.time()
    previous = plant(cli, kid_made_at(now - 3600))
    plant(cli, kid_made_at(now - 100))  # took over 100 s ago
    removed, _ = pruned(cli.ok("keys", "prune", SERVICE__TOKENS__ACCESS_TTL="5m"))
    assert removed == set()
    removed, _ = pruned(cli.ok("keys", "prune", SERVICE__TOKENS__ACCESS_TTL="60s", SERVICE__TOKENS__LEEWAY="60s"))
    assert removed == set()
    removed, _ = pruned(cli.ok("keys", "prune", SERVICE__TOKENS__ACCESS_TTL="60s"))
    assert removed == {previous}


def test_prune_never_removes_the_newest_key_however_old(cli: Cli) -> None:
    only = plant(cli, "20000101T000000.000000-00000001")
    lines = cli.ok("keys", "prune")
    assert pruned(lines) == (set(), {only})
    assert lines[-1] == "0 key(s) removed, 1 kept"
    newest = plant(cli, "20000101T000001.000000-00000002")
    assert pruned(cli.ok("keys", "prune")) == ({only}, {newest})
    assert [row[0] for row in listed(cli)] == [newest]


def test_prune_falls_back_to_the_file_time_for_kids_without_a_timestamp(cli: Cli) -> None:
    first = plant(cli, "a-first")
    second = plant(cli, "b-second")
    current = plant(cli, "c-current")
    a_day_ago = time.time() - 86400
    os.utime(cli.keys / (second + ".ed25519.pem"), (a_day_ago, a_day_ago))
    assert pruned(cli.ok("keys", "prune")) == ({first}, {second, current})


def test_prune_leaves_other_algorithms_and_the_refresh_key_alone(cli: Cli) -> None:
    other = plant(cli, "20000101T000000.000000-0000000e", "ES256")
    (cli.keys / "refresh.key").write_bytes(b"x")
    plant(cli, "20000101T000000.000000-00000001")
    current = plant(cli, "20000101T000001.000000-00000002")
    assert pruned(cli.ok("keys", "prune")) == ({"20000101T000000.000000-00000001"}, {current})
    assert cli.files() == sorted([other + ".p256.pem", current + ".ed25519.pem", "refresh.key"])


# --- nothing to work on, bad settings -----------------------------------------------------------------

@pytest.mark.parametrize("action", ["list", "prune"])
def test_list_and_prune_without_keys_are_one_clear_error_and_create_nothing(cli: Cli, action: str) -> None:
    result = cli("keys", action)
    assert result.returncode == 1, result.stderr
    assert result.stderr.splitlines() == [f"error: no EdDSA signing keys in {cli.keys} yet "
                                          "(the service makes the first one when it starts)"]
    assert not cli.data_dir.exists()


def test_bad_algorithm_setting_exits_2_naming_the_key(cli: Cli) -> None:
    result = cli("keys", "rotate", SERVICE__TOKENS__ALGORITHM="none")
    assert result.returncode == 2
    assert result.stderr.startswith("error: setting tokens.algorithm:") and len(result.stderr.splitlines()) == 1
    assert not cli.data_dir.exists()


def test_keys_needs_an_action(cli: Cli) -> None:
    result = cli("keys")
    assert result.returncode == 2
    assert "rotate" in result.stderr and "Traceback" not in result.stderr
