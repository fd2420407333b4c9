"""The throttle's core pieces: its settings, how a client address and a typed name become a window."""

from __future__ import annotations

import pytest

from service import settings as settings_module
from service.errors import SettingsError, Throttled
from service.storage.throttle import client_bucket, username_digest


def test_defaults_are_five_per_user_and_twenty_per_ip_in_fifteen_minutes() -> None:
    throttle = settings_module.load(None, environ={}).throttle
    assert (throttle.per_user, throttle.per_ip, throttle.window) == (5, 20, 900)


def test_environment_overrides_the_throttle() -> None:
    throttle = settings_module.load(None, environ={"SERVICE__THROTTLE__PER_USER": "3",
                                                  "SERVICE__THROTTLE__WINDOW": "1h"}).throttle
    assert (throttle.per_user, throttle.window) == (3, 3600)


@pytest.mark.parametrize("key, value", [("per_user", "0"), ("per_ip", "-1"), ("window", "0s"), ("window", "0.5s"),
                                        ("window", "2d"), ("per_user", "many")])
def test_a_bad_throttle_setting_names_its_key(key: str, value: str) -> None:
    with pytest.raises(SettingsError) as raised:
        settings_module.load(None, environ={f"SERVICE__THROTTLE__{key.upper()}": value})
    assert raised.value.key == f"throttle.{key}"


@pytest.mark.parametrize("address, bucket", [
    ("192.0.2.7", "192.0.2.7"),
    ("::ffff:192.0.2.7", "192.0.2.7"),  # an IPv4 client on a dual-stack socket
    ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
    ("2001:db8:1:2:ffff::1", "2001:db8:1:2::/64"),  # same /64: one host's usual share
    ("", "-"),
    ("not-an-address", "not-an-address"),
])
def test_client_bucket(address: str, bucket: str) -> None:
    assert client_bucket(address) == bucket


def test_username_digest_is_normalized_and_reveals_nothing() -> None:
    assert username_digest("Alice") == username_digest("ＡＬＩＣＥ ") == username_digest("alice")
    assert username_digest("alice") != username_digest("bob")
    assert "alice" not in username_digest("alice") and len(username_digest("x" * 100_000)) == 32
    assert username_digest("\ud800") == username_digest("\udfff")  # lone surrogates from JSON do not crash


@pytest.mark.parametrize("seconds, wording", [(1, "1 second"), (2, "2 seconds"), (119, "119 seconds"), (120, "2 minutes"),
                                              (900, "15 minutes"), (901, "16 minutes")])
def test_throttled_says_when_to_try_again(seconds: int, wording: str) -> None:
    assert str(Throttled(seconds)) == f"Too many failed sign-in attempts. Try again in {wording}."
