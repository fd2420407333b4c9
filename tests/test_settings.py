"""Settings: the documented file, environment overrides, parsing, and one clear error per bad value."""

from __future__ import annotations

import dataclasses
import re
import tomllib
from pathlib import Path
from typing import Any, get_type_hints

import pytest

from service import settings as settings_module
from service.errors import SettingsError
from service.settings import Duration, Secret, Settings

ROOT = Path(__file__).resolve().parent.parent
SETTINGS_TOML = ROOT / "settings.toml"


def load_env(**environ: str) -> Settings:
    """Settings from defaults plus ``SERVICE__...`` variables, isolated from the real environment."""
    return settings_module.load(None, environ=environ)


def load_file(tmp_path: Path, text: str, **environ: str) -> Settings:
    path = tmp_path / "settings.toml"
    path.write_text(text, encoding="utf-8")
    return settings_module.load(path, environ=environ)


def documented_keys() -> dict[str, set[str]]:
    raw = tomllib.loads(SETTINGS_TOML.read_text(encoding="utf-8"))
    return {section: set(values) for section, values in raw.items()}


def dataclass_keys() -> dict[str, set[str]]:
    return {section: {f.name for f in dataclasses.fields(kind)}
            for section, kind in get_type_hints(Settings).items()}


# --- defaults and the documented file ------------------------------------------------------------

def test_defaults_load_without_file_or_environment() -> None:
    settings = load_env()
    assert settings == Settings()
    assert settings.server.host == "127.0.0.1" and settings.server.port == 8080
    assert settings.redis.url == ""  # embedded Redis by default
    assert settings.tokens.access_ttl == 300
    assert settings.cookies.secure is True and settings.cookies.samesite == "Lax"


def test_settings_toml_parses_and_equals_the_defaults() -> None:
    assert settings_module.load(SETTINGS_TOML, environ={}) == Settings()


def test_every_documented_key_exists_and_every_key_is_documented() -> None:
    assert documented_keys() == dataclass_keys()


def test_every_key_in_settings_toml_has_a_comment() -> None:
    undocumented = [line for line in SETTINGS_TOML.read_text(encoding="utf-8").splitlines()
                    if re.match(r"^\s*\w+\s*=", line) and "#" not in line]
    assert undocumented == []


def test_issue_names_exist() -> None:
    keys = {f"{section}.{key}" for section, names in dataclass_keys().items() for key in names}
    assert {"server.host", "server.port", "storage.data_dir", "redis.url", "tokens.access_ttl",
            "sessions.idle_timeout", "sessions.absolute_timeout", "sessions.refresh_reuse_grace",
            "cookies.secure"} <= keys


def test_settings_are_frozen() -> None:
    settings = load_env()
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.tokens.access_ttl = Duration(1)  # type: ignore[misc]


# --- environment overrides ------------------------------------------------------------------------

def test_environment_overrides_a_key() -> None:
    assert load_env(SERVICE__TOKENS__ACCESS_TTL="2").tokens.access_ttl == 2


def test_environment_wins_over_the_file(tmp_path: Path) -> None:
    settings = load_file(tmp_path, "[server]\nport = 9000\nhost = '0.0.0.0'\n", SERVICE__SERVER__PORT="9100")
    assert settings.server.port == 9100
    assert settings.server.host == "0.0.0.0"


def test_process_environment_is_read_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERVICE__SERVER__PORT", "8181")
    assert settings_module.load(None).server.port == 8181


def test_unrelated_environment_variables_are_ignored() -> None:
    assert load_env(SERVICE_PORT="1", OTHER__SERVER__PORT="x", PATH="/bin") == Settings()


