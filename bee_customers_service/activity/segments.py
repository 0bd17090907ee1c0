"""The stored RFM segment (customers.rfm_segment): computed set-based, as `statistics.stats()` would.

The search facet counts customers per segment over a whole business, so the segment is stored
(docs/events.md "RFM scores and segments"). The SQL below is the rule of `statistics.segment_for`
and the scores of `statistics.stats()` at the same `now`, for many customers in one statement:
recency from the last visit, frequency from the distinct visit days in the window, monetary as
the best per-currency rank among the business's spenders (customer_spend).

A row is written only when its segment changes (or was never computed), so a refresh that finds
nothing new writes nothing. Monetary ranks come from cut-offs: with `spenders` paying customers
in a currency, a value scores at least k+1 exactly when it is >= the (floor(k*spenders/5)+1)-th
smallest value, which is `ceil(5 * at_or_below / spenders)` without counting per customer.
"""

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import CursorResult, bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY, UUID
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.types import Integer, Numeric, String

from bee_customers_service.activity.repository import APPOINTMENT_COUNTS, ORDER_COUNTS, customer_ids_of_business

_UUIDS = ARRAY(UUID(as_uuid=True))
_TEXTS = ARRAY(String())
_INTS = ARRAY(Integer())
_MONEY = ARRAY(Numeric(14, 2))

# Per (business, currency): how many spenders, and the smallest value scoring 2, 3, 4 and 5.
_CUTOFFS_OF = """
    SELECT p.business_id, p.currency, n.spenders,
        {cut1} AS c2, {cut2} AS c3, {cut3} AS c4, {cut4} AS c5
    FROM ({pairs}) p
    CROSS JOIN LATERAL (
        SELECT count(*)::int AS spenders FROM customer_spend
        WHERE business_id = p.business_id AND currency = p.currency AND lifetime_value > 0
    ) n
"""
_CUT = (
    "(SELECT lifetime_value FROM customer_spend WHERE business_id = p.business_id AND currency = p.currency"
    " AND lifetime_value > 0 ORDER BY lifetime_value OFFSET ({k} * n.spenders) / 5 LIMIT 1)"
)
_CUTS = {f"cut{k}": _CUT.format(k=k) for k in range(1, 5)}
_CUTOFFS_OF_BUSINESS = text(
    _CUTOFFS_OF.format(
        pairs="SELECT DISTINCT business_id, currency FROM customer_spend"
        " WHERE business_id = :business_id AND lifetime_value > 0",
        **_CUTS,
    )
)
_CUTOFFS_OF_CUSTOMERS = text(
    _CUTOFFS_OF.format(
        pairs="SELECT DISTINCT business_id, currency FROM customer_spend"
        " WHERE customer_id = ANY(:customer_ids) AND lifetime_value > 0",
        **_CUTS,
    )
).bindparams(bindparam("customer_ids", type_=_UUIDS))

