"""controller status and gateway load: what the controller process and the API processes of
a `baige up` tell each other through the store once they run apart

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04 12:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "controller_status",
        sa.Column("instance", sa.String(200), primary_key=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.Column("pass_seconds", sa.JSON(), nullable=False),
    )
    op.create_table(
        "gateway_load",
        sa.Column("worker", sa.String(200), primary_key=True),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.Column("figures", sa.JSON(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("gateway_load")
    op.drop_table("controller_status")
