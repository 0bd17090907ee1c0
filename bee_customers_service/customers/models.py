"""The customer profile: one row per (user, business)."""

import uuid
from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy import Date, Enum, Index, Integer, Numeric, String, UniqueConstraint, text
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from bee_customers_service.core.db import Base, TimestampMixin

GENDERS = ("male", "female", "other")


class Customer(TimestampMixin, Base):
    __tablename__ = "customers"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    # The same person (user_id) has an independent profile in every business it visits.
    user_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False)
    business_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False)

    full_name: Mapped[str] = mapped_column(String(100), nullable=False)
    email: Mapped[str] = mapped_column(String(100), nullable=False)
    phone: Mapped[str | None] = mapped_column(String(20))
    gender: Mapped[str | None] = mapped_column(Enum(*GENDERS, name="gender_enum"))
    avatar_url: Mapped[str | None] = mapped_column(String(255))
    preferences: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, server_default=text("'{}'::jsonb"))

    # Aggregates kept up to date from the orders and scheduling services' events.
    total_orders: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    total_appointments: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    last_order_date: Mapped[date | None] = mapped_column(Date)
    last_appointment_date: Mapped[date | None] = mapped_column(Date)
    lifetime_value: Mapped[Decimal] = mapped_column(Numeric(12, 2), nullable=False, server_default="0")

    # Optimistic concurrency: bumped on every write, exposed as the ETag.
    version: Mapped[int] = mapped_column(Integer, nullable=False, server_default="1")

    __table_args__ = (
        UniqueConstraint("user_id", "business_id", name="uq_user_per_business"),
        Index("ix_customers_business_id", "business_id"),
        Index("ix_customers_user_id", "user_id"),
        Index("ix_customers_business_id_full_name", "business_id", "full_name"),
        Index("ix_customers_phone", "phone"),
    )
