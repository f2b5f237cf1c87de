"""Schema migrations (Alembic), run by `forget init` and checked whenever a workspace opens."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from forget.errors import WorkspaceError

HEAD_REVISION = "0006"
"""The newest migration; a test checks it against Alembic's script directory."""

MIGRATIONS = Path(__file__).parent / "migrations"


def upgrade(engine: Engine) -> None:
    """Create or upgrade the database's schema to `HEAD_REVISION` in one transaction (Alembic).

    Raises SQLAlchemy's errors when the database cannot be written (`forget.errors.translated()`).
    """
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def current_revision(engine: Engine) -> str | None:
    """The database's schema revision, or None when it holds no forget schema.

    Raises `WorkspaceError` (exit 3) when the database cannot be opened.
    """
    try:
        with engine.connect() as connection:
            if not sa.inspect(connection).has_table("alembic_version"):
                return None
            return connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
    except sa.exc.OperationalError as error:
        raise WorkspaceError(f"cannot open the workspace database: {str(error.orig).strip()}") from error


def check_revision(engine: Engine) -> None:
    """Refuse a database without forget's schema, or at another revision than this forget's.

    Raises `WorkspaceError` (exit 3), naming the revision found and the one needed.
    """
    revision = current_revision(engine)
    if revision is None:
        raise WorkspaceError("the workspace database has no forget schema; run `forget init` for a new workspace")
    if revision != HEAD_REVISION:
        raise WorkspaceError(
            f"the workspace database is at schema revision {revision}, this forget needs {HEAD_REVISION}"
        )
