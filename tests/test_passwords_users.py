"""Passwords and users: argon2id, upgrade on login, hashing off the event loop, names, disabled users."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import argon2
import pytest

from service.web.app import build_authenticator
from service.core.auth import Authenticator, Client
from service.clock import SettableClock
from service.errors import CredentialsError, InvalidInput, RefreshFailed, UserError
from service.core.passwords import MAX_PASSWORD_LENGTH, Passwords
from service.settings import PasswordSettings, Settings
from service.storage.client import Redis
from service.storage.users import check_name
from tests.support.sign_in import CHEAP_PASSWORDS, PASSWORD

CLIENT = Client(user_agent="pytest", ip="127.0.0.1")
CHEAP = PasswordSettings(**CHEAP_PASSWORDS)


@pytest.fixture
def wire(redis_client: Redis, clock: SettableClock) -> Callable[[Settings], Authenticator]:
    """An Authenticator for some settings, on the test's redis-server and key prefix."""
    return lambda chosen: build_authenticator(chosen, redis_client, clock)


@pytest.fixture
def auth(wire: Callable[[Settings], Authenticator], settings: Settings) -> Authenticator:
    return wire(settings)


def parameters(encoded: str) -> argon2.Parameters:
    return argon2.extract_parameters(encoded)


# --- hashing -----------------------------------------------------------------------------------------

async def test_hashes_are_argon2id_with_the_configured_parameters() -> None:
    passwords = Passwords(PasswordSettings(time_cost=2, memory_cost=128, parallelism=2))
    encoded = await passwords.hash(PASSWORD)
    assert encoded.startswith("$argon2id$")
    params = parameters(encoded)
    assert (params.time_cost, params.memory_cost, params.parallelism) == (2, 128, 2)
    assert PASSWORD not in encoded


async def test_same_password_hashes_differently_each_time() -> None:
    passwords = Passwords(CHEAP)
    assert await passwords.hash(PASSWORD) != await passwords.hash(PASSWORD)


async def test_verify_says_true_for_the_password_and_false_otherwise() -> None:
    passwords = Passwords(CHEAP)
    encoded = await passwords.hash(PASSWORD)
    assert await passwords.verify(encoded, PASSWORD) is True
    assert await passwords.verify(encoded, PASSWORD + " ") is False
    assert await passwords.verify(encoded, PASSWORD.upper()) is False
    assert await passwords.verify(encoded, "") is False


async def test_unknown_user_or_unusable_hash_verifies_false() -> None:
    passwords = Passwords(CHEAP)
    assert await passwords.verify(None, PASSWORD) is False
    assert await passwords.verify("", PASSWORD) is False
    assert await passwords.verify("$argon2id$garbage", PASSWORD) is False
    assert await passwords.verify("plaintext", "plaintext") is False


def test_policy_is_length_only() -> None:
    passwords = Passwords(CHEAP)
    passwords.check_policy("a" * 8)
    passwords.check_policy("aaaaaaaa")  # no composition rules (NIST SP 800-63B)
    passwords.check_policy("x" * MAX_PASSWORD_LENGTH)
    for bad in ("", "short", "a" * 7, "x" * (MAX_PASSWORD_LENGTH + 1)):
        with pytest.raises(InvalidInput):
            passwords.check_policy(bad)


async def test_hashing_runs_off_the_event_loop() -> None:
    """With the default (real) cost, a concurrent task keeps running while a hash is computed."""
    passwords = Passwords(PasswordSettings())
    ticks = 0
    hashing = True

    async def ticker() -> None:
        nonlocal ticks
        while hashing:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    started = ticks
    encoded = await passwords.hash(PASSWORD)
    during_hash = ticks - started
    verified = await passwords.verify(encoded, PASSWORD)
    during_both = ticks - started
    hashing = False
    await task
    assert verified
    # On the loop, a hash would block the ticker for its whole duration: it could not tick even twice.
    assert during_hash > 10
    assert during_both - during_hash > 10


# --- rehash on login ---------------------------------------------------------------------------------

async def test_login_upgrades_the_hash_when_parameters_change(make_user: Any, make_settings: Any,
                                                              wire: Callable[[Settings], Authenticator]) -> None:
    user = await make_user("alice")  # hashed with the cheap parameters of ``settings``
    assert (parameters(user.password_hash).time_cost, parameters(user.password_hash).memory_cost) == (1, 64)
    stronger = make_settings(passwords={"time_cost": 2, "memory_cost": 128, "parallelism": 2})
    auth = wire(stronger)
    await auth.login("alice", PASSWORD, CLIENT)
    stored = await auth.users.by_name("alice")
    assert stored is not None and stored.password_hash != user.password_hash
    assert stored.password_hash.startswith("$argon2id$")
    params = parameters(stored.password_hash)
    assert (params.time_cost, params.memory_cost, params.parallelism) == (2, 128, 2)
    await auth.login("alice", PASSWORD, CLIENT)  # the upgraded hash still holds the same password
    with pytest.raises(CredentialsError):
        await auth.login("alice", "wrong password", CLIENT)


