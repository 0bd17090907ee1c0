"""Builders of upstream events, shaped exactly as docs/events.md says the other services send them."""

import uuid
from datetime import UTC, datetime
from typing import Any


def _iso(moment: datetime | str | None) -> str:
    if moment is None:
        moment = datetime.now(UTC)
    return moment if isinstance(moment, str) else moment.isoformat().replace("+00:00", "Z")


def _base(customer: dict[str, Any], event_id: uuid.UUID | None) -> dict[str, Any]:
    return {
        "event_id": str(event_id or uuid.uuid4()),
        "user_id": customer["user_id"],
        "business_id": customer["business_id"],
    }


def order_completed(
    customer: dict[str, Any],
    *,
    order_id: str | None = None,
    total: str = "100.00",
    currency: str = "RON",
    completed_at: datetime | str | None = None,
    event_id: uuid.UUID | None = None,
    snapshot: dict[str, Any] | None = None,
) -> tuple[str, dict[str, Any]]:
    body = {
        **_base(customer, event_id),
        "order_id": order_id or str(uuid.uuid4()),
        "total": total,
        "currency": currency,
        "completed_at": _iso(completed_at),
    }
    if snapshot is not None:
        body["customer"] = snapshot
    return "v1.order.completed", body


def order_returned(
    customer: dict[str, Any], *, order_id: str, amount: str, returned_at: datetime | str | None = None
) -> tuple[str, dict[str, Any]]:
    return "v1.order.returned", {
        **_base(customer, None),
        "order_id": order_id,
        "amount": amount,
        "returned_at": _iso(returned_at),
    }


def order_cancelled(
    customer: dict[str, Any], *, order_id: str, cancelled_at: datetime | str | None = None
) -> tuple[str, dict[str, Any]]:
    return "v1.order.cancelled", {**_base(customer, None), "order_id": order_id, "cancelled_at": _iso(cancelled_at)}


def appointment(
    status: str,
    customer: dict[str, Any],
    *,
    appointment_id: str | None = None,
    starts_at: datetime | str | None = None,
    at: datetime | str | None = None,
    snapshot: dict[str, Any] | None = None,
) -> tuple[str, dict[str, Any]]:
    body = {
        **_base(customer, None),
        "appointment_id": appointment_id or str(uuid.uuid4()),
        "starts_at": _iso(starts_at),
        f"{status}_at": _iso(at),
    }
    if snapshot is not None:
        body["customer"] = snapshot
    return f"v1.appointment.{status}", body
