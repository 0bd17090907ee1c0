"""Queries on customer_activity, processed_events and the aggregates. No rules, no commits."""

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, bindparam, column, func, select, table, text
from sqlalchemy.dialects.postgresql import ARRAY, UUID
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.types import DateTime, Numeric, String

from bee_customers_service.activity.state import ActivityState

_UUIDS = ARRAY(UUID(as_uuid=True))
_TEXTS = ARRAY(String())
_TIMES = ARRAY(DateTime(timezone=True))
_MONEY = ARRAY(Numeric(12, 2))

# The erasure records (gdpr/ owns them, and builds on activity/ for its export): a bare table here.
_gdpr_requests = table(
    "gdpr_requests",
    column("kind"),
    column("subject_user_id"),
    column("business_ids", ARRAY(UUID(as_uuid=True))),
    column("requested_at"),
)


async def latest_erasure_at(session: AsyncSession, *, user_id: uuid.UUID, business_id: uuid.UUID) -> datetime | None:
    """When the user was last erased from the business (None if never)."""
    statement = select(func.max(_gdpr_requests.c.requested_at)).where(
        _gdpr_requests.c.kind == "erasure",
        _gdpr_requests.c.subject_user_id == user_id,
        _gdpr_requests.c.business_ids.contains([business_id]),
    )
    return (await session.execute(statement)).scalar_one_or_none()


_CLAIM_EVENTS = text(
    """
    INSERT INTO processed_events (event_id, business_id)
    SELECT * FROM unnest(:event_ids, :business_ids)
    ON CONFLICT (event_id) DO NOTHING
    RETURNING event_id
    """
).bindparams(bindparam("event_ids", type_=_UUIDS), bindparam("business_ids", type_=_UUIDS))


async def claim_events(session: AsyncSession, events: Sequence[tuple[uuid.UUID, uuid.UUID]]) -> set[uuid.UUID]:
    """Record (event_id, business_id) as processed; returns the ids that were not processed before."""
    if not events:
        return set()
    result = await session.execute(
        _CLAIM_EVENTS, {"event_ids": [e[0] for e in events], "business_ids": [e[1] for e in events]}
    )
    return set(result.scalars())


_ACTIVITY_COLUMNS = (
    "business_id, customer_id, kind, external_id, status, occurred_at, status_at, amount, returned_amount, "
    "currency, completed_at, returned_at, cancelled_at"
)

_LOAD_ACTIVITY = text(
    f"""
    SELECT a.*
    FROM unnest(:business_ids, :kinds, :external_ids) AS k(business_id, kind, external_id)
    CROSS JOIN LATERAL (
        SELECT {_ACTIVITY_COLUMNS} FROM customer_activity
        WHERE business_id = k.business_id AND kind = k.kind AND external_id = k.external_id
        LIMIT 1
        FOR UPDATE
    ) a
    """  # noqa: S608 (a constant column list, no input)
).bindparams(
    bindparam("business_ids", type_=_UUIDS), bindparam("kinds", type_=_TEXTS), bindparam("external_ids", type_=_TEXTS)
)


async def load_activity(
    session: AsyncSession, keys: Iterable[tuple[uuid.UUID, str, str]]
) -> dict[tuple[uuid.UUID, str, str], ActivityState]:
    keys = sorted(set(keys))
    if not keys:
        return {}
    result = await session.execute(
        _LOAD_ACTIVITY,
        {"business_ids": [k[0] for k in keys], "kinds": [k[1] for k in keys], "external_ids": [k[2] for k in keys]},
    )
    states = [ActivityState(**row._mapping) for row in result]
    return {state.key: state for state in states}


_UPSERT_ACTIVITY = text(
    f"""
    INSERT INTO customer_activity ({_ACTIVITY_COLUMNS})
    SELECT * FROM unnest(
        :business_id, :customer_id, :kind, :external_id, :status, :occurred_at, :status_at, :amount,
        :returned_amount, :currency, :completed_at, :returned_at, :cancelled_at
    )
    ON CONFLICT (business_id, kind, external_id) DO UPDATE SET
        status = excluded.status,
        occurred_at = excluded.occurred_at,
        status_at = excluded.status_at,
        amount = excluded.amount,
        returned_amount = excluded.returned_amount,
        currency = excluded.currency,
        completed_at = excluded.completed_at,
        returned_at = excluded.returned_at,
        cancelled_at = excluded.cancelled_at,
        updated_at = now()
    """  # noqa: S608 (a constant column list, no input)
).bindparams(
    bindparam("business_id", type_=_UUIDS),
    bindparam("customer_id", type_=_UUIDS),
    bindparam("kind", type_=_TEXTS),
    bindparam("external_id", type_=_TEXTS),
    bindparam("status", type_=_TEXTS),
    bindparam("occurred_at", type_=_TIMES),
    bindparam("status_at", type_=_TIMES),
    bindparam("amount", type_=_MONEY),
    bindparam("returned_amount", type_=_MONEY),
    bindparam("currency", type_=_TEXTS),
    bindparam("completed_at", type_=_TIMES),
    bindparam("returned_at", type_=_TIMES),
    bindparam("cancelled_at", type_=_TIMES),
)
_STATE_FIELDS = tuple(column.strip() for column in _ACTIVITY_COLUMNS.split(","))


