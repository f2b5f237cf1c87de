"""Shared fixtures: a generated tabular data set, workspaces, and the database to run against.

Set FORGET_TEST_POSTGRES_URL (a server URL such as postgresql+psycopg://user@127.0.0.1:5432/postgres)
to run every database-backed test against PostgreSQL as well as SQLite: each test gets a database
of its own, created and dropped around it.
"""

from __future__ import annotations

import csv
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

if TYPE_CHECKING:
    from forget.workspace.core import Workspace
    from tests.helpers import WorkspaceCache

POSTGRES_ENV = "FORGET_TEST_POSTGRES_URL"


def _build_the_cli_command_once() -> None:
    """typer's CliRunner rebuilds the click command from the app's annotations on every invoke: about
    50 ms, most of a quick CLI test and 40 s of the whole run. `cli.main.app` does not change while
    the tests run, so its command is built once; any other Typer app (tests/cli/test_errors.py
    makes its own) is built as before."""
    import sys

    import typer
    import typer.testing

    original = typer.main.get_command
    built: list[Any] = []

    def get_command(app: typer.Typer) -> Any:
        main = sys.modules.get("cli.main")
        if main is None or app is not main.app:
            return original(app)
        if not built:
            built.append(original(app))
        return built[0]

    setattr(typer.testing, "_get_command", get_command)  # noqa: B010 (a private name: no attribute for mypy)


_build_the_cli_command_once()


def write_tabular_csv(path: Path, rows: int = 240, seed: int = 7, subjects: int | None = None) -> list[dict[str, str]]:
    """Three classes from Gaussian blobs, a categorical column, 1-3 records per subject."""
    rng = np.random.default_rng(seed)
    subject_count = subjects or rows // 2
    records = []
    for i in range(rows):
        label = int(rng.integers(0, 3))
        x = rng.normal(loc=label, scale=1.0, size=3)
        records.append(
            {
                "subject": f"person-{int(rng.integers(0, subject_count)):04d}",
                "record": f"rec-{i:05d}",
                "x1": f"{x[0]:.5f}",
                "x2": f"{x[1]:.5f}",
                "x3": f"{x[2] * 10 + 50:.3f}",
                "colour": ["red", "green", "blue"][(label + int(rng.integers(0, 2))) % 3],
                "label": ["a", "b", "c"][label],
            }
        )
    write_rows(path, records)
    return records


def write_rows(path: Path, records: list[dict[str, str]]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(records[0]))
        writer.writeheader()
        writer.writerows(records)


@pytest.fixture
def tabular_csv(tmp_path: Path) -> Path:
    path = tmp_path / "people.csv"
    write_tabular_csv(path)
    return path


def _postgres_database() -> Iterator[str]:
    import sqlalchemy as sa

    server = os.environ[POSTGRES_ENV]
    name = f"forget_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield str(sa.make_url(server).set(database=name).render_as_string(hide_password=False))
    finally:
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """The default embedded SQLite file, and PostgreSQL when a server is given."""
    if request.param == "sqlite":
        yield "sqlite:///forget.db"
        return
    if not os.environ.get(POSTGRES_ENV):
        pytest.skip(f"set {POSTGRES_ENV} to run against PostgreSQL")
    yield from _postgres_database()


@pytest.fixture
def second_database_url(database_url: str) -> Iterator[str]:
    """A second, independent database of the same kind (for two-workspace comparisons)."""
    if database_url.startswith("sqlite"):
        yield "sqlite:///forget.db"
        return
    yield from _postgres_database()


@pytest.fixture
def fake_workspace(tmp_path: Path) -> Workspace:
    """A workspace whose store and ledger live in memory (tests/fakes.py): no database, no torch."""
    from tests.fakes import make_fake_workspace

    return make_fake_workspace(tmp_path / "ws")


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> WorkspaceCache:
    """Workspaces built once per session and copied for each test (tests/helpers.py WorkspaceCache)."""
    from tests.helpers import WorkspaceCache

    return WorkspaceCache(tmp_path_factory.mktemp)
