"""Queries on `customer_tags`."""

import uuid
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bee_customers_service.tags.models import CustomerTag


async def list_for_customer(session: AsyncSession, customer_id: uuid.UUID) -> Sequence[CustomerTag]:
    statement = (
        select(CustomerTag)
        .where(CustomerTag.customer_id == customer_id)
        .order_by(CustomerTag.created_at, CustomerTag.id)
    )
    return (await session.execute(statement)).scalars().all()
