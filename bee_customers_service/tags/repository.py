"""Queries on `customer_tags`."""

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import bindparam, delete, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from bee_customers_service.tags.models import CustomerTag


async def list_for_customer(session: AsyncSession, customer_id: uuid.UUID) -> Sequence[CustomerTag]:
    statement = (
        select(CustomerTag)
        .where(CustomerTag.customer_id == customer_id)
        .order_by(CustomerTag.created_at, CustomerTag.id)
    )
    return (await session.execute(statement)).scalars().all()


# The statements of a tag add, built once (building them per request cost more than running them).
_COUNT = select(func.count()).select_from(CustomerTag).where(CustomerTag.customer_id == bindparam("customer_id"))
_TAG_COLUMNS = ("id", "customer_id", "business_id", "label", "color", "created_by")
_INSERT_IF_ABSENT = (
    insert(CustomerTag)
    .values(
        {
            **{name: bindparam(f"new_{name}") for name in _TAG_COLUMNS},
            # Not now(): tags added by one request keep the order they were sent in.
            "created_at": func.clock_timestamp(),
        }
    )
    .on_conflict_do_nothing(index_elements=[CustomerTag.customer_id, CustomerTag.label_key])
    .returning(CustomerTag)
)


async def count_for_customer(session: AsyncSession, customer_id: uuid.UUID) -> int:
    return (await session.execute(_COUNT, {"customer_id": customer_id})).scalar_one()


async def insert_if_absent(session: AsyncSession, values: dict[str, Any]) -> CustomerTag | None:
    """Insert a tag (`_TAG_COLUMNS`); None when the customer already has it (same label ignoring
    case and spaces).

    The unique index on (customer_id, label_key) arbitrates: a racing duplicate waits for the
    winner's commit and then gets no row back, never an exception mid-transaction.
    """
    params = {f"new_{name}": values[name] for name in _TAG_COLUMNS}
    return (await session.execute(_INSERT_IF_ABSENT, params)).scalar_one_or_none()


async def existing_labels(session: AsyncSession, customer_id: uuid.UUID, labels: Sequence[str]) -> list[str]:
    """The customer's labels (as first written) that are the same tag as one of `labels`."""
    keys = [func.lower(func.btrim(label)) for label in labels]
    statement = select(CustomerTag.label).where(CustomerTag.customer_id == customer_id, CustomerTag.label_key.in_(keys))
    return list((await session.execute(statement)).scalars().all())


async def delete_tag(session: AsyncSession, customer_id: uuid.UUID, tag_id: uuid.UUID) -> CustomerTag | None:
    statement = (
        delete(CustomerTag)
        .where(CustomerTag.id == tag_id, CustomerTag.customer_id == customer_id)
        .returning(CustomerTag)
    )
    return (await session.execute(statement)).scalar_one_or_none()
