"""The test suite's own layout: tests mirror the package, conftest files hold fixtures and
hooks only, and no module imports a conftest or a test module (shared helpers live in
tests/support/, a package's own in its support or helpers module)."""

from __future__ import annotations

import ast
from collections.abc import Callable
from pathlib import Path

import pytest

TESTS = Path(__file__).parent
PACKAGE = TESTS.parent / "featurestore"
# Test folders that are not a package of featurestore: shared helpers, and tests of whole
# processes (killed, concurrent) that cross packages.
NOT_MIRRORED = {"support", "reliability"}


def python_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)


def imports_of(root: Path, is_target: Callable[[str], bool]) -> list[str]:
    """Every import under ``root`` of a module whose last name ``is_target``, as ``file:line``."""
    found = []
    for path in python_files(root):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom):
                names = [node.module or "", *(f"{node.module or ''}.{a.name}" for a in node.names)]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            if any(is_target(name.split(".")[-1]) for name in names):
                found.append(f"{path.relative_to(root)}:{node.lineno}")
    return found


def conftest_imports(root: Path) -> list[str]:
    return imports_of(root, lambda name: name == "conftest")


def imports_of_test_modules(root: Path) -> list[str]:
    """Imports of a test module: a helper it holds belongs in a support module (and a test
    function imported into another module would run twice)."""
    return imports_of(root, lambda name: name.startswith("test_"))


def _is_fixture(decorator: ast.expr) -> bool:
    target = decorator.func if isinstance(decorator, ast.Call) else decorator
    return (isinstance(target, ast.Attribute) and target.attr == "fixture") or (
        isinstance(target, ast.Name) and target.id == "fixture"
    )


def conftest_extras(root: Path) -> list[str]:
    """Everything in a conftest under ``root`` that is not a fixture, a pytest hook, an import
    or the docstring, as ``file:line name``: helpers and constants belong in a support module."""
    found = []
    for path in python_files(root):
        if path.name != "conftest.py":
            continue
        tree = ast.parse(path.read_text(), str(path))
        for i, node in enumerate(tree.body):
            if isinstance(node, ast.Import | ast.ImportFrom):
                continue
            if i == 0 and isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
                continue  # the docstring
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and (
                node.name.startswith("pytest_") or any(_is_fixture(d) for d in node.decorator_list)
            ):
                continue
            if isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == [
                "pytest_plugins"
            ]:
                continue
            targets = ", ".join(ast.unparse(t) for t in getattr(node, "targets", []))
            name = getattr(node, "name", None) or targets or type(node).__name__
            found.append(f"{path.relative_to(root)}:{node.lineno} {name}")
    return found


def unmirrored_folders(tests: Path, package: Path) -> list[str]:
    """Test folders named after no package of featurestore (and not in NOT_MIRRORED)."""
    return sorted(
        d.name
        for d in tests.iterdir()
        if d.is_dir()
        and d.name != "__pycache__"
        and any(d.glob("*.py"))
        and d.name not in NOT_MIRRORED
        and not (package / d.name / "__init__.py").is_file()
    )


def test_no_module_imports_a_conftest() -> None:
    assert conftest_imports(TESTS) == []


def test_no_module_imports_a_test_module() -> None:
    assert imports_of_test_modules(TESTS) == []


def test_conftest_files_hold_fixtures_and_hooks_only() -> None:
    assert conftest_extras(TESTS) == []


def test_test_folders_mirror_the_package() -> None:
    assert unmirrored_folders(TESTS, PACKAGE) == []


# -- the checks above catch what they are for --------------------------------------------------


@pytest.mark.parametrize(
    "source",
    [
        "from tests.lineage.conftest import at\n",
        "from .conftest import at\n",
        "from . import conftest\n",
        "import tests.conftest\n",
        "import os\ndef f():\n    from tests.conftest import DATA_END\n",
    ],
)
def test_an_import_of_a_conftest_is_found(tmp_path: Path, source: str) -> None:
    (tmp_path / "test_x.py").write_text(source)
    (tmp_path / "test_ok.py").write_text("from tests.support.repos import make_store\nimport conftest_like\n")
    line = len(source.splitlines())  # the conftest import is the last line
    assert conftest_imports(tmp_path) == [f"test_x.py:{line}"]


def test_an_import_of_a_test_module_is_found(tmp_path: Path) -> None:
    (tmp_path / "test_x.py").write_text("from tests.online.test_incremental import DEFS\n")
    (tmp_path / "test_y.py").write_text("from tests.cli import test_bad_input\n")
    (tmp_path / "test_ok.py").write_text("from tests.online.items import DEFS\nfrom tests import testing\n")
    assert imports_of_test_modules(tmp_path) == ["test_x.py:1", "test_y.py:1"]


def test_a_conftest_with_a_helper_or_a_constant_is_found(tmp_path: Path) -> None:
    (tmp_path / "conftest.py").write_text(
        '"""Fixtures."""\n'
        "import pytest\n"
        "from pytest import fixture\n"
        "pytest_plugins = ['x']\n"
        "@pytest.fixture\ndef a() -> int:\n    return 1\n"
        "@pytest.fixture(scope='session')\ndef b() -> int:\n    return 2\n"
        "@fixture\ndef c() -> int:\n    return 3\n"
        "def pytest_configure(config):\n    pass\n"
        "LIMIT = 3\n"
        "def helper() -> int:\n    return 4\n"
        "class Thing:\n    pass\n"
    )
    assert conftest_extras(tmp_path) == [
        "conftest.py:16 LIMIT",
        "conftest.py:17 helper",
        "conftest.py:19 Thing",
    ]


def test_a_test_folder_without_a_package_is_found(tmp_path: Path) -> None:
    package, tests = tmp_path / "featurestore", tmp_path / "tests"
    for folder in (package / "online", tests / "online", tests / "support", tests / "caching"):
        folder.mkdir(parents=True)
        (folder / "__init__.py").write_text("")
    (tests / "data").mkdir()  # no Python: not a test folder
    assert unmirrored_folders(tests, package) == ["caching"]
