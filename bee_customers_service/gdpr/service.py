"""GDPR: export everything held about a customer, erase it, and keep a record without personal data."""

import hashlib
import hmac
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import structlog
from pydantic_core import to_jsonable_python
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bee_customers_service.activity import service as activity_service
from bee_customers_service.avatars.service import owned_object_key
from bee_customers_service.avatars.storage import AvatarStorage, StorageError
from bee_customers_service.core.config import Settings
from bee_customers_service.core.errors import CustomerNotFound, NotFound
from bee_customers_service.core.security import Principal
from bee_customers_service.customers import service as customers_service
from bee_customers_service.customers.models import Customer
from bee_customers_service.customers.schemas import CustomerView
from bee_customers_service.events import catalogue, outbox
from bee_customers_service.gdpr import repository
from bee_customers_service.gdpr.access import RecordScope
from bee_customers_service.gdpr.models import STATUS_COMPLETED, STATUS_PENDING_OBJECTS, GdprRequest
from bee_customers_service.notes.models import CustomerNote
from bee_customers_service.search import service as search_service

EXPORT_FORMAT = "bee_customers_service.export.v1"

audit_log = structlog.get_logger("bee_customers_service.audit")
log = structlog.get_logger(__name__)


class GdprRequestNotFound(NotFound):
    type_slug, title = "gdpr-request-not-found", "GDPR request not found"


def email_fingerprint(email: str, settings: Settings) -> str:
    """HMAC-SHA256 of the normalised email under `BEE_GDPR_FINGERPRINT_KEY` (hex).

    Recognises a re-imported person without storing the email. Keyed, so that a list of emails
    cannot be tested against the records by whoever reads them: a bare hash of the email would
    tell anyone with the list who was a customer.
    """
    key = settings.gdpr_fingerprint_key.get_secret_value().encode()
    return hmac.new(key, email.strip().lower().encode(), hashlib.sha256).hexdigest()


async def erasures_of_email(session: AsyncSession, email: str, settings: Settings) -> Sequence[GdprRequest]:
    """The erasure records of this email (any case, surrounding spaces ignored), oldest first.

    Only records fingerprinted with the current key match (README, "GDPR": rotating the key).
    """
    return await repository.requests_with_fingerprint(session, email_fingerprint(email, settings))


def _notes_visible(principal: Principal, customer: Customer, settings: Settings) -> bool:
    # Notes are personal data about the customer, so their own export includes them unless the
    # business has turned that off; admins of the business always see them.
    return principal.is_admin_of(customer.business_id) or settings.gdpr_export_notes


def _without_note_contents(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The events, with the text of note_added events removed (the notes themselves are withheld)."""
    return [
        {**item, "event": {k: v for k, v in item["event"].items() if k != "note"}}
        if item["event"].get("event") == catalogue.CustomerNoteAdded.name
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
    exported = catalogue.AuditCustomerExported(
        customer_id=customer.id,
        business_id=customer.business_id,
        actor=catalogue.Actor.of(principal),
        notes_included=notes_visible,
    )
    await outbox.enqueue_event(session, exported)  # the audit trail (events/audit.py), in the request's transaction
    return to_jsonable_python(document)


async def export_user(
    session: AsyncSession, *, user_id: uuid.UUID, principal: Principal, settings: Settings
) -> dict[str, Any]:
    """Every business's profile of one user (a request arriving through the auth service)."""
    customers = await customers_service.profiles_of_user(session, user_id)
    profiles = [
        await export_customer(session, customer=customer, principal=principal, settings=settings)
        for customer in customers
    ]
    return to_jsonable_python(
        {"format": EXPORT_FORMAT, "exported_at": datetime.now(UTC), "user_id": user_id, "profiles": profiles}
    )


async def _erase(
    session: AsyncSession,
    *,
    customers: Sequence[Customer],
    scope: str,
    subject_user_id: uuid.UUID,
    actor: Principal,
    storage: AvatarStorage,
    settings: Settings,
) -> GdprRequest:
    """Erase these (locked) customers' rows and record it, with their deleted events, in the caller's transaction."""
    customer_ids = [customer.id for customer in customers]
    pending_objects = [key for customer in customers if (key := owned_object_key(storage, customer))]
    counts = await repository.erase_rows(session, customer_ids)
    counts["customers"] = await customers_service.delete_profiles(session, customer_ids)
    await search_service.forget_stale_short_words(session, sorted({c.business_id for c in customers}))
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
        email_fingerprints=sorted({email_fingerprint(customer.email, settings) for customer in customers}),
        pending_objects=pending_objects,
    )
    session.add(record)
    for customer in customers:
        event = catalogue.CustomerDeleted(
            customer_id=customer.id,
            business_id=customer.business_id,
            user_id=customer.user_id,
            gdpr_request_id=record.id,
            deleted_at=datetime.now(UTC),
        )
        await outbox.enqueue_event(session, event)
    for customer in customers:  # the audit trail (events/audit.py), after the deletions it records
        erased = catalogue.AuditCustomerErased(
            customer_id=customer.id,
            business_id=customer.business_id,
            actor=catalogue.Actor.of(actor),
            user_id=customer.user_id,
            gdpr_request_id=record.id,
        )
        await outbox.enqueue_event(session, erased)
    await session.flush()
    return record


