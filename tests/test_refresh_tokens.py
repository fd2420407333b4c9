"""Refresh tokens as values: unguessable, deterministic successors, and nothing forged gets through."""

from __future__ import annotations

import base64
import hashlib
import secrets
import stat
from pathlib import Path

import pytest

from service.core import keyring
from service.errors import RefreshFailed, SettingsError
from service.core.refresh_tokens import MAX_LENGTH, RefreshToken, RefreshTokens

KEY = secrets.token_bytes(32)


@pytest.fixture
def tokens() -> RefreshTokens:
    return RefreshTokens(KEY)


def secret_part(token: RefreshToken) -> bytes:
    part = token.value.split(".")[2]
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def test_token_names_its_session_and_carries_at_least_256_random_bits(tokens: RefreshTokens) -> None:
    token = tokens.new("user-123456", "sess-abcdef")
    assert token.user_id == "user-123456" and token.session_id == "sess-abcdef"
    user, session, _, _ = token.value.split(".")
    assert (user, session) == ("user-123456", "sess-abcdef")
    assert len(secret_part(token)) * 8 >= 256


def test_new_tokens_are_all_different(tokens: RefreshTokens) -> None:
    values = {tokens.new("user-123456", "sess-abcdef").value for _ in range(200)}
    assert len(values) == 200
    secrets_seen = {v.split(".")[2] for v in values}
    assert len(secrets_seen) == 200


def test_token_parses_back(tokens: RefreshTokens) -> None:
    token = tokens.new("user-123456", "sess-abcdef")
    assert tokens.parse(token.value) == token


def test_only_a_hash_is_stored(tokens: RefreshTokens) -> None:
    token = tokens.new("user-123456", "sess-abcdef")
    assert token.digest == hashlib.sha256(token.value.encode()).digest()
    assert token.value.encode() not in token.digest
    assert secret_part(token) not in token.digest


def test_successor_is_deterministic_different_and_valid(tokens: RefreshTokens) -> None:
    token = tokens.new("user-123456", "sess-abcdef")
    successor = tokens.successor(token)
    assert successor == tokens.successor(token)  # every tab presenting the same token gets the same one
    assert successor == RefreshTokens(KEY).successor(tokens.parse(token.value))  # another instance too
    assert successor.value != token.value and successor.digest != token.digest
    assert (successor.user_id, successor.session_id) == (token.user_id, token.session_id)
    assert tokens.parse(successor.value) == successor
    assert len(secret_part(successor)) * 8 >= 256
    assert tokens.successor(successor) not in (token, successor)


def test_successor_cannot_be_computed_without_the_server_key(tokens: RefreshTokens) -> None:
    """A thief holding an old token cannot derive the live one: the chain is keyed."""
    token = tokens.new("user-123456", "sess-abcdef")
    other = RefreshTokens(secrets.token_bytes(32))
    assert other.successor(token).value.split(".")[2] != tokens.successor(token).value.split(".")[2]


def test_forged_tag_is_rejected_as_forged(tokens: RefreshTokens) -> None:
    token = tokens.new("user-123456", "sess-abcdef")
    user, session, secret, tag = token.value.split(".")
    forged_tag = ("A" if tag[0] != "A" else "B") + tag[1:]
    with pytest.raises(RefreshFailed) as info:
        tokens.parse(".".join([user, session, secret, forged_tag]))
    assert info.value.reason == "forged"


def test_token_of_another_key_is_rejected_as_forged(tokens: RefreshTokens) -> None:
    foreign = RefreshTokens(secrets.token_bytes(32)).new("user-123456", "sess-abcdef")
    with pytest.raises(RefreshFailed) as info:
        tokens.parse(foreign.value)
    assert info.value.reason == "forged"