@pytest.mark.parametrize(("text", "seconds"), [
    ("90s", 90), ("5m", 300), ("12h", 43200), ("14d", 1209600), ("42", 42), ("1.5m", 90),
    ("250ms", 0.25), (" 7s ", 7),
])
def test_durations(text: str, seconds: float) -> None:
    settings = load_env(SERVICE__SESSIONS__IDLE_TIMEOUT=text, SERVICE__SESSIONS__ABSOLUTE_TIMEOUT="300d",
                        SERVICE__TOKENS__ACCESS_TTL="1ms")
    assert settings.sessions.idle_timeout == pytest.approx(seconds)
    assert isinstance(settings.sessions.idle_timeout, Duration)


def test_durations_in_the_file_may_be_numbers_or_strings(tmp_path: Path) -> None:
    settings = load_file(tmp_path, "[tokens]\naccess_ttl = 30\n[sessions]\nidle_timeout = '2h'\n")
    assert settings.tokens.access_ttl == 30
    assert settings.sessions.idle_timeout == 7200


@pytest.mark.parametrize(("text", "expected"), [
    ("true", True), ("TRUE", True), ("1", True), ("yes", True), ("on", True),
    ("false", False), ("False", False), ("0", False), ("no", False), ("off", False),
])
def test_booleans_from_the_environment(text: str, expected: bool) -> None:
    assert load_env(SERVICE__COOKIES__SECURE=text).cookies.secure is expected


def test_booleans_and_integers_from_the_file(tmp_path: Path) -> None:
    settings = load_file(tmp_path, "[cookies]\nsecure = false\n[server]\nport = 9090\nmax_body = 1024\n")
    assert settings.cookies.secure is False
    assert settings.server.port == 9090 and settings.server.max_body == 1024


def test_integers_from_the_environment() -> None:
    settings = load_env(SERVICE__SERVER__PORT=" 9090 ", SERVICE__PASSWORDS__TIME_COST="2")
    assert settings.server.port == 9090 and settings.passwords.time_cost == 2


@pytest.mark.parametrize(("key", "text", "expected"), [
    ("SERVICE__COOKIES__SAMESITE", "strict", "Strict"),
    ("SERVICE__COOKIES__SAMESITE", "LAX", "Lax"),
    ("SERVICE__TOKENS__ALGORITHM", "es256", "ES256"),
    ("SERVICE__TOKENS__ALGORITHM", "RS256", "RS256"),
    ("SERVICE__TOKENS__ALGORITHM", "hs256", "HS256"),
    ("SERVICE__TOKENS__ALGORITHM", "eddsa", "EdDSA"),
])
def test_literals_are_case_insensitive_and_canonical(key: str, text: str, expected: str) -> None:
    settings = load_env(**{key: text})
    section = key.split("__")[1].lower()
    name = key.split("__")[2].lower()
    assert getattr(getattr(settings, section), name) == expected


def test_paths_and_prefixes() -> None:
    settings = load_env(SERVICE__STORAGE__DATA_DIR="/var/lib/svc", SERVICE__SERVER__URL_PREFIX="/sso",
                        SERVICE__COOKIES__REFRESH_PATH="/auth/v1")
    assert settings.storage.data_dir == Path("/var/lib/svc")
    assert settings.server.url_prefix == "/sso"
    assert settings.cookies.refresh_path == "/auth/v1"


# --- bad values: each raises SettingsError naming the key -----------------------------------------

