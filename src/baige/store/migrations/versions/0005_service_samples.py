"""usage by kind and service samples: cards held by training vs inference in each usage
sample, and a per-service series (replicas wanted and running, the gateway's load)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-08 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("samples", schema=None) as batch_op:
        batch_op.add_column(sa.Column("training", sa.Float(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("inference", sa.Float(), nullable=False, server_default="0"))
    op.create_table(
        "service_samples",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("ts", sa.Float(), nullable=False),
        sa.Column("workload_id", sa.String(length=32), nullable=False),
        sa.Column("wanted", sa.Integer(), nullable=False),
        sa.Column("running", sa.Integer(), nullable=False),
        sa.Column("qps", sa.Float(), nullable=False),
        sa.Column("in_flight", sa.Float(), nullable=False),
        sa.Column("p50", sa.Float(), nullable=True),
        sa.Column("p99", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("service_samples", schema=None) as batch_op:
        batch_op.create_index("ix_service_sample_workload_ts", ["workload_id", "ts"], unique=False)
        batch_op.create_index("ix_service_sample_ts", ["ts"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("service_samples", schema=None) as batch_op:
        batch_op.drop_index("ix_service_sample_ts")
        batch_op.drop_index("ix_service_sample_workload_ts")
    op.drop_table("service_samples")
    with op.batch_alter_table("samples", schema=None) as batch_op:
        batch_op.drop_column("inference")
        batch_op.drop_column("training")
