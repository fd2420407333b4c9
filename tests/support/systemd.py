"""The systemd unit in deploy/systemd as tests use it: its ExecStart and Environment= read from the
file, and copies with the install paths rewritten to this checkout (systemd-analyze verify needs the
ExecStart binary to exist), run or verified without systemd managing them."""

from __future__ import annotations

import ctypes
import shlex
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

ANALYZE = Path("/usr/bin/systemd-analyze")
DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "systemd"
UNIT = DEPLOY / "cookie-session.service"
DROP_INS = DEPLOY / "cookie-session.service.d"
INSTALLED_BINARY = "/opt/cookie-session/venv/bin/cookie-session-service"
INSTALLED_SETTINGS = "/etc/cookie-session/settings.toml"
REPO_SETTINGS = Path(__file__).resolve().parents[2] / "settings.toml"
_PR_SET_MDWE, _PR_MDWE_REFUSE_EXEC_GAIN = 65, 1  # linux/prctl.h, Linux 6.3+


def venv_binary() -> str:
    return str(Path(sys.executable).with_name("cookie-session-service"))


@dataclass
class Service:
    """The [Service] section's ExecStart argv, Environment= variables and UMask, paths rewritten."""

    argv: list[str]
    environment: dict[str, str]
    umask: int


def service_section(unit: Path = UNIT) -> list[tuple[str, str]]:
    """(key, value) pairs of the [Service] section, in order (no line continuations in our units)."""
    pairs, section = [], ""
    for line in unit.read_text().splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line
        elif section == "[Service]" and line and not line.startswith("#"):
            key, _, value = line.partition("=")
            pairs.append((key, value))
    return pairs


def localize(value: str, *, state: Path) -> str:
    """``value`` with %S (/var/lib for a system unit), the installed binary and settings replaced."""
    return (value.replace("%S", str(state)).replace(INSTALLED_BINARY, venv_binary())
            .replace(INSTALLED_SETTINGS, str(REPO_SETTINGS)))


def service(*, state: Path) -> Service:
    pairs = service_section()
    environment = dict(localize(value, state=state).split("=", 1) for key, value in pairs if key == "Environment")
    (exec_start,) = [value for key, value in pairs if key == "ExecStart"]
    (umask,) = [value for key, value in pairs if key == "UMask"]
    return Service(shlex.split(localize(exec_start, state=state)), environment, int(umask, 8))


def copy_for_verify(directory: Path) -> Path:
    """The unit and its drop-ins copied into ``directory``, ExecStart pointing at the venv's binary."""
    copy = directory / UNIT.name
    copy.write_text(UNIT.read_text().replace(INSTALLED_BINARY, venv_binary()))
    shutil.copytree(DROP_INS, directory / DROP_INS.name)
    return copy


def deny_write_execute() -> None:
    """preexec_fn: what MemoryDenyWriteExecute=yes does, from the kernel (no systemd needed)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_MDWE, _PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_MDWE) failed: this kernel predates Linux 6.3")
