"""The operator's other commands: ``config check``, ``throttle clear``, ``--settings`` after the command,
and the audit events every change logs on stderr."""

from __future__ import annotations

import time
import tomllib

import pyotp
import pytest

from service import settings as settings_module
from service.core.auth import Client
from service.errors import CredentialsError, SecondFactorRequired, Throttled
from service.web.app import build_totp
from tests.support.cli import Cli, events
from tests.support.sign_in import PASSWORD

CLIENT = Client(user_agent="test", ip="127.0.0.1")
SECRET_URL = "redis://:hunter2-in-a-file@127.0.0.1:6390/0"


# --- config check ------------------------------------------------------------------------------------

def test_config_check_prints_every_effective_setting_masked_with_its_source(cli: Cli) -> None:
    secret = cli.root / "redis-url"
    secret.write_text(SECRET_URL + "\n")
    (cli.cwd / "settings.toml").write_text("[server]\nport = 9100\n")
    result = cli("config", "check", SERVICE__TOKENS__ACCESS_TTL="90s", SERVICE__REDIS__URL_FILE=str(secret))
    assert result.returncode == 0, result.stderr
    assert "hunter2" not in result.stdout + result.stderr
    rows = {line.split(" = ")[0]: line for line in result.stdout.splitlines()}
    assert rows["server.port"].endswith("# file settings.toml") and "9100" in rows["server.port"]
    assert rows["tokens.access_ttl"].endswith("# env SERVICE__TOKENS__ACCESS_TTL")
    assert rows["redis.url"].startswith('redis.url = "********"') and rows["redis.url"].endswith(
        f"# file-secret {secret}")
    assert rows["server.host"].endswith("# default")
    effective = tomllib.loads(result.stdout)  # the table is a settings file of its own
    assert effective["server"]["port"] == 9100 and effective["tokens"]["access_ttl"] == "90s"
    assert not cli.data_dir.exists()  # checking touches nothing


def test_config_check_reads_the_signing_keys_too(cli: Cli) -> None:
    cli.keys.mkdir(parents=True)
    (cli.keys / "20250101T000000-aaaaaaaa.ed25519.pem").write_text("not a key")
    result = cli("config", "check")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("error: setting storage.keys_dir: ") and len(result.stderr.splitlines()) == 1


def test_config_check_exits_2_listing_every_error_with_its_source(cli: Cli) -> None:
    (cli.cwd / "settings.toml").write_text("[server]\nport = 0\nprot = 1\n")
    result = cli("config", "check", SERVICE__COOKIES__SAMESITE="None", SERVICE__TOKENS__ACCESS_TTL="soon")
    assert result.returncode == 2
    assert result.stdout == "" and "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 4, lines
    assert all(line.startswith("error: setting ") for line in lines)
    by_key = {line.split()[2].rstrip(":"): line for line in lines}
    assert set(by_key) == {"server.port", "server.prot", "cookies.samesite", "tokens.access_ttl"}
    assert by_key["server.port"].endswith("(from file settings.toml)")
    assert by_key["cookies.samesite"].endswith("(from env SERVICE__COOKIES__SAMESITE)")


def test_settings_may_follow_the_command(cli: Cli) -> None:
    other = cli.root / "other.toml"
    other.write_text(f'[storage]\ndata_dir = "{cli.root / "elsewhere"}"\n')
    env = {k: v for k, v in cli.env().items() if k != "SERVICE__STORAGE__DATA_DIR"}
    for argv in (("users", "list", "--settings", str(other)), ("--settings", str(other), "users", "list"),
                 ("config", "check", "--settings", str(other))):
        result = cli(*argv, env=env)
        assert result.returncode == 0, (argv, result.stderr)
    assert (cli.root / "elsewhere").is_dir()
    assert f'storage.data_dir = "{cli.root / "elsewhere"}"' in cli("config", "check", "--settings", str(other),
                                                                    env=env).stdout


# --- throttle clear ----------------------------------------------------------------------------------