BAD_ENVIRONMENT: list[tuple[dict[str, str], str]] = [
    ({"SERVICE__NOPE__X": "1"}, "nope"),
    ({"SERVICE__TOKEN__ACCESS_TTL": "2"}, "token"),
    ({"SERVICE__TOKENS__ACCES_TTL": "2"}, "tokens.acces_ttl"),
    ({"SERVICE__TOKENS__ACCESS_TTL": "5 minutes"}, "tokens.access_ttl"),
    ({"SERVICE__TOKENS__ACCESS_TTL": "-5"}, "tokens.access_ttl"),
    ({"SERVICE__TOKENS__ACCESS_TTL": "0"}, "tokens.access_ttl"),
    ({"SERVICE__TOKENS__ACCESS_TTL": "5M"}, "tokens.access_ttl"),
    ({"SERVICE__TOKENS__ACCESS_TTL": "inf"}, "tokens.access_ttl"),
    ({"SERVICE__TOKENS__ACCESS_TTL": "nan"}, "tokens.access_ttl"),
    ({"SERVICE__TOKENS__ACCESS_TTL": ""}, "tokens.access_ttl"),
    ({"SERVICE__TOKENS__ALGORITHM": "none"}, "tokens.algorithm"),
    ({"SERVICE__TOKENS__ALGORITHM": "HS512"}, "tokens.algorithm"),
    ({"SERVICE__SERVER__PORT": "abc"}, "server.port"),
    ({"SERVICE__SERVER__PORT": "0"}, "server.port"),
    ({"SERVICE__SERVER__PORT": "65536"}, "server.port"),
    ({"SERVICE__SERVER__PORT": "-1"}, "server.port"),
    ({"SERVICE__SERVER__PORT": "80.5"}, "server.port"),
    ({"SERVICE__SERVER__MAX_BODY": "0"}, "server.max_body"),
    ({"SERVICE__COOKIES__SECURE": "maybe"}, "cookies.secure"),
    ({"SERVICE__COOKIES__SECURE": ""}, "cookies.secure"),
    ({"SERVICE__COOKIES__SAMESITE": "None"}, "cookies.samesite"),
    ({"SERVICE__COOKIES__SAMESITE": "lax;"}, "cookies.samesite"),
    ({"SERVICE__SESSIONS__IDLE_TIMEOUT": "15d"}, "sessions.idle_timeout"),
    ({"SERVICE__TOKENS__ACCESS_TTL": "12h"}, "tokens.access_ttl"),
    ({"SERVICE__TOKENS__ACCESS_TTL": "13h"}, "tokens.access_ttl"),
    ({"SERVICE__SESSIONS__REFRESH_REUSE_GRACE": "5m"}, "sessions.refresh_reuse_grace"),
    ({"SERVICE__REDIS__TIMEOUT": "0s"}, "redis.timeout"),
    ({"SERVICE__TOKENS__LEEWAY": "6m"}, "tokens.leeway"),
    ({"SERVICE__SESSIONS__ABSOLUTE_TIMEOUT": "400d"}, "sessions.absolute_timeout"),
    ({"SERVICE__PASSWORDS__TIME_COST": "0"}, "passwords.time_cost"),
    ({"SERVICE__PASSWORDS__PARALLELISM": "0"}, "passwords.parallelism"),
    ({"SERVICE__PASSWORDS__MAX_CONCURRENT": "0"}, "passwords.max_concurrent"),
    ({"SERVICE__PASSWORDS__MEMORY_COST": "7"}, "passwords.memory_cost"),
    ({"SERVICE__PASSWORDS__MIN_LENGTH": "0"}, "passwords.min_length"),
    ({"SERVICE__PASSWORDS__MIN_LENGTH": "-3"}, "passwords.min_length"),
    ({"SERVICE__SERVER__URL_PREFIX": "sso"}, "server.url_prefix"),
    ({"SERVICE__SERVER__URL_PREFIX": "/sso/"}, "server.url_prefix"),
    ({"SERVICE__SERVER__URL_PREFIX": "//evil.example"}, "server.url_prefix"),
    ({"SERVICE__SERVER__URL_PREFIX": "/a b"}, "server.url_prefix"),
    ({"SERVICE__SERVER__URL_PREFIX": "/"}, "server.url_prefix"),
    ({"SERVICE__COOKIES__REFRESH_PATH": ""}, "cookies.refresh_path"),
    ({"SERVICE__COOKIES__REFRESH_PATH": "/"}, "cookies.refresh_path"),
    ({"SERVICE__COOKIES__REFRESH_PATH": "auth"}, "cookies.refresh_path"),
    ({"SERVICE__COOKIES__REFRESH_PATH": "/auth;Domain=evil"}, "cookies.refresh_path"),
]


