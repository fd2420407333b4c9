"""``users passkeys list NAME`` and ``users passkeys remove NAME ID``: the operator sees a user's
passkeys, and removing one ends every session of theirs, logged as ``passkey_removed``."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from service import settings as settings_module
from service.clock import system_clock
from service.core.auth import Authenticator, Client
from service.storage.client import KeySpace, connect
from service.storage.embedded import EmbeddedRedis
from service.storage.passkeys import Passkey, PasskeyStore
from service.web.app import build_authenticator
from tests.support.cli import Cli, events
from tests.support.sign_in import PASSWORD

CLIENT = Client(user_agent="test", ip="127.0.0.1")
PASSKEY = Passkey(id="Y3JlZGVudGlhbC1vZi1hbGljZQ", public_key="cGs", count=3, backup_eligible=True, backed_up=True,
                  transports=("internal",), name="Alice's phone", created=1_700_000_000.0)


@contextlib.asynccontextmanager
async def store(cli: Cli) -> AsyncIterator[tuple[Authenticator, PasskeyStore]]:
    """The CLI's own data, as the service would see it (the embedded Redis, started for the block)."""
    settings = settings_module.load(None, environ=cli.env())
    async with EmbeddedRedis(settings.storage.data_dir) as server:
        redis = connect(server.url, settings.redis)
        try:
            yield build_authenticator(settings, redis, system_clock), PasskeyStore(redis, KeySpace(settings.redis.key_prefix))
        finally:
            await redis.aclose()


async def test_an_operator_lists_and_removes_a_passkey_and_the_users_sessions_end(cli: Cli) -> None:
    assert cli.add("alice").returncode == 0
    async with store(cli) as (auth, passkeys):
        alice = await auth.users.by_name("alice")
        assert await passkeys.add(alice.id, PASSKEY)
        await auth.login("alice", PASSWORD, CLIENT)
    listed = cli.ok("users", "passkeys", "list", "alice")
    assert len(listed) == 1 and listed[0].startswith(PASSKEY.id + "\tAlice's phone\tcreated 2023-11-14")
    assert "last used never" in listed[0] and "backed up" in listed[0]
    result = cli("users", "passkeys", "remove", "alice", PASSKEY.id)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"removed passkey {PASSKEY.id} of alice; 1 session(s) ended"
    removed = [e for e in events(result) if e.get("event") == "passkey_removed"]
    assert removed and removed[0]["user"] == alice.id and removed[0]["actor"] and removed[0]["count"] == 1
    assert cli.ok("users", "passkeys", "list", "alice") == []
    async with store(cli) as (auth, passkeys):
        assert await passkeys.owner(PASSKEY.id) is None  # usernameless sign-in no longer finds alice


def test_unknown_users_and_passkeys_are_one_line_errors(cli: Cli) -> None:
    assert cli.add("alice").returncode == 0
    for args in (("list", "bob"), ("remove", "alice", "nope"), ("remove", "bob", "nope")):
        result = cli("users", "passkeys", *args)
        assert result.returncode == 1 and result.stderr.startswith("error: ") and "Traceback" not in result.stderr


async def test_removing_a_user_removes_their_passkeys(cli: Cli) -> None:
    assert cli.add("alice").returncode == 0
    async with store(cli) as (auth, passkeys):
        alice = await auth.users.by_name("alice")
        assert await passkeys.add(alice.id, PASSKEY)
    assert cli("users", "remove", "alice").returncode == 0
    async with store(cli) as (auth, passkeys):
        assert await passkeys.owner(PASSKEY.id) is None and await passkeys.of_user(alice.id) == []