# The segment of each customer in :customer_ids at :now (UTC), written where it changed.
# Locks are taken in id order and SKIP LOCKED: a customer another transaction holds is being
# recomputed there (which stores its segment), and a refresh never waits or deadlocks on it.
# The UPDATE re-checks the aggregates it read, so a row changed meanwhile keeps the newer value.
_STORE = text(
    f"""
    WITH cut AS (
        SELECT * FROM unnest(:cut_business, :cut_currency, :cut_spenders, :cut_c2, :cut_c3, :cut_c4, :cut_c5)
            AS t(business_id, currency, spenders, c2, c3, c4, c5)
    ),
    moment AS (
        SELECT CAST(:now AS timestamptz) AS now, CAST(:today AS date) AS today, CAST(:window_months AS int) AS months
    ),
    base AS (
        SELECT c.id, c.total_orders, c.total_appointments, c.last_order_date, c.last_appointment_date,
            greatest(c.last_order_date, c.last_appointment_date) AS last_visit,
            least(h.first_order_date, h.first_appointment_date) AS first_visit,
            round(v.visits::numeric / w.months, 2) AS visits_per_month,
            coalesce(m.monetary, 1) AS monetary,
            w.today
        FROM customers c
        CROSS JOIN moment w
        LEFT JOIN LATERAL (
            SELECT first_order_date, first_appointment_date FROM customer_history WHERE customer_id = c.id
        ) h ON true
        CROSS JOIN LATERAL (
            SELECT count(DISTINCT (t.at AT TIME ZONE 'UTC')::date) AS visits FROM (
                SELECT a.completed_at AS at FROM customer_activity a WHERE a.customer_id = c.id AND {ORDER_COUNTS}
                UNION ALL
                SELECT a.occurred_at FROM customer_activity a WHERE a.customer_id = c.id AND {APPOINTMENT_COUNTS}
            ) t
            -- the same instant `months` calendar months earlier (statistics.months_before), in UTC
            WHERE t.at >= ((w.now AT TIME ZONE 'UTC') - make_interval(months => w.months)) AT TIME ZONE 'UTC'
              AND t.at <= w.now
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
        WHERE c.id = ANY(:customer_ids)
    ),
    scored AS (
        SELECT b.*, greatest(0, b.today - b.last_visit) AS days, b.today - b.first_visit AS first_days,
            CASE WHEN b.visits_per_month >= 4 THEN 5 WHEN b.visits_per_month >= 2 THEN 4
                 WHEN b.visits_per_month >= 1 THEN 3 WHEN b.visits_per_month >= 1.0 / 3 THEN 2 ELSE 1 END AS f
        FROM base b
    ),
    computed AS (
        SELECT s.*, CASE
            WHEN s.last_visit IS NULL THEN 'prospect'
            WHEN s.first_days IS NOT NULL AND s.first_days <= 30 AND s.total_orders + s.total_appointments <= 2
                THEN 'new'
            WHEN s.r >= 4 AND s.f >= 4 AND s.monetary >= 4 THEN 'champion'
            WHEN s.r >= 3 AND s.f >= 3 THEN 'loyal'
            WHEN s.r >= 3 THEN 'promising'
            WHEN s.r = 2 AND (s.f >= 3 OR s.monetary >= 4) THEN 'at_risk'
            WHEN s.r = 2 THEN 'hibernating'
            ELSE 'lost'
        END AS segment
        FROM (
            SELECT s.*, CASE WHEN s.days <= 30 THEN 5 WHEN s.days <= 60 THEN 4 WHEN s.days <= 90 THEN 3
                             WHEN s.days <= 180 THEN 2 ELSE 1 END AS r
            FROM scored s
        ) s
    ),
    locked AS (
        SELECT c.id FROM customers c JOIN computed x ON x.id = c.id
        -- (id = ANY again: an index probe per customer, never a scan of the whole table per chunk)
        WHERE c.id = ANY(:customer_ids) AND (c.rfm_segment IS DISTINCT FROM x.segment OR c.rfm_segment_at IS NULL)
        ORDER BY c.id
        FOR NO KEY UPDATE OF c SKIP LOCKED
    )
    UPDATE customers c SET rfm_segment = x.segment, rfm_segment_at = :now
    FROM computed x JOIN locked l ON l.id = x.id
    WHERE c.id = x.id AND c.id = ANY(:customer_ids)
      AND (c.total_orders, c.total_appointments, c.last_order_date, c.last_appointment_date)
          IS NOT DISTINCT FROM (x.total_orders, x.total_appointments, x.last_order_date, x.last_appointment_date)
    """  # noqa: S608 (constant filters, no input)
).bindparams(
    bindparam("customer_ids", type_=_UUIDS),
    bindparam("cut_business", type_=_UUIDS),
    bindparam("cut_currency", type_=_TEXTS),
    bindparam("cut_spenders", type_=_INTS),
    bindparam("cut_c2", type_=_MONEY),
    bindparam("cut_c3", type_=_MONEY),
    bindparam("cut_c4", type_=_MONEY),
    bindparam("cut_c5", type_=_MONEY),
)