async def _erase_then_clean_up(
    sessionmaker: async_sessionmaker[AsyncSession],
    lock: Callable[[AsyncSession], Awaitable[Sequence[Customer]]],
    *,
    scope: str,
    subject_user_id: uuid.UUID,
    actor: Principal,
    storage: AvatarStorage,
    settings: Settings,
) -> GdprRequest | None:
    """Two transactions: the erasure commits first, stored avatar objects are deleted after it.

    Until they are, the record says `pending_object_cleanup` and lists their keys, so a storage
    outage leaves a retryable record (`bee-customers gdpr-cleanup`), never a half-erased customer
    that the API still shows.
    """
    async with sessionmaker() as session:
        # Under the row locks: an avatar upload of these customers either finished before or finds them gone.
        customers = await lock(session)
        if not customers:
            return None
        record = await _erase(
            session,
            customers=customers,
            scope=scope,
            subject_user_id=subject_user_id,
            actor=actor,
            storage=storage,
            settings=settings,
        )
        await session.commit()
    if record.pending_objects:
        async with sessionmaker() as session:
            await delete_pending_objects(session, record=await session.merge(record), storage=storage)
            await session.commit()
    audit_log.info(
        "audit",
        audit_event="gdpr.erasure",
        gdpr_request_id=str(record.id),
        scope=scope,
        customer_ids=[str(i) for i in record.customer_ids],
        requested_by=str(actor.user_id),
        erased=record.erased,
    )
    return record


async def erase_customer(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    customer: Customer,
    actor: Principal,
    storage: AvatarStorage,
    settings: Settings,
) -> GdprRequest:
    """Erase one profile (GDPR); 404 when it went meanwhile."""
    record = await _erase_then_clean_up(
        sessionmaker,
        lambda session: customers_service.lock_customers(session, [customer.id]),
        scope="customer",
        subject_user_id=customer.user_id,
        actor=actor,
        storage=storage,
        settings=settings,
    )
    if record is None:
        raise CustomerNotFound(customer.id)
    return record


async def erase_user(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    user_id: uuid.UUID,
    actor: Principal,
    storage: AvatarStorage,
    settings: Settings,
) -> GdprRequest | None:
    """Erase the user's profile in every business; None when there is nothing (left) to erase."""
    return await _erase_then_clean_up(
        sessionmaker,
        lambda session: customers_service.lock_profiles_of_user(session, user_id),
        scope="user",
        subject_user_id=user_id,
        actor=actor,
        storage=storage,
        settings=settings,
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
    await session.flush()


async def retry_pending_objects(sessionmaker: async_sessionmaker[AsyncSession], *, storage: AvatarStorage) -> int:
    """Retry every record still waiting for object deletion; returns how many are still waiting.

    One transaction per record (a sessionmaker): a record's progress is kept even if a later one fails.
    """
    async with sessionmaker() as session:
        ids = [record.id for record in await repository.requests_with_pending_objects(session)]
    waiting = 0
    for record_id in ids:
        async with sessionmaker() as session:
            record = await repository.get_request(session, record_id)
            if record is None:
                continue
            await delete_pending_objects(session, record=record, storage=storage)
            await session.commit()
            waiting += bool(record.pending_objects)
    return waiting


async def find_request(session: AsyncSession, *, request_id: uuid.UUID, scope: RecordScope) -> GdprRequest:
    """The erasure record, if `scope` reaches it (404 otherwise, as for a missing record)."""
    record = await repository.get_request_visible(
        session, request_id, admin_of=scope.admin_of, every_business=scope.every_business
    )
    if record is None:
        raise GdprRequestNotFound(f"No GDPR request with id {request_id}")
    return record
