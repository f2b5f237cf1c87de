"""Schema migrations (Alembic), run by `forget init` and checked whenever a workspace opens."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from forget.errors import WorkspaceError

HEAD_REVISION = "0005"
"""The newest migration; a test checks it against Alembic's script directory."""

MIGRATIONS = Path(__file__).parent / "migrations"


def upgrade(engine: Engine) -> None:
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def current_revision(engine: Engine) -> str | None:
    try:
        with engine.connect() as connection:
            if not sa.inspect(connection).has_table("alembic_version"):
                return None
            return connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
    except sa.exc.OperationalError as error:
        raise WorkspaceError(f"cannot open the workspace database: {str(error.orig).strip()}") from error


def check_revision(engine: Engine) -> None:
    revision = current_revision(engine)
    if revision is None:
        raise WorkspaceError("the workspace database has no forget schema; run `forget init` for a new workspace")
    if revision != HEAD_REVISION:
        raise WorkspaceError(
            f"the workspace database is at schema revision {revision}, this forget needs {HEAD_REVISION}"
        )
