"""The test suite reads like the code: helpers live in tests/support/, conftest.py files only define
fixtures, no test module imports another (or a conftest), and a fixture name means one thing
wherever it is used. Checked by reading the files; each check is shown failing on a bad example."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
SUPPORT = TESTS / "support"


def sources() -> Iterator[tuple[str, str]]:
    """(path relative to tests/, text) of every Python file of the suite."""
    for path in sorted(TESTS.rglob("*.py")):
        if "__pycache__" not in path.parts:
            yield path.relative_to(TESTS).as_posix(), path.read_text(encoding="utf-8")


def is_test_module(name: str) -> bool:
    """Whether a module name as an import writes it (``tests.test_cli``, ``.conftest``, ``test_cli``)
    names a test module or a conftest of this suite (``aiohttp.test_utils`` is not one)."""
    ours = name.startswith((".", "tests.")) or "." not in name
    last = name.rsplit(".", 1)[-1]
    return ours and (last == "conftest" or last.startswith("test_"))


def imports_of_test_modules(source: str) -> list[str]:
    """Every test module or conftest that ``source`` imports, absolute or relative, as written."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names if is_test_module(alias.name)]
        elif isinstance(node, ast.ImportFrom):
            module = "." * node.level + (node.module or "")
            if node.module and is_test_module(module):
                found.append(module)
            else:  # ``from tests import test_cli``, ``from . import conftest``
                found += [f"{module}.{alias.name}" for alias in node.names if is_test_module(alias.name)]
    return found


def fixture_decorator(node: ast.expr) -> ast.expr | None:
    """``node`` itself if it is ``@pytest.fixture``, ``@pytest.fixture(...)`` or ``@fixture(...)``."""
    target = node.func if isinstance(node, ast.Call) else node
    if isinstance(target, ast.Attribute) and target.attr == "fixture":
        return node
    if isinstance(target, ast.Name) and target.id == "fixture":
        return node
    return None


def fixtures_in(source: str) -> list[tuple[str, list[str], int]]:
    """(fixture name, the fixtures it requests, line) for every fixture ``source`` defines."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for decorator in node.decorator_list:
            if fixture_decorator(decorator) is None:
                continue
            name = node.name
            if isinstance(decorator, ast.Call):
                for keyword in decorator.keywords:
                    if keyword.arg == "name" and isinstance(keyword.value, ast.Constant):
                        name = str(keyword.value.value)
            arguments = [arg.arg for arg in node.args.posonlyargs + node.args.args + node.args.kwonlyargs]
            found.append((name, arguments, node.lineno))
    return found


def twice_defined(files: dict[str, str]) -> list[str]:
    """Fixture names defined in more than one place. A definition that requests the fixture of its own
    name extends the one it overrides (pytest hands it the outer one) and does not count."""
    places: dict[str, list[str]] = {}
    for path, source in files.items():
        for name, arguments, line in fixtures_in(source):
            if name not in arguments:
                places.setdefault(name, []).append(f"{path}:{line}")
    return [f"{name}: {', '.join(where)}" for name, where in sorted(places.items()) if len(where) > 1]


def not_fixtures(source: str) -> list[str]:
    """What a conftest.py holds besides its docstring, imports and fixtures."""
    found = []
    for index, node in enumerate(ast.parse(source).body):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            continue
        if index == 0 and isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue  # the docstring
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and any(
                fixture_decorator(decorator) is not None for decorator in node.decorator_list):
            continue
        found.append(f"line {node.lineno}: {type(node).__name__} {getattr(node, 'name', '')}".rstrip())
    return found


FILES = dict(sources())


# --- the suite itself -------------------------------------------------------------------------------

@pytest.mark.parametrize("path", sorted(FILES))
def test_no_module_imports_a_test_module_or_a_conftest(path: str) -> None:
    assert imports_of_test_modules(FILES[path]) == [], f"{path}: import the helper from tests/support/ instead"


def test_no_fixture_name_is_defined_twice() -> None:
    assert twice_defined(FILES) == []


@pytest.mark.parametrize("path", sorted(p for p in FILES if p.endswith("conftest.py")))
def test_conftest_files_only_define_fixtures(path: str) -> None:
    assert not_fixtures(FILES[path]) == [], f"{path}: helpers belong in tests/support/"


@pytest.mark.parametrize("path", sorted(p for p in FILES if p.startswith("support/")))
def test_support_modules_define_no_fixtures(path: str) -> None:
    assert fixtures_in(FILES[path]) == [], f"{path}: fixtures belong in a conftest.py"


def test_the_checks_see_the_whole_suite() -> None:
    """Guards the tests above against passing on an empty or moved tree."""
    assert {"conftest.py", "browser/conftest.py", "support/ports.py", "test_cli.py"} <= set(FILES)
    assert len([name for source in FILES.values() for name, _, _ in fixtures_in(source)]) >= 40


# --- each check fails where it should ------------------------------------------------------------------

@pytest.mark.parametrize("line", [
    "from conftest import PASSWORD", "import conftest", "from .conftest import Stack",
    "from test_cli import Cli", "from tests.test_restart import service", "from tests import test_cli",
    "from . import conftest", "import tests.browser.conftest", "from ..test_cli import PASSWORD",
])
def test_importing_a_test_module_or_a_conftest_is_caught(line: str) -> None:
    assert imports_of_test_modules(line + "\n") != []


def test_importing_support_or_a_library_module_named_test_is_not_caught() -> None:
    source = ("from tests.support.cli import Cli\nimport tests.support.ports\n"
              "from aiohttp.test_utils import TestClient\n")
    assert imports_of_test_modules(source) == []


def test_a_fixture_defined_twice_is_caught_and_an_extension_is_not() -> None:
    one = "import pytest\n@pytest.fixture\ndef browser(aiohttp_client):\n    return 1\n"
    other = "import pytest\n@pytest.fixture(scope='module')\nasync def browser():\n    yield 2\n"
    renamed = "from pytest import fixture\n@fixture(name='browser')\ndef chromium():\n    return 3\n"
    extension = "import pytest\n@pytest.fixture\ndef browser(browser, tmp_path):\n    return browser\n"
    assert twice_defined({"a.py": one, "b/conftest.py": other}) == ["browser: a.py:3, b/conftest.py:3"]
    assert twice_defined({"a.py": one, "c.py": renamed}) == ["browser: a.py:3, c.py:3"]
    assert twice_defined({"a.py": one, "d/conftest.py": extension}) == []


def test_a_helper_in_a_conftest_is_caught() -> None:
    source = ('"""Doc."""\nimport pytest\nLIMIT = 3\ndef helper():\n    pass\nclass Thing:\n    pass\n'
              "@pytest.fixture\ndef thing():\n    return Thing()\n")
    assert not_fixtures(source) == ["line 3: Assign", "line 4: FunctionDef helper", "line 6: ClassDef Thing"]
