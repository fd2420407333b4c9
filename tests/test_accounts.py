"""The account core: every change to a user ends the sessions it must, in the same Redis step, for the
HTTP handlers and the CLI alike. Real Redis; time moves only through the settable clock."""

from __future__ import annotations

import asyncio

import pytest

from service.core.accounts import Accounts
from service.core.auth import Client
from service.errors import AuthenticationRequired, CredentialsError, InvalidInput, RefreshFailed, UserError
from tests.support.sign_in import PASSWORD

NEW = "a different long passphrase"
LAPTOP = Client("Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0", "192.0.2.1")
PHONE = Client("Mozilla/5.0 (Linux; Android 14) Chrome/150.0 Mobile Safari/537.36", "192.0.2.2")


async def ended(authenticator, issued) -> bool:
    """True if neither the session's access token nor its refresh token works any more."""
    try:
        await authenticator.authenticate(issued.access)
    except AuthenticationRequired:
        pass
    else:
        return False
    with pytest.raises(RefreshFailed):
        await authenticator.rotate([issued.refresh], bound_to=issued.claims)
    return True


async def test_a_user_created_through_the_core_signs_in_and_is_listed_with_its_sessions(accounts, authenticator, clock):
    await accounts.create("alice", PASSWORD, now=clock())
    await authenticator.login("alice", PASSWORD, LAPTOP)
    await authenticator.login("alice", PASSWORD, PHONE)
    [account] = await accounts.all()
    assert (account.user.name, account.user.disabled, account.sessions) == ("alice", False, 2)
    assert await accounts.count() == 1


async def test_a_password_too_short_creates_no_user(accounts, clock):
    with pytest.raises(InvalidInput):
        await accounts.create("alice", "short", now=clock())
    assert await accounts.count() == 0


async def test_changing_the_password_keeps_this_session_and_ends_every_other(accounts, authenticator, make_user):
    await make_user("alice", PASSWORD)
    laptop = await authenticator.login("alice", PASSWORD, LAPTOP)
    phone = await authenticator.login("alice", PASSWORD, PHONE)
    assert await accounts.change_password(laptop.claims, PASSWORD, NEW, LAPTOP) == 1
    assert await ended(authenticator, phone)
    assert (await authenticator.authenticate(laptop.access)).session_id == laptop.claims.session_id
    with pytest.raises(CredentialsError):
        await authenticator.login("alice", PASSWORD, LAPTOP)
    await authenticator.login("alice", NEW, LAPTOP)


async def test_a_wrong_current_password_changes_nothing(accounts, authenticator, make_user):
    await make_user("alice", PASSWORD)
    laptop = await authenticator.login("alice", PASSWORD, LAPTOP)
    phone = await authenticator.login("alice", PASSWORD, PHONE)
    with pytest.raises(InvalidInput):
        await accounts.change_password(laptop.claims, "not the password", NEW, LAPTOP)
    await authenticator.authenticate(phone.access)
    await authenticator.login("alice", PASSWORD, LAPTOP)


async def test_an_operator_set_password_ends_every_session(accounts, authenticator, make_user):
    await make_user("alice", PASSWORD)
    laptop = await authenticator.login("alice", PASSWORD, LAPTOP)
    user, count = await accounts.set_password("alice", NEW)
    assert (user.name, count) == ("alice", 1)
    assert await ended(authenticator, laptop)
    await authenticator.login("alice", NEW, LAPTOP)


async def test_disable_ends_every_session_and_enable_lets_the_user_sign_in_again(accounts, authenticator, make_user):
    await make_user("alice", PASSWORD)
    laptop = await authenticator.login("alice", PASSWORD, LAPTOP)
    assert (await accounts.disable("alice"))[1] == 1
    assert await ended(authenticator, laptop)
    with pytest.raises(CredentialsError):
        await authenticator.login("alice", PASSWORD, LAPTOP)
    [account] = await accounts.all()
    assert account.user.disabled and account.sessions == 0
    await accounts.enable("alice")
    await authenticator.login("alice", PASSWORD, LAPTOP)
    assert await ended(authenticator, laptop)  # enabling brings no ended session back


async def test_remove_ends_every_session_and_frees_the_name(accounts, authenticator, make_user, clock):
    await make_user("alice", PASSWORD)
    laptop = await authenticator.login("alice", PASSWORD, LAPTOP)
    assert (await accounts.remove("alice"))[1] == 1
    assert await ended(authenticator, laptop)
    assert await accounts.count() == 0
    with pytest.raises(UserError):
        await accounts.disable("alice")
    again = await accounts.create("alice", NEW, now=clock())
    assert again.id != laptop.claims.user_id


async def test_a_credential_change_racing_a_removal_does_not_bring_the_user_back(accounts, authenticator, make_user,
                                                                                 redis_client, settings):
    """The step that changes credentials writes only an existing user record."""
    user = await make_user("alice", PASSWORD)
    await accounts.remove("alice")
    await authenticator.sessions.revoke_all(user.id, user_fields={"hash": "x", "disabled": "0"})
    assert not await redis_client.exists(f"{settings.redis.key_prefix}u:{{{user.id}}}")
    assert await authenticator.users.get(user.id) is None


async def test_the_credential_change_is_written_inside_the_script_that_ends_the_sessions(accounts, authenticator,
                                                                                        make_user, redis_client):
    """Atomic: no gap between writing the new state and ending the sessions, which another instance's
    sign-in or rotation could slip into. Redis's MONITOR shows each command and whether a script ran it."""
    user = await make_user("alice", PASSWORD)
    await authenticator.login("alice", PASSWORD, LAPTOP)
    changes = {"disable": lambda: accounts.disable("alice"), "passwd": lambda: accounts.set_password("alice", NEW),
               "remove": lambda: accounts.remove("alice")}
    for name, change in changes.items():
        async with redis_client.monitor() as monitor:
            await change()
            await redis_client.echo(f"end of {name}")  # marks the end of what the change sent
            writes = []
            while f"end of {name}" not in (command := await asyncio.wait_for(monitor.next_command(), 5))["command"]:
                if command["command"].split()[0].upper() == "HSET" and user.id in command["command"]:
                    writes.append(command["client_type"])
        assert writes == ["lua"], (name, writes)
