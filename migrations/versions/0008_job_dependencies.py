"""job dependencies: a job sent only when the jobs it needs have succeeded

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 06:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "job_dependencies",
        sa.Column("job_id", sa.String(length=40), nullable=False),
        sa.Column("needs_job_id", sa.String(length=40), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["needs_job_id"], ["jobs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("job_id", "needs_job_id"),
    )
    with op.batch_alter_table("job_dependencies", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_job_dependencies_needs_job_id"), ["needs_job_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("job_dependencies", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_job_dependencies_needs_job_id"))
    op.drop_table("job_dependencies")
