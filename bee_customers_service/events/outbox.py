"""The transactional outbox: events are rows written in the same transaction as the change.

A service calls `enqueue(session, ...)` before it commits; the relay (events/relay.py) publishes
committed rows to RabbitMQ. A rolled-back change therefore leaves no event, and a committed change
always has one.
"""

import asyncio
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, cast

import asyncpg
from pydantic_core import to_jsonable_python
from sqlalchemy import BigInteger, DateTime, Identity, Index, Integer, String, Table, Text, func, insert, text
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from bee_customers_service.core.context import current_request_id, current_trace_id
from bee_customers_service.core.db import Base
from bee_customers_service.events import committed
from bee_customers_service.events.catalogue import AUDIT_PREFIX, CustomerEvent

# The channel the relay LISTENs on. An AFTER INSERT trigger on `outbox` (migration
# 0008_outbox_notify_trigger) notifies it; NOTIFY inside a transaction is delivered at commit.
OUTBOX_CHANNEL = "bee_customers_outbox"


class OutboxEvent(Base):
    __tablename__ = "outbox"

    # A bigint identity gives the publish order (commit order is close enough for per-customer
    # order, because one customer's writes serialise on its row).
    id: Mapped[int] = mapped_column(BigInteger, Identity(always=False), primary_key=True)
    event_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False, unique=True)
    event_name: Mapped[str] = mapped_column(String(100), nullable=False)
    business_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    customer_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)
    available_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    last_error: Mapped[str | None] = mapped_column(Text)
    published_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        Index("ix_outbox_pending", "id", postgresql_where=text("published_at IS NULL")),
        Index("ix_outbox_customer_id", "customer_id"),
        Index("ix_outbox_published_at", "published_at", postgresql_where=text("published_at IS NOT NULL")),
        # Migration 0003_relay: the relay's "is an earlier event of this customer waiting for a retry".
        Index("ix_outbox_pending_available_at", "available_at", postgresql_where=text("published_at IS NULL")),
    )


# Built once, on the table (a plain Core INSERT: no ORM bulk-insert bookkeeping per event).
_INSERT = insert(cast(Table, OutboxEvent.__table__))


def build_event(
    event_name: str,
    *,
    business_id: uuid.UUID | None,
    fields: dict[str, Any],
    occurred_at: datetime | None = None,
) -> dict[str, Any]:
    """The flat JSON body of an event: the spec's fields plus the envelope every event carries."""
    body: dict[str, Any] = {
        "event": event_name,
        "event_id": str(uuid.uuid4()),
        "occurred_at": (occurred_at or datetime.now(UTC)),
        "business_id": business_id,
        "trace_id": current_trace_id() or uuid.uuid4().hex,
        "request_id": current_request_id() or uuid.uuid4().hex,
    }
    body.update(fields)
    return to_jsonable_python(body)


async def enqueue_event(session: AsyncSession, event: CustomerEvent) -> dict[str, Any]:
    """Add a catalogue event to the outbox inside the caller's transaction; returns the event body.

    The way services publish: the event's class names the routing key and what its body carries.
    """
    return await enqueue(
        session,
        event.name,
        business_id=event.business_id,
        customer_id=event.customer_id,
        fields=event.fields(),
    )


async def enqueue(
    session: AsyncSession,
    event_name: str,
    *,
    business_id: uuid.UUID | None,
    customer_id: uuid.UUID | None,
    fields: dict[str, Any],
) -> dict[str, Any]:
    """Add an event to the outbox inside the caller's transaction; returns the event body."""
    body = build_event(event_name, business_id=business_id, fields=fields)
    await session.execute(
        _INSERT,
        {
            "event_id": uuid.UUID(body["event_id"]),
            "event_name": event_name,
            "business_id": business_id,
            "customer_id": customer_id,
            "payload": body,
        },
    )
    committed.remember(session.sync_session, body)
    return body


# --- the relay's statements on the outbox (events/relay.py) and the backlog for /readyz ----------

# Pending rows in outbox order, except those of a customer whose earlier row of the same stream is
# waiting for a retry (a failed row is never overtaken by a later row of the same customer on the
# same exchange). The streams are the two exchanges, told apart by the routing key ($3 is
# `catalogue.AUDIT_PREFIX`): a refused audit record (bee_log_service not bound yet) never holds
# back the customer's events, nor the reverse.
CLAIM_SQL = """
SELECT o.id, o.event_id::text AS event_id, o.event_name, o.customer_id, o.created_at,
       o.payload::text AS body, o.payload->>'trace_id' AS trace_id, o.payload->>'request_id' AS request_id
FROM outbox AS o
WHERE o.published_at IS NULL
  AND o.available_at <= now()
  AND NOT EXISTS (
      SELECT 1 FROM outbox AS earlier
      WHERE earlier.customer_id = o.customer_id
        AND earlier.published_at IS NULL
        AND earlier.id < o.id
        AND earlier.available_at > now()
        AND starts_with(earlier.event_name, $3) = starts_with(o.event_name, $3)
  )
  AND o.id <> ALL($2::bigint[])
ORDER BY o.id
LIMIT $1
"""

