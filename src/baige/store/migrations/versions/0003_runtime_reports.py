"""runtime reports (what `baige run` inside a job reports, its report token); node draining

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 20:45:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("workloads", schema=None) as batch_op:
        batch_op.add_column(sa.Column("runtime", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("report_token", sa.String(length=64), nullable=True))
    with op.batch_alter_table("nodes", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("draining", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("nodes", schema=None) as batch_op:
        batch_op.drop_column("draining")
    with op.batch_alter_table("workloads", schema=None) as batch_op:
        batch_op.drop_column("report_token")
        batch_op.drop_column("runtime")
