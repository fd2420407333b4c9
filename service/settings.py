"""Settings: ``settings.toml``, systemd credentials, ``SERVICE__SECTION__KEY`` environment overrides and
``SERVICE__SECTION__KEY_FILE`` secret files (read by :mod:`service.sources`), validated once and frozen.

Every key has its default here and its documentation in ``settings.toml``. Bad values raise one
:class:`~service.errors.SettingsError` naming every bad key and where its value came from, so startup
stops with one clear line per problem.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal, get_args, get_type_hints

from . import sources
from .errors import SettingsError
from .storage import url as redis_url

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}

SameSite = Literal["Lax", "Strict"]
Algorithm = Literal["EdDSA", "ES256", "RS256", "HS256"]
Outage = Literal["fail-closed", "serve-valid-tokens"]
LogLevel = Literal["debug", "info", "warning", "error"]


class Secret(str):
    """A string that never shows its value in ``repr`` (and so never in a logged settings dump)."""

    def __repr__(self) -> str:
        return "Secret('********')" if self else "Secret('')"


class Duration(float):
    """Seconds; parsed from ``90``, ``90s``, ``5m``, ``12h`` or ``14d``."""


@dataclasses.dataclass(frozen=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 8080
    url_prefix: str = ""
    max_body: int = 65536
    body_timeout: Duration = Duration(10)
    trusted_proxies: str = ""
    protected_prefixes: str = ""
    shutdown_timeout: Duration = Duration(10)
    event_loop: Literal["uvloop", "asyncio"] = "uvloop"


@dataclasses.dataclass(frozen=True)
class StorageSettings:
    data_dir: Path = Path("data")
    keys_dir: Path = Path("")

    @property
    def keys(self) -> Path:
        """Where the secrets live: ``keys_dir``, or ``<data_dir>/keys`` when it is empty."""
        return self.keys_dir if self.keys_dir != Path("") else self.data_dir / "keys"


@dataclasses.dataclass(frozen=True)
class RedisSettings:
    url: Secret = Secret("")
    key_prefix: str = "sess:"
    timeout: Duration = Duration(2.0)
    outage: Outage = "fail-closed"
    replica_acks: int = 0


@dataclasses.dataclass(frozen=True)
class TokenSettings:
    access_ttl: Duration = Duration(300)
    algorithm: Algorithm = "EdDSA"
    issuer: str = "cookie-session"
    audience: str = "cookie-session"
    leeway: Duration = Duration(0)


@dataclasses.dataclass(frozen=True)
class SessionSettings:
    idle_timeout: Duration = Duration(12 * 3600)
    absolute_timeout: Duration = Duration(14 * 86400)
    # A sign-in without "keep me signed in": browser-session cookies, and this absolute lifetime.
    short_absolute_timeout: Duration = Duration(12 * 3600)
    # Sensitive actions (password, passkeys, TOTP, recovery codes) need an authentication this recent.
    step_up_window: Duration = Duration(10 * 60)
    refresh_reuse_grace: Duration = Duration(10)
    # At most this many live sessions a user; a new one ends the least recently used. 50 keeps the
    # user's hash a listpack (storage/sessions.py) and bounds every script touching it.
    max_per_user: int = 50

    @property
    def short_lifetime(self) -> float:
        """The absolute lifetime of a session not remembered: never longer than a remembered one's."""
        return min(self.short_absolute_timeout, self.absolute_timeout)


@dataclasses.dataclass(frozen=True)
class CookieSettings:
    secure: bool = True
    samesite: SameSite = "Lax"
    refresh_path: str = "/auth"


@dataclasses.dataclass(frozen=True)
class PasswordSettings:
    # OWASP Password Storage CS's argon2id floor (19 MiB, t=2, p=1): one lane and one hash at a time
    # leave the other core to the event loop, so sign-ins never stall page views (make bench, d).
    time_cost: int = 2
    memory_cost: int = 19456
    parallelism: int = 1
    max_concurrent: int = 1
    min_length: int = 8


@dataclasses.dataclass(frozen=True)
class ThrottleSettings:
    per_user: int = 5
    per_ip: int = 20
    window: Duration = Duration(15 * 60)


@dataclasses.dataclass(frozen=True)
class LogSettings:
    level: LogLevel = "info"
    access: bool = False


