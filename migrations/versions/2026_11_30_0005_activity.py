"""Activity: customer_activity, processed_events, and more customer_history fields.

Revision ID: 0005_activity
Revises: 0004_tags_notes_search
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_activity"
down_revision: str | None = "0004_tags_notes_search"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "customer_activity",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("business_id", sa.UUID(), nullable=False),
        sa.Column("customer_id", sa.UUID(), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("external_id", sa.String(100), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("amount", sa.Numeric(12, 2)),
        sa.Column("returned_amount", sa.Numeric(12, 2), server_default="0", nullable=False),
        sa.Column("currency", sa.String(3)),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True)),
        sa.Column("returned_at", sa.DateTime(timezone=True)),
        sa.Column("cancelled_at", sa.DateTime(timezone=True)),
        sa.Column("status_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_customer_activity"),
        sa.UniqueConstraint("business_id", "kind", "external_id", name="uq_customer_activity_reference"),
        sa.CheckConstraint("kind IN ('order', 'appointment')", name="ck_customer_activity_kind"),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name="fk_customer_activity_customer_id_customers", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_customer_activity_customer_occurred", "customer_activity", ["customer_id", "occurred_at", "id"])
    op.create_index(
        "ix_customer_activity_customer_kind_occurred",
        "customer_activity",
        ["customer_id", "kind", "occurred_at", "id"],
    )

    op.create_table(
        "processed_events",
        sa.Column("event_id", sa.UUID(), nullable=False),
        sa.Column("business_id", sa.UUID()),
        sa.Column("processed_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("event_id", name="pk_processed_events"),
    )
    op.create_index("ix_processed_events_processed_at", "processed_events", ["processed_at"])

    op.add_column("customer_history", sa.Column("business_id", sa.UUID()))
    op.add_column("customer_history", sa.Column("cancelled_orders", sa.Integer(), server_default="0", nullable=False))
    op.add_column("customer_history", sa.Column("no_shows", sa.Integer(), server_default="0", nullable=False))
    op.add_column(
        "customer_history", sa.Column("returned_amount", sa.Numeric(12, 2), server_default="0", nullable=False)
    )
    op.add_column(
        "customer_history",
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    )
    op.execute("UPDATE customer_history h SET business_id = c.business_id FROM customers c WHERE c.id = h.customer_id")


def downgrade() -> None:
    op.drop_column("customer_history", "updated_at")
    op.drop_column("customer_history", "returned_amount")
    op.drop_column("customer_history", "no_shows")
    op.drop_column("customer_history", "cancelled_orders")
    op.drop_column("customer_history", "business_id")
    op.drop_table("processed_events")
    op.drop_table("customer_activity")
