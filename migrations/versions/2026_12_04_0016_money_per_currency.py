"""Money per currency: a customer's spending is kept per currency, never summed across currencies.

`customer_spend` holds one row per (customer, currency) in which the customer has a counted order
(completed and not cancelled: docs/events.md "Statistics"), with the order count and the lifetime
value (sum of greatest(amount - returned_amount, 0)); an order without a currency counts under
'XXX' (ISO 4217 "no currency"). Its index (business_id, currency, lifetime_value) serves the RFM
monetary rank per currency.

`customers.lifetime_value` becomes nullable: the sum when the customer paid in exactly one currency
(named by the new `customers.lifetime_value_currency`), 0 when none, NULL when several. The search
index on it is rebuilt on coalesce(lifetime_value, -1), the sort key (several currencies sort last).
The upgrade rebuilds both from customer_activity, set-based; the downgrade restores the old meaning
(the sum over all currencies, NOT NULL).

Revision ID: 0016_money_per_currency
Revises: 0015_auth_sync
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0016_money_per_currency"
down_revision: str | None = "0015_auth_sync"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The counting rule of activity/repository.py ORDER_COUNTS, frozen here as of this revision.
_BUILD_SPEND = """
    INSERT INTO customer_spend (customer_id, business_id, currency, orders, lifetime_value)
    SELECT a.customer_id, c.business_id, coalesce(a.currency, 'XXX'), count(*),
           coalesce(sum(greatest(a.amount - a.returned_amount, 0)), 0)
    FROM customer_activity a
    JOIN customers c ON c.id = a.customer_id
    WHERE a.kind = 'order' AND a.completed_at IS NOT NULL AND a.status <> 'cancelled'
    GROUP BY a.customer_id, c.business_id, coalesce(a.currency, 'XXX')
"""

_SET_SINGLE_CURRENCY = """
    UPDATE customers c SET
        lifetime_value = CASE WHEN s.currencies = 1 THEN s.lifetime_value END,
        lifetime_value_currency = CASE WHEN s.currencies = 1 THEN s.currency END
    FROM (
        SELECT customer_id, count(*) AS currencies, min(currency) AS currency, sum(lifetime_value) AS lifetime_value
        FROM customer_spend GROUP BY customer_id
    ) s
    WHERE c.id = s.customer_id
"""

# A customer without a counted order: 0, no currency (the old aggregate was already 0 for them).
_SET_NO_SPENDING = """
    UPDATE customers c SET lifetime_value = 0
    WHERE c.lifetime_value IS DISTINCT FROM 0
      AND NOT EXISTS (SELECT 1 FROM customer_spend s WHERE s.customer_id = c.id)
"""

_RESTORE_SUM = """
    UPDATE customers c SET lifetime_value = s.lifetime_value
    FROM (SELECT customer_id, sum(lifetime_value) AS lifetime_value FROM customer_spend GROUP BY customer_id) s
    WHERE c.id = s.customer_id AND c.lifetime_value IS DISTINCT FROM s.lifetime_value
"""


def upgrade() -> None:
    op.create_table(
        "customer_spend",
        sa.Column(
            "customer_id",
            postgresql.UUID(as_uuid=True),
            sa.ForeignKey("customers.id", ondelete="CASCADE", name=op.f("fk_customer_spend_customer_id_customers")),
            nullable=False,
        ),
        sa.Column("business_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("orders", sa.Integer(), nullable=False),
        sa.Column("lifetime_value", sa.Numeric(12, 2), nullable=False),
        sa.PrimaryKeyConstraint("customer_id", "currency", name=op.f("pk_customer_spend")),
    )
    op.create_index(
        "ix_customer_spend_business_currency_value", "customer_spend", ["business_id", "currency", "lifetime_value"]
    )
    op.add_column("customers", sa.Column("lifetime_value_currency", sa.String(3), nullable=True))
    op.alter_column("customers", "lifetime_value", existing_type=sa.Numeric(12, 2), nullable=True)
    op.drop_index("ix_customers_business_lifetime_value_id", table_name="customers")

    op.execute(_BUILD_SPEND)
    op.execute(_SET_SINGLE_CURRENCY)
    op.execute(_SET_NO_SPENDING)

    op.execute(
        "CREATE INDEX ix_customers_business_lifetime_value_id ON customers "
        "(business_id, (coalesce(lifetime_value, -1)), id)"
    )


def downgrade() -> None:
    op.drop_index("ix_customers_business_lifetime_value_id", table_name="customers")
    op.execute(_RESTORE_SUM)
    op.execute("UPDATE customers SET lifetime_value = 0 WHERE lifetime_value IS NULL")
    op.alter_column("customers", "lifetime_value", existing_type=sa.Numeric(12, 2), nullable=False)
    op.drop_column("customers", "lifetime_value_currency")
    op.create_index("ix_customers_business_lifetime_value_id", "customers", ["business_id", "lifetime_value", "id"])
    op.drop_index("ix_customer_spend_business_currency_value", table_name="customer_spend")
    op.drop_table("customer_spend")
