"""Queries on `customer_notes`."""

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, insert, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from bee_customers_service.notes.models import CustomerNote


async def count_for_customer(session: AsyncSession, customer_id: uuid.UUID) -> int:
    statement = select(func.count()).select_from(CustomerNote).where(CustomerNote.customer_id == customer_id)
    return (await session.execute(statement)).scalar_one()


async def add(session: AsyncSession, values: dict[str, Any]) -> CustomerNote:
    statement = insert(CustomerNote).values(**values).returning(CustomerNote)
    return (await session.execute(statement)).scalar_one()


async def page_for_customer(
    session: AsyncSession, customer_id: uuid.UUID, *, after: tuple[datetime, uuid.UUID] | None, limit: int
) -> Sequence[CustomerNote]:
    """Newest first; `after` is the (created_at, id) of the last note already seen."""
    statement = select(CustomerNote).where(CustomerNote.customer_id == customer_id)
    if after is not None:
        statement = statement.where(tuple_(CustomerNote.created_at, CustomerNote.id) < tuple_(*after))
    statement = statement.order_by(CustomerNote.created_at.desc(), CustomerNote.id.desc()).limit(limit)
    return (await session.execute(statement)).scalars().all()


async def delete_note(session: AsyncSession, customer_id: uuid.UUID, note_id: uuid.UUID) -> uuid.UUID | None:
    statement = (
        delete(CustomerNote)
        .where(CustomerNote.id == note_id, CustomerNote.customer_id == customer_id)
        .returning(CustomerNote.id)
    )
    return (await session.execute(statement)).scalar_one_or_none()