@dataclasses.dataclass(frozen=True)
class UiSettings:
    """What people see: the site's name, and operator directories whose files replace the packaged
    templates and static files of the same name (empty: the packaged ones only)."""

    site_name: str = "Cookie sessions"
    templates_dir: str = ""
    static_dir: str = ""


@dataclasses.dataclass(frozen=True)
class PasskeySettings:
    """WebAuthn: the relying party browsers bind passkeys to, and the origins its pages are served from."""

    rp_id: str = "localhost"
    rp_name: str = ""  # empty: ui.site_name
    origins: str = "http://localhost:8080"
    challenge_ttl: Duration = Duration(120)

    @property
    def allowed_origins(self) -> list[str]:
        return [origin.strip() for origin in self.origins.split(",") if origin.strip()]


@dataclasses.dataclass(frozen=True)
class Settings:
    server: ServerSettings = ServerSettings()
    storage: StorageSettings = StorageSettings()
    redis: RedisSettings = RedisSettings()
    tokens: TokenSettings = TokenSettings()
    sessions: SessionSettings = SessionSettings()
    cookies: CookieSettings = CookieSettings()
    passwords: PasswordSettings = PasswordSettings()
    throttle: ThrottleSettings = ThrottleSettings()
    log: LogSettings = LogSettings()
    ui: UiSettings = UiSettings()
    passkeys: PasskeySettings = PasskeySettings()

    @property
    def rp_name(self) -> str:
        """The name authenticators show for this site: ``passkeys.rp_name``, else ``ui.site_name``."""
        return self.passkeys.rp_name or self.ui.site_name


