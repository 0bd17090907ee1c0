"""Opaque keyset cursors for the history: base64url of the last row's (occurred_at, id).

Kept inside activity/ on purpose (core/pagination.py is being written at the same time for the
notes; the two will be unified).
"""

import base64
import binascii
import json
import uuid
from datetime import datetime

from bee_customers_service.core.errors import InvalidInput


def encode(occurred_at: datetime, row_id: uuid.UUID) -> str:
    raw = json.dumps([occurred_at.isoformat(), str(row_id)], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(cursor: str) -> tuple[datetime, uuid.UUID]:
    """The keyset position a cursor names; 422 (on the `cursor` query parameter) when it is not ours."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        at, row_id = json.loads(raw)
        position = (datetime.fromisoformat(at), uuid.UUID(row_id))
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError) as exc:
        raise InvalidInput("cursor", "is not a cursor returned by this endpoint", location="query") from exc
    if position[0].tzinfo is None:
        raise InvalidInput("cursor", "is not a cursor returned by this endpoint", location="query")
    return position
