"""GDPR: export everything held about a customer, erase it, and keep a record without personal data."""

import hashlib
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from pydantic_core import to_jsonable_python
from sqlalchemy.ext.asyncio import AsyncSession

from bee_customers_service.activity import service as activity_service
from bee_customers_service.avatars.service import owned_object_key
from bee_customers_service.avatars.storage import AvatarStorage, StorageError
from bee_customers_service.core.config import Settings
from bee_customers_service.core.errors import CustomerNotFound, Forbidden, NotFound
from bee_customers_service.core.security import Principal
from bee_customers_service.customers import repository as customers_repository
from bee_customers_service.customers.models import Customer
from bee_customers_service.customers.schemas import CustomerView
from bee_customers_service.events import outbox
from bee_customers_service.gdpr import repository
from bee_customers_service.gdpr.models import STATUS_COMPLETED, STATUS_PENDING_OBJECTS, GdprRequest
from bee_customers_service.notes.models import CustomerNote

EVENT_DELETED = "v1.customer.deleted"
EXPORT_FORMAT = "bee_customers_service.export.v1"

audit_log = structlog.get_logger("bee_customers_service.audit")
log = structlog.get_logger(__name__)


class GdprRequestNotFound(NotFound):
    type_slug, title = "gdpr-request-not-found", "GDPR request not found"


def email_fingerprint(email: str) -> str:
    """sha256 of the normalised email: recognises a re-imported person without storing the email."""
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()


def _notes_visible(principal: Principal, customer: Customer, settings: Settings) -> bool:
    # Notes are personal data about the customer, so their own export includes them unless the
    # business has turned that off; admins of the business always see them.
    return principal.is_admin_of(customer.business_id) or settings.gdpr_export_notes