def load(path: Path | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Read ``path`` (if given), systemd credentials and the environment (see :mod:`service.sources`), and
    validate.

    Raises:
        SettingsError: naming every bad key, what is wrong with it and where its value came from.
    """
    return resolve(sources.gather(path, os.environ if environ is None else environ))


def resolve(layers: sources.Layers) -> Settings:
    """Build and validate the merged sources; every error met on the way is reported, not only the first."""
    errors = list(layers.errors)
    settings = _build(layers.values, errors)
    errors.extend(_relations(settings))
    if errors:
        raise SettingsError.several(_located(errors, layers))
    return settings


def build(raw: Mapping[str, Any]) -> Settings:
    """Turn a mapping of sections into :class:`Settings`, converting each value to its field's type."""
    errors: list[SettingsError] = []
    settings = _build(raw, errors)
    if errors:
        raise SettingsError.several(errors)
    return settings


def _build(raw: Mapping[str, Any], errors: list[SettingsError]) -> Settings:
    """Every valid value converted; each bad one appended to ``errors`` and left at its default."""
    sections = get_type_hints(Settings)
    errors.extend(SettingsError(section, "unknown section") for section in raw if section not in sections)
    values = {}
    for section, cls in sections.items():
        given = raw.get(section, {})
        if not isinstance(given, Mapping):
            errors.append(SettingsError(section, "must be a table"))
            given = {}
        values[section] = _build_section(section, cls, given, errors)
    return Settings(**values)


def _build_section(section: str, cls: type, given: Mapping[str, Any], errors: list[SettingsError]) -> Any:
    fields = get_type_hints(cls)
    values = {}
    for key, value in given.items():
        try:
            if key not in fields:
                raise SettingsError(f"{section}.{key}", "unknown key")
            values[key] = _convert(f"{section}.{key}", fields[key], value)
        except SettingsError as exc:
            errors.append(exc)
    return cls(**values)


def _located(errors: list[SettingsError], layers: sources.Layers) -> list[SettingsError]:
    """One error per key (the first found), each saying where a value that is not the default came from."""
    seen: dict[str, SettingsError] = {}
    for error in errors:
        if error.key not in seen:
            origin = layers.origins.get(error.key)
            seen[error.key] = SettingsError(error.key, f"{error.problem} (from {origin})") if origin else error
    return list(seen.values())


def _convert(key: str, kind: Any, value: Any) -> Any:
    """Convert one raw value (TOML-typed, or a string from the environment) to ``kind``."""
    if isinstance(value, (dict, list)):
        raise SettingsError(key, "must be a single value, not a table or an array")
    if getattr(kind, "__origin__", None) is Literal:
        choices = get_args(kind)
        for choice in choices:
            if str(value).lower() == str(choice).lower():
                return choice
        raise SettingsError(key, f"{value!r} is not one of {', '.join(choices)}")
    if kind is bool:
        return _to_bool(key, value)
    if kind is int:
        if isinstance(value, bool) or not re.fullmatch(r"-?\d+", str(value).strip()):
            raise SettingsError(key, f"{value!r} is not an integer")
        return int(str(value).strip())
    if kind is Duration:
        return _to_duration(key, value)
    if kind is Path:
        return Path(str(value))
    if kind is Secret:
        return Secret(str(value))
    return str(value)


def _to_bool(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise SettingsError(key, f"{value!r} is not true or false")


def _to_duration(key: str, value: Any) -> Duration:
    if isinstance(value, bool):
        raise SettingsError(key, f"{value!r} is not a duration")
    match = _DURATION.match(str(value))
    if not match:
        raise SettingsError(key, f"{value!r} is not a duration (seconds, or a number with ms, s, m, h or d)")
    return Duration(float(match.group(1)) * _UNITS[match.group(2)])


def validate(settings: Settings) -> Settings:
    """Check relations between keys that each type alone cannot express; raises naming every bad key."""
    errors = _relations(settings)
    if errors:
        raise SettingsError.several(errors)
    return settings


def _relations(settings: Settings) -> list[SettingsError]:
    return [error for check in _CHECKS for error in check(settings)]


def _positives(settings: Settings) -> Iterator[SettingsError]:
    for key in ("tokens.access_ttl", "sessions.idle_timeout", "sessions.absolute_timeout",
                "sessions.short_absolute_timeout", "sessions.step_up_window", "redis.timeout",
                "server.max_body", "server.body_timeout", "server.shutdown_timeout", "passwords.time_cost",
                "passwords.parallelism", "passwords.max_concurrent", "passwords.min_length", "throttle.per_user",
                "throttle.per_ip", "throttle.window", "passkeys.challenge_ttl"):
        section, name = key.split(".")
        if getattr(getattr(settings, section), name) <= 0:
            yield SettingsError(key, "must be greater than zero")


def _bounds(settings: Settings) -> Iterator[SettingsError]:
    server, sessions, tokens = settings.server, settings.sessions, settings.tokens
    if not 0 < server.port < 65536:
        yield SettingsError("server.port", f"{server.port} is not a port number (1-65535)")
    if sessions.idle_timeout > sessions.absolute_timeout:
        yield SettingsError("sessions.idle_timeout", "must not be longer than sessions.absolute_timeout")
    if tokens.access_ttl >= sessions.idle_timeout:
        yield SettingsError("tokens.access_ttl", "must be shorter than sessions.idle_timeout")
    if tokens.access_ttl >= sessions.short_lifetime:
        yield SettingsError("tokens.access_ttl", "must be shorter than sessions.short_absolute_timeout")
    if sessions.step_up_window > 86400:
        yield SettingsError("sessions.step_up_window", "must be at most 1d: it is how long a stolen session "
                                                       "may change the password")
    if sessions.refresh_reuse_grace > 60:
        yield SettingsError("sessions.refresh_reuse_grace", "must be at most 60s: it is a replay window")
    if not 1 <= sessions.max_per_user <= 1000:
        yield SettingsError("sessions.max_per_user", "must be between 1 and 1000: every step on a user's "
                                                     "sessions reads all of them")
    if tokens.leeway > 300:
        yield SettingsError("tokens.leeway", "must be at most 5m: it lets expired tokens through")
    if sessions.absolute_timeout > 366 * 86400:
        yield SettingsError("sessions.absolute_timeout", "must be at most 366d")
    if not 1 <= settings.throttle.window <= 86400:
        yield SettingsError("throttle.window", "must be between 1s and 1d: a longer window is a lockout")
    if settings.passwords.memory_cost < 8 * settings.passwords.parallelism:
        yield SettingsError("passwords.memory_cost", "must be at least 8 KiB per lane of parallelism")


def _paths(settings: Settings) -> Iterator[SettingsError]:
    yield from _path_setting("server.url_prefix", settings.server.url_prefix, allow_empty=True)
    yield from _networks("server.trusted_proxies", settings.server.trusted_proxies)
    for prefix in settings.server.protected_prefixes.split(","):
        yield from _path_setting("server.protected_prefixes", prefix.strip(), allow_empty=True)
    yield from _path_setting("cookies.refresh_path", settings.cookies.refresh_path, allow_empty=False)


def _redis(settings: Settings) -> Iterator[SettingsError]:
    """The URL names a server, a Sentinel-watched primary or a Cluster; replica acks need replicas to ask."""
    redis, target = settings.redis, None
    if redis.url:
        try:
            target = redis_url.parse(redis.url)
        except ValueError as exc:
            yield SettingsError("redis.url", str(exc))
    if not 0 <= redis.replica_acks <= 16:
        yield SettingsError("redis.replica_acks", f"{redis.replica_acks} is not between 0 and 16")
    elif redis.replica_acks and not redis.url:
        yield SettingsError("redis.replica_acks", "the embedded Redis (redis.url empty) has no replicas")
    elif redis.replica_acks and target is not None and target.kind == "cluster":
        yield SettingsError("redis.replica_acks", "is not supported with redis+cluster:// (use 0)")


def _ui(settings: Settings) -> Iterator[SettingsError]:
    ui = settings.ui
    if not ui.site_name.strip() or len(ui.site_name) > 100 or not ui.site_name.isprintable():
        yield SettingsError("ui.site_name", "must be 1 to 100 printable characters: it titles every page")
    for key in ("templates_dir", "static_dir"):
        directory = getattr(ui, key)
        if directory and not Path(directory).is_dir():
            yield SettingsError(f"ui.{key}", f"{directory!r} is not a directory")


_RP_ID = re.compile(r"^(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$")


def _passkeys(settings: Settings) -> Iterator[SettingsError]:
    """SECURITY: WebAuthn §5.1.4.1 — the RP ID is a registrable suffix of every origin's host, and an
    origin is https (http for localhost only, which browsers treat as a secure context)."""
    passkeys = settings.passkeys
    rp_id = passkeys.rp_id
    if not _RP_ID.match(rp_id) or re.fullmatch(r"[0-9.]+", rp_id):
        yield SettingsError("passkeys.rp_id", f"{rp_id!r} is not a lower-case host name (an IP address cannot "
                                              "be a WebAuthn RP ID)")
        return
    if len(passkeys.rp_name) > 100 or not passkeys.rp_name.isprintable():
        yield SettingsError("passkeys.rp_name", "must be at most 100 printable characters")
    if passkeys.challenge_ttl > 600:
        yield SettingsError("passkeys.challenge_ttl", "must be at most 10m: it is how long a ceremony may take")
    if not passkeys.allowed_origins:
        yield SettingsError("passkeys.origins", "must name at least one origin, such as https://example.com")
    for origin in passkeys.allowed_origins:
        problem = _origin_problem(origin, rp_id)
        if problem:
            yield SettingsError("passkeys.origins", f"{origin!r} {problem}")


def _origin_problem(origin: str, rp_id: str) -> str | None:
    try:
        parts = urllib.parse.urlsplit(origin)
        port = parts.port
    except ValueError:
        return "is not scheme://host[:port]"
    host = parts.hostname or ""
    if parts.scheme not in ("https", "http") or not host or parts.path or parts.query or parts.fragment \
            or parts.username is not None or port == 0 or origin != origin.lower().rstrip("/"):
        return "is not scheme://host[:port] (lower case, no path)"
    if parts.scheme == "http" and host not in ("localhost", "127.0.0.1"):
        return "must be https (http only for localhost)"
    if host != rp_id and not host.endswith("." + rp_id):
        return f"is not on passkeys.rp_id {rp_id!r} (its host must be it or end with .{rp_id})"
    return None


_CHECKS: tuple[Callable[[Settings], Iterator[SettingsError]], ...] = (_positives, _bounds, _paths, _redis, _ui,
                                                                       _passkeys)


def _networks(key: str, value: str) -> Iterator[SettingsError]:
    for part in filter(None, (p.strip() for p in value.split(","))):
        try:
            ipaddress.ip_network(part, strict=False)
        except ValueError:
            yield SettingsError(key, f"{part!r} is not an IP address or network")


def _path_setting(key: str, value: str, *, allow_empty: bool) -> Iterator[SettingsError]:
    if allow_empty and value == "":
        return
    if not re.fullmatch(r"(/[A-Za-z0-9._~-]+)+", value):
        yield SettingsError(key, f"{value!r} must look like /name or /a/b (no trailing slash)")
