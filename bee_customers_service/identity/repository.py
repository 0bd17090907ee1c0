"""The identity consumer's idempotency keys: rows of the shared `processed_events` table.

The activity consumer keeps its keys there too (activity/repository.py claim_events, and its pruning
covers every row); auth events carry no business, so their `business_id` is NULL.
"""

import uuid

from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.ext.asyncio import AsyncSession

_CLAIM = text(
    "INSERT INTO processed_events (event_id, business_id) VALUES (:event_id, NULL)"
    " ON CONFLICT (event_id) DO NOTHING RETURNING event_id"
).bindparams(bindparam("event_id", type_=UUID(as_uuid=True)))
_CLAIMED = text("SELECT 1 FROM processed_events WHERE event_id = :event_id").bindparams(
    bindparam("event_id", type_=UUID(as_uuid=True))
)


async def claim(session: AsyncSession, event_id: uuid.UUID) -> bool:
    """Record the event as processed (in the caller's transaction); False when it already was."""
    return (await session.execute(_CLAIM, {"event_id": event_id})).scalar_one_or_none() is not None


async def claimed(session: AsyncSession, event_id: uuid.UUID) -> bool:
    """Whether the event was processed already."""
    return (await session.execute(_CLAIMED, {"event_id": event_id})).scalar_one_or_none() is not None
