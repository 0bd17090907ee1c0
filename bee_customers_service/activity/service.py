"""Rules of the activity domain: applying upstream events, history, recomputation (statistics:
activity/statistics.py, re-exported here as `stats`)."""

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final, Literal

from pydantic import AwareDatetime, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bee_customers_service.activity import repository, segments
from bee_customers_service.activity.contract import Change
from bee_customers_service.activity.schemas import CustomerStats, HistoryItem, HistoryPage
from bee_customers_service.activity.state import ActivityState, apply
from bee_customers_service.activity.statistics import stats
from bee_customers_service.core.config import Settings
from bee_customers_service.core.errors import DomainError
from bee_customers_service.core.pagination import CursorCodec
from bee_customers_service.core.security import Principal
from bee_customers_service.customers import service as customers_service
from bee_customers_service.customers.models import Customer
from bee_customers_service.customers.schemas import CustomerCreate
from bee_customers_service.events import audit, catalogue

HISTORY_CURSOR_SCOPE = "history:v1"
APPLIED: Final = "applied"
DUPLICATE: Final = "duplicate"


@dataclass(frozen=True, slots=True)
class Refused:
    """A change that can never be applied; the consumer dead-letters its message with the reason."""

    reason: str


Outcome = Literal["applied", "duplicate"] | Refused


def _snapshot_profile(change: Change) -> CustomerCreate | Refused:
    snapshot = change.snapshot
    assert snapshot is not None
    try:
        return CustomerCreate(
            user_id=change.user_id,
            business_id=change.business_id,
            full_name=snapshot.full_name,
            email=snapshot.email,
            phone=snapshot.phone,
        )
    except ValidationError as exc:
        fields = sorted({str(err["loc"][0]) for err in exc.errors() if err["loc"]})
        return Refused(f"invalid customer snapshot ({', '.join(fields)})")


async def _customers_for(
    session: AsyncSession, changes: Sequence[Change], outcomes: list[Outcome | None], settings: Settings
) -> dict[tuple[uuid.UUID, uuid.UUID], uuid.UUID]:
    """Lock every profile the changes touch; create missing ones from a snapshot (v1.customer.created)."""
    pairs = {(c.business_id, c.user_id) for c in changes}
    customers = await customers_service.lock_profiles_by_user(session, pairs)
    for pair in sorted(pairs - customers.keys()):
        indexes = [i for i, c in enumerate(changes) if (c.business_id, c.user_id) == pair]
        with_snapshot = next((changes[i] for i in indexes if changes[i].snapshot is not None), None)
        refusal: Refused | None = None
        if with_snapshot is None:
            refusal = Refused(
                f"unknown customer: user {pair[1]} has no profile in business {pair[0]} and the event carries"
                " no customer snapshot"
            )
        elif not await resurrection_allowed(session, user_id=pair[1], business_id=pair[0], settings=settings):
            # A late event (an order completed after the erasure) must not bring the person back.
            refusal = Refused(f"erased customer: user {pair[1]} was erased from business {pair[0]} (GDPR)")
        else:
            data = _snapshot_profile(with_snapshot)
            if isinstance(data, Refused):
                refusal = data
            else:
                try:
                    created = await customers_service.create_customer(session, data=data, settings=settings)
                except customers_service.CustomerAlreadyExists:  # created meanwhile by someone else: lock theirs
                    customers.update(await customers_service.lock_profiles_by_user(session, [pair]))
                except customers_service.EmailTaken:  # one email per business: a person decides, not us
                    refusal = Refused(
                        f"email taken: another customer of business {pair[0]} uses the snapshot's email"
                        f" (user {pair[1]})"
                    )
                except DomainError as exc:  # e.g. a phone number that is not one
                    refusal = Refused(f"invalid customer snapshot: {exc.detail}")
                else:
                    customers[pair] = created.id
        if refusal is not None:
            for i in indexes:
                outcomes[i] = refusal
    return customers


async def resurrection_allowed(
    session: AsyncSession, *, user_id: uuid.UUID, business_id: uuid.UUID, settings: Settings
) -> bool:
    """May a late upstream event re-create an erased profile from its customer snapshot?

    Never by default: an order completed after an erasure must not bring the person back. With
    `BEE_GDPR_RESURRECT_AFTER_DAYS` set, a snapshot may re-create it once the erasure is older.
    """
    erased_at = await repository.latest_erasure_at(session, user_id=user_id, business_id=business_id)
    if erased_at is None:
        return True
    if settings.gdpr_resurrect_after_days is None:
        return False
    return datetime.now(UTC) - erased_at >= timedelta(days=settings.gdpr_resurrect_after_days)