@pytest.mark.parametrize(("environ", "key"), BAD_ENVIRONMENT,
                         ids=[f"{k}={list(e.values())[0]!r}" for e, k in BAD_ENVIRONMENT])
def test_bad_environment_value_names_the_key(environ: dict[str, str], key: str) -> None:
    with pytest.raises(SettingsError) as info:
        load_env(**environ)
    assert info.value.key == key
    message = str(info.value)
    assert key in message and "\n" not in message


BAD_FILES: list[tuple[str, str]] = [
    ("[nope]\nx = 1\n", "nope"),
    ("[server]\nprot = 8080\n", "server.prot"),
    ("[server]\nport = 'abc'\n", "server.port"),
    ("[server]\nport = true\n", "server.port"),
    ("[server]\nport = 8080.0\n", "server.port"),
    ("[server]\nhost = ['a', 'b']\n", "server.host"),
    ("[tokens]\nissuer = { a = 1 }\n", "tokens.issuer"),
    ("[tokens]\naccess_ttl = true\n", "tokens.access_ttl"),
    ("[tokens]\naccess_ttl = '5 min'\n", "tokens.access_ttl"),
    ("[cookies]\nsecure = 'sometimes'\n", "cookies.secure"),
    ("[cookies]\nsamesite = 'None'\n", "cookies.samesite"),
    ("server = 3\n", "server"),
    ("[server.extra]\nx = 1\n", "server.extra"),
]


@pytest.mark.parametrize(("text", "key"), BAD_FILES, ids=[k for _, k in BAD_FILES])
def test_bad_file_value_names_the_key(tmp_path: Path, text: str, key: str) -> None:
    with pytest.raises(SettingsError) as info:
        load_file(tmp_path, text)
    assert info.value.key == key
    assert "\n" not in str(info.value)


def test_a_section_that_is_not_a_table_is_named_even_with_an_environment_override(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as info:
        load_file(tmp_path, "server = 3\n", SERVICE__SERVER__PORT="9000")
    assert info.value.key == "server"


def test_missing_file_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as info:
        settings_module.load(tmp_path / "absent.toml", environ={})
    assert info.value.key == "--settings"
    assert "absent.toml" in str(info.value) and "\n" not in str(info.value)


def test_invalid_toml_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as info:
        load_file(tmp_path, "[server\nport = \n")
    assert info.value.key == "--settings"
    assert "not valid TOML" in str(info.value) and "\n" not in str(info.value)


# --- secrets ---------------------------------------------------------------------------------------

def test_secret_redis_url_is_masked_in_repr_but_usable() -> None:
    url = "redis://:hunter2-very-secret@redis.internal:6379/0"
    settings = load_env(SERVICE__REDIS__URL=url)
    assert settings.redis.url == url
    assert isinstance(settings.redis.url, Secret)
    for shown in (repr(settings), str(settings), repr(settings.redis), f"{settings.redis!r}"):
        assert "hunter2" not in shown
        assert "********" in shown


def test_empty_secret_says_it_is_empty() -> None:
    assert repr(Secret("")) == "Secret('')"


def _all_values(settings: Settings) -> dict[str, Any]:
    return {f"{section}.{f.name}": getattr(getattr(settings, section), f.name)
            for section in get_type_hints(Settings)
            for f in dataclasses.fields(getattr(settings, section))}


def test_environment_values_have_the_declared_types() -> None:
    settings = load_env(SERVICE__SERVER__PORT="9000", SERVICE__COOKIES__SECURE="0",
                        SERVICE__TOKENS__ACCESS_TTL="1m", SERVICE__STORAGE__DATA_DIR="d")
    for key, value in _all_values(settings).items():
        section, name = key.split(".")
        kind = get_type_hints(type(getattr(settings, section)))[name]
        if getattr(kind, "__origin__", None) is None:
            assert isinstance(value, kind), key
