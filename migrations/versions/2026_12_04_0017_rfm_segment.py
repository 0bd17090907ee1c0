"""The stored RFM segment of each customer, for the search facet per segment (issue 19).

`customers.rfm_segment` is the segment GET /customers/{id}/stats would compute (activity/segments.py
computes it set-based; docs/events.md "RFM scores and segments"), kept fresh by the activity
recompute and a periodic refresh; `customers.rfm_segment_at` is when it was computed (NULL: never,
the default 'prospect' stands). The index (business_id, rfm_segment) serves the facet's counts.
`rfm_segment_refreshes` holds when the last periodic refresh finished, shared by the replicas.

The backfill computes every customer's segment at the migration's time in one statement: a frozen
copy of activity/segments.py's rules (window: BEE_STATS_WINDOW_MONTHS), cut-offs by window function.

Revision ID: 0017_rfm_segment
Revises: 0016_money_per_currency
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from bee_customers_service.core.config import get_settings

_BACKFILL = """
    WITH ranked AS (
        SELECT business_id, currency, lifetime_value,
            row_number() OVER (PARTITION BY business_id, currency ORDER BY lifetime_value) AS n,
            count(*) OVER (PARTITION BY business_id, currency) AS spenders
        FROM customer_spend WHERE lifetime_value > 0
    ),
    cut AS (
        SELECT business_id, currency, max(spenders) AS spenders,
            max(lifetime_value) FILTER (WHERE n = spenders / 5 + 1) AS c2,
            max(lifetime_value) FILTER (WHERE n = 2 * spenders / 5 + 1) AS c3,
            max(lifetime_value) FILTER (WHERE n = 3 * spenders / 5 + 1) AS c4,
            max(lifetime_value) FILTER (WHERE n = 4 * spenders / 5 + 1) AS c5
        FROM ranked GROUP BY business_id, currency
    ),
    base AS (
        SELECT c.id, c.total_orders + c.total_appointments AS visits,
            greatest(c.last_order_date, c.last_appointment_date) AS last_visit,
            least(h.first_order_date, h.first_appointment_date) AS first_visit,
            round(v.visits::numeric / :window_months, 2) AS visits_per_month,
            coalesce(m.monetary, 1) AS monetary
        FROM customers c
        LEFT JOIN customer_history h ON h.customer_id = c.id
        CROSS JOIN LATERAL (
            SELECT count(DISTINCT (t.at AT TIME ZONE 'UTC')::date) AS visits FROM (
                SELECT a.completed_at AS at FROM customer_activity a WHERE a.customer_id = c.id
                    AND a.kind = 'order' AND a.completed_at IS NOT NULL AND a.status <> 'cancelled'
                UNION ALL
                SELECT a.occurred_at FROM customer_activity a WHERE a.customer_id = c.id
                    AND a.kind = 'appointment' AND a.status = 'completed'
            ) t
            WHERE t.at >= ((now() AT TIME ZONE 'UTC') - make_interval(months => :window_months)) AT TIME ZONE 'UTC'
              AND t.at <= now()
        ) v
        LEFT JOIN LATERAL (
            SELECT max(CASE WHEN s.lifetime_value <= 0 OR coalesce(k.spenders, 0) = 0 THEN 1
                       ELSE 1 + coalesce(s.lifetime_value >= k.c2, false)::int
                              + coalesce(s.lifetime_value >= k.c3, false)::int
                              + coalesce(s.lifetime_value >= k.c4, false)::int
                              + coalesce(s.lifetime_value >= k.c5, false)::int
                       END) AS monetary
            FROM customer_spend s
            LEFT JOIN cut k ON k.business_id = s.business_id AND k.currency = s.currency
            WHERE s.customer_id = c.id
        ) m ON true
    ),
    scored AS (
        SELECT b.*, (now() AT TIME ZONE 'UTC')::date - b.last_visit AS days,
            (now() AT TIME ZONE 'UTC')::date - b.first_visit AS first_days,
            CASE WHEN b.visits_per_month >= 4 THEN 5 WHEN b.visits_per_month >= 2 THEN 4
                 WHEN b.visits_per_month >= 1 THEN 3 WHEN b.visits_per_month >= 1.0 / 3 THEN 2 ELSE 1 END AS f
        FROM base b
    ),
    rated AS (
        SELECT s.*, CASE WHEN s.days <= 30 THEN 5 WHEN s.days <= 60 THEN 4 WHEN s.days <= 90 THEN 3
                         WHEN s.days <= 180 THEN 2 ELSE 1 END AS r
        FROM scored s
    )
    UPDATE customers c SET rfm_segment_at = now(), rfm_segment = CASE
        WHEN x.last_visit IS NULL THEN 'prospect'
        WHEN x.first_days IS NOT NULL AND x.first_days <= 30 AND x.visits <= 2 THEN 'new'
        WHEN x.r >= 4 AND x.f >= 4 AND x.monetary >= 4 THEN 'champion'
        WHEN x.r >= 3 AND x.f >= 3 THEN 'loyal'
        WHEN x.r >= 3 THEN 'promising'
        WHEN x.r = 2 AND (x.f >= 3 OR x.monetary >= 4) THEN 'at_risk'
        WHEN x.r = 2 THEN 'hibernating'
        ELSE 'lost'
    END
    FROM rated x WHERE c.id = x.id
"""

revision: str = "0017_rfm_segment"
down_revision: str | None = "0016_money_per_currency"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("customers", sa.Column("rfm_segment", sa.String(20), server_default="prospect", nullable=False))
    op.add_column("customers", sa.Column("rfm_segment_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "rfm_segment_refreshes",
        sa.Column("id", sa.SmallInteger, primary_key=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_rfm_segment_refreshes_one_row")),
    )
    # Before the index: one pass over the table, then the index is built once.
    op.execute(sa.text(_BACKFILL).bindparams(window_months=get_settings().stats_window_months))
    op.create_index("ix_customers_business_rfm_segment", "customers", ["business_id", "rfm_segment"])


def downgrade() -> None:
    op.drop_index("ix_customers_business_rfm_segment", table_name="customers")
    op.drop_table("rfm_segment_refreshes")
    op.drop_column("customers", "rfm_segment_at")
    op.drop_column("customers", "rfm_segment")
