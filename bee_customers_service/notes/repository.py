"""Queries on `customer_notes`."""

import uuid

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from bee_customers_service.notes.models import CustomerNote


async def count_for_customer(session: AsyncSession, customer_id: uuid.UUID) -> int:
    statement = select(func.count()).select_from(CustomerNote).where(CustomerNote.customer_id == customer_id)
    return (await session.execute(statement)).scalar_one()
