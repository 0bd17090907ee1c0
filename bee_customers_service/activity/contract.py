"""The consumed contract: upstream events from bee_orders_service and bee_scheduling_service.

Each routing key has a payload model; a message is parsed straight from its bytes into a
`Change` (what happened to which order or appointment). Anything that does not parse is a
`Rejected` with a human-readable reason, which the consumer parks in the dead-letter queue.
See docs/events.md.
"""

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, StringConstraints, ValidationError

from bee_customers_service.core.types import NonNegativeMoneyInput, SafeDatetime, SafeStr

ORDER_COMPLETED = "v1.order.completed"
ORDER_RETURNED = "v1.order.returned"
ORDER_CANCELLED = "v1.order.cancelled"
APPOINTMENT_BOOKED = "v1.appointment.booked"
APPOINTMENT_COMPLETED = "v1.appointment.completed"
APPOINTMENT_CANCELLED = "v1.appointment.cancelled"
APPOINTMENT_NO_SHOW = "v1.appointment.no_show"

ORDER_KEYS = (ORDER_COMPLETED, ORDER_RETURNED, ORDER_CANCELLED)
APPOINTMENT_KEYS = (APPOINTMENT_BOOKED, APPOINTMENT_COMPLETED, APPOINTMENT_CANCELLED, APPOINTMENT_NO_SHOW)

Action = Literal["completed", "returned", "cancelled", "booked", "no_show"]
Kind = Literal["order", "appointment"]

# Upstream values reach PostgreSQL too: unstorable text or a timestamp out of range is a Rejected message.
ExternalId = Annotated[SafeStr, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
Amount = NonNegativeMoneyInput
Currency = Annotated[str, StringConstraints(strip_whitespace=True, to_upper=True, pattern=r"^[A-Za-z]{3}$")]

# On the timestamp fields only (a validator on every field ran Python code for each of them): naive
# timestamps are read as UTC, aware ones converted to UTC, out-of-range ones refused (no OverflowError).
UtcDatetime = SafeDatetime


class CustomerSnapshot(BaseModel):
    """Who the customer is, as the upstream service knows them (used to create a missing profile)."""

    model_config = ConfigDict(extra="ignore")

    full_name: str
    email: str
    phone: str | None = None


class _Upstream(BaseModel):
    # Upstream services add fields over time (`extra_payload`); unknown fields are ignored, never fatal.
    model_config = ConfigDict(extra="ignore")

    event_id: uuid.UUID
    user_id: uuid.UUID
    business_id: uuid.UUID
    occurred_at: UtcDatetime | None = None
    customer: CustomerSnapshot | None = None


class OrderCompleted(_Upstream):
    order_id: ExternalId
    total: Amount
    currency: Currency
    completed_at: UtcDatetime


class OrderReturned(_Upstream):
    order_id: ExternalId
    amount: Amount
    returned_at: UtcDatetime


class OrderCancelled(_Upstream):
    order_id: ExternalId
    cancelled_at: UtcDatetime | None = None


class AppointmentEvent(_Upstream):
    appointment_id: ExternalId
    starts_at: UtcDatetime
    booked_at: UtcDatetime | None = None
    completed_at: UtcDatetime | None = None
    cancelled_at: UtcDatetime | None = None
    no_show_at: UtcDatetime | None = None


MODELS: dict[str, type[_Upstream]] = {
    ORDER_COMPLETED: OrderCompleted,
    ORDER_RETURNED: OrderReturned,
    ORDER_CANCELLED: OrderCancelled,
    **dict.fromkeys(APPOINTMENT_KEYS, AppointmentEvent),
}


@dataclass(frozen=True, slots=True)
class Change:
    """One upstream event, normalised: what happened, to which reference, when."""

    event_id: uuid.UUID
    business_id: uuid.UUID
    user_id: uuid.UUID
    kind: Kind
    external_id: str
    action: Action
    at: datetime  # the event's own time (completed_at, returned_at, ...; else occurred_at; else arrival)
    amount: Decimal | None = None  # order total (completed) or refunded amount (returned)
    currency: str | None = None
    starts_at: datetime | None = None
    snapshot: CustomerSnapshot | None = None
    routing_key: str = ""


@dataclass(frozen=True, slots=True)
class Rejected:
    """A message that can never be applied, and why (goes to the dead-letter queue)."""

    reason: str
    event_id: str | None = None


def _describe(exc: ValidationError) -> str:
    errors = exc.errors(include_url=False, include_input=False)
    if any(err["type"] == "json_invalid" for err in errors):
        return "malformed JSON"
    if any(err["type"] == "model_type" and not err["loc"] for err in errors):
        return "the body is not a JSON object"
    parts = []
    for err in errors[:5]:
        where = ".".join(str(p) for p in err["loc"]) or "body"
        parts.append("missing field " + where if err["type"] == "missing" else f"{where}: {err['msg']}")
    return "invalid payload: " + "; ".join(parts)


def parse(routing_key: str, body: bytes, *, now: datetime | None = None) -> Change | Rejected:
    """Parse one message; never raises."""
    model = MODELS.get(routing_key)
    if model is None:
        return Rejected(f"unsupported routing key {routing_key!r}")
    try:
        event = model.model_validate_json(body)
    except ValidationError as exc:
        return Rejected(_describe(exc))
    arrival = now or datetime.now(UTC)
    common: dict[str, Any] = {
        "event_id": event.event_id,
        "business_id": event.business_id,
        "user_id": event.user_id,
        "snapshot": event.customer,
        "routing_key": routing_key,
    }
    if isinstance(event, OrderCompleted):
        return Change(
            **common,
            kind="order",
            external_id=event.order_id,
            action="completed",
            at=event.completed_at,
            amount=event.total,
            currency=event.currency,
        )
    if isinstance(event, OrderReturned):
        return Change(
            **common,
            kind="order",
            external_id=event.order_id,
            action="returned",
            at=event.returned_at,
            amount=event.amount,
        )
    if isinstance(event, OrderCancelled):
        at = event.cancelled_at or event.occurred_at or arrival
        return Change(**common, kind="order", external_id=event.order_id, action="cancelled", at=at)
    assert isinstance(event, AppointmentEvent)
    action: Action = routing_key.rsplit(".", 1)[1]  # type: ignore[assignment]
    own_time = {
        "booked": event.booked_at,
        "completed": event.completed_at,
        "cancelled": event.cancelled_at,
        "no_show": event.no_show_at,
    }[action]
    return Change(
        **common,
        kind="appointment",
        external_id=event.appointment_id,
        action=action,
        at=own_time or event.occurred_at or arrival,
        starts_at=event.starts_at,
    )
