"""Where settings come from: secret files, systemd credentials, precedence, and errors that say which
source held the bad value and list every bad key at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from service import settings as settings_module
from service.errors import SettingsError
from service.settings import Settings

URL = "redis://:hunter2-from-a-file@127.0.0.1:6379/0"


def secret_file(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    path.chmod(0o600)
    return path


def test_a_key_file_variable_reads_the_value_from_that_file_without_its_newline(tmp_path: Path) -> None:
    path = secret_file(tmp_path, "url", URL + "\n")
    settings = settings_module.load(None, environ={"SERVICE__REDIS__URL_FILE": str(path)})
    assert settings.redis.url == URL


def test_any_setting_can_come_from_a_file_and_is_converted_like_any_other(tmp_path: Path) -> None:
    path = secret_file(tmp_path, "ttl", "90s\r\n")
    settings = settings_module.load(None, environ={"SERVICE__TOKENS__ACCESS_TTL_FILE": str(path)})
    assert settings.tokens.access_ttl == 90


def test_systemd_credentials_named_section_dot_key_set_that_key(tmp_path: Path) -> None:
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    secret_file(credentials, "redis.url", URL)
    secret_file(credentials, "tls-cert", "not a setting: left to whoever loaded it")
    settings = settings_module.load(None, environ={"CREDENTIALS_DIRECTORY": str(credentials)})
    assert settings.redis.url == URL
    assert settings_module.load(None, environ={}) == Settings()


def test_the_environment_overrides_a_credential_which_overrides_the_file(tmp_path: Path) -> None:
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    secret_file(credentials, "server.port", "9001")
    secret_file(credentials, "tokens.issuer", "from-credential")
    toml = secret_file(tmp_path, "settings.toml", '[server]\nport = 9000\nhost = "127.0.0.2"\n')
    settings = settings_module.load(toml, environ={"CREDENTIALS_DIRECTORY": str(credentials),
                                                   "SERVICE__SERVER__PORT": "9002"})
    assert (settings.server.host, settings.server.port, settings.tokens.issuer) == ("127.0.0.2", 9002,
                                                                                     "from-credential")


def test_a_key_set_both_directly_and_by_file_is_refused(tmp_path: Path) -> None:
    path = secret_file(tmp_path, "url", URL)
    with pytest.raises(SettingsError) as info:
        settings_module.load(None, environ={"SERVICE__REDIS__URL": URL, "SERVICE__REDIS__URL_FILE": str(path)})
    assert info.value.key == "redis.url"
    assert "SERVICE__REDIS__URL and SERVICE__REDIS__URL_FILE" in str(info.value)
    assert "hunter2" not in str(info.value)


@pytest.mark.parametrize("problem", ["missing", "directory", "binary", "huge"])
def test_an_unreadable_secret_file_is_one_clear_error_naming_variable_and_path(tmp_path: Path,
                                                                               problem: str) -> None:
    path = tmp_path / "secret"
    if problem == "directory":
        path.mkdir()
    elif problem == "binary":
        path.write_bytes(b"\xff\xfe\x00")
    elif problem == "huge":
        path.write_bytes(b"x" * 100_000)
    with pytest.raises(SettingsError) as info:
        settings_module.load(None, environ={"SERVICE__REDIS__URL_FILE": str(path)})
    assert info.value.key == "redis.url"
    message = str(info.value)
    assert "SERVICE__REDIS__URL_FILE" in message and str(path) in message and "\n" not in message


def test_an_unknown_credential_named_like_a_setting_is_refused_naming_its_file(tmp_path: Path) -> None:
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    secret_file(credentials, "redis.ulr", URL)
    with pytest.raises(SettingsError) as info:
        settings_module.load(None, environ={"CREDENTIALS_DIRECTORY": str(credentials)})
    assert info.value.key == "redis.ulr"
    assert str(credentials / "redis.ulr") in str(info.value)


def test_a_bad_value_says_which_source_it_came_from(tmp_path: Path) -> None:
    toml = secret_file(tmp_path, "settings.toml", "[server]\nport = 0\n")
    with pytest.raises(SettingsError) as info:
        settings_module.load(toml, environ={})
    assert str(info.value) == f"setting server.port: 0 is not a port number (1-65535) (from file {toml})"
    ttl = secret_file(tmp_path, "ttl", "soon")
    with pytest.raises(SettingsError) as info:
        settings_module.load(None, environ={"SERVICE__TOKENS__ACCESS_TTL_FILE": str(ttl)})
    assert str(info.value).endswith(f"(from file-secret {ttl})")


def test_every_bad_key_is_reported_not_only_the_first(tmp_path: Path) -> None:
    toml = secret_file(tmp_path, "settings.toml", "[server]\nport = 'x'\nprot = 1\n[nope]\na = 1\n")
    with pytest.raises(SettingsError) as info:
        settings_module.load(toml, environ={"SERVICE__TOKENS__ACCESS_TTL": "0", "SERVICE__COOKIES__SECURE": "maybe",
                                            "SERVICE__SERVER__URL_PREFIX": "nope/"})
    keys = [error.key for error in info.value.errors]
    assert sorted(keys) == sorted(["server.port", "server.prot", "nope", "tokens.access_ttl", "cookies.secure",
                                   "server.url_prefix"])
    lines = str(info.value).splitlines()
    assert len(lines) == len(keys) and all(line.startswith("setting ") for line in lines)
    assert any("SERVICE__TOKENS__ACCESS_TTL" in line for line in lines)


def test_keys_dir_defaults_to_data_dir_keys_and_can_be_set_apart() -> None:
    assert settings_module.load(None, environ={"SERVICE__STORAGE__DATA_DIR": "/srv/d"}).storage.keys == Path(
        "/srv/d/keys")
    settings = settings_module.load(None, environ={"SERVICE__STORAGE__DATA_DIR": "/srv/d",
                                                   "SERVICE__STORAGE__KEYS_DIR": "/run/secrets/keys"})
    assert settings.storage.keys == Path("/run/secrets/keys")
