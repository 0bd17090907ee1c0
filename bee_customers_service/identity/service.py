"""Rules of the identity domain: what an auth event does to the profiles. Never commits.

The account (email, phone, name) belongs to bee_auth_service: `v1.user.updated` is mirrored into
every profile of the user through customers/service.py (`apply_identity_change`), and
`v1.user.deleted` erases them as `DELETE /users/{user_id}` does (gdpr/service.py `erase_user`).
Who acted, in the audit records and the erasure record, is `AUTH_ACTOR`.
"""

import uuid
from dataclasses import dataclass
from typing import Final, Literal

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bee_customers_service.avatars.storage import AvatarStorage
from bee_customers_service.core.config import Settings
from bee_customers_service.core.security import ROLE_SERVICE, Principal
from bee_customers_service.customers import service as customers_service
from bee_customers_service.gdpr import service as gdpr_service
from bee_customers_service.identity import repository
from bee_customers_service.identity.contract import UserChange

# The well-known user id of bee_auth_service as an actor here (no token carries it: its events do).
AUTH_SERVICE_USER_ID: Final = uuid.UUID("00000000-0000-4000-8000-00000000a001")
AUTH_ACTOR: Final = Principal(user_id=AUTH_SERVICE_USER_ID, roles=frozenset({ROLE_SERVICE}), business_ids=frozenset())
SOURCE_AUTH: Final = "auth"

APPLIED: Final = "applied"
DUPLICATE: Final = "duplicate"


@dataclass(frozen=True, slots=True)
class Refused:
    """An event that can never be applied; the consumer rolls back and dead-letters it with the reason."""

    reason: str


Outcome = Literal["applied", "duplicate"] | Refused


async def apply_update(session: AsyncSession, change: UserChange, *, settings: Settings) -> Outcome:
    """Claim the event id and mirror the change into every profile, in the caller's transaction.

    A Refused leaves writes behind (the claim, profiles changed before the refusal): the caller
    must roll back, so a refused event changes nothing.
    """
    if not await repository.claim(session, change.event_id):
        return DUPLICATE
    refusal = await customers_service.apply_identity_change(
        session,
        user_id=change.user_id,
        changes=change.changes,
        occurred_at=change.occurred_at,
        actor=AUTH_ACTOR,
        settings=settings,
    )
    return APPLIED if refusal is None else Refused(refusal)


async def already_processed(session: AsyncSession, change: UserChange) -> bool:
    return await repository.claimed(session, change.event_id)


async def claim(session: AsyncSession, change: UserChange) -> bool:
    """Record the event as processed in the caller's transaction; False when it already was."""
    return await repository.claim(session, change.event_id)


async def erase_user(
    sessionmaker: async_sessionmaker[AsyncSession], change: UserChange, *, storage: AvatarStorage, settings: Settings
) -> None:
    """Erase the user's profiles in every business, exactly as `DELETE /users/{user_id}` does.

    gdpr's own transactions (the erasure, then the stored objects' clean-up); erasing twice finds
    nothing the second time, so a redelivery before the claim committed is harmless.
    """
    await gdpr_service.erase_user(
        sessionmaker, user_id=change.user_id, actor=AUTH_ACTOR, storage=storage, settings=settings
    )
