"""GDPR erasure records.

Revision ID: 0007_gdpr
Revises: 0005_activity
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0007_gdpr"
down_revision: str | None = "0005_activity"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "gdpr_requests",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("scope", sa.String(20), nullable=False),
        sa.Column("subject_user_id", sa.UUID(), nullable=False),
        sa.Column("customer_ids", postgresql.ARRAY(sa.UUID()), nullable=False),
        sa.Column("business_ids", postgresql.ARRAY(sa.UUID()), nullable=False),
        sa.Column("requested_by", sa.UUID(), nullable=False),
        sa.Column("requested_by_roles", postgresql.ARRAY(sa.String(30)), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True)),
        sa.Column("status", sa.String(30), nullable=False),
        sa.Column("erased", postgresql.JSONB(), nullable=False),
        sa.Column("email_sha256", postgresql.ARRAY(sa.String(64)), nullable=False),
        sa.Column("pending_objects", postgresql.ARRAY(sa.String(300)), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_gdpr_requests"),
    )
    op.create_index("ix_gdpr_requests_subject_user_id", "gdpr_requests", ["subject_user_id"])


def downgrade() -> None:
    op.drop_table("gdpr_requests")
