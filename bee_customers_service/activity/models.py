"""History kept from the orders and scheduling services (spec 2.4)."""

import uuid
from datetime import date

from sqlalchemy import Date, ForeignKey, Integer
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Mapped, mapped_column

from bee_customers_service.core.db import Base


class CustomerHistory(Base):
    __tablename__ = "customer_history"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    customer_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True),
        ForeignKey("customers.id", ondelete="CASCADE"),
        nullable=False,
        unique=True,  # one history row per customer
    )
    first_order_date: Mapped[date | None] = mapped_column(Date)
    first_appointment_date: Mapped[date | None] = mapped_column(Date)
    returned_orders: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    cancelled_appointments: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
