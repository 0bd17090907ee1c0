"""Foundation: customers, customer_tags, customer_notes, customer_history.

Revision ID: 0001_foundation
Revises:
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001_foundation"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

gender_enum = postgresql.ENUM("male", "female", "other", name="gender_enum", create_type=False)


def _timestamps() -> list[sa.Column]:
    return [
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    ]


def upgrade() -> None:
    gender_enum.create(op.get_bind(), checkfirst=True)
    op.create_table(
        "customers",
        sa.Column("id", sa.UUID(), primary_key=True),
        sa.Column("user_id", sa.UUID(), nullable=False),
        sa.Column("business_id", sa.UUID(), nullable=False),
        sa.Column("full_name", sa.String(100), nullable=False),
        sa.Column("email", sa.String(100), nullable=False),
        sa.Column("phone", sa.String(20)),
        sa.Column("gender", gender_enum),
        sa.Column("avatar_url", sa.String(255)),
        sa.Column("preferences", postgresql.JSONB(), server_default=sa.text("'{}'::jsonb"), nullable=False),
        sa.Column("total_orders", sa.Integer(), server_default="0", nullable=False),
        sa.Column("total_appointments", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_order_date", sa.Date()),
        sa.Column("last_appointment_date", sa.Date()),
        sa.Column("lifetime_value", sa.Numeric(12, 2), server_default="0", nullable=False),
        sa.Column("version", sa.Integer(), server_default="1", nullable=False),
        *_timestamps(),
        sa.PrimaryKeyConstraint("id", name="pk_customers"),
        sa.UniqueConstraint("user_id", "business_id", name="uq_user_per_business"),
    )
    op.create_index("ix_customers_business_id", "customers", ["business_id"])
    op.create_index("ix_customers_user_id", "customers", ["user_id"])
    op.create_index("ix_customers_business_id_full_name", "customers", ["business_id", "full_name"])
    op.create_index("ix_customers_phone", "customers", ["phone"])

    op.create_table(
        "customer_tags",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("customer_id", sa.UUID(), nullable=False),
        sa.Column("label", sa.String(50), nullable=False),
        sa.Column("color", sa.String(7)),
        sa.Column("created_by", sa.UUID()),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_customer_tags"),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name="fk_customer_tags_customer_id_customers", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_customer_tags_customer_id", "customer_tags", ["customer_id"])

    op.create_table(
        "customer_notes",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("customer_id", sa.UUID(), nullable=False),
        sa.Column("content", sa.String(500), nullable=False),
        sa.Column("created_by", sa.UUID(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_customer_notes"),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name="fk_customer_notes_customer_id_customers", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_customer_notes_customer_id_created_at", "customer_notes", ["customer_id", "created_at"])

    op.create_table(
        "customer_history",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("customer_id", sa.UUID(), nullable=False),
        sa.Column("first_order_date", sa.Date()),
        sa.Column("first_appointment_date", sa.Date()),
        sa.Column("returned_orders", sa.Integer(), server_default="0", nullable=False),
        sa.Column("cancelled_appointments", sa.Integer(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_customer_history"),
        sa.UniqueConstraint("customer_id", name="uq_customer_history_customer_id"),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name="fk_customer_history_customer_id_customers", ondelete="CASCADE"
        ),
    )


def downgrade() -> None:
    op.drop_table("customer_history")
    op.drop_table("customer_notes")
    op.drop_table("customer_tags")
    op.drop_table("customers")
    gender_enum.drop(op.get_bind(), checkfirst=True)
