"""How events fold into one order's or appointment's state, whatever order they arrive in.

Pure functions, no I/O. The rules (docs/events.md, "Out-of-order delivery"):

- An order keeps what each event told: the completion (total, currency, time), the sum of the
  refunds, the cancellation. Its status is derived: cancelled > returned > completed > pending, so
  a return that arrives before its completion ends exactly as if it had arrived after it.
- An appointment's status is the event with the highest (rank, time, name): `booked` has rank 0,
  the final states (completed, cancelled, no_show) rank 1, so a late `booked` never undoes a
  final state and between two final states the later one wins. The maximum does not depend on
  arrival order.
"""

import uuid
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal

from bee_customers_service.activity.contract import Change


@dataclass(slots=True)
class ActivityState:
    business_id: uuid.UUID
    customer_id: uuid.UUID
    kind: str
    external_id: str
    status: str
    occurred_at: datetime
    status_at: datetime
    amount: Decimal | None = None
    returned_amount: Decimal = Decimal("0")
    currency: str | None = None
    completed_at: datetime | None = None
    returned_at: datetime | None = None
    cancelled_at: datetime | None = None

    @property
    def key(self) -> tuple[uuid.UUID, str, str]:
        return (self.business_id, self.kind, self.external_id)


def _order_status(state: ActivityState) -> str:
    if state.cancelled_at is not None:
        return "cancelled"
    if state.returned_at is not None:
        return "returned"
    if state.completed_at is not None:
        return "completed"
    return "pending"


def _apply_order(state: ActivityState, change: Change) -> ActivityState:
    if change.action == "completed":
        state.amount = change.amount
        state.currency = change.currency
        if state.completed_at is None or change.at < state.completed_at:
            state.completed_at = change.at
    elif change.action == "returned":
        state.returned_amount += change.amount or Decimal("0")
        state.returned_at = change.at if state.returned_at is None else max(state.returned_at, change.at)
    elif change.action == "cancelled":
        state.cancelled_at = change.at if state.cancelled_at is None else min(state.cancelled_at, change.at)
    # An order happened when it was completed; until that is known, at its earliest event.
    state.occurred_at = state.completed_at or min(state.occurred_at, change.at)
    state.status_at = max(state.status_at, change.at)
    state.status = _order_status(state)
    return state


_APPOINTMENT_RANK = {"booked": 0, "completed": 1, "cancelled": 1, "no_show": 1}


def _appointment_precedence(status: str, at: datetime) -> tuple[int, datetime, str]:
    return (_APPOINTMENT_RANK[status], at, status)


def _apply_appointment(state: ActivityState, change: Change, *, fresh: bool) -> ActivityState:
    if fresh or _appointment_precedence(change.action, change.at) > _appointment_precedence(
        state.status, state.status_at
    ):
        state.status = change.action
        state.status_at = change.at
        if change.starts_at is not None:
            state.occurred_at = change.starts_at
        state.completed_at = change.at if change.action == "completed" else None
        state.cancelled_at = change.at if change.action == "cancelled" else None
    return state


def apply(state: ActivityState | None, change: Change, *, customer_id: uuid.UUID) -> ActivityState:
    """The state after `change` (a new object; `state` is left as it was)."""
    fresh = state is None
    if state is None:
        state = ActivityState(
            business_id=change.business_id,
            customer_id=customer_id,
            kind=change.kind,
            external_id=change.external_id,
            status="pending" if change.kind == "order" else change.action,
            occurred_at=change.starts_at or change.at,
            status_at=change.at,
        )
    else:
        state = replace(state)
    if change.kind == "order":
        return _apply_order(state, change)
    return _apply_appointment(state, change, fresh=fresh)
