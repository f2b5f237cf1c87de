"""Every public function, class and method says what it is for, and what it raises (issue 14, item 7).

Read with `ast`, so nothing is imported. Public: a module-level function or class, or a method of a
public class (nested classes too), whose name does not start with an underscore, in a module whose
name does not. The check covers the packages in `DOCUMENTED`; a package joins the list once it
complies (forget/erasure and forget/service have not yet).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]

DOCUMENTED = [
    "forget/audit",
    "forget/data",
    "forget/evaluation",
    "forget/store",
    "forget/subjects",
    "forget/training",
    "forget/workspace",
    "ledger",
    "reports",
    "sisa",
]
"""Packages (folders under the repository root) whose every public definition has a docstring."""

NOT_CHECKED = {"forget/store/migrations/versions"}
"""Alembic revision scripts: `upgrade()` and `downgrade()` are the revision, which its module docstring describes."""

Definition = ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef


def _public(body: list[ast.stmt], prefix: str = "") -> Iterator[tuple[str, Definition]]:
    for node in body:
        if isinstance(node, Definition) and not node.name.startswith("_"):
            yield prefix + node.name, node
            if isinstance(node, ast.ClassDef):
                yield from _public(node.body, f"{prefix}{node.name}.")


def modules(package: str) -> list[Path]:
    """The package's modules, private ones and those in `NOT_CHECKED` left out."""
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        relative = path.relative_to(ROOT)
        if any(str(relative).startswith(f"{skipped}/") for skipped in NOT_CHECKED):
            continue
        if any(part.startswith("_") and part != "__init__.py" for part in relative.parts):
            continue
        found.append(path)
    return found


def undocumented(package: str) -> list[str]:
    """`path:line name` of each public definition without a docstring."""
    missing = []
    for path in modules(package):
        tree = ast.parse(path.read_text(), filename=str(path))
        for name, node in _public(tree.body):
            if ast.get_docstring(node) is None:
                missing.append(f"{path.relative_to(ROOT)}:{node.lineno} {name}")
    return missing


@pytest.mark.parametrize("package", DOCUMENTED)
def test_every_public_definition_has_a_docstring(package: str) -> None:
    assert modules(package), f"{package} has no modules: was it moved?"
    missing = undocumented(package)
    assert not missing, f"{len(missing)} public definitions without a docstring:\n" + "\n".join(missing)


def test_the_walk_sees_what_it_should() -> None:
    """Methods of public classes count, private names and nested functions do not."""
    tree = ast.parse(
        "def f():\n    def inner(): ...\n"
        "class C:\n    '''doc'''\n    def m(self): ...\n    def _p(self): ...\n    class N: ...\n"
        "class _Hidden:\n    def m(self): ...\n"
    )
    assert [name for name, _ in _public(tree.body)] == ["f", "C", "C.m", "C.N"]
