"""Impersonation by look-alike names: an account called ``аlice`` (Cyrillic а) or ``alıce`` (dotless ı)
beside ``alice`` would show "Signed in as alice" to whoever holds it, and fool the people and logs that
read the name. Names are compared under PRECIS (RFC 8265), one script per name, no skeleton twice
(UTS #39); whatever PRECIS refuses at the login form is an unknown user, never a 5xx."""

from __future__ import annotations

import json
from typing import Any

import pytest

from service.core.accounts import Accounts
from service.errors import UserError
from service.storage.client import KeySpace
from tests.support.cli import Cli
from tests.support.sign_in import PASSWORD, form_login, login

CYRILLIC_A = "\u0430lice"  # а: CYRILLIC SMALL LETTER A
DOTLESS_I = "al\u0131ce"  # ı: LATIN SMALL LETTER DOTLESS I
JSON = {"Accept": "application/json"}


def one_error_line(result: Any, *needles: str) -> None:
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    [line] = result.stderr.splitlines()
    for needle in needles:
        assert needle in line, line


def test_the_cli_refuses_look_alikes_of_an_existing_user(cli: Cli) -> None:
    assert cli.add("alice").returncode == 0
    one_error_line(cli.add(CYRILLIC_A), f"error: {CYRILLIC_A!r} mixes Cyrillic and Latin letters")
    one_error_line(cli.add(DOTLESS_I), f"error: {DOTLESS_I!r} looks like the existing user 'alice'")
    one_error_line(cli.add("ＡＬＩＣＥ"), "already exists")  # full-width: PRECIS maps it to alice itself
    assert [line.split("\t")[0] for line in cli.ok("users", "list")] == ["alice"]


@pytest.mark.parametrize("name, message", [
    (CYRILLIC_A, "mixes Cyrillic and Latin letters"),
    (DOTLESS_I, "looks like the existing user 'alice'"),
    ("\u0430l\u0456\u0441\u0435", "mixes Cyrillic and Latin letters"),
    ("\u03b1lice", "mixes Greek and Latin letters"),  # α: GREEK SMALL LETTER ALPHA
    ("ALIÇE", None),  # a cedilla is a different name: allowed
])
async def test_account_core_refuses_look_alikes(accounts: Accounts, name: str, message: str | None) -> None:
    await accounts.create("alice", PASSWORD, now=0)
    if message is None:
        assert (await accounts.create(name, PASSWORD, now=0)).name == name
        return
    with pytest.raises(UserError, match=message):
        await accounts.create(name, PASSWORD, now=0)
    assert [account.user.name for account in await accounts.all()] == ["alice"]


async def test_a_whole_script_look_alike_is_refused_and_a_name_in_one_other_script_is_not(accounts: Accounts) -> None:
    await accounts.create("ape", PASSWORD, now=0)
    with pytest.raises(UserError, match="looks like the existing user 'ape'"):
        await accounts.create("\u0430\u0440\u0435", PASSWORD, now=0)  # а р е, all Cyrillic
    for name in ("иван", "山田たろう", "Zoë", "bob.smith@example.com", "j_doe+7"):
        assert (await accounts.create(name, PASSWORD, now=0)).name == name


@pytest.mark.parametrize("typed", ["ALICE", "ＡＬＩＣＥ", " alice ", "Alice"])
async def test_precis_equivalents_sign_in_as_the_user(client: Any, another_client: Any, accounts: Accounts,
                                                      typed: str) -> None:
    user = await accounts.create("alice", PASSWORD, now=0)
    assert (await login(client, typed))["user"] == {"id": user.id, "name": "alice"}
    response = await form_login(await another_client(client, cookies=[]), typed)  # a browser, signed out
    assert response.status == 303, response.status


async def test_look_alikes_and_names_precis_refuses_fail_like_an_unknown_user(client: Any, accounts: Accounts) -> None:
    await accounts.create("alice", PASSWORD, now=0)
    unknown = await client.post("/login", json={"username": "mallory", "password": PASSWORD})
    assert unknown.status == 401
    expected = await unknown.json()
    for typed in (CYRILLIC_A, DOTLESS_I, "ali ce", "\ufb01x", "alice\u200b", "\U000e0061lice", "a" * 300):
        response = await client.post("/login", json={"username": typed, "password": PASSWORD})
        assert (response.status, await response.json()) == (401, expected), typed
        assert not response.headers.getall("Set-Cookie", []), typed
    lone_surrogate = json.dumps({"username": "ali\ud800ce", "password": PASSWORD}).encode()
    response = await client.post("/login", data=lone_surrogate, headers={"Content-Type": "application/json", **JSON})
    # Not text at all: refused as input, whoever it might name (so it tells nothing either).
    assert response.status == 400 and (await response.json())["error"] == "invalid_input"
    assert not response.headers.getall("Set-Cookie", [])
    form = await form_login(client, "ali ce")
    assert form.status == 401 and "Traceback" not in await form.text()


async def test_users_indexed_before_precis_still_sign_in_and_leave_no_index_when_removed(
        client: Any, accounts: Accounts, redis_client: Any, settings: Any, make_user: Any) -> None:
    # As the earlier release stored "Straße": its name index under NFKC + case folding, "strasse".
    keys = KeySpace(settings.redis.key_prefix)
    template = await make_user("template")  # a real record and hash, copied under another id
    fields = await redis_client.hgetall(keys.user(template.id))
    await redis_client.hset(keys.user("legacy-id-0001"), mapping={**fields, b"name": "Straße".encode()})
    await redis_client.set(keys.username("strasse"), "legacy-id-0001")
    await redis_client.sadd(keys.all_users(), "legacy-id-0001")

    for typed in ("Straße", "STRASSE", "strasse"):
        assert (await login(client, typed, PASSWORD))["user"] == {"id": "legacy-id-0001", "name": "Straße"}
    with pytest.raises(UserError, match="already exists"):  # its old key still holds the name
        await accounts.create("Strasse", PASSWORD, now=0)
    await accounts.remove("Straße")
    assert await redis_client.get(keys.username("strasse")) is None
    assert (await client.post("/login", json={"username": "Straße", "password": PASSWORD})).status == 401


async def test_the_old_folding_does_not_reach_users_created_under_precis(client: Any, accounts: Accounts) -> None:
    await accounts.create("strasse", PASSWORD, now=0)
    # NFKC + case folding made "Straße" and "strasse" one name; PRECIS keeps ß, so they are two.
    assert (await client.post("/login", json={"username": "Straße", "password": PASSWORD})).status == 401
    assert (await login(client, "STRASSE"))["user"]["name"] == "strasse"
