"""training runs: a verification's (arm, size, seed group) units, each with its own lease

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 09:20:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "training_runs",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("job_id", sa.String(length=40), nullable=False),
        sa.Column("verification_id", sa.String(length=40), nullable=False),
        sa.Column("look", sa.Integer(), nullable=False),
        sa.Column("arm", sa.String(length=100), nullable=False),
        sa.Column("size", sa.String(length=40), nullable=False),
        sa.Column("seeds", sa.JSON(), nullable=False),
        sa.Column("queue", sa.String(length=40), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("progress", sa.Double(), nullable=False),
        sa.Column("progress_message", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("lease_owner", sa.String(length=64), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("enqueued_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["verification_id"], ["verifications.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("training_runs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_training_runs_job_id"), ["job_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_training_runs_verification_id"), ["verification_id"], unique=False
        )
        batch_op.create_index(
            "ix_training_runs_state_lease", ["state", "lease_expires_at"], unique=False
        )
    with op.batch_alter_table("verification_runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("training_run_id", sa.String(length=40), nullable=True))
        batch_op.create_foreign_key(
            "fk_verification_runs_training_run_id",
            "training_runs",
            ["training_run_id"],
            ["id"],
            ondelete="SET NULL",
        )


def downgrade() -> None:
    with op.batch_alter_table("verification_runs", schema=None) as batch_op:
        batch_op.drop_constraint("fk_verification_runs_training_run_id", type_="foreignkey")
        batch_op.drop_column("training_run_id")
    with op.batch_alter_table("training_runs", schema=None) as batch_op:
        batch_op.drop_index("ix_training_runs_state_lease")
        batch_op.drop_index(batch_op.f("ix_training_runs_verification_id"))
        batch_op.drop_index(batch_op.f("ix_training_runs_job_id"))
    op.drop_table("training_runs")
