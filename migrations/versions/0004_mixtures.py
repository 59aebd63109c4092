"""mixtures

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24 03:04:05.059431
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "mixtures",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("project_id", sa.String(length=40), nullable=False),
        sa.Column("corpus_id", sa.String(length=40), nullable=False),
        sa.Column("scan_id", sa.String(length=40), nullable=False),
        sa.Column("job_id", sa.String(length=40), nullable=True),
        sa.Column("dosing", sa.JSON(), nullable=False),
        sa.Column("output_uri", sa.Text(), nullable=False),
        sa.Column("plan", sa.JSON(), nullable=False),
        sa.Column("dry_run", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["corpus_id"],
            ["corpora.id"],
        ),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["jobs.id"],
        ),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(
            ["scan_id"],
            ["scans.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("mixtures", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_mixtures_project_id"), ["project_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("mixtures", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_mixtures_project_id"))

    op.drop_table("mixtures")
