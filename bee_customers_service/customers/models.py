"""The customer profile: one row per (user, business)."""

import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    CheckConstraint,
    Computed,
    Date,
    DateTime,
    Enum,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column, query_expression

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
    # Money is never summed across currencies (activity.models.CustomerSpend keeps one row per currency):
    # the value when the customer paid in exactly one currency (named here), 0 when none, NULL when several.
    lifetime_value: Mapped[Decimal | None] = mapped_column(Numeric(12, 2), server_default="0")
    lifetime_value_currency: Mapped[str | None] = mapped_column(String(3))

    # The admin view's extras, filled only by the queries that ask for them in the same round trip
    # (repository.get(..., with_admin_extras=True)); None otherwise.
    admin_tags: Mapped[list[dict[str, Any]] | None] = query_expression()
    admin_notes_count: Mapped[int | None] = query_expression()

    # bee_auth_service sync (identity/): where full_name came from ('auth' until a PATCH changes it:
    # then 'local', and auth's name updates no longer apply), and the time of the last auth event applied.
    name_source: Mapped[str] = mapped_column(String(10), nullable=False, server_default="auth")
    auth_synced_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    # The stored RFM segment (activity/segments.py), for the search facet over a whole business:
    # recomputed with the activity and by the periodic refresh. GET stats computes it live instead.
    rfm_segment: Mapped[str] = mapped_column(String(20), nullable=False, server_default="prospect")
    rfm_segment_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    # Optimistic concurrency: bumped on every write, exposed as the ETag.
    version: Mapped[int] = mapped_column(Integer, nullable=False, server_default="1")

    # Search columns computed by PostgreSQL (migration 0004): the lower-case, unaccented full name
    # and the phone's digits. Read-only here; every write to full_name/phone keeps them right.
    search_name: Mapped[str] = mapped_column(Text, Computed("public.bee_search_normalise(full_name)", persisted=True))
    phone_digits: Mapped[str] = mapped_column(
        Text, Computed("regexp_replace(coalesce(phone, ''), '[^0-9]', '', 'g')", persisted=True)
    )

    __table_args__ = (
        UniqueConstraint("user_id", "business_id", name="uq_user_per_business"),
        # One email per business, case and spaces aside (migration 0013; customers/repository.py EmailClash).
        Index("uq_customers_business_email_key", "business_id", text("lower(btrim(email))"), unique=True),
        CheckConstraint("name_source IN ('auth', 'local')", name="name_source"),  # ck_customers_name_source
        Index("ix_customers_business_id", "business_id"),
        Index("ix_customers_user_id", "user_id"),
        Index("ix_customers_business_id_full_name", "business_id", "full_name"),
        Index("ix_customers_phone", "phone"),
        # Admin search (customers/search.py): trigram GIN for substring/typo matching, and one btree
        # per sort with business_id first so a keyset page is an index range scan.
        Index(
            "ix_customers_search_name_trgm",
            "business_id",
            "search_name",
            postgresql_using="gin",
            postgresql_ops={"search_name": "gin_trgm_ops"},
        ),
        Index(
            "ix_customers_email_trgm",
            "business_id",
            "email",
            postgresql_using="gin",
            postgresql_ops={"email": "gin_trgm_ops"},
        ),
        Index(
            "ix_customers_phone_digits_trgm",
            "business_id",
            "phone_digits",
            postgresql_using="gin",
            postgresql_ops={"phone_digits": "gin_trgm_ops"},
        ),
        Index("ix_customers_business_created_at_id", "business_id", "created_at", "id"),
        Index("ix_customers_business_search_name_id", "business_id", "search_name", "id"),
        # The sort key of search's lifetime_value sort: several currencies (NULL) sort after every value.
        Index("ix_customers_business_lifetime_value_id", "business_id", text("(coalesce(lifetime_value, -1))"), "id"),
        Index("ix_customers_business_rfm_segment", "business_id", "rfm_segment"),
        Index(
            "ix_customers_business_last_order_id",
            "business_id",
            text("(coalesce(last_order_date, DATE '1900-01-01'))"),
            "id",
        ),
    )