async def save_activity(session: AsyncSession, states: Sequence[ActivityState]) -> None:
    """Write the final states in one statement (each key appears once: the caller folded them)."""
    if not states:
        return
    await session.execute(
        _UPSERT_ACTIVITY, {name: [getattr(state, name) for state in states] for name in _STATE_FIELDS}
    )


# Which rows count for what (docs/events.md, "Statistics"): an order counts once completed and not
# cancelled (a returned order is still an order; its refunds come off the lifetime value); an
# appointment counts once completed (attended).
ORDER_COUNTS = "a.kind = 'order' AND a.completed_at IS NOT NULL AND a.status <> 'cancelled'"
APPOINTMENT_COUNTS = "a.kind = 'appointment' AND a.status = 'completed'"

_RECOMPUTE = text(
    f"""
    WITH agg AS (
        SELECT
            c.id AS customer_id,
            c.business_id,
            count(a.id) FILTER (WHERE {ORDER_COUNTS}) AS total_orders,
            (max(a.completed_at) FILTER (WHERE {ORDER_COUNTS}) AT TIME ZONE 'UTC')::date AS last_order_date,
            (min(a.completed_at) FILTER (WHERE {ORDER_COUNTS}) AT TIME ZONE 'UTC')::date AS first_order_date,
            count(a.id) FILTER (WHERE a.kind = 'order' AND a.status = 'returned') AS returned_orders,
            coalesce(sum(a.returned_amount) FILTER (WHERE a.kind = 'order' AND a.status = 'returned'), 0)
                AS returned_amount,
            count(a.id) FILTER (WHERE a.kind = 'order' AND a.status = 'cancelled') AS cancelled_orders,
            count(a.id) FILTER (WHERE {APPOINTMENT_COUNTS}) AS total_appointments,
            (max(a.occurred_at) FILTER (WHERE {APPOINTMENT_COUNTS}) AT TIME ZONE 'UTC')::date
                AS last_appointment_date,
            (min(a.occurred_at) FILTER (WHERE {APPOINTMENT_COUNTS}) AT TIME ZONE 'UTC')::date
                AS first_appointment_date,
            count(a.id) FILTER (WHERE a.kind = 'appointment' AND a.status = 'cancelled') AS cancelled_appointments,
            count(a.id) FILTER (WHERE a.kind = 'appointment' AND a.status = 'no_show') AS no_shows
        FROM unnest(:customer_ids) AS i(id)
        CROSS JOIN LATERAL (SELECT id, business_id FROM customers WHERE id = i.id LIMIT 1) c
        LEFT JOIN LATERAL (SELECT * FROM customer_activity WHERE customer_id = c.id) a ON true
        GROUP BY c.id, c.business_id
    ),
    -- Money per currency, never summed across currencies; an order without one counts under 'XXX'.
    spend AS (
        SELECT a.customer_id, c.business_id, coalesce(a.currency, 'XXX') AS currency, count(*) AS orders,
               coalesce(sum(greatest(a.amount - a.returned_amount, 0)), 0) AS lifetime_value
        FROM unnest(:customer_ids) AS i(id)
        CROSS JOIN LATERAL (SELECT id, business_id FROM customers WHERE id = i.id LIMIT 1) c
        JOIN customer_activity a ON a.customer_id = c.id AND {ORDER_COUNTS}
        GROUP BY a.customer_id, c.business_id, coalesce(a.currency, 'XXX')
    ),
    spend_saved AS (
        INSERT INTO customer_spend (customer_id, business_id, currency, orders, lifetime_value)
        SELECT customer_id, business_id, currency, orders, lifetime_value FROM spend
        ON CONFLICT (customer_id, currency) DO UPDATE SET
            business_id = excluded.business_id, orders = excluded.orders, lifetime_value = excluded.lifetime_value
        WHERE (customer_spend.business_id, customer_spend.orders, customer_spend.lifetime_value)
              IS DISTINCT FROM (excluded.business_id, excluded.orders, excluded.lifetime_value)
    ),
    spend_gone AS (  -- a currency whose last counted order was cancelled
        DELETE FROM customer_spend s
        WHERE s.customer_id = ANY(:customer_ids)
          AND NOT EXISTS (SELECT 1 FROM spend WHERE spend.customer_id = s.customer_id AND spend.currency = s.currency)
    ),
    -- The single lifetime value: the sum in the one currency paid in, 0 with none, NULL with several.
    totals AS (
        SELECT agg.*,
               CASE WHEN m.currencies IS NULL THEN 0 WHEN m.currencies = 1 THEN m.lifetime_value END
                   AS lifetime_value,
               CASE WHEN m.currencies = 1 THEN m.currency END AS lifetime_value_currency
        FROM agg
        LEFT JOIN (
            SELECT customer_id, count(*) AS currencies, min(currency) AS currency, sum(lifetime_value) AS lifetime_value
            FROM spend GROUP BY customer_id
        ) m ON m.customer_id = agg.customer_id
    ),
    updated AS (
        UPDATE customers c SET
            total_orders = t.total_orders,
            total_appointments = t.total_appointments,
            last_order_date = t.last_order_date,
            last_appointment_date = t.last_appointment_date,
            lifetime_value = t.lifetime_value,
            lifetime_value_currency = t.lifetime_value_currency
        FROM totals t
        WHERE c.id = t.customer_id
          -- unchanged rows are not rewritten (no dead tuple, no index churn)
          AND (c.total_orders, c.total_appointments, c.last_order_date, c.last_appointment_date, c.lifetime_value,
               c.lifetime_value_currency)
              IS DISTINCT FROM (t.total_orders, t.total_appointments, t.last_order_date, t.last_appointment_date,
                                t.lifetime_value, t.lifetime_value_currency)
        RETURNING c.id
    )
    INSERT INTO customer_history (
        id, customer_id, business_id, first_order_date, first_appointment_date, returned_orders,
        cancelled_appointments, cancelled_orders, no_shows, returned_amount, updated_at
    )
    SELECT gen_random_uuid(), customer_id, business_id, first_order_date, first_appointment_date, returned_orders,
           cancelled_appointments, cancelled_orders, no_shows, returned_amount, now()
    FROM agg
    ON CONFLICT (customer_id) DO UPDATE SET
        business_id = excluded.business_id,
        first_order_date = excluded.first_order_date,
        first_appointment_date = excluded.first_appointment_date,
        returned_orders = excluded.returned_orders,
        cancelled_appointments = excluded.cancelled_appointments,
        cancelled_orders = excluded.cancelled_orders,
        no_shows = excluded.no_shows,
        returned_amount = excluded.returned_amount,
        updated_at = now()
    WHERE (customer_history.business_id, customer_history.first_order_date, customer_history.first_appointment_date,
           customer_history.returned_orders, customer_history.cancelled_appointments, customer_history.cancelled_orders,
           customer_history.no_shows, customer_history.returned_amount)
          IS DISTINCT FROM (excluded.business_id, excluded.first_order_date, excluded.first_appointment_date,
           excluded.returned_orders, excluded.cancelled_appointments, excluded.cancelled_orders,
           excluded.no_shows, excluded.returned_amount)
    """  # noqa: S608 (constant filters, no input)
).bindparams(bindparam("customer_ids", type_=_UUIDS))


