"""The [passkeys] settings: the RP ID is a host name, every origin is on it and https (http for
localhost only), and a bad value stops startup naming the key."""

from __future__ import annotations

import pytest

from service import settings as settings_module
from service.errors import SettingsError


def build(**passkeys: object):
    return settings_module.validate(settings_module.build({"passkeys": passkeys}))


def test_the_defaults_serve_localhost_and_name_the_site():
    settings = build()
    assert settings.passkeys.rp_id == "localhost"
    assert settings.passkeys.allowed_origins == ["http://localhost:8080"]
    assert settings.rp_name == settings.ui.site_name
    assert settings.passkeys.challenge_ttl == 120


def test_a_production_site_with_subdomains():
    settings = build(rp_id="example.com", origins="https://example.com, https://sso.example.com:8443",
                     rp_name="Example")
    assert settings.passkeys.allowed_origins == ["https://example.com", "https://sso.example.com:8443"]
    assert settings.rp_name == "Example"


@pytest.mark.parametrize(("key", "values"), [
    ("passkeys.rp_id", {"rp_id": "127.0.0.1", "origins": "http://127.0.0.1:8080"}),
    ("passkeys.rp_id", {"rp_id": "Example.com"}),
    ("passkeys.rp_id", {"rp_id": "https://example.com"}),
    ("passkeys.rp_id", {"rp_id": ""}),
    ("passkeys.origins", {"rp_id": "example.com", "origins": "https://evil.com"}),
    ("passkeys.origins", {"rp_id": "example.com", "origins": "https://notexample.com"}),
    ("passkeys.origins", {"rp_id": "example.com", "origins": "http://example.com"}),
    ("passkeys.origins", {"rp_id": "example.com", "origins": "https://example.com/login"}),
    ("passkeys.origins", {"rp_id": "example.com", "origins": "example.com"}),
    ("passkeys.origins", {"rp_id": "example.com", "origins": "https://example.com:99999"}),
    ("passkeys.origins", {"origins": " , "}),
    ("passkeys.origins", {"origins": "http://127.0.0.1:8080"}),  # 127.0.0.1 is not on rp_id localhost
    ("passkeys.challenge_ttl", {"challenge_ttl": "0s"}),
    ("passkeys.challenge_ttl", {"challenge_ttl": "1h"}),
])
def test_a_bad_value_names_its_key(key, values):
    with pytest.raises(SettingsError) as raised:
        build(**values)
    assert [error.key for error in raised.value.errors] == [key], str(raised.value)
