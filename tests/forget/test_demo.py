"""`forget demo` hands the auditor what `forget keys public` prints, and its printed command works."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from tests.helpers import cli


@pytest.mark.slow
def test_the_demo_prints_a_verify_command_that_works_as_printed(tmp_path: Path) -> None:
    pytest.importorskip("sklearn")
    from forget.demo import run_demo

    said: list[str] = []
    root = run_demo(tmp_path / "demo", "cpu", said.append)
    command = next(line.strip() for line in said if line.strip().startswith("forget certificate verify "))
    args = shlex.split(command)[1:]
    assert args[args.index("--public-key") + 1] == str(root / "verifier.key")
    assert cli(*args).stdout.startswith("valid: request req_")
    workspace_key = cli("-w", root / "workspace", "keys", "public").stdout
    assert (root / "verifier.key").read_text() == workspace_key  # PEM, then the note verifier key
    page = next((root / "workspace" / "certificates").glob("*.html")).read_text()
    assert "Example Ltd (forget demo)" in page and "DSAR-2026-000" in page
    assert re.search(r"records?</strong> of the data subject (were|was) erased", page)  # an erasure, not "no data"