# The businesses with customers, one index probe each (a loose index scan on ix_customers_business_id).
_BUSINESSES = text(
    """
    WITH RECURSIVE b AS (
        (SELECT business_id FROM customers ORDER BY business_id LIMIT 1)
        UNION ALL
        SELECT (SELECT business_id FROM customers WHERE business_id > b.business_id ORDER BY business_id LIMIT 1)
        FROM b WHERE b.business_id IS NOT NULL
    )
    SELECT business_id FROM b WHERE business_id IS NOT NULL
    """
)


@dataclass(frozen=True, slots=True)
class Cutoffs:
    """The monetary cut-offs of some (business, currency) pairs, as the arrays `_STORE` takes."""

    rows: Sequence[Any]

    def params(self) -> dict[str, list[Any]]:
        names = ("business_id", "currency", "spenders", "c2", "c3", "c4", "c5")
        return {f"cut_{'business' if n == 'business_id' else n}": [getattr(r, n) for r in self.rows] for n in names}


async def cutoffs_of_business(session: AsyncSession, business_id: uuid.UUID) -> Cutoffs:
    return Cutoffs((await session.execute(_CUTOFFS_OF_BUSINESS, {"business_id": business_id})).all())


async def store(
    session: AsyncSession,
    customer_ids: Sequence[uuid.UUID],
    *,
    now: datetime,
    window_months: int,
    cutoffs: Cutoffs | None = None,
) -> int:
    """Store the segment of these customers at `now`, in the caller's transaction; how many changed.

    `cutoffs`: the business's monetary cut-offs, when the caller computed them once for many chunks.
    """
    ids = sorted(set(customer_ids))
    if not ids:
        return 0
    if cutoffs is None:
        result = await session.execute(_CUTOFFS_OF_CUSTOMERS, {"customer_ids": ids})
        cutoffs = Cutoffs(result.all())
    now = now.astimezone(UTC)  # stats() takes the date and the window in UTC
    params = {"customer_ids": ids, "now": now, "today": now.date(), "window_months": window_months}
    result = await session.execute(_STORE, params | cutoffs.params())
    return cast(CursorResult[Any], result).rowcount


@dataclass(frozen=True, slots=True)
class Refreshed:
    businesses: int = 0
    customers: int = 0
    changed: int = 0


async def refresh_business(
    sessionmaker: async_sessionmaker[AsyncSession],
    business_id: uuid.UUID,
    *,
    now: datetime,
    window_months: int,
    chunk: int = 2000,
) -> Refreshed:
    """Refresh the stored segment of every customer of a business, `chunk` customers per transaction.

    Its own transactions (a sessionmaker): a business of a million customers is never one long
    transaction. The monetary cut-offs are taken once, at the start: ranks are as of then.
    """
    async with sessionmaker() as session:
        cutoffs = await cutoffs_of_business(session, business_id)
    customers = changed = 0
    after: uuid.UUID | None = None
    while True:
        async with sessionmaker() as session:
            ids = await customer_ids_of_business(session, business_id, after=after, limit=chunk)
            if not ids:
                return Refreshed(1, customers, changed)
            changed += await store(session, ids, now=now, window_months=window_months, cutoffs=cutoffs)
            await session.commit()
        customers += len(ids)
        after = ids[-1]


async def refresh_segments(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    window_months: int,
    business_id: uuid.UUID | None = None,
    now: datetime | None = None,
) -> Refreshed:
    """Refresh one business, or every business one after the other; the totals."""
    if business_id is not None:
        businesses = [business_id]
    else:
        async with sessionmaker() as session:
            businesses = list((await session.execute(_BUSINESSES)).scalars())
    total = Refreshed()
    for business in businesses:
        done = await refresh_business(sessionmaker, business, now=now or datetime.now(UTC), window_months=window_months)
        total = Refreshed(total.businesses + 1, total.customers + done.customers, total.changed + done.changed)
    return total
