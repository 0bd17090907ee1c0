"""The erasure record: what was erased, for whom and by whom, without any personal data."""

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, Index, String, func
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from bee_customers_service.core.db import Base

STATUS_COMPLETED = "completed"
# The rows are gone, but a stored object (an avatar) could not be deleted yet; retried later.
STATUS_PENDING_OBJECTS = "pending_object_cleanup"


class GdprRequest(Base):
    __tablename__ = "gdpr_requests"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    kind: Mapped[str] = mapped_column(String(20), nullable=False)  # "erasure"
    scope: Mapped[str] = mapped_column(String(20), nullable=False)  # "customer" | "user"
    subject_user_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False)
    customer_ids: Mapped[list[uuid.UUID]] = mapped_column(ARRAY(UUID(as_uuid=True)), nullable=False)
    business_ids: Mapped[list[uuid.UUID]] = mapped_column(ARRAY(UUID(as_uuid=True)), nullable=False)
    requested_by: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), nullable=False)
    requested_by_roles: Mapped[list[str]] = mapped_column(ARRAY(String(30)), nullable=False)
    requested_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    status: Mapped[str] = mapped_column(String(30), nullable=False)
    # Row counts per table, e.g. {"customers": 1, "customer_notes": 3}.
    erased: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    # HMAC-SHA256 (BEE_GDPR_FINGERPRINT_KEY) of each erased normalised email: recognises a later
    # re-import (`service.erasures_of_email`), and without the key tells nothing (migration 0012).
    email_fingerprints: Mapped[list[str]] = mapped_column(ARRAY(String(64)), nullable=False)
    # Storage keys still to delete (content hashes under ids, no personal data).
    pending_objects: Mapped[list[str]] = mapped_column(ARRAY(String(300)), nullable=False)

    __table_args__ = (
        Index("ix_gdpr_requests_subject_user_id", "subject_user_id"),
        Index("ix_gdpr_requests_email_fingerprints", "email_fingerprints", postgresql_using="gin"),
    )
