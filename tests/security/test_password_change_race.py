"""Outrunning a credential change: a sign-in whose password was checked against the old hash, and whose
session would be created after the change ended every session, must fail.

Each test holds one sign-in between its (real, argon2) password check and its session's creation,
runs the change through the account core (as the CLI and ``POST /api/password`` do), then lets the
sign-in go on: it fails with the generic sign-in failure and the user has no session it started.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from service.core.accounts import Accounts
from service.core.auth import Client
from service.errors import CredentialsError, InvalidInput
from service.web.app import build_authenticator
from tests.support.sign_in import PASSWORD

LAPTOP = Client("Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0", "203.0.113.7")
NEW_PASSWORD = "a new passphrase, long enough"


class Gate:
    """Holds the next password check, once it has checked out, until :meth:`release`; later checks
    (the change's own) pass."""

    def __init__(self, auth: Any) -> None:
        self.checked = asyncio.Event()
        self._open = asyncio.Event()
        verify = auth.passwords.verify

        async def held(stored: str | None, password: str) -> bool:
            ok: bool = await verify(stored, password)
            if not self.checked.is_set():
                self.checked.set()
                await self._open.wait()
            return ok

        auth.passwords.verify = held

    def release(self) -> None:
        self._open.set()


async def outrun(auth: Any, change: Callable[[], Awaitable[Any]]) -> BaseException | None:
    """Start a sign-in with the old password, run ``change`` once its password has checked out, and
    return what the sign-in raised (None if it got a session)."""
    gate = Gate(auth)
    sign_in = asyncio.create_task(auth.login("alice", PASSWORD, LAPTOP))
    await asyncio.wait_for(gate.checked.wait(), 10)
    await change()
    gate.release()
    try:
        await sign_in
    except BaseException as exc:  # noqa: BLE001 - the test asserts which
        return exc
    return None


@pytest.fixture
async def alice(make_user: Callable[..., Awaitable[Any]]) -> Any:
    return await make_user("alice")


@pytest.mark.parametrize("change", ["set password", "disable", "remove"])
async def test_a_sign_in_checked_before_an_operator_change_gets_no_session(
        alice: Any, authenticator: Any, change: str) -> None:
    accounts = Accounts(authenticator)
    changes = {"set password": lambda: accounts.set_password("alice", NEW_PASSWORD),
               "disable": lambda: accounts.disable("alice"), "remove": lambda: accounts.remove("alice")}

    raised = await outrun(authenticator, changes[change])

    assert isinstance(raised, CredentialsError)
    assert await authenticator.sessions.list(alice.id) == []


async def test_a_sign_in_checked_before_the_users_own_password_change_gets_no_session(
        alice: Any, authenticator: Any) -> None:
    accounts = Accounts(authenticator)
    changer = await authenticator.login("alice", PASSWORD, LAPTOP)

    raised = await outrun(authenticator, lambda: accounts.change_password(changer.claims, PASSWORD, NEW_PASSWORD,
                                                                          LAPTOP))

    assert isinstance(raised, CredentialsError)
    assert [info.session_id for info in await authenticator.sessions.list(alice.id)] == [changer.claims.session_id]
    assert (await authenticator.login("alice", NEW_PASSWORD, LAPTOP)).claims.username == "alice"


async def test_a_password_change_checked_before_an_operator_reset_does_not_undo_it(
        alice: Any, authenticator: Any) -> None:
    """The user's change verified the old password; the operator's reset lands first: the reset holds."""
    accounts = Accounts(authenticator)
    changer = await authenticator.login("alice", PASSWORD, LAPTOP)
    gate = Gate(authenticator)
    change = asyncio.create_task(accounts.change_password(changer.claims, PASSWORD, "the user's own choice", LAPTOP))
    await asyncio.wait_for(gate.checked.wait(), 10)
    await accounts.set_password("alice", NEW_PASSWORD)
    gate.release()

    with pytest.raises(InvalidInput, match="changed meanwhile"):
        await change
    assert await authenticator.sessions.list(alice.id) == []
    with pytest.raises(CredentialsError):
        await authenticator.login("alice", "the user's own choice", LAPTOP)
    assert (await authenticator.login("alice", NEW_PASSWORD, LAPTOP)).claims.username == "alice"


async def test_a_rehash_on_sign_in_never_brings_back_a_changed_password(
        make_settings: Callable[..., Any], make_user: Callable[..., Awaitable[Any]], redis_client: Any,
        clock: Any) -> None:
    """A sign-in under older argon2 parameters rehashes the password it checked; if the password
    changed meanwhile, that rehash (of the old password) must not be written."""
    await make_user("alice", of=make_settings(passwords={"time_cost": 2}))
    auth = build_authenticator(make_settings(), redis_client, clock)  # the tests' own, cheaper parameters
    assert auth.passwords.needs_rehash((await auth.users.by_name("alice")).password_hash)
    accounts = Accounts(auth)

    raised = await outrun(auth, lambda: accounts.set_password("alice", NEW_PASSWORD))

    assert isinstance(raised, CredentialsError)
    with pytest.raises(CredentialsError):
        await auth.login("alice", PASSWORD, LAPTOP)
    assert (await auth.login("alice", NEW_PASSWORD, LAPTOP)).claims.username == "alice"
