"""Secret keys: the signing ring looked up by ``kid`` and the refresh-token key, as files (mode 0600).

The newest key signs; every key in the ring verifies. A missing ring is generated on first run.
Rotation (a new newest key) is therefore not a special case: older keys keep verifying until pruned.
A running service re-reads the directory through :class:`KeyDirectory`, so rotation and pruning
reach it without a restart.
"""

from __future__ import annotations

import base64
import calendar
import dataclasses
import logging
import os
import re
import secrets
import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from ..clock import Clock
from ..errors import SettingsError
from ..settings import Algorithm

_SUFFIX = {"EdDSA": ".ed25519.pem", "ES256": ".p256.pem", "RS256": ".rsa.pem", "HS256": ".hs256"}
_KID_TIME = re.compile(r"^(\d{8}T\d{6})(?:\.(\d{6}))?-")
# A running service re-reads its keys at most this often (seconds): a rotated key signs within this
# long, and a token with a made-up kid costs at most one directory listing per this long.
RELOAD_INTERVAL = 5.0
log = logging.getLogger("service")


@dataclasses.dataclass(frozen=True)
class SigningKey:
    kid: str
    algorithm: Algorithm
    private: Any  # key object for PyJWT's encode (bytes for HS256)
    public: Any  # key object for PyJWT's decode (bytes for HS256)
    created: float = 0.0  # from the kid, else the file's mtime


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


def load(directory: Path, algorithm: Algorithm, *, known: KeyRing | None = None) -> KeyRing | None:
    """The ring in ``directory``, or None if it holds no key for ``algorithm``. Keys already in
    ``known`` are taken from it rather than parsed again."""
    suffix = _SUFFIX[algorithm]
    try:
        paths = sorted(p for p in directory.iterdir() if p.name.endswith(suffix))
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise SettingsError("storage.keys_dir", f"cannot read keys in {directory}: {exc.strerror}") from None
    if not paths:
        return None
    known = known or KeyRing(())
    try:
        return KeyRing(tuple(known.get(p.name[: -len(suffix)]) or _read(p, algorithm) for p in paths))
    except OSError as exc:  # unreadable, or removed since the listing
        raise SettingsError("storage.keys_dir", f"cannot read {exc.filename}: {exc.strerror}") from None


class KeyDirectory:
    """The ring of one directory, kept in step with it while the service runs.

    :meth:`rescan` re-reads the directory at most once per ``RELOAD_INTERVAL`` of the service clock
    (or at once after that clock went backwards), however often it is asked: by the signer, to pick up
    a rotated key, and by the verifier, to learn a kid another instance just started using. So tokens
    with made-up kids cost at most one directory listing per interval; a kid is never used as a file
    name, the directory is only listed.
    """

    def __init__(self, directory: Path, algorithm: Algorithm, clock: Clock, *,
                 interval: float = RELOAD_INTERVAL) -> None:
        self.directory = directory
        self.algorithm = algorithm
        self.ring = load_or_create(directory, algorithm)
        self.scans = 0  # re-reads after the first load
        self._clock = clock
        self._interval = interval
        self._scanned_at = clock()
        self._problem = ""

    def rescan(self) -> KeyRing:
        """The ring, re-read first if the last read is at least an interval old. A directory that
        cannot be read, or holds a broken file, leaves the ring as it was (and is logged once)."""
        now = self._clock()
        if self._scanned_at <= now < self._scanned_at + self._interval:
            return self.ring
        self._scanned_at = now
        self.scans += 1
        try:
            found = load(self.directory, self.algorithm, known=self.ring)
        except (SettingsError, OSError) as exc:
            if str(exc) != self._problem:
                self._problem = str(exc)
                log.warning("keys_unreadable", extra={"event": "keys_unreadable", "reason": str(exc)})
            return self.ring
        self._problem = ""
        self.ring = _merge(self.ring, found)
        return self.ring


def _merge(old: KeyRing, found: KeyRing | None) -> KeyRing:
    """The ring on disk, but never without the key that signs now (its file deleted by mistake, or the
    directory emptied): tokens it signed a moment ago must keep verifying."""
    if found is None:
        return old
    if found.get(old.current.kid) is not None:
        return found
    return KeyRing(tuple(sorted((*found.keys, old.current), key=lambda key: key.kid)))


def retired(ring: KeyRing, *, token_lifetime: float) -> list[tuple[SigningKey, float]]:
    """Each key but the newest, with the time after which no token it signed can still verify: its
    successor's creation (when it stopped signing, give or take one reload interval) plus the longest
    a token lives (``access_ttl`` + ``leeway``). Keys past that time can be pruned."""
    return [(key, successor.created + RELOAD_INTERVAL + token_lifetime)
            for key, successor in zip(ring.keys, ring.keys[1:])]


def remove_key(directory: Path, key: SigningKey) -> None:
    path = directory / (key.kid + _SUFFIX[key.algorithm])
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        raise SettingsError("storage.keys_dir", f"cannot remove {path}: {exc.strerror}") from None


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
        raise SettingsError("storage.keys_dir", f"{path} does not hold a base64url key") from None
    if len(key) < 32:
        raise SettingsError("storage.keys_dir", f"{path} holds a key shorter than 256 bits")
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
    created = _created(kid, path)
    if algorithm == "HS256":
        secret = _read_secret(path)
        return SigningKey(kid, algorithm, secret, secret, created)
    try:
        private = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except ValueError:
        raise SettingsError("storage.keys_dir", f"{path} is not a valid {algorithm} private key") from None
    if not _fits(private, algorithm):  # else every sign-in would fail at signing time
        raise SettingsError("storage.keys_dir", f"{path} is not a valid {algorithm} private key")
    return SigningKey(kid, algorithm, private, private.public_key(), created)


def _created(kid: str, path: Path) -> float:
    """When the key was made: the UTC time its kid starts with (see :func:`add_key`), else its mtime."""
    match = _KID_TIME.match(kid)
    if match:
        try:
            return calendar.timegm(time.strptime(match[1], "%Y%m%dT%H%M%S")) + int(match[2] or 0) / 1e6
        except ValueError:
            pass
    return path.stat().st_mtime


def _fits(private: Any, algorithm: Algorithm) -> bool:
    if algorithm == "EdDSA":
        return isinstance(private, ed25519.Ed25519PrivateKey)
    if algorithm == "ES256":
        return isinstance(private, ec.EllipticCurvePrivateKey) and isinstance(private.curve, ec.SECP256R1)
    return isinstance(private, rsa.RSAPrivateKey) and private.key_size >= 2048