async def recompute(session: AsyncSession, customer_ids: Iterable[uuid.UUID]) -> None:
    """Derive the aggregates and the history row of these customers from their activity rows.

    The caller holds the customers' row locks, so no concurrent writer can slip a row in between.
    """
    ids = sorted(set(customer_ids))
    if ids:
        await session.execute(_RECOMPUTE, {"customer_ids": ids})


_PRUNE_PROCESSED = text(
    """
    DELETE FROM processed_events WHERE event_id IN (
        SELECT event_id FROM processed_events WHERE processed_at < now() - make_interval(secs => :older_than)
        LIMIT :chunk
    )
    """
)


async def prune_processed_events(session: AsyncSession, *, older_than_seconds: float, chunk: int) -> int:
    """Delete up to `chunk` idempotency keys older than the retention; how many went."""
    result = await session.execute(_PRUNE_PROCESSED, {"older_than": older_than_seconds, "chunk": chunk})
    return cast(CursorResult[Any], result).rowcount


async def customer_ids_of_business(
    session: AsyncSession, business_id: uuid.UUID, *, after: uuid.UUID | None, limit: int
) -> list[uuid.UUID]:
    result = await session.execute(
        text(
            "SELECT id FROM customers WHERE business_id = :business_id"
            " AND (CAST(:after AS uuid) IS NULL OR id > :after) ORDER BY id LIMIT :limit"
        ),
        {"business_id": business_id, "after": after, "limit": limit},
    )
    return list(result.scalars())


