"""Running the real CLI in-process, and reading a workspace's state for assertions."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from typer.testing import CliRunner

from cli.main import app

runner = CliRunner()
T = TypeVar("T")


class CliFailed(AssertionError):
    pass


def cli(*args: object, expect: int | None = 0) -> Any:
    """Invoke `forget ARGS...`; asserts the exit code (unless `expect` is None) and returns the result."""
    result = runner.invoke(app, [str(a) for a in args])
    if expect is not None and result.exit_code != expect:
        raise CliFailed(
            f"forget {' '.join(map(str, args))} exited {result.exit_code}, expected {expect}\n"
            f"stdout: {result.stdout}\nstderr: {result.stderr}\n{result.exception!r}"
        )
    return result


def cli_json(*args: object) -> Any:
    return json.loads(cli(*args, "--json").stdout)


def init_args(directory: Path, database_url: str, *extra: object) -> list[object]:
    return [
        "init", directory, "--shards", "4", "--slices", "5", "--seed", "99", "--epochs", "3",
        "--batch-size", "16", "--lr", "0.01", "--db", database_url, *extra,
    ]  # fmt: skip


class WorkspaceCache:
    """Folders built once per test session and copied into each test's folder that asks for them.

    Initialising, ingesting and training the same workspace again in every test was most of the
    CLI tests' time; `shutil.copytree` of the built folder takes milliseconds. Cache SQLite
    workspaces only: their database is a file inside the folder and forget.toml holds relative
    paths, so a copy is a workspace of its own (with the original's keys and log origin, which no
    test uses). A workspace on PostgreSQL is built anew by each test.
    """

    def __init__(self, root: Callable[[str], Path]) -> None:
        self._root = root
        self._built: dict[str, tuple[Path, Any]] = {}

    def copy(self, key: str, build: Callable[[Path], T], into: Path) -> T:
        """Build `key` the first time by `build(folder)` in a folder of its own; copy that folder's
        contents into `into` (the test's tmp_path: the same layout as building there); return what
        `build` returned the first time (no paths: they name the original folder)."""
        if key not in self._built:
            folder = self._root(re.sub(r"[^A-Za-z0-9_-]", "-", key))
            self._built[key] = (folder, build(folder))
        folder, value = self._built[key]
        shutil.copytree(folder, into, dirs_exist_ok=True)
        result: T = value
        return result
