"""Request and response shapes of internal notes (admin only, never in a customer's view)."""

import unicodedata
import uuid
from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, Field, StringConstraints

from bee_customers_service.core.pagination import DEFAULT_LIMIT, MAX_LIMIT, Page
from bee_customers_service.core.schemas import InputModel, OutputModel
from bee_customers_service.core.types import SafeStr, storable_text, visible_text
from bee_customers_service.notes.models import MAX_NOTE_LENGTH


def _nfc(value: object) -> object:
    # "ș" typed as s + combining comma is one character to a reader: compose before counting.
    return unicodedata.normalize("NFC", value) if isinstance(value, str) else value


# Characters are Unicode code points after NFC composition (Romanian diacritics and emoji count as
# one), the same unit PostgreSQL's varchar(500) counts; never bytes.
NoteContent = Annotated[
    str,
    BeforeValidator(_nfc),
    StringConstraints(min_length=1, max_length=MAX_NOTE_LENGTH),
    AfterValidator(storable_text),  # no NUL, no lone surrogate: PostgreSQL text cannot hold them
    AfterValidator(visible_text),  # a note of only zero-width characters says nothing
]


class NoteCreate(InputModel):
    content: NoteContent
    # Accepted for compatibility with the spec's body; must be the caller (the token decides).
    created_by: uuid.UUID | None = None


class NoteView(OutputModel):
    id: uuid.UUID
    customer_id: uuid.UUID
    content: str
    created_by: uuid.UUID
    created_at: datetime


NotePage = Page[NoteView]


class NoteListParams(InputModel):
    limit: int = Field(default=DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)
    cursor: SafeStr | None = None