async def test_login_keeps_a_current_hash(make_user: Any, auth: Authenticator) -> None:
    user = await make_user("alice")
    await auth.login("alice", PASSWORD, CLIENT)
    stored = await auth.users.by_name("alice")
    assert stored is not None and stored.password_hash == user.password_hash


async def test_failed_login_never_rehashes(make_user: Any, make_settings: Any,
                                           wire: Callable[[Settings], Authenticator]) -> None:
    user = await make_user("alice")
    auth = wire(make_settings(passwords={"time_cost": 2}))
    with pytest.raises(CredentialsError):
        await auth.login("alice", "not the password", CLIENT)
    stored = await auth.users.by_name("alice")
    assert stored is not None and stored.password_hash == user.password_hash


# --- usernames ---------------------------------------------------------------------------------------

async def test_usernames_are_case_insensitive_and_unique(make_user: Any, auth: Authenticator) -> None:
    await make_user("Alice")
    for other in ("alice", "ALICE", " alice ", "Ａｌｉｃｅ"):  # the last is fullwidth (NFKC folds it)
        with pytest.raises(UserError, match="already exists"):
            await make_user(other)
    found = await auth.users.by_name("aLiCe")
    assert found is not None and found.name == "Alice"  # shown as created
    assert [u.name for u in await auth.users.all()] == ["Alice"]


async def test_sign_in_with_any_case_of_the_name(make_user: Any, auth: Authenticator) -> None:
    await make_user("Alice")
    issued = await auth.login("ALICE", PASSWORD, CLIENT)
    assert issued.claims.username == "Alice"


async def test_concurrent_creation_of_one_name_has_exactly_one_winner(auth: Authenticator,
                                                                      clock: SettableClock) -> None:
    encoded = await auth.passwords.hash(PASSWORD)
    names = ["bob", "Bob", "BOB", "bOb", "boB", "BOb"]
    results = await asyncio.gather(*(auth.users.create(n, encoded, clock()) for n in names),
                                   return_exceptions=True)
    assert sum(not isinstance(r, BaseException) for r in results) == 1
    assert all(isinstance(r, UserError) for r in results if isinstance(r, BaseException))
    assert len(await auth.users.all()) == 1


@pytest.mark.parametrize("name", [
    "", " ", "-alice", ".alice", "a b", "a" * 65, "alice/bob", "a:b", "<script>", "al\x00ice", "alice\nbob",
    "{alice}", "a*", "alice?",
])
async def test_invalid_names_are_rejected(make_user: Any, auth: Authenticator, name: str) -> None:
    with pytest.raises(UserError):
        await make_user(name)
    assert await auth.users.all() == []


@pytest.mark.parametrize("name", ["a", "bob.smith@example.com", "j_doe+test", "x" * 64, "Zoë", "李"])
def test_valid_names_are_accepted(name: str) -> None:
    assert check_name(name) == name


async def test_removed_user_frees_the_name(make_user: Any, auth: Authenticator) -> None:
    user = await make_user("alice")
    await auth.users.remove(user)
    assert await auth.users.by_name("alice") is None
    again = await make_user("Alice")
    assert again.id != user.id


async def test_oversized_name_lookup_finds_nobody(auth: Authenticator) -> None:
    assert await auth.users.by_name("a" * 10_000) is None
    with pytest.raises(CredentialsError):
        await auth.login("a" * 10_000, PASSWORD, CLIENT)


# --- sign-in failures look alike ---------------------------------------------------------------------

async def test_disabled_user_cannot_sign_in_and_sees_the_wrong_password_message(make_user: Any,
                                                                                 auth: Authenticator) -> None:
    user = await make_user("alice")
    with pytest.raises(CredentialsError) as wrong:
        await auth.login("alice", "wrong password", CLIENT)
    with pytest.raises(CredentialsError) as unknown:
        await auth.login("nobody", PASSWORD, CLIENT)
    await auth.users.set_disabled(user.id, True)
    with pytest.raises(CredentialsError) as disabled:
        await auth.login("alice", PASSWORD, CLIENT)
    assert str(disabled.value) == str(wrong.value) == str(unknown.value)
    await auth.users.set_disabled(user.id, False)
    await auth.login("alice", PASSWORD, CLIENT)


async def test_disabled_user_cannot_refresh(make_user: Any, auth: Authenticator) -> None:
    user = await make_user("alice")
    issued = await auth.login("alice", PASSWORD, CLIENT)
    await auth.users.set_disabled(user.id, True)
    with pytest.raises(RefreshFailed):
        await auth.rotate([issued.refresh], bound_to=issued.claims)


async def test_overlong_password_is_refused_without_hashing_it_all(make_user: Any, auth: Authenticator) -> None:
    await make_user("alice")
    with pytest.raises(CredentialsError):
        await auth.login("alice", PASSWORD + "x" * 10 * MAX_PASSWORD_LENGTH, CLIENT)
