"""A PostgreSQL database of its own for one benchmark run, dropped afterwards (tests/conftest.py: the twin)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa


@contextmanager
def scratch_database(server: str, prefix: str) -> Iterator[str]:
    """A new database `PREFIX_<12 hex>` on `server` (a URL of the server's maintenance database),
    yielding its URL; dropped on exit, connections forced out. Raises what SQLAlchemy raises."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield str(sa.make_url(server).set(database=name).render_as_string(hide_password=False))
    finally:
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
