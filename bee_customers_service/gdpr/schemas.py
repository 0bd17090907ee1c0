"""Shapes of the GDPR endpoints."""

import uuid
from datetime import datetime

from bee_customers_service.core.schemas import OutputModel


class GdprRequestView(OutputModel):
    """An erasure record: ids, counts and an email fingerprint; never the erased values."""

    id: uuid.UUID
    kind: str
    scope: str
    subject_user_id: uuid.UUID
    customer_ids: list[uuid.UUID]
    business_ids: list[uuid.UUID]
    requested_by: uuid.UUID
    requested_by_roles: list[str]
    requested_at: datetime
    completed_at: datetime | None
    status: str
    erased: dict[str, int]
    # Keyed (HMAC-SHA256 under BEE_GDPR_FINGERPRINT_KEY): cannot be matched with an email list.
    email_fingerprints: list[str]
    pending_objects: list[str]
