"""Business rules of internal notes: author from the token, content filter, events in the same transaction.

Note contents are personal data about a customer: never logged, never in a customer's view.
"""

import uuid

from pydantic import AwareDatetime
from sqlalchemy.ext.asyncio import AsyncSession

from bee_customers_service.core.config import Settings
from bee_customers_service.core.errors import InvalidInput, NotFound
from bee_customers_service.core.pagination import CursorCodec
from bee_customers_service.core.security import Principal
from bee_customers_service.customers.models import Customer
from bee_customers_service.events import audit, catalogue, outbox
from bee_customers_service.notes import repository
from bee_customers_service.notes.content_filter import is_blocked
from bee_customers_service.notes.models import CustomerNote
from bee_customers_service.notes.schemas import NoteCreate

CURSOR_SCOPE = "notes:v1"


class NoteNotFound(NotFound):
    type_slug, title = "note-not-found", "Note not found"

    def __init__(self, note_id: uuid.UUID) -> None:
        super().__init__(f"No note with id {note_id} on this customer")


class NoteRefused(InvalidInput):
    """The content filter refused the note; names the rule, never the word list."""

    type_slug, title = "note-content-refused", "Note refused by the content filter"

    def __init__(self) -> None:
        super().__init__("content", "contains language refused by the notes content filter (BEE_NOTES_BLOCKLIST)")


async def add_note(
    session: AsyncSession, *, customer: Customer, data: NoteCreate, actor: Principal, settings: Settings
) -> CustomerNote:
    """Write a note as the calling admin (notes/dependencies.py refused another author)."""
    if is_blocked(data.content, settings.notes_blocked_words):
        raise NoteRefused()
    note = await repository.add(
        session,
        {
            "id": uuid.uuid4(),
            "customer_id": customer.id,
            "business_id": customer.business_id,
            "content": data.content,
            "created_by": actor.user_id,
        },
    )
    # Spec 4.4: the audit log (bee_log_service) keeps the note history, so the event carries it.
    event = catalogue.CustomerNoteAdded(
        customer_id=customer.id,
        business_id=customer.business_id,
        note_id=note.id,
        created_by=note.created_by,
        note=note.content,
        created_at=note.created_at,
    )
    await outbox.enqueue_event(session, event)
    record = catalogue.AuditNoteAdded(
        customer_id=customer.id,
        business_id=customer.business_id,
        actor=catalogue.Actor.of(actor),
        note_id=note.id,
        content=note.content,
    )
    await audit.record(session, record)
    return note


async def list_notes(
    session: AsyncSession, *, customer: Customer, limit: int, cursor: str | None, settings: Settings
) -> tuple[list[CustomerNote], str | None]:
    """A page of notes, newest first, and the cursor of the next page."""
    cursors = CursorCodec.from_settings(settings)
    after = cursors.decode(cursor, scope=CURSOR_SCOPE, types=(AwareDatetime, uuid.UUID))
    rows = await repository.page_for_customer(session, customer.id, after=after, limit=limit + 1)
    return cursors.page_of(rows, limit, key=lambda note: (note.created_at, note.id), scope=CURSOR_SCOPE)


async def delete_note(session: AsyncSession, *, customer: Customer, note_id: uuid.UUID, actor: Principal) -> None:
    deleted = await repository.delete_note(session, customer.id, note_id)
    if deleted is None:
        raise NoteNotFound(note_id)
    record = catalogue.AuditNoteDeleted(
        customer_id=customer.id, business_id=customer.business_id, actor=catalogue.Actor.of(actor), note_id=deleted
    )
    await audit.record(session, record)
