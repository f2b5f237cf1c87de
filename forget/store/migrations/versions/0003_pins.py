"""Pinned key fingerprints and identity form; the reason a deadline was extended.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "workspace_pins",
        sa.Column("name", sa.String(40), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    op.add_column("requests", sa.Column("extension_reason", sa.Text, nullable=True))


def downgrade() -> None:
    op.drop_column("requests", "extension_reason")
    op.drop_table("workspace_pins")