async def history_row(session: AsyncSession, customer_id: uuid.UUID) -> dict[str, Any] | None:
    result = await session.execute(
        text(
            "SELECT first_order_date, first_appointment_date, returned_orders, cancelled_appointments,"
            " cancelled_orders, no_shows, returned_amount FROM customer_history WHERE customer_id = :id"
        ),
        {"id": customer_id},
    )
    row = result.first()
    return dict(row._mapping) if row is not None else None


async def window_figures(
    session: AsyncSession, customer_id: uuid.UUID, *, now: datetime, window_start: datetime
) -> dict[str, Any]:
    """The time-dependent figures, computed at `now` (visits in the window, upcoming appointments)."""
    result = await session.execute(
        text(
            f"""
            SELECT
                (SELECT count(DISTINCT (t.at AT TIME ZONE 'UTC')::date) FROM (
                    SELECT a.completed_at AS at FROM customer_activity a
                    WHERE a.customer_id = :id AND {ORDER_COUNTS}
                    UNION ALL
                    SELECT a.occurred_at FROM customer_activity a
                    WHERE a.customer_id = :id AND {APPOINTMENT_COUNTS}
                ) t WHERE t.at >= :start AND t.at <= :now) AS visits_in_window,
                count(*) FILTER (WHERE a.kind = 'appointment') AS appointments_recorded,
                count(*) FILTER (WHERE a.kind = 'appointment' AND a.status = 'booked' AND a.occurred_at > :now)
                    AS upcoming_appointments
            FROM customer_activity a
            WHERE a.customer_id = :id
            """  # noqa: S608 (constant filters, no input)
        ),
        {"id": customer_id, "now": now, "start": window_start},
    )
    return dict(result.one()._mapping)


_SPEND_RANKS = text(
    """
    SELECT mine.currency, mine.orders, mine.lifetime_value, r.at_or_below, r.spenders
    FROM customer_spend mine
    CROSS JOIN LATERAL (
        SELECT count(*) FILTER (WHERE o.lifetime_value <= mine.lifetime_value) AS at_or_below, count(*) AS spenders
        FROM customer_spend o
        WHERE o.business_id = :business_id AND o.currency = mine.currency AND o.lifetime_value > 0
    ) r
    WHERE mine.customer_id = :id AND mine.business_id = :business_id
    ORDER BY mine.currency
    """
)


async def spend_ranks(session: AsyncSession, business_id: uuid.UUID, customer_id: uuid.UUID) -> list[dict[str, Any]]:
    """Per currency the customer paid in (by currency): orders, lifetime_value, and among the
    business's customers with a value > 0 in that currency, `at_or_below` this one and `spenders`."""
    result = await session.execute(_SPEND_RANKS, {"business_id": business_id, "id": customer_id})
    return [dict(row._mapping) for row in result]


async def history_page(
    session: AsyncSession,
    customer_id: uuid.UUID,
    *,
    kind: str | None,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[dict[str, Any]]:
    """Activity rows newest first, strictly after the keyset position `after` (occurred_at, id)."""
    filters = ["customer_id = :id"]
    params: dict[str, Any] = {"id": customer_id, "limit": limit}
    if kind is not None:
        filters.append("kind = :kind")
        params["kind"] = kind
    if after is not None:
        filters.append("(occurred_at, id) < (:after_at, :after_id)")
        params["after_at"], params["after_id"] = after
    # The filters are constants; every value is a bound parameter.
    sql = (
        "SELECT id, kind, external_id, status, amount, returned_amount, currency, occurred_at, completed_at,"  # noqa: S608
        " returned_at, cancelled_at, updated_at FROM customer_activity"
        " WHERE " + " AND ".join(filters) + " ORDER BY occurred_at DESC, id DESC LIMIT :limit"
    )
    result = await session.execute(text(sql), params)
    return [dict(row._mapping) for row in result]
