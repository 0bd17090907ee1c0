"""Access to notes beyond the customer's: an admin writes notes in its own name only."""

from typing import Annotated

from fastapi import Depends

from bee_customers_service.core.errors import Forbidden
from bee_customers_service.core.security import AdminCaller
from bee_customers_service.notes.schemas import NoteCreate


async def note_by_caller(data: NoteCreate, principal: AdminCaller) -> NoteCreate:
    """The new note, unless its body claims another author than the calling admin (403)."""
    if data.created_by is not None and data.created_by != principal.user_id:
        raise Forbidden("created_by must be the calling administrator (it comes from the token).")
    return data


NoteByCaller = Annotated[NoteCreate, Depends(note_by_caller)]
