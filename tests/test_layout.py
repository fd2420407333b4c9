"""The package's folders are its design: imports only go down, web → core → storage → leaves, and
nothing under core/ or storage/ imports aiohttp or jinja2, directly or through another module."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SERVICE = Path(__file__).resolve().parent.parent / "service"
WEB_LIBRARIES = {"aiohttp", "aiohttp_jinja2", "jinja2", "multidict", "yarl"}
# What each layer may import of the service; the entry points (cli and the commands it runs in admin,
# workers, the package's own __init__ and __main__) sit above them all and may import anything.
LEAVES = {"settings", "sources", "errors", "clock", "logs", "metrics"}
ALLOWED = {
    "web": {"web", "core", "storage"} | LEAVES,
    "core": {"core", "storage"} | LEAVES,
    "storage": {"storage"} | LEAVES,
    "leaf": LEAVES | {"storage.url"},  # settings checks redis.url with the parser, a module with no imports of ours
}
ENTRY_POINTS = {"service", "service.cli", "service.admin", "service.workers", "service.__main__"}


def module_name(path: Path) -> str:
    parts = path.relative_to(SERVICE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(SERVICE.rglob("*.py"))}


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in ("web", "core", "storage") else "leaf"


def imports_of(module: str) -> tuple[set[str], set[str]]:
    """(top-level outside packages, service modules as ``service.x.y``) that ``module`` imports."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    outside: set[str] = set()
    ours: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            # `from pkg import mod` imports a module when pkg.mod is one
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        else:
            continue
        for name in names:
            (ours if name.split(".")[0] == "service" else outside).add(name if name.startswith("service")
                                                                        else name.split(".")[0])
    return outside, {name for name in ours if name in MODULES}


def reached(module: str) -> set[str]:
    seen: set[str] = set()
    todo = [module]
    while todo:
        current = todo.pop()
        if current not in seen:
            seen.add(current)
            todo.extend(imports_of(current)[1])
    return seen


LOWER = sorted(m for m in MODULES if layer(m) in ("core", "storage"))


@pytest.mark.parametrize("module", LOWER)
def test_core_and_storage_reach_no_web_library(module: str) -> None:
    for other in sorted(reached(module)):
        web = imports_of(other)[0] & WEB_LIBRARIES
        assert not web, f"{module} reaches {other}, which imports {sorted(web)}"


@pytest.mark.parametrize("module", sorted(set(MODULES) - ENTRY_POINTS))
def test_imports_only_go_down(module: str) -> None:
    allowed = ALLOWED[layer(module)]
    for other in imports_of(module)[1]:
        if other == "service":
            raise AssertionError(f"{module} imports the package's public face; import the module itself")
        rest = other.split(".", 1)[1]
        assert rest in allowed or rest.split(".")[0] in allowed, f"{module} ({layer(module)}) imports {other}"


def test_the_layers_exist() -> None:
    """Guards the tests above against passing on an empty or renamed tree."""
    assert {layer(m) for m in LOWER} == {"core", "storage"} and len(LOWER) >= 12
    assert "service.web.pipeline" in MODULES and "service.core.auth" in MODULES


def test_importing_core_and_storage_loads_no_web_library() -> None:
    """The same, as Python sees it: a fresh interpreter imports them all and finds no aiohttp loaded,
    which also holds the package's public face (``service/__init__``) to importing aiohttp lazily."""
    code = ("import sys\n"
            f"for name in {LOWER!r}: __import__(name)\n"
            f"print(sorted(m for m in sys.modules if m.split('.')[0] in {sorted(WEB_LIBRARIES)!r}))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                            cwd=SERVICE.parent)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