MARK_PUBLISHED_SQL = """
UPDATE outbox SET published_at = now(), attempts = attempts + 1, last_error = NULL
WHERE id = ANY($1::bigint[]) AND published_at IS NULL
"""

# `reschedule` pushes `available_at` back (a refused message); without it the row stays due and
# the relay-wide backoff paces the retry (the broker as a whole was unreachable).
RECORD_FAILURE_SQL = """
UPDATE outbox AS o
SET attempts = o.attempts + 1,
    last_error = f.error,
    available_at = CASE WHEN $3::boolean
        THEN now() + make_interval(secs => LEAST($5::float8, $4::float8 * power(2, o.attempts)))
        ELSE o.available_at END
FROM unnest($1::bigint[], $2::text[]) AS f(id, error)
WHERE o.id = f.id AND o.published_at IS NULL
"""

NEXT_RETRY_SQL = """
SELECT EXTRACT(EPOCH FROM min(available_at) - now())::float8
FROM outbox WHERE published_at IS NULL AND available_at > now()
"""

PURGE_SQL = """
DELETE FROM outbox WHERE id IN (
    SELECT id FROM outbox WHERE published_at < now() - make_interval(secs => $1::float8) LIMIT $2
)
"""

BACKLOG_SQL = """
SELECT count(*) AS pending,
       count(*) FILTER (WHERE last_error IS NOT NULL) AS failing,
       EXTRACT(EPOCH FROM now() - min(created_at))::float8 AS oldest_age,
       (SELECT EXTRACT(EPOCH FROM now() - max(published_at))::float8
        FROM outbox WHERE published_at IS NOT NULL) AS since_last_publish
FROM outbox WHERE published_at IS NULL
"""

# Who holds the relay lock (one bigint key: classid = high 32 bits, objid = low 32 bits, objsubid 1).
LOCK_HOLDER_SQL = """
SELECT a.pid, a.application_name
FROM pg_locks AS l JOIN pg_stat_activity AS a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
  AND l.classid = ($1::bigint >> 32)::oid AND l.objid = ($1::bigint & 4294967295)::oid
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
LIMIT 1
"""

_NO_IDS: list[int] = []


async def claim_pending(connection: asyncpg.Connection, limit: int) -> list[asyncpg.Record]:
    """The next `limit` rows to publish, in outbox order (see CLAIM_SQL)."""
    rows: list[asyncpg.Record] = await connection.fetch(CLAIM_SQL, limit, _NO_IDS, AUDIT_PREFIX)
    return rows


async def mark_published(connection: asyncpg.Connection, ids: list[int]) -> None:
    """Set `published_at` on confirmed rows."""
    await connection.execute(MARK_PUBLISHED_SQL, ids)


async def record_failures(
    connection: asyncpg.Connection,
    failures: Sequence[tuple[int, str]],
    *,
    reschedule: bool,
    base_backoff: float,
    max_backoff: float,
) -> None:
    """Count an attempt and keep the error on each row; `reschedule` backs the row off."""
    ids = [row_id for row_id, _ in failures]
    errors = [error[:1000] for _, error in failures]
    await connection.execute(RECORD_FAILURE_SQL, ids, errors, reschedule, base_backoff, max_backoff)


async def seconds_to_next_retry(connection: asyncpg.Connection) -> float | None:
    """Seconds until the earliest backed-off row is due (None when no row waits for a retry)."""
    due_in: float | None = await connection.fetchval(NEXT_RETRY_SQL)
    return due_in


async def purge_published(connection: asyncpg.Connection, older_than_seconds: float, limit: int) -> int:
    """Delete up to `limit` rows published more than `older_than_seconds` ago; returns how many."""
    status: str = await connection.execute(PURGE_SQL, older_than_seconds, limit)
    return int(status.rsplit(" ", 1)[-1])


async def relay_lock_holder(connection: asyncpg.Connection, lock_key: int) -> dict[str, Any] | None:
    """The session holding the relay's advisory lock: its application_name and pid."""
    holder = await connection.fetchrow(LOCK_HOLDER_SQL, lock_key)
    return None if holder is None else {"application_name": holder[1], "pid": holder[0]}


async def outbox_backlog(engine: AsyncEngine, *, within_seconds: float) -> dict[str, Any]:
    """Pending events: how many, how many failed at least once, and the age of the oldest."""
    try:
        async with asyncio.timeout(within_seconds), engine.connect() as connection:
            row = (await connection.execute(text(BACKLOG_SQL))).one()
    except Exception as exc:  # the database check reports the outage; this must not crash the probe
        return {"error": type(exc).__name__}
    return {
        "pending": row.pending,
        "failing": row.failing,
        "oldest_pending_age_seconds": round(row.oldest_age, 3) if row.oldest_age is not None else None,
        # Any relay's last publish (the newest `published_at`), so a standby replica reports it too.
        "last_publish_seconds_ago": (
            round(max(row.since_last_publish, 0.0), 3) if row.since_last_publish is not None else None
        ),
    }
