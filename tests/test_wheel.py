"""The wheel, as a user gets it: built from the sources, installed with the runtime lock into a fresh
virtualenv outside the repo, started from another directory by its console script, and signed in to.

Slow (a virtualenv and the runtime lock's packages, from pip's cache or the index): about half a minute.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
import venv
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from service import __version__
from tests.support.ports import free_port
from tests.support.sign_in import PASSWORD

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("pyproject.toml", "README.md", "LICENSE", "service", "templates", "static")
SCRIPT = "cookie-session-service"


def run(*command: str | Path, timeout: float = 300, **kwargs: object) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(part) for part in command], capture_output=True, text=True, timeout=timeout,
                            check=False, **kwargs)  # type: ignore[call-overload]
    assert result.returncode == 0, f"{command}: {result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built from a copy of the sources (a build leaves nothing in the repo), with the
    locked setuptools of the test environment."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            source.mkdir(exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
        "--wheel-dir", work / "dist", source)
    (built,) = (work / "dist").glob("*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv holding the runtime lock (hashes required) and the wheel: its bin/."""
    env = tmp_path_factory.mktemp("venv") / "venv"
    venv.create(env, with_pip=True)
    pip = env / "bin" / "pip"
    run(pip, "install", "--quiet", "--require-hashes", "--no-deps", "-r", ROOT / "requirements.txt")
    run(pip, "install", "--quiet", "--no-deps", wheel)
    run(pip, "check")  # the lock satisfies every requirement the wheel declares
    return env / "bin"


def test_the_wheel_holds_the_pages_the_types_marker_and_the_licence(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"service/templates/login.html", "service/static/style.css", "service/py.typed"} <= names
    assert f"cookie_session_service-{__version__}.dist-info/licenses/LICENSE" in names
    assert not any(name.startswith(("tests/", "bench/")) or name.endswith(".pyc") for name in names)
    metadata = zipfile.ZipFile(wheel).read(f"cookie_session_service-{__version__}.dist-info/METADATA").decode()
    assert "License-Expression: Apache-2.0" in metadata


@pytest.fixture
def elsewhere(tmp_path: Path, installed: Path) -> Iterator[tuple[Path, dict[str, str]]]:
    """A working directory with no settings.toml and no sources, and an environment without the repo."""
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    environ = {key: value for key, value in os.environ.items()
               if not key.startswith("SERVICE__") and key not in ("PYTHONPATH", "VIRTUAL_ENV")}
    environ |= {"SERVICE__COOKIES__SECURE": "false", "SERVICE__STORAGE__DATA_DIR": str(tmp_path / "data")}
    yield cwd, environ


def test_the_installed_console_script_runs_from_another_directory_and_signs_in(installed, elsewhere):
    cwd, environ = elsewhere
    located = run(installed / "python", "-c", "import service; print(service.__file__)", cwd=cwd, env=environ)
    assert not Path(located.stdout.strip()).is_relative_to(ROOT), "the repo's sources were imported"
    assert run(installed / SCRIPT, "--version", cwd=cwd, env=environ).stdout.strip() == f"{SCRIPT} {__version__}"
    run(installed / SCRIPT, "users", "add", "alice", "--password-stdin", input=PASSWORD + "\n", cwd=cwd, env=environ)

    port = free_port()
    server = subprocess.Popen([installed / SCRIPT, "serve", "--host", "127.0.0.1", "--port", str(port)], cwd=cwd,
                              env=environ, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_ready(base + "/readyz", server)
        login_page = urllib.request.urlopen(base + "/login", timeout=10).read().decode()
        assert "<form" in login_page and 'name="password"' in login_page
        assert urllib.request.urlopen(base + "/static/style.css", timeout=10).status == 200
        signed_in = post_json(base + "/login", {"username": "alice", "password": PASSWORD})
        me = get_json(base + "/api/me", cookie=signed_in["cookie"])
        assert me["name"] == "alice" and me["session"] == signed_in["body"]["session"]
    finally:
        server.terminate()
        output, _ = server.communicate(timeout=30)
    assert server.returncode == 0, output
    assert "Traceback" not in output


def test_a_missing_template_directory_is_named_as_such_at_start(installed, elsewhere):
    cwd, environ = elsewhere
    site = run(installed / "python", "-c", "import service, os; print(os.path.dirname(service.__file__))",
               cwd=cwd, env=environ).stdout.strip()
    templates = Path(site) / "templates"
    templates.rename(cwd / "aside")  # put back afterwards: the virtualenv is shared by this module's tests
    try:
        result = subprocess.run([installed / SCRIPT, "serve", "--host", "127.0.0.1", "--port", str(free_port())],
                                cwd=cwd, env=environ, capture_output=True, text=True, timeout=60, check=False)
    finally:
        (cwd / "aside").rename(templates)
    assert result.returncode != 0
    assert "templates/ directory is missing" in result.stderr and "reinstall" in result.stderr
    assert "cannot serve" not in result.stderr and "Traceback" not in result.stderr


def wait_ready(url: str, server: subprocess.Popen[str], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"the service exited: {server.communicate()[0]}")
        try:
            if urllib.request.urlopen(url, timeout=2).status == 200:
                return
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.1)
    raise AssertionError(f"{url} not ready within {timeout} s")


def post_json(url: str, body: dict[str, str]) -> dict[str, object]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json", "Accept": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        cookie = "; ".join(value.split(";", 1)[0] for value in response.headers.get_all("Set-Cookie"))
        return {"body": json.loads(response.read()), "cookie": cookie}


def get_json(url: str, *, cookie: object) -> dict[str, object]:
    request = urllib.request.Request(url, headers={"Cookie": str(cookie), "Accept": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return dict(json.loads(response.read()))
