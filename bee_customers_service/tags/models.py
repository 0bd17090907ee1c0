"""Admin-only labels on a customer ("VIP", "Prefers Monday mornings")."""

import uuid
from datetime import datetime

from sqlalchemy import Computed, DateTime, ForeignKey, Index, String, func
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Mapped, mapped_column

from bee_customers_service.core.db import Base

MAX_LABEL_LENGTH = 50


class CustomerTag(Base):
    __tablename__ = "customer_tags"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    customer_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("customers.id", ondelete="CASCADE"), nullable=False
    )
    business_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False)
    label: Mapped[str] = mapped_column(String(MAX_LABEL_LENGTH), nullable=False)  # as first written
    # What makes two labels the same tag ("VIP" == " vip "); computed by PostgreSQL, unique per customer.
    label_key: Mapped[str] = mapped_column(String(MAX_LABEL_LENGTH), Computed("lower(btrim(label))", persisted=True))
    color: Mapped[str | None] = mapped_column(String(7))
    created_by: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)

    __table_args__ = (
        Index("ix_customer_tags_customer_id", "customer_id"),
        Index("uq_customer_tags_customer_id_label_key", "customer_id", "label_key", unique=True),
        Index("ix_customer_tags_business_label_key_customer", "business_id", "label_key", "customer_id"),
    )