@pytest.mark.parametrize("swap", ["user", "session", "secret"])
def test_swapped_part_is_rejected_as_forged(tokens: RefreshTokens, swap: str) -> None:
    """The tag covers every part: a stolen secret cannot be moved to another user or session."""
    token = tokens.new("user-123456", "sess-abcdef")
    parts = dict(zip(["user", "session", "secret", "tag"], token.value.split(".")))
    parts[swap] = tokens.new("victim-9999", "sess-zzzzzz").value.split(".")[["user", "session", "secret"].index(swap)]
    with pytest.raises(RefreshFailed) as info:
        tokens.parse(".".join(parts.values()))
    assert info.value.reason == "forged"


@pytest.mark.parametrize("value", [
    "", ".", "...", "a.b.c.d", "user-123456.sess-abcdef.secret", "user-123456.sess-abcdef.x.y.z",
    "user-123456.sess-abcdef.ssssssssssss.tttt tttttt", "user-123456.sess-abcdef.sssssss=ssss.tttttttttttt",
    "user/../../.sess-abcdef.ssssssssssss.tttttttttttt", "üser-123456.sess-abcdef.ssssssssssss.tttttttttttt",
])
def test_malformed_token_is_rejected(tokens: RefreshTokens, value: str) -> None:
    with pytest.raises(RefreshFailed) as info:
        tokens.parse(value)
    assert info.value.reason == "malformed"


@pytest.mark.parametrize("suffix", ["\n", " ", "\x00", "="])
def test_genuine_token_with_trailing_junk_is_rejected(tokens: RefreshTokens, suffix: str) -> None:
    token = tokens.new("user-123456", "sess-abcdef")
    with pytest.raises(RefreshFailed):
        tokens.parse(token.value + suffix)


def test_oversized_token_is_rejected_before_any_work(tokens: RefreshTokens) -> None:
    token = tokens.new("user-123456", "sess-abcdef")
    for value in (token.value + "x" * MAX_LENGTH, "a" * 100_000, ".".join(["a" * 64] * 4) + "a"):
        with pytest.raises(RefreshFailed) as info:
            tokens.parse(value)
        assert info.value.reason == "malformed"


# --- the refresh key on disk -------------------------------------------------------------------------

def test_refresh_key_is_generated_once_private_and_reused(tmp_path: Path) -> None:
    directory = tmp_path / "keys"
    key = keyring.load_or_create_refresh_key(directory)
    path = directory / "refresh.key"
    assert len(key) * 8 >= 256
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(directory.stat().st_mode) & 0o077 == 0
    content = path.read_bytes()
    assert keyring.load_or_create_refresh_key(directory) == key
    assert path.read_bytes() == content
    assert [p.name for p in directory.iterdir()] == ["refresh.key"]  # no temporary files left


def test_directories_created_for_keys_are_private(tmp_path: Path) -> None:
    """The data dir also holds Redis's append-only file (password hashes, sessions): never world-readable."""
    keyring.load_or_create_refresh_key(tmp_path / "data" / "keys")
    for directory in (tmp_path / "data", tmp_path / "data" / "keys"):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700, directory


def test_tokens_survive_a_restart_with_the_kept_key(tmp_path: Path) -> None:
    before = RefreshTokens(keyring.load_or_create_refresh_key(tmp_path))
    token = before.new("user-123456", "sess-abcdef")
    after = RefreshTokens(keyring.load_or_create_refresh_key(tmp_path))
    assert after.parse(token.value) == token
    assert after.successor(token) == before.successor(token)


def test_a_fresh_data_dir_gets_another_key(tmp_path: Path) -> None:
    assert keyring.load_or_create_refresh_key(tmp_path / "a") != keyring.load_or_create_refresh_key(tmp_path / "b")


@pytest.mark.parametrize("content", [b"", base64.urlsafe_b64encode(b"short"), b"%%% not base64 %%%"],
                         ids=["empty", "short", "garbage"])
def test_unusable_refresh_key_file_is_a_settings_error(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "refresh.key").write_bytes(content)
    with pytest.raises(SettingsError) as info:
        keyring.load_or_create_refresh_key(tmp_path)
    assert info.value.key == "storage.keys_dir"
    assert "refresh.key" in str(info.value)
