"""Queries for export and erasure over every table that holds a customer's data."""

import uuid
from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import CursorResult, Table, delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from bee_customers_service.activity.models import CustomerActivity, CustomerHistory
from bee_customers_service.events.outbox import OutboxEvent
from bee_customers_service.gdpr.models import GdprRequest
from bee_customers_service.notes.models import CustomerNote
from bee_customers_service.tags.models import CustomerTag

# Every table whose rows belong to one customer (by `customer_id`). Export and erasure both walk
# this list, so a table added here is exported and erased alike; a new table must be added here.
CUSTOMER_OWNED_TABLES: tuple[Table, ...] = tuple(
    cast(Table, model.__table__) for model in (CustomerTag, CustomerNote, CustomerHistory, CustomerActivity)
)


async def rows_of(session: AsyncSession, table: Table, customer_id: uuid.UUID) -> list[dict[str, Any]]:
    statement = select(table).where(table.c.customer_id == customer_id)
    return [dict(row._mapping) for row in await session.execute(statement)]


async def events_about(session: AsyncSession, customer_id: uuid.UUID) -> list[dict[str, Any]]:
    """The event bodies this service published (or will publish) about the customer."""
    statement = (
        select(OutboxEvent.payload, OutboxEvent.published_at)
        .where(OutboxEvent.customer_id == customer_id)
        .order_by(OutboxEvent.id)
    )
    return [{"event": row.payload, "published_at": row.published_at} for row in await session.execute(statement)]


async def erase_rows(session: AsyncSession, customer_ids: list[uuid.UUID]) -> dict[str, int]:
    """Delete every row these customers own (the profiles go through customers/); rows lost per table.

    Published outbox rows about them go too (they may carry names and emails); rows not yet
    published stay until the relay has sent them, then the retention purge removes them.
    """
    counts: dict[str, int] = {}
    for table in CUSTOMER_OWNED_TABLES:
        result = await session.execute(delete(table).where(table.c.customer_id.in_(customer_ids)))
        counts[table.name] = cast(CursorResult[Any], result).rowcount
    published = await session.execute(
        delete(OutboxEvent).where(OutboxEvent.customer_id.in_(customer_ids), OutboxEvent.published_at.is_not(None))
    )
    counts["outbox"] = cast(CursorResult[Any], published).rowcount
    return counts


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