@pytest.mark.parametrize("target", ["alice", "192.0.2.7"])
async def test_throttle_clear_lets_a_throttled_name_or_client_sign_in_again(cli: Cli, target: str) -> None:
    assert cli.add("alice").returncode == 0
    client = Client(user_agent="test", ip="192.0.2.7")
    limit = {"alice": 5, "192.0.2.7": 20}[target]
    async with cli.core() as auth:
        for attempt in range(limit):
            name = "alice" if target == "alice" else f"nobody{attempt}"
            with pytest.raises(CredentialsError):
                await auth.login(name, "wrong password", client)
        with pytest.raises(Throttled):
            await auth.login("alice", PASSWORD, client)
    result = cli("throttle", "clear", target)
    assert result.returncode == 0, result.stderr
    assert f"cleared {limit} failed sign-in(s)" in result.stdout
    [event] = events(result)
    assert event["event"] == "throttle_cleared" and event["count"] == limit
    assert event["reason"] == ("user" if target == "alice" else "ip")
    async with cli.core() as auth:
        await auth.login("alice", PASSWORD, client)


def test_throttle_clear_of_a_window_never_used_says_zero(cli: Cli) -> None:
    assert cli.ok("throttle", "clear", "2001:db8::1") == ["cleared 0 failed sign-in(s) counted against client "
                                                           "2001:db8::1"]


# --- audit events ------------------------------------------------------------------------------------

async def test_every_admin_change_logs_one_event_with_the_user_id_and_who_ran_it(cli: Cli) -> None:
    assert cli.add("alice").returncode == 0
    async with cli.core() as auth:
        session = await auth.login("alice", PASSWORD, CLIENT)
    user_id = session.claims.user_id
    runs = {
        "password_set": cli("users", "passwd", "alice", "--password-stdin", stdin=PASSWORD + "x\n"),
        "user_disabled": cli("users", "disable", "alice"),
        "user_enabled": cli("users", "enable", "alice"),
        "user_removed": cli("users", "remove", "alice"),
        "key_rotated": cli("keys", "rotate"),
    }
    logged = {}
    for name, result in runs.items():
        assert result.returncode == 0, result.stderr
        assert PASSWORD not in result.stderr
        found = events(result)
        assert all(event["actor"] == found[0]["actor"] != "" for event in found)
        [logged[name]] = [event for event in found if event["event"] == name]
        if name != "key_rotated":
            assert logged[name]["user"] == user_id
    assert logged["password_set"]["count"] == 1  # the session it ended
    assert logged["key_rotated"]["kid"] in runs["key_rotated"].stdout


def test_log_level_warning_keeps_info_events_out(cli: Cli) -> None:
    result = cli("users", "add", "alice", "--password-stdin",
                 stdin=PASSWORD + "\n", SERVICE__LOG__LEVEL="warning")
    assert result.returncode == 0 and result.stderr == ""



# --- users mfa reset ---------------------------------------------------------------------------------

async def test_users_mfa_reset_turns_totp_off_ends_every_session_and_is_logged(cli: Cli) -> None:
    """A user who lost their phone and their recovery codes: the operator turns TOTP off."""
    assert cli.add("alice").returncode == 0
    async with cli.core() as auth:
        session = await auth.login("alice", PASSWORD, CLIENT)
        totp = build_totp(settings_module.load(None, environ=cli.env()), auth, time.time)
        setup = await totp.begin(session.claims)
        await totp.confirm(session.claims, pyotp.TOTP(setup.secret).at(time.time()))
        with pytest.raises(SecondFactorRequired):
            await auth.login("alice", PASSWORD, CLIENT)
    result = cli("users", "mfa", "reset", "alice")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "two-step sign-in turned off for alice; 1 session(s) ended\n"
    assert [(e["event"], e["count"]) for e in events(result) if e.get("event") == "mfa_reset"] == [("mfa_reset", 1)]
    async with cli.core() as auth:
        assert not await auth.sessions.is_live(session.claims.user_id, session.claims.session_id)
        await auth.login("alice", PASSWORD, CLIENT)  # the password alone signs in again
    again = cli("users", "mfa", "reset", "alice")
    assert again.stdout.startswith("two-step sign-in was not on for alice")
    assert cli("users", "mfa", "reset", "nobody").returncode == 1
