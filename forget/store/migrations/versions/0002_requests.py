"""Erasure requests and their lifecycle state.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "requests",
        sa.Column("request_id", sa.String(40), primary_key=True),
        sa.Column("subject_key", sa.String(64), nullable=False, index=True),
        sa.Column("state", sa.String(16), nullable=False, index=True),
        sa.Column("received_at", sa.String(40), nullable=False),
        sa.Column("deadline", sa.String(40), nullable=False),
        sa.Column("extended_months", sa.Integer, nullable=False, server_default="0"),
        sa.Column("run_id", sa.String(40), nullable=True),
        sa.Column("records_erased", sa.Integer, nullable=True),
        sa.Column("shards", sa.Text, nullable=True),
        sa.Column("completed_at", sa.String(40), nullable=True),
        sa.Column("outcome", sa.String(16), nullable=True),
        sa.Column("note", sa.Text, nullable=True),
        sa.Column("certificate_sha256", sa.String(64), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("requests")
