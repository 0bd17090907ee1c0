"""History kept from the orders and scheduling services (spec 2.4) and the consumer's bookkeeping."""

import uuid
from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import (
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Mapped, mapped_column

from bee_customers_service.core.db import Base

KINDS = ("order", "appointment")
ORDER_STATUSES = ("pending", "completed", "returned", "cancelled")
APPOINTMENT_STATUSES = ("booked", "completed", "cancelled", "no_show")


class CustomerHistory(Base):
    __tablename__ = "customer_history"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    customer_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True),
        ForeignKey("customers.id", ondelete="CASCADE"),
        nullable=False,
        unique=True,  # one history row per customer
    )
    business_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    first_order_date: Mapped[date | None] = mapped_column(Date)
    first_appointment_date: Mapped[date | None] = mapped_column(Date)
    returned_orders: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    cancelled_appointments: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    # Added by the activity issue: what the statistics need beyond the spec's four fields.
    cancelled_orders: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    no_shows: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    returned_amount: Mapped[Decimal] = mapped_column(Numeric(12, 2), nullable=False, server_default="0")
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)


class CustomerActivity(Base):
    """One row per order or appointment of a customer: its latest known state.

    Several upstream events fold into one row (completed, then returned ...), in any arrival
    order; the customer's aggregates are always derived from these rows.
    """

    __tablename__ = "customer_activity"

    id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), primary_key=True, server_default=text("gen_random_uuid()"), default=uuid.uuid4
    )
    business_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False)
    customer_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("customers.id", ondelete="CASCADE"), nullable=False
    )
    kind: Mapped[str] = mapped_column(String(20), nullable=False)
    external_id: Mapped[str] = mapped_column(String(100), nullable=False)  # order_id / appointment_id upstream
    status: Mapped[str] = mapped_column(String(20), nullable=False)
    amount: Mapped[Decimal | None] = mapped_column(Numeric(12, 2))  # the order total
    returned_amount: Mapped[Decimal] = mapped_column(Numeric(12, 2), nullable=False, server_default="0")
    currency: Mapped[str | None] = mapped_column(String(3))
    # When it happened: an order's completion (until then, the first event's time); an appointment's start.
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    returned_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    cancelled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The time of the event that set `status` (appointments: the later of two final states wins).
    status_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)

    __table_args__ = (
        UniqueConstraint("business_id", "kind", "external_id", name="uq_customer_activity_reference"),
        CheckConstraint("kind IN ('order', 'appointment')", name="kind"),
        # History: newest first, with or without a kind filter (keyset on occurred_at, id).
        Index("ix_customer_activity_customer_occurred", "customer_id", "occurred_at", "id"),
        Index("ix_customer_activity_customer_kind_occurred", "customer_id", "kind", "occurred_at", "id"),
    )


class CustomerSpend(Base):
    """A customer's spending in one currency: their counted orders in it and the lifetime value.

    One row per currency with at least one counted order (an order without a currency counts
    under 'XXX', ISO 4217 "no currency"); kept by the recompute, never summed across currencies.
    """

    __tablename__ = "customer_spend"

    customer_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True
    )
    currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    business_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False)
    orders: Mapped[int] = mapped_column(Integer, nullable=False)
    lifetime_value: Mapped[Decimal] = mapped_column(Numeric(12, 2), nullable=False)

    # The RFM monetary rank: a business's spenders in one currency, by value.
    __table_args__ = (Index("ix_customer_spend_business_currency_value", "business_id", "currency", "lifetime_value"),)


class ProcessedEvent(Base):
    """An upstream event already applied: written in the same transaction as its effect."""

    __tablename__ = "processed_events"

    event_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    business_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    processed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)

    __table_args__ = (Index("ix_processed_events_processed_at", "processed_at"),)
