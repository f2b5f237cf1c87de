"""The storage boundary holds: SQL stays in the store (forget.store) and the ledger's own backend.

Every module of the packages is parsed (ast, nothing is imported), so an import inside a function
or under TYPE_CHECKING counts too. A failure lists every offending module and line.
"""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("forget", "cli", "reports", "sisa", "ledger")
SQL_LIBRARIES = ("sqlalchemy", "alembic")
SQL_ALLOWED = ("forget/store/", "ledger/")
"""The data store's SQL implementation (and its migrations), and the ledger's own backend."""


def _modules() -> list[Path]:
    found = [path for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py"))]
    assert len(found) > 50, "the packages were not found"
    return found


def _imports(tree: ast.AST) -> list[tuple[int, str]]:
    names: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module is not None and node.level == 0:
            names.append((node.lineno, node.module))
    return names


def _where(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def test_only_the_store_and_the_ledger_import_sql_libraries() -> None:
    offenders = []
    for path in _modules():
        where = _where(path)
        if where.startswith(SQL_ALLOWED):
            continue
        for line, name in _imports(ast.parse(path.read_text(), str(path))):
            if name.split(".")[0] in SQL_LIBRARIES:
                offenders.append(f"{where}:{line} imports {name}")
    assert offenders == [], "SQL outside forget/store and ledger/:\n" + "\n".join(offenders)


def test_the_application_never_reaches_for_the_engine() -> None:
    """`store.engine.begin()` and friends: the application uses `transaction()` and `snapshot()`."""
    offenders = []
    for path in _modules():
        where = _where(path)
        if not where.startswith(("forget/", "cli/")) or where.startswith("forget/store/"):
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Attribute) and node.attr in ("engine", "exec_driver_sql"):
                offenders.append(f"{where}:{node.lineno} uses .{node.attr}")
    assert offenders == [], "database access around the store's interface:\n" + "\n".join(offenders)


def test_the_layering_check_sees_an_offender() -> None:
    tree = ast.parse("def f():\n    from sqlalchemy.engine import Connection\n    import alembic.op\n")
    assert _imports(tree) == [(2, "sqlalchemy.engine"), (3, "alembic.op")]


@pytest.mark.parametrize("implementation", ["forget.store.datastore:DataStore", "tests.fakes:FakeStore"])
def test_every_store_implements_the_whole_interface(implementation: str) -> None:
    """mypy checks the SQL store against the Protocol where the workspace opens it; this keeps the fake honest."""
    import importlib

    from forget.store.interface import Store

    module, name = implementation.split(":")
    cls = getattr(importlib.import_module(module), name)
    wanted = {n for n, member in vars(Store).items() if not n.startswith("_") and callable(member)}
    assert len(wanted) > 25
    for method in sorted(wanted):
        assert callable(getattr(cls, method, None)), f"{name} lacks {method}"
        expected = list(inspect.signature(getattr(Store, method)).parameters)
        assert list(inspect.signature(getattr(cls, method)).parameters) == expected, f"{name}.{method}"


# -- the import direction: cli -> forget -> {sisa, ledger, reports}, reports -> ledger ------------

LIBRARIES = ("sisa", "ledger", "reports")
ALLOWED_SIBLINGS = {"sisa": set(), "ledger": set(), "reports": {"ledger"}, "forget": {"sisa", "ledger", "reports"}}
CLI_EXCEPTIONS = {("cli/launch.py", "reports.verify_cli")}
"""The stdlib launcher hands `forget-verify`'s own console script over without the application."""
HEAVY = ("torch", "numpy", "sqlalchemy", "alembic", "jinja2", "pyarrow")


def _module_level_imports(tree: ast.Module) -> list[tuple[int, str]]:
    """Imports executed when the module loads (not inside functions, not under TYPE_CHECKING)."""
    found: list[tuple[int, str]] = []
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        found += _imports(node)
    return found


def test_the_cli_imports_only_the_application() -> None:
    offenders = []
    for path in _modules():
        where = _where(path)
        if not where.startswith("cli/"):
            continue
        for line, name in _imports(ast.parse(path.read_text(), str(path))):
            if name.split(".")[0] in LIBRARIES and (where, name) not in CLI_EXCEPTIONS:
                offenders.append(f"{where}:{line} imports {name}")
    assert offenders == [], "the CLI reaches past the application layer:\n" + "\n".join(offenders)


def test_the_cli_loads_no_heavy_library_at_import() -> None:
    """`forget status` and `forget certificate verify` must start fast: heavy imports wait for the command."""
    offenders = []
    for path in _modules():
        where = _where(path)
        if not where.startswith("cli/"):
            continue
        for line, name in _module_level_imports(ast.parse(path.read_text(), str(path))):
            if name.split(".")[0] in HEAVY:
                offenders.append(f"{where}:{line} imports {name}")
    assert offenders == [], "\n".join(offenders)


def test_libraries_import_only_what_the_layering_allows() -> None:
    offenders = []
    for path in _modules():
        where = _where(path)
        package = where.split("/")[0]
        if package not in ALLOWED_SIBLINGS:
            continue
        for line, name in _imports(ast.parse(path.read_text(), str(path))):
            top = name.split(".")[0]
            if top in (*LIBRARIES, "forget", "cli") and top != package and top not in ALLOWED_SIBLINGS[package]:
                offenders.append(f"{where}:{line} imports {name}")
    assert offenders == [], "an import against the direction cli -> forget -> {sisa, ledger, reports}:\n" + "\n".join(
        offenders
    )
