"""Where each raw setting comes from, and which source won: defaults, the settings file, systemd credentials,
the environment and secret files named by it, in rising precedence.

Every value keeps its :class:`Origin`, so an error can say where the bad value came from and
``config check`` can show it. Secret files (``SERVICE__SECTION__KEY_FILE=path``, or a credential
``$CREDENTIALS_DIRECTORY/section.key`` from systemd's ``LoadCredential=``) let a password reach the
service without sitting in the environment, where ``/proc/<pid>/environ`` and crash reports show it.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from .errors import SettingsError

ENV_PREFIX = "SERVICE__"
FILE_SUFFIX = "_file"
CREDENTIALS = "CREDENTIALS_DIRECTORY"  # set by systemd for a unit with LoadCredential=
MAX_SECRET_BYTES = 65536
# A credential named like a setting: everything else in the directory belongs to someone else.
_CREDENTIAL_NAME = re.compile(r"^[a-z_]+\.[a-z_]+$")


@dataclasses.dataclass(frozen=True)
class Origin:
    """Where one value came from: ``kind`` (default, file, env, file-secret) and which file or variable."""

    kind: Literal["default", "file", "env", "file-secret"]
    where: str = ""

    def __str__(self) -> str:
        return f"{self.kind} {self.where}" if self.where else self.kind


DEFAULT = Origin("default")


@dataclasses.dataclass
class Layers:
    """The raw values of every source merged, with the origin of each and the errors met reading them."""

    values: dict[str, Any] = dataclasses.field(default_factory=dict)  # section -> {key: raw value}
    origins: dict[str, Origin] = dataclasses.field(default_factory=dict)  # "section.key" -> where from
    errors: list[SettingsError] = dataclasses.field(default_factory=list)

    def origin(self, key: str) -> Origin:
        return self.origins.get(key, DEFAULT)

    def put(self, section: str, key: str, value: Any, origin: Origin) -> None:
        table = self.values.setdefault(section, {})
        if not isinstance(table, dict):
            self.errors.append(SettingsError(section, f"must be a table (it is not, in {self.origin(section)})"))
            return
        table[key] = value
        self.origins[f"{section}.{key}"] = origin


def gather(path: Path | None, environ: Mapping[str, str]) -> Layers:
    """Every source, lowest precedence first. An unreadable or invalid settings file raises at once."""
    layers = Layers()
    if path is not None:
        _settings_file(layers, Path(path))
    if environ.get(CREDENTIALS):
        _credentials(layers, Path(environ[CREDENTIALS]))
    _environment(layers, environ)
    return layers


def _settings_file(layers: Layers, path: Path) -> None:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SettingsError("--settings", f"cannot read {path}: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SettingsError("--settings", f"{path} is not valid TOML: {exc}") from None
    origin = Origin("file", str(path))
    for section, table in raw.items():
        if isinstance(table, dict):
            for key, value in table.items():
                layers.put(section, key, value, origin)
        else:  # kept as is: building the settings names the section
            layers.values[section] = table
            layers.origins[section] = origin


def _credentials(layers: Layers, directory: Path) -> None:
    try:
        names = sorted(entry.name for entry in directory.iterdir() if entry.is_file())
    except OSError as exc:
        layers.errors.append(SettingsError(CREDENTIALS, f"cannot read {directory}: {exc.strerror}"))
        return
    for name in filter(_CREDENTIAL_NAME.match, names):
        section, key = name.split(".")
        value = _read_secret(layers, name, directory / name, f"credential {name}")
        if value is not None:
            layers.put(section, key, value, Origin("file-secret", str(directory / name)))


def _environment(layers: Layers, environ: Mapping[str, str]) -> None:
    named_by: dict[str, str] = {}
    for variable, value in sorted(environ.items()):
        if not variable.startswith(ENV_PREFIX):
            continue
        section, _, key = variable[len(ENV_PREFIX):].lower().partition("__")
        from_file = key.endswith(FILE_SUFFIX)
        key = key.removesuffix(FILE_SUFFIX) if from_file else key
        name = f"{section}.{key}"
        if name in named_by:
            layers.errors.append(SettingsError(name, f"is set by both {named_by[name]} and {variable}: keep one"))
            continue
        named_by[name] = variable
        if not from_file:
            layers.put(section, key, value, Origin("env", variable))
            continue
        secret = _read_secret(layers, name, Path(value), variable)
        if secret is not None:
            layers.put(section, key, secret, Origin("file-secret", value))


def _read_secret(layers: Layers, name: str, path: Path, named_by: str) -> str | None:
    """The file's text without its final newline, or None with the error recorded."""
    try:
        with path.open("rb") as file:
            data = file.read(MAX_SECRET_BYTES + 1)
    except OSError as exc:
        layers.errors.append(SettingsError(name, f"cannot read {path} (named by {named_by}): {exc.strerror}"))
        return None
    if len(data) > MAX_SECRET_BYTES:
        layers.errors.append(SettingsError(name, f"{path} (named by {named_by}) is larger than "
                                                 f"{MAX_SECRET_BYTES} bytes: not a secret"))
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        layers.errors.append(SettingsError(name, f"{path} (named by {named_by}) is not UTF-8 text"))
        return None
    return text.removesuffix("\n").removesuffix("\r")
