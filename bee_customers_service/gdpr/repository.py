"""Queries for export and erasure over every table that holds a customer's data."""

import uuid
from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import CursorResult, Table, bindparam, delete, func, select, text, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession

from bee_customers_service.activity.models import CustomerActivity, CustomerHistory, CustomerSpend
from bee_customers_service.events.catalogue import AUDIT_PREFIX
from bee_customers_service.events.outbox import OutboxEvent
from bee_customers_service.gdpr.models import GdprRequest
from bee_customers_service.gdpr.redaction import REDACTED, redacted_body
from bee_customers_service.notes.models import CustomerNote
from bee_customers_service.tags.models import CustomerTag

# Every table whose rows belong to one customer (by `customer_id`). Export and erasure both walk
# this list, so a table added here is exported and erased alike; a new table must be added here.
CUSTOMER_OWNED_TABLES: tuple[Table, ...] = tuple(
    cast(Table, model.__table__)
    for model in (CustomerTag, CustomerNote, CustomerHistory, CustomerSpend, CustomerActivity)
)


async def rows_of(session: AsyncSession, table: Table, customer_id: uuid.UUID) -> list[dict[str, Any]]:
    statement = select(table).where(table.c.customer_id == customer_id)
    return [dict(row._mapping) for row in await session.execute(statement)]


async def events_about(session: AsyncSession, customer_id: uuid.UUID) -> list[dict[str, Any]]:
    """The event bodies this service published (or will publish) about the customer.

    Not the audit records (`v1.audit.*`): they are the business's log of who acted, with the staff's
    addresses and browsers, not data about the customer.
    """
    statement = (
        select(OutboxEvent.payload, OutboxEvent.published_at)
        .where(OutboxEvent.customer_id == customer_id, OutboxEvent.event_name.not_like(f"{AUDIT_PREFIX}%"))
        .order_by(OutboxEvent.id)
    )
    return [{"event": row.payload, "published_at": row.published_at} for row in await session.execute(statement)]


async def erase_rows(session: AsyncSession, customer_ids: list[uuid.UUID]) -> dict[str, int]:
    """Delete every row these customers own (the profiles go through customers/); rows lost per table.

    Their outbox rows are dealt with too (`scrub_outbox`): published ones are deleted, pending ones
    redacted. `outbox_redacted` counts the latter.
    """
    counts: dict[str, int] = {}
    for table in CUSTOMER_OWNED_TABLES:
        result = await session.execute(delete(table).where(table.c.customer_id.in_(customer_ids)))
        counts[table.name] = cast(CursorResult[Any], result).rowcount
    counts["outbox"], counts["outbox_redacted"] = await scrub_outbox(session, customer_ids)
    await forget_stored_answers(session, customer_ids)
    return counts


# Every answer core/idempotency.py stores for a route about a customer names the customer's id in
# its body (the profile, a tag, a note, statistics, an avatar): the way to find those answers.
_FORGET_ANSWERS = text(
    """
    DELETE FROM idempotency_keys k
    WHERE EXISTS (
        SELECT 1 FROM unnest(CAST(:ids AS text[])) AS i(id) WHERE position(convert_to(i.id, 'UTF8') IN k.body) > 0
    )
    """
)


async def forget_stored_answers(session: AsyncSession, customer_ids: list[uuid.UUID]) -> None:
    """Delete the stored Idempotency-Key answers about these customers: they hold their data for a day."""
    await session.execute(_FORGET_ANSWERS, {"ids": [str(i) for i in customer_ids]})


_OUTBOX = cast(Table, OutboxEvent.__table__)
_REDACT = (
    update(_OUTBOX)
    .where(_OUTBOX.c.id == bindparam("row_id"))
    .values(payload=bindparam("redacted_payload", type_=JSONB))
)


async def scrub_outbox(session: AsyncSession, customer_ids: list[uuid.UUID]) -> tuple[int, int]:
    """Leave no personal value in these customers' outbox rows; returns (deleted, redacted).

    Published rows are deleted: they were delivered, and they may carry names and emails. Rows not
    yet published are redacted, not dropped (`gdpr/redaction.py`): consumers keep a coherent
    stream, and the `v1.customer.deleted` written after this in the same transaction follows them.

    The rows are locked first (FOR UPDATE, in id order), so "published or not" cannot change under
    this transaction. The relay (events/relay.py) claims with a plain SELECT, not a lock, and marks
    a row published only after the broker confirmed it (`MARK_PUBLISHED_SQL`, `published_at IS
    NULL`). So, for a row the relay is handling while an erasure runs:

    - marked before the lock: seen as published here, deleted;
    - claimed before the lock, marked after: the relay's UPDATE waits for this transaction, then
      marks the row, whose stored body is the redacted one. The broker received the old body, as
      it would have a moment earlier; the database keeps only the redacted body, published, until
      the retention purge (`BEE_OUTBOX_RETENTION_HOURS`) deletes it. Consumers see that event, then
      `v1.customer.deleted` (a later row: the relay publishes in outbox order), and erase;
    - claimed after this commit: published redacted.

    Either way nothing personal stays in the database. Should the relay's mark and this lock
    deadlock (a mark spanning rows of the customer in another order), PostgreSQL aborts one: a lost
    mark republishes the row, redacted, under the same event_id (consumers deduplicate); a failed
    erasure changes nothing and can be asked again.
    """
    statement = (
        select(_OUTBOX.c.id, _OUTBOX.c.payload, _OUTBOX.c.published_at)
        .where(_OUTBOX.c.customer_id.in_(customer_ids))
        .order_by(_OUTBOX.c.id)
        .with_for_update()
    )
    rows = (await session.execute(statement)).all()
    published = [row.id for row in rows if row.published_at is not None]
    pending = [
        {"row_id": row.id, "redacted_payload": redacted_body(row.payload)}
        for row in rows
        if row.published_at is None and not row.payload.get(REDACTED)
    ]
    if published:
        await session.execute(delete(_OUTBOX).where(_OUTBOX.c.id.in_(published)))
    if pending:
        await session.execute(_REDACT, pending)
    return len(published), len(pending)


async def requests_with_fingerprint(session: AsyncSession, fingerprint: str) -> Sequence[GdprRequest]:
    statement = (
        select(GdprRequest)
        .where(GdprRequest.email_fingerprints.contains([fingerprint]))
        .order_by(GdprRequest.requested_at)
    )
    return (await session.execute(statement)).scalars().all()


async def get_request(session: AsyncSession, request_id: uuid.UUID) -> GdprRequest | None:
    return await session.get(GdprRequest, request_id)


async def get_request_visible(
    session: AsyncSession, request_id: uuid.UUID, *, admin_of: frozenset[uuid.UUID], every_business: bool
) -> GdprRequest | None:
    """The record, if it concerns one of `admin_of` (or any business with `every_business`)."""
    statement = select(GdprRequest).where(GdprRequest.id == request_id)
    if not every_business:
        statement = statement.where(GdprRequest.business_ids.overlap(sorted(admin_of)))
    return (await session.execute(statement)).scalar_one_or_none()


async def requests_with_pending_objects(session: AsyncSession, *, limit: int = 100) -> Sequence[GdprRequest]:
    statement = (
        select(GdprRequest)
        .where(func.cardinality(GdprRequest.pending_objects) > 0)
        .order_by(GdprRequest.requested_at)
        .limit(limit)
    )
    return (await session.execute(statement)).scalars().all()
