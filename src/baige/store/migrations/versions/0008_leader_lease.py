"""leader lease: which `baige up` leads the controller on a shared database, and its term,
which fences every write the controller makes

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04 09:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    table = op.create_table(
        "leader_lease",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("term", sa.Integer(), nullable=False),
        sa.Column("holder", sa.Text(), nullable=False),
        sa.Column("since", sa.Float(), nullable=False),
    )
    op.bulk_insert(table, [{"id": 1, "term": 0, "holder": "", "since": 0.0}])


def downgrade() -> None:
    op.drop_table("leader_lease")