def _without_note_contents(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The events, with the text of note_added events removed (the notes themselves are withheld)."""
    return [
        {**item, "event": {k: v for k, v in item["event"].items() if k != "note"}}
        if item["event"].get("event") == "v1.customer.note_added"
        else item
        for item in events
    ]


async def export_customer(
    session: AsyncSession, *, customer: Customer, principal: Principal, settings: Settings
) -> dict[str, Any]:
    """One document with everything this service holds about the customer in its business."""
    notes_visible = _notes_visible(principal, customer, settings)
    events = await repository.events_about(session, customer.id)
    tables: dict[str, list[dict[str, Any]]] = {}
    for table in repository.CUSTOMER_OWNED_TABLES:
        if table is CustomerNote.__table__ and not notes_visible:
            continue
        tables[table.name] = await repository.rows_of(session, table, customer.id)
    document = {
        "format": EXPORT_FORMAT,
        "exported_at": datetime.now(UTC),
        "profile": CustomerView.model_validate(customer).model_dump(),
        "avatar_url": customer.avatar_url,
        "statistics": (await activity_service.stats(session, customer, settings=settings)).model_dump(),
        "tables": tables,
        "events": _without_note_contents(events) if not notes_visible else events,
    }
    audit_log.info(
        "audit",
        audit_event="gdpr.export",
        customer_id=str(customer.id),
        business_id=str(customer.business_id),
        requested_by=str(principal.user_id),
    )
    return to_jsonable_python(document)


async def export_user(
    session: AsyncSession, *, user_id: uuid.UUID, principal: Principal, settings: Settings
) -> dict[str, Any]:
    """Every business's profile of one user (a request arriving through the auth service)."""
    customers = await repository.customers_of_user(session, user_id)
    profiles = [
        await export_customer(session, customer=customer, principal=principal, settings=settings)
        for customer in customers
    ]
    return to_jsonable_python(
        {"format": EXPORT_FORMAT, "exported_at": datetime.now(UTC), "user_id": user_id, "profiles": profiles}
    )


async def erase(
    session: AsyncSession,
    *,
    customers: Sequence[Customer],
    scope: str,
    subject_user_id: uuid.UUID,
    actor: Principal,
    storage: AvatarStorage,
) -> GdprRequest:
    """Erase these customers' rows and record it, in one transaction with their deleted events.

    Stored avatar objects are deleted after the commit. Until they are, the record says
    `pending_object_cleanup` and lists their keys, so a storage outage leaves a retryable record
    (`bee-customers gdpr-cleanup`), never a half-erased customer that the API still shows.
    """
    customer_ids = [customer.id for customer in customers]
    pending_objects = [key for customer in customers if (key := owned_object_key(storage, customer))]
    counts = await repository.erase_rows(session, customer_ids)
    record = GdprRequest(
        id=uuid.uuid4(),
        kind="erasure",
        scope=scope,
        subject_user_id=subject_user_id,
        customer_ids=customer_ids,
        business_ids=sorted({customer.business_id for customer in customers}),
        requested_by=actor.user_id,
        requested_by_roles=sorted(actor.roles),
        status=STATUS_PENDING_OBJECTS if pending_objects else STATUS_COMPLETED,
        completed_at=None if pending_objects else datetime.now(UTC),
        erased=counts,
        email_sha256=sorted({email_fingerprint(customer.email) for customer in customers}),
        pending_objects=pending_objects,
    )
    session.add(record)
    for customer in customers:
        await outbox.enqueue_for_customer(
            session,
            EVENT_DELETED,
            customer,
            {
                "user_id": customer.user_id,
                "gdpr_request_id": record.id,
                "deleted_at": datetime.now(UTC),
            },
        )
    await session.commit()
    if pending_objects:
        await delete_pending_objects(session, record=record, storage=storage)
    audit_log.info(
        "audit",
        audit_event="gdpr.erasure",
        gdpr_request_id=str(record.id),
        scope=scope,
        customer_ids=[str(i) for i in customer_ids],
        requested_by=str(actor.user_id),
        erased=counts,
    )
    return record


async def erase_customer(
    session: AsyncSession, *, customer: Customer, actor: Principal, storage: AvatarStorage
) -> GdprRequest:
    # Under the row lock: an avatar upload of this customer either finished before or finds it gone.
    locked = await customers_repository.get(session, customer.id, for_update=True)
    if locked is None:
        raise CustomerNotFound(customer.id)
    return await erase(
        session, customers=[locked], scope="customer", subject_user_id=locked.user_id, actor=actor, storage=storage
    )


async def erase_user(
    session: AsyncSession, *, user_id: uuid.UUID, actor: Principal, storage: AvatarStorage
) -> GdprRequest | None:
    """Erase the user's profile in every business; None when there is nothing (left) to erase."""
    customers = await repository.customers_of_user(session, user_id, for_update=True)
    if not customers:
        await session.rollback()
        return None
    return await erase(
        session, customers=customers, scope="user", subject_user_id=user_id, actor=actor, storage=storage
    )


async def delete_pending_objects(session: AsyncSession, *, record: GdprRequest, storage: AvatarStorage) -> None:
    """Delete the record's remaining objects; completes the record once none is left."""
    remaining: list[str] = []
    for key in record.pending_objects:
        try:
            await storage.delete(key)
        except StorageError as exc:
            remaining.append(key)
            log.warning("gdpr_object_not_deleted", gdpr_request_id=str(record.id), key=key, error=str(exc))
    record.pending_objects = remaining
    if not remaining:
        record.status = STATUS_COMPLETED
        record.completed_at = datetime.now(UTC)
    await session.commit()


async def retry_pending_objects(session: AsyncSession, *, storage: AvatarStorage) -> int:
    """Retry every record still waiting for object deletion; returns how many are still waiting."""
    waiting = 0
    for record in await repository.requests_with_pending_objects(session):
        await delete_pending_objects(session, record=record, storage=storage)
        waiting += bool(record.pending_objects)
    return waiting


async def get_request(session: AsyncSession, *, request_id: uuid.UUID, principal: Principal) -> GdprRequest:
    """The record, for services and for admins of a business it concerns.

    Other callers are refused (403); an admin of another business sees 404, as for a missing record.
    """
    if not (principal.is_service or principal.is_admin):
        raise Forbidden("Erasure records are for business administrators and internal services.")
    record = await repository.get_request(session, request_id)
    if record is None or not (
        principal.is_service or any(principal.is_admin_of(business) for business in record.business_ids)
    ):
        raise GdprRequestNotFound(f"No GDPR request with id {request_id}")
    return record


async def resurrection_allowed(
    session: AsyncSession, *, user_id: uuid.UUID, business_id: uuid.UUID, settings: Settings
) -> bool:
    """May a late upstream event re-create an erased profile from its customer snapshot?

    Never by default: an order completed after an erasure must not bring the person back. With
    `BEE_GDPR_RESURRECT_AFTER_DAYS` set, a snapshot may re-create it once the erasure is older.
    """
    erasure = await repository.latest_erasure_of(session, user_id=user_id, business_id=business_id)
    if erasure is None:
        return True
    if settings.gdpr_resurrect_after_days is None:
        return False
    return datetime.now(UTC) - erasure.requested_at >= timedelta(days=settings.gdpr_resurrect_after_days)
