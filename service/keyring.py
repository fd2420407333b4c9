"""Secret keys: the signing ring looked up by ``kid`` and the refresh-token key, as files (mode 0600).

The newest key signs; every key in the ring verifies. A missing ring is generated on first run.
Rotation (a new newest key) is therefore not a special case: older keys keep verifying until pruned.
"""

from __future__ import annotations

import base64
import dataclasses
import os
import secrets
import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from .errors import SettingsError
from .settings import Algorithm

_SUFFIX = {"EdDSA": ".ed25519.pem", "ES256": ".p256.pem", "RS256": ".rsa.pem", "HS256": ".hs256"}


@dataclasses.dataclass(frozen=True)
class SigningKey:
    kid: str
    algorithm: Algorithm
    private: Any  # key object for PyJWT's encode (bytes for HS256)
    public: Any  # key object for PyJWT's decode (bytes for HS256)


@dataclasses.dataclass(frozen=True)
class KeyRing:
    """Keys oldest to newest; ``current`` signs, ``by_kid`` verifies."""

    keys: tuple[SigningKey, ...]

    @property
    def current(self) -> SigningKey:
        return self.keys[-1]

    def get(self, kid: object) -> SigningKey | None:
        if not isinstance(kid, str):
            return None
        for key in self.keys:
            if key.kid == kid:
                return key
        return None


def load_or_create(directory: Path, algorithm: Algorithm) -> KeyRing:
    """Load every key for ``algorithm`` from ``directory``; generate the first one if there is none."""
    ring = load(directory, algorithm)
    if ring is None:
        add_key(directory, algorithm)
        ring = load(directory, algorithm)
    assert ring is not None
    return ring


def load(directory: Path, algorithm: Algorithm) -> KeyRing | None:
    suffix = _SUFFIX[algorithm]
    try:
        paths = sorted(p for p in directory.iterdir() if p.name.endswith(suffix))
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise SettingsError("storage.data_dir", f"cannot read keys in {directory}: {exc.strerror}") from None
    if not paths:
        return None
    return KeyRing(tuple(_read(path, algorithm) for path in paths))


def add_key(directory: Path, algorithm: Algorithm) -> str:
    """Generate a new newest key; returns its ``kid``. Names sort by creation time (to the microsecond,
    so a key added within the same second as the previous one still becomes the newest)."""
    seconds, micros = divmod(time.time_ns() // 1000, 1_000_000)
    kid = f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime(seconds))}.{micros:06d}-{secrets.token_hex(4)}"
    _write_new(directory / (kid + _SUFFIX[algorithm]), _generate(algorithm))
    return kid


def load_or_create_refresh_key(directory: Path) -> bytes:
    """The HMAC key of refresh tokens, generated on first run; every instance must share it."""
    return load_or_create_secret(directory, "refresh.key")


def load_or_create_secret(directory: Path, name: str) -> bytes:
    """A 256-bit secret kept in ``directory/name``, generated on first run; every instance must share it."""
    path = directory / name
    if not path.exists():
        _write_new(path, base64.urlsafe_b64encode(secrets.token_bytes(32)))
    return _read_secret(path)


def _read_secret(path: Path) -> bytes:
    """A base64url secret of at least 256 bits; a corrupt or short file stops startup naming it."""
    try:
        key = base64.b64decode(path.read_bytes().strip(), altchars=b"-_", validate=True)
    except ValueError:  # binascii.Error
        raise SettingsError("storage.data_dir", f"{path} does not hold a base64url key") from None
    if len(key) < 32:
        raise SettingsError("storage.data_dir", f"{path} holds a key shorter than 256 bits")
    return key


def _write_new(path: Path, data: bytes) -> None:
    """Write a secret file atomically with mode 0600; if another process won the race, keep theirs."""
    _private_directory(path.parent)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.link(temporary, path)
    except FileExistsError:
        pass
    finally:
        temporary.unlink()


def _private_directory(directory: Path) -> None:
    """Create ``directory`` and each missing parent with mode 0700. ``mkdir(parents=True)`` would make
    the parents (the data dir, which also holds Redis's files) 0777 & ~umask: readable by all."""
    missing = []
    while not directory.exists():
        missing.append(directory)
        directory = directory.parent
    for each in reversed(missing):
        each.mkdir(mode=0o700, exist_ok=True)


def _generate(algorithm: Algorithm) -> bytes:
    if algorithm == "HS256":
        return base64.urlsafe_b64encode(secrets.token_bytes(32))
    private: Any
    if algorithm == "EdDSA":
        private = ed25519.Ed25519PrivateKey.generate()
    elif algorithm == "ES256":
        private = ec.generate_private_key(ec.SECP256R1())
    else:
        private = rsa.generate_private_key(public_exponent=65537, key_size=3072)
    pem: bytes = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return pem


def _read(path: Path, algorithm: Algorithm) -> SigningKey:
    kid = path.name[: -len(_SUFFIX[algorithm])]
    if algorithm == "HS256":
        secret = _read_secret(path)
        return SigningKey(kid, algorithm, secret, secret)
    try:
        private = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except ValueError:
        raise SettingsError("storage.data_dir", f"{path} is not a valid {algorithm} private key") from None
    if not _fits(private, algorithm):  # else every sign-in would fail at signing time
        raise SettingsError("storage.data_dir", f"{path} is not a valid {algorithm} private key")
    return SigningKey(kid, algorithm, private, private.public_key())


def _fits(private: Any, algorithm: Algorithm) -> bool:
    if algorithm == "EdDSA":
        return isinstance(private, ed25519.Ed25519PrivateKey)
    if algorithm == "ES256":
        return isinstance(private, ec.EllipticCurvePrivateKey) and isinstance(private.curve, ec.SECP256R1)
    return isinstance(private, rsa.RSAPrivateKey) and private.key_size >= 2048
