"""The transactional outbox: events are rows written in the same transaction as the change.

A service calls `enqueue(session, ...)` before it commits; the relay (events/relay.py) publishes
committed rows to RabbitMQ. A rolled-back change therefore leaves no event, and a committed change
always has one.
"""

import uuid
from datetime import UTC, datetime
from typing import Any, Protocol

from pydantic_core import to_jsonable_python
from sqlalchemy import BigInteger, DateTime, Identity, Index, Integer, String, Text, func, insert, text
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from bee_customers_service.core.context import current_request_id, current_trace_id
from bee_customers_service.core.db import Base
from bee_customers_service.events import committed

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
_INSERT = insert(OutboxEvent.__table__)


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


class AboutCustomer(Protocol):
    id: uuid.UUID
    business_id: uuid.UUID


async def enqueue_for_customer(
    session: AsyncSession, event_name: str, customer: AboutCustomer, fields: dict[str, Any]
) -> dict[str, Any]:
    """An event about one customer: its business and id go on the row and `customer_id` in the body."""
    return await enqueue(
        session,
        event_name,
        business_id=customer.business_id,
        customer_id=customer.id,
        fields={"customer_id": customer.id, **fields},
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
