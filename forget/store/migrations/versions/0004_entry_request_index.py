"""Ledger entries indexed by request id, and by (kind, index).

A certificate rests on its request's own entries; without an index, issuing one re-read every
entry of seven kinds and kept those naming the request (issue 14, item 3). `request_id` is a copy
of the payload's `request_id` (a string, else NULL), written by `ledger.store.append`; existing
entries are backfilled here by the same rule (`ledger.log.request_id_of`, frozen below). The copy
is outside the leaf hash, so `Ledger.verify` checks it against the payload.

The kind index becomes (kind, seq): reading a kind's entries between two indices (a run's
manifests and checkpoints) is then an index range, not every entry of that kind ever logged.

The backfill is an UPDATE of an append-only table: the migration lifts the UPDATE trigger for
it, in the same transaction, and puts it back exactly as revision 0001 made it.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_SQLITE_NO_UPDATE = (
    "CREATE TRIGGER ledger_entries_no_update BEFORE UPDATE ON ledger_entries "
    "BEGIN SELECT RAISE(ABORT, 'the ledger is append-only: UPDATE refused'); END"
)


def _request_id(entry: bytes) -> str | None:
    """The payload's request id when it is a string (ledger.log.request_id_of, as of this revision);
    None for an entry that is not a JSON object with a payload object (`ledger verify` reports it)."""
    try:
        value = json.loads(bytes(entry))
    except ValueError:
        return None
    payload = value.get("payload") if isinstance(value, dict) else None
    found = payload.get("request_id") if isinstance(payload, dict) else None
    return found if isinstance(found, str) else None


def upgrade() -> None:
    bind = op.get_bind()
    dialect = bind.dialect.name
    op.add_column("ledger_entries", sa.Column("request_id", sa.Text, nullable=True))
    query = sa.text("SELECT seq, entry FROM ledger_entries ORDER BY seq").execution_options(yield_per=5000)
    filled = [{"s": int(seq), "r": rid} for seq, entry in bind.execute(query) if (rid := _request_id(entry))]
    if filled:
        if dialect == "sqlite":
            op.execute("DROP TRIGGER ledger_entries_no_update")
        elif dialect == "postgresql":
            op.execute("ALTER TABLE ledger_entries DISABLE TRIGGER ledger_entries_no_change")
        else:
            raise RuntimeError(f"no backfill of ledger_entries.request_id for the {dialect} dialect")
        bind.execute(sa.text("UPDATE ledger_entries SET request_id = :r WHERE seq = :s"), filled)
        if dialect == "sqlite":
            op.execute(_SQLITE_NO_UPDATE)
        else:
            op.execute("ALTER TABLE ledger_entries ENABLE TRIGGER ledger_entries_no_change")
    op.create_index(
        "ix_ledger_entries_request_id",
        "ledger_entries",
        ["request_id", "seq"],
        sqlite_where=sa.text("request_id IS NOT NULL"),
        postgresql_where=sa.text("request_id IS NOT NULL"),
    )
    op.drop_index("ix_ledger_entries_kind", table_name="ledger_entries")
    op.create_index("ix_ledger_entries_kind_seq", "ledger_entries", ["kind", "seq"])


def downgrade() -> None:
    raise RuntimeError("the ledger is append-only: this migration cannot be undone")
