"""The core knows nothing of HTTP: token, key, session, password, user and settings logic never imports
aiohttp or jinja2, directly or through another service module."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SERVICE = Path(__file__).resolve().parent.parent / "service"
CORE = ("tokens", "keyring", "refresh", "sessions", "users", "passwords", "auth", "settings", "errors",
        "store", "clock", "throttle")
WEB = ("aiohttp", "aiohttp_jinja2", "jinja2", "multidict", "yarl")


def imports_of(module: str) -> tuple[set[str], set[str]]:
    """(top-level third-party or stdlib packages, sibling service modules) imported by ``module``."""
    tree = ast.parse((SERVICE / f"{module}.py").read_text(encoding="utf-8"))
    packages: set[str] = set()
    siblings: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "service":
                    siblings.add(alias.name.split(".")[1] if "." in alias.name else "__init__")
                else:
                    packages.add(alias.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0 and node.module:
                if node.module.split(".")[0] == "service":
                    parts = node.module.split(".")
                    siblings.update([parts[1]] if len(parts) > 1 else [a.name for a in node.names])
                else:
                    packages.add(node.module.split(".")[0])
            elif node.level == 1:
                siblings.update([node.module.split(".")[0]] if node.module else [a.name for a in node.names])
            else:
                raise AssertionError(f"service/{module}.py imports from outside its package level")
    return packages, siblings


def closure(module: str) -> set[str]:
    """Every service module ``module`` imports, directly or through others."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        todo.extend(imports_of(current)[1])
    return seen


@pytest.mark.parametrize("module", CORE)
def test_core_module_imports_no_web_library(module: str) -> None:
    packages, _ = imports_of(module)
    assert packages.isdisjoint(WEB), f"service/{module}.py imports {sorted(packages & set(WEB))}"


@pytest.mark.parametrize("module", CORE)
def test_core_module_reaches_no_web_library_through_other_modules(module: str) -> None:
    for reached in sorted(closure(module)):
        packages, _ = imports_of(reached)
        assert packages.isdisjoint(WEB), f"service/{module}.py reaches {reached}.py, which imports web code"


def test_core_modules_all_exist() -> None:
    assert all((SERVICE / f"{module}.py").is_file() for module in CORE)


def test_importing_the_core_loads_no_web_library() -> None:
    """The same, as Python sees it: a fresh interpreter imports the core and finds no aiohttp loaded."""
    code = ("import sys\n"
            f"for name in {CORE!r}: __import__('service.' + name)\n"
            f"print(sorted(m for m in sys.modules if m.split('.')[0] in {WEB!r}))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                            cwd=SERVICE.parent)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
