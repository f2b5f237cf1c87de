"""The README's "Python API" section cannot go stale: its one python block imports what exists, and
runs as written in a fresh interpreter (init, ingest a DataFrame, train, erase, verify, predict)."""

from __future__ import annotations

import ast
import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]


def python_api_block() -> str:
    """The one ```python block of the README's `### Python API` section."""
    text = (ROOT / "README.md").read_text()
    section = re.search(r"^### Python API\n(.*?)(?=^#{1,3} )", text, flags=re.DOTALL | re.MULTILINE)
    assert section is not None, "README.md has no `### Python API` section"
    blocks = re.findall(r"^```python\n(.*?)^```", section.group(1), flags=re.DOTALL | re.MULTILINE)
    assert len(blocks) == 1, f"the Python API section should hold one python block, not {len(blocks)}"
    return str(blocks[0])


def test_the_block_imports_only_what_exists() -> None:
    """Fast, without running it: a renamed function or module fails here first."""
    tree = ast.parse(python_api_block())
    imported = [node for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module]
    ours = [node for node in imported if node.module and node.module.split(".")[0] in {"forget", "reports"}]
    assert ours, "the block imports nothing from forget"
    for node in ours:
        assert node.module is not None
        module = importlib.import_module(node.module)
        for alias in node.names:
            assert hasattr(module, alias.name), f"{node.module} has no {alias.name}"


@pytest.mark.slow
def test_the_block_runs_as_written(tmp_path: Path) -> None:
    pytest.importorskip("sklearn")
    pytest.importorskip("pandas")
    env = {**os.environ, "TMPDIR": str(tmp_path), "PYTHONPATH": str(ROOT)}
    env.pop("FORGET_WORKSPACE", None)
    done = subprocess.run(
        [sys.executable, "-c", python_api_block()],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    outcome, labels = done.stdout.splitlines()
    assert re.fullmatch(r"erased \d+ ledger entries proven", outcome)
    assert len(ast.literal_eval(labels)) == 5
