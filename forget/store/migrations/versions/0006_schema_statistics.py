"""The schema rule's counts (forget.data.statistics), so that an erasure need not read every record.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30

The table starts empty: a workspace upgraded to this revision counts its records at the next
`forget run` (forget.data.statistics keeps them from then on).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "schema_statistics",
        sa.Column("part", sa.String(16), primary_key=True),
        sa.Column("column_name", sa.Text, primary_key=True),
        sa.Column("bucket", sa.Integer, primary_key=True),
        sa.Column("count", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("schema_statistics")
