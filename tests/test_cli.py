"""The command line as an operator runs it: ``python -m service ...`` in a fresh directory, with the
embedded Redis that the CLI starts and stops by itself."""

from __future__ import annotations

import json
import socket
import subprocess

import pytest

from service.core.auth import Client
from service.errors import CredentialsError
from tests.support.cli import Cli
from tests.support.sign_in import PASSWORD

NEW_PASSWORD = "another long pass phrase"
CLIENT = Client(user_agent="pytest", ip="127.0.0.1")


def one_error_line(result: subprocess.CompletedProcess[str], code: int, *needles: str) -> str:
    assert result.returncode == code, (result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def listed(cli: Cli) -> list[list[str]]:
    result = cli("users", "list")
    assert result.returncode == 0, result.stderr
    return [line.split("\t") for line in result.stdout.splitlines()]


# --- users --------------------------------------------------------------------------------------------

def test_add_then_list(cli: Cli) -> None:
    result = cli.add("Alice")
    assert result.returncode == 0, result.stderr
    [row] = listed(cli)
    assert result.stdout.strip() == f"created user Alice (id {row[1]})"
    assert PASSWORD not in result.stdout + result.stderr
    assert row[0] == "Alice" and row[2] == "active" and row[-1] == "0 session(s)"
    # The id is the one the logs use: the creation's event names it.
    [event] = [json.loads(line) for line in result.stderr.splitlines()]
    assert event["event"] == "user_created" and event["user"] == row[1]


async def test_added_user_can_sign_in(cli: Cli) -> None:
    assert cli.add("Alice").returncode == 0
    async with cli.core() as auth:
        issued = await auth.login("alice", PASSWORD, CLIENT)
        assert issued.claims.username == "Alice"


def test_duplicate_name_in_another_case_is_one_clear_error(cli: Cli) -> None:
    assert cli.add("Alice").returncode == 0
    result = cli.add("alice", "some other password")
    one_error_line(result, 1, "already exists")
    assert result.stdout == ""
    assert [row[0] for row in listed(cli)] == ["Alice"]


def test_invalid_name_is_one_clear_error(cli: Cli) -> None:
    one_error_line(cli.add("-not a name"), 1, "username")
    assert listed(cli) == []


def test_too_short_password_is_rejected_and_nothing_is_created(cli: Cli) -> None:
    one_error_line(cli.add("alice", "short"), 1, "password")
    assert listed(cli) == []


def test_no_terminal_and_no_password_stdin_is_one_clear_error(cli: Cli) -> None:
    for stdin in (None, PASSWORD + "\n"):  # a password on stdin is not read without the flag
        one_error_line(cli("users", "add", "alice", stdin=stdin), 1, "--password-stdin")
    assert listed(cli) == []


async def test_passwd_sets_the_new_password_and_ends_sessions(cli: Cli) -> None:
    assert cli.add("alice").returncode == 0
    async with cli.core() as auth:
        await auth.login("alice", PASSWORD, CLIENT)
    assert listed(cli)[0][-1] == "1 session(s)"
    result = cli("users", "passwd", "ALICE", "--password-stdin", stdin=NEW_PASSWORD + "\n")
    assert result.returncode == 0, result.stderr
    assert "1 session(s) ended" in result.stdout
    async with cli.core() as auth:
        with pytest.raises(CredentialsError):
            await auth.login("alice", PASSWORD, CLIENT)
        await auth.login("alice", NEW_PASSWORD, CLIENT)


def test_passwd_rejects_a_short_password(cli: Cli) -> None:
    assert cli.add("alice").returncode == 0
    one_error_line(cli("users", "passwd", "alice", "--password-stdin", stdin="short\n"), 1, "password")


async def test_disable_and_enable(cli: Cli) -> None:
    assert cli.add("alice").returncode == 0
    async with cli.core() as auth:
        session = await auth.login("alice", PASSWORD, CLIENT)
    result = cli("users", "disable", "alice")
    assert result.returncode == 0, result.stderr
    assert "1 session(s) ended" in result.stdout
    assert listed(cli)[0][2] == "disabled"
    async with cli.core() as auth:
        with pytest.raises(CredentialsError):
            await auth.login("alice", PASSWORD, CLIENT)
        assert not await auth.sessions.is_live(session.claims.user_id, session.claims.session_id)
    result = cli("users", "enable", "alice")
    assert result.returncode == 0, result.stderr
    assert listed(cli)[0][2] == "active"
    async with cli.core() as auth:
        await auth.login("alice", PASSWORD, CLIENT)


async def test_remove_ends_sessions_and_frees_the_name(cli: Cli) -> None:
    assert cli.add("alice").returncode == 0
    async with cli.core() as auth:
        session = await auth.login("alice", PASSWORD, CLIENT)
    result = cli("users", "remove", "Alice")
    assert result.returncode == 0, result.stderr
    assert "1 session(s) ended" in result.stdout
    assert listed(cli) == []
    async with cli.core() as auth:
        assert not await auth.sessions.is_live(session.claims.user_id, session.claims.session_id)
        with pytest.raises(CredentialsError):
            await auth.login("alice", PASSWORD, CLIENT)
    assert cli.add("alice", NEW_PASSWORD).returncode == 0


@pytest.mark.parametrize("action", ["passwd", "disable", "enable", "remove"])
def test_unknown_user_is_one_clear_error(cli: Cli, action: str) -> None:
    extra = ["--password-stdin"] if action == "passwd" else []
    one_error_line(cli("users", action, "nobody", *extra, stdin=PASSWORD + "\n"), 1, "nobody")


def test_users_persist_across_cli_runs_with_the_same_keys(cli: Cli) -> None:
    assert cli.add("alice").returncode == 0
    keys = sorted(p.name for p in (cli.data_dir / "keys").iterdir())
    assert cli.add("bob").returncode == 0
    assert [row[0] for row in listed(cli)] == ["alice", "bob"]
    assert sorted(p.name for p in (cli.data_dir / "keys").iterdir()) == keys


# --- bad settings: exit 2, one line naming the key, no traceback --------------------------------------

@pytest.mark.parametrize("args", [("users", "list"), (), ("serve",)], ids=["users", "default", "serve"])
def test_bad_environment_setting_exits_2_naming_the_key(cli: Cli, args: tuple[str, ...]) -> None:
    result = cli(*args, env=cli.env(SERVICE__SERVER__PORT="abc"), timeout=30)
    line = one_error_line(result, 2, "server.port", "abc")
    assert line.startswith("error: ")
    assert result.stdout == ""
    assert not cli.data_dir.exists()  # stopped before touching anything


def test_settings_file_with_unknown_key_exits_2_naming_the_key(cli: Cli) -> None:
    path = cli.root / "other.toml"
    path.write_text('[tokens]\naccess_ttl = "2m"\nlifetime = "5m"\n', encoding="utf-8")
    result = cli("--settings", str(path), "users", "list")
    one_error_line(result, 2, "tokens.lifetime", "unknown key")


def test_settings_toml_in_the_working_directory_is_read(cli: Cli) -> None:
    (cli.cwd / "settings.toml").write_text("[cookies]\nsamesite = 'None'\n", encoding="utf-8")
    one_error_line(cli("users", "list"), 2, "cookies.samesite")


def test_missing_settings_file_exits_2(cli: Cli) -> None:
    one_error_line(cli("--settings", str(cli.root / "absent.toml"), "users", "list"), 2, "absent.toml")


def test_relation_between_keys_exits_2_naming_the_key(cli: Cli) -> None:
    env = cli.env(SERVICE__SESSIONS__IDLE_TIMEOUT="30d")
    one_error_line(cli("users", "list", env=env), 2, "sessions.idle_timeout")


@pytest.mark.parametrize("args", [("users", "list"), ("serve",)], ids=["users", "serve"])
def test_data_dir_too_long_for_a_socket_exits_2_naming_the_key(cli: Cli, args: tuple[str, ...]) -> None:
    long_dir = cli.root / ("d" * 120)
    result = cli(*args, env=cli.env(SERVICE__STORAGE__DATA_DIR=str(long_dir), SERVICE__SERVER__PORT="1"),
                 timeout=30)
    line = one_error_line(result, 2, "storage.data_dir")
    assert "too long" in line


def test_port_in_use_is_one_clear_error(cli: Cli) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = cli("serve", env=cli.env(SERVICE__SERVER__PORT=str(port)), timeout=30)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and str(port) in errors[0], result.stderr
