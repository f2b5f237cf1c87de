"""Running the real CLI in-process, and reading a workspace's state for assertions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from cli.main import app

runner = CliRunner()


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