async def apply_changes(session: AsyncSession, changes: Sequence[Change], *, settings: Settings) -> list[Outcome]:
    """Apply upstream changes inside the caller's transaction (the caller commits).

    Each applied change writes its `processed_events` row in this same transaction, so a
    redelivered message is recognised and changes nothing. The customers are locked first (in id
    order), so concurrent consumers never lose an update; the aggregates are then derived from the
    activity rows, so arrival order does not matter.
    """
    outcomes: list[Outcome | None] = [None] * len(changes)
    customers = await _customers_for(session, changes, outcomes, settings)

    pending = [i for i, outcome in enumerate(outcomes) if outcome is None]
    states = await repository.load_activity(
        session, [(changes[i].business_id, changes[i].kind, changes[i].external_id) for i in pending]
    )
    to_claim: list[int] = []
    seen: set[uuid.UUID] = set()
    for i in pending:
        change = changes[i]
        existing = states.get((change.business_id, change.kind, change.external_id))
        customer_id = customers[(change.business_id, change.user_id)]
        if existing is not None and existing.customer_id != customer_id:
            outcomes[i] = Refused(f"{change.kind} {change.external_id} belongs to another customer of the business")
        elif change.event_id in seen:
            outcomes[i] = DUPLICATE
        else:
            seen.add(change.event_id)
            to_claim.append(i)

    fresh = await repository.claim_events(session, [(changes[i].event_id, changes[i].business_id) for i in to_claim])
    changed: dict[tuple[uuid.UUID, str, str], ActivityState] = {}
    for i in to_claim:
        change = changes[i]
        if change.event_id not in fresh:
            outcomes[i] = DUPLICATE
            continue
        key = (change.business_id, change.kind, change.external_id)
        state = apply(states.get(key), change, customer_id=customers[(change.business_id, change.user_id)])
        states[key] = changed[key] = state
        outcomes[i] = APPLIED

    await repository.save_activity(session, list(changed.values()))
    touched = sorted({state.customer_id for state in changed.values()})
    await repository.recompute(session, touched)
    # The stored segment (search's facet) follows in the same transaction (activity/segments.py).
    await segments.store(session, touched, now=datetime.now(UTC), window_months=settings.stats_window_months)
    return [outcome if outcome is not None else DUPLICATE for outcome in outcomes]


async def history(
    session: AsyncSession,
    customer: Customer,
    *,
    kind: str | None,
    limit: int,
    cursor: str | None,
    settings: Settings,
) -> HistoryPage:
    """Orders and appointments, newest first, one keyset page."""
    cursors = CursorCodec.from_settings(settings)
    after = cursors.decode(cursor, scope=HISTORY_CURSOR_SCOPE, types=(AwareDatetime, uuid.UUID))
    rows = await repository.history_page(session, customer.id, kind=kind, after=after, limit=limit + 1)
    page, next_cursor = cursors.page_of(
        rows, limit, key=lambda row: (row["occurred_at"], row["id"]), scope=HISTORY_CURSOR_SCOPE
    )
    return HistoryPage(items=[HistoryItem.model_validate(row) for row in page], next_cursor=next_cursor)


async def recompute_customer(
    session: AsyncSession, customer: Customer, *, settings: Settings, actor: Principal
) -> CustomerStats:
    """Rebuild one customer's aggregates from its activity rows; returns the fresh statistics."""
    await customers_service.lock_customers(session, [customer.id])
    await repository.recompute(session, [customer.id])
    now = datetime.now(UTC)
    await segments.store(session, [customer.id], now=now, window_months=settings.stats_window_months)
    await session.refresh(customer)
    record = catalogue.AuditStatsRecomputed(
        customer_id=customer.id, business_id=customer.business_id, actor=catalogue.Actor.of(actor)
    )
    await audit.record(session, record)
    return await stats(session, customer, settings=settings, now=now)


async def recompute_business(
    sessionmaker: async_sessionmaker[AsyncSession], business_id: uuid.UUID, *, chunk: int = 500
) -> int:
    """Rebuild the aggregates of every customer of a business, `chunk` customers per transaction.

    Its own transactions (a sessionmaker, not a request's session): a business with many customers
    must not hold all their row locks at once.
    """
    done = 0
    after: uuid.UUID | None = None
    while True:
        async with sessionmaker() as session:
            ids = await repository.customer_ids_of_business(session, business_id, after=after, limit=chunk)
            if not ids:
                return done
            await customers_service.lock_customers(session, ids)
            await repository.recompute(session, ids)
            await session.commit()
        done += len(ids)
        after = ids[-1]


async def prune_processed_events(
    sessionmaker: async_sessionmaker[AsyncSession], *, settings: Settings, chunk: int = 5000
) -> int:
    """Delete the idempotency keys older than BEE_PROCESSED_EVENTS_RETENTION_DAYS; how many went.

    A transaction per chunk (a sessionmaker): a large backlog never holds one long delete.
    """
    older_than = settings.processed_events_retention_days * 86400
    pruned = 0
    while True:
        async with sessionmaker() as session:
            deleted = await repository.prune_processed_events(session, older_than_seconds=older_than, chunk=chunk)
            await session.commit()
        pruned += deleted
        if deleted < chunk:
            return pruned
