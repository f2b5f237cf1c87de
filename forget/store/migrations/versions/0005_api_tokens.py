"""API tokens of `forget serve` (hashes only) and one open request per subject, enforced by the database.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_tokens",
        sa.Column("token_id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("scopes", sa.Text, nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", sa.String(32), nullable=False),
        sa.Column("revoked_at", sa.String(32), nullable=True),
    )
    # One open request per subject; `file_request` turns a collision into the existing request.
    open_only = sa.text("state IN ('pending', 'running')")
    op.create_index(
        "uq_requests_open_subject",
        "requests",
        ["subject_key"],
        unique=True,
        sqlite_where=open_only,
        postgresql_where=open_only,
    )


def downgrade() -> None:
    op.drop_index("uq_requests_open_subject", table_name="requests")
    op.drop_table("api_tokens")
