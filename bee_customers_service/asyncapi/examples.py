"""One example per message of docs/asyncapi.yaml: made-up people and ids, never real personal data.

A published example is a catalogue event built like a service builds it, turned into its body by
`outbox.build_event` and into its AMQP message by `broker.build_message` (so the example headers
and properties are the ones the relay sends). The fixed envelope ids keep the document stable.
A consumed example is a body the contract (activity/contract.py, identity/contract.py) accepts.
"""

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import aio_pika

from bee_customers_service.activity import contract as activity_contract
from bee_customers_service.events import catalogue, outbox
from bee_customers_service.events.broker import OutgoingEvent, build_message
from bee_customers_service.identity import contract as identity_contract

_NAMESPACE = uuid.UUID("6f1c3d4e-2b7a-4c9d-8e5f-0a1b2c3d4e5f")  # event_id of an example = uuid5(this, its key)
WHEN = datetime(2026, 3, 12, 9, 30, 15, 250000, tzinfo=UTC)
CUSTOMER = uuid.UUID("3f6c2a8e-9b1d-4e7f-a2c5-6d8e0f1a2b3c")
BUSINESS = uuid.UUID("5c2f8b1e-6a3d-4f7e-8b9a-1d2c3e4f5a60")
USER = uuid.UUID("0b7f0b6e-1f0a-4b8e-9c55-3b3c0e2d7a10")
ADMIN = uuid.UUID("9a4e7c21-5d3b-4f8a-b6e0-2c1d3f5a7b90")
TAG = uuid.UUID("c8d2e4f6-1a3b-4c5d-9e7f-0b2c4d6e8f1a")
NOTE = uuid.UUID("e1f3a5c7-2b4d-4e6f-8a0c-3d5e7f9b1c2d")
GDPR_REQUEST = uuid.UUID("7d9f1b3e-4c6a-4e8b-a0d2-5f7b9d1e3c4a")
AVATAR = "https://cdn.example.com/avatars/3f6c2a8e/v2.webp"
OLD_AVATAR = "https://cdn.example.com/avatars/3f6c2a8e/v1.webp"

_IDS: dict[str, Any] = {"customer_id": CUSTOMER, "business_id": BUSINESS}
_ADMIN = catalogue.Actor(user_id=ADMIN, roles=("admin_business",))
_WHO: dict[str, Any] = {"actor": _ADMIN, "client_ip": "203.0.113.24", "user_agent": "Mozilla/5.0 (bee-dashboard)"}

PUBLISHED: tuple[catalogue.CustomerEvent, ...] = (
    catalogue.CustomerCreated(
        **_IDS, user_id=USER, full_name="Ana Popescu", email="ana.popescu@example.com", created_at=WHEN
    ),
    catalogue.CustomerUpdated(
        **_IDS,
        user_id=USER,
        fields_changed=["email", "gender"],
        updated_by=ADMIN,
        updated_at=WHEN,
        email="ana.p@example.com",
    ),
    catalogue.CustomerAvatarUpdated(
        **_IDS, old_avatar_url=OLD_AVATAR, new_avatar_url=AVATAR, updated_by=USER, updated_at=WHEN
    ),
    catalogue.CustomerTagged(**_IDS, tag="VIP", tag_id=TAG, color="#FF8800", created_by=ADMIN, created_at=WHEN),
    catalogue.CustomerUntagged(**_IDS, tag="VIP", tag_id=TAG, removed_by=ADMIN),
    catalogue.CustomerNoteAdded(
        **_IDS, note_id=NOTE, created_by=ADMIN, note="Prefers morning appointments.", created_at=WHEN
    ),
    catalogue.CustomerDeleted(**_IDS, user_id=USER, gdpr_request_id=GDPR_REQUEST, deleted_at=WHEN),
    catalogue.AuditCustomerCreated(
        **_IDS,
        actor=catalogue.Actor(user_id=uuid.UUID("2e4a6c8e-0b1d-4f3a-9c5e-7a9b1d3f5e70"), roles=("service",)),
        client_ip="10.20.0.15",
        user_agent="bee_orders_service/1.4",
        user_id=USER,
    ),
    catalogue.AuditCustomerUpdated(
        **_WHO,
        **_IDS,
        fields_changed=["email", "phone"],
        changes={
            "email": catalogue.Change(old="ana.popescu@example.com", new="ana.p@example.com"),
            "phone": catalogue.Change(old="+40700000001", new=None),
        },
    ),
    catalogue.AuditCustomerTagged(**_WHO, **_IDS, tag_id=TAG, tag="VIP", color="#FF8800"),
    catalogue.AuditCustomerUntagged(**_WHO, **_IDS, tag_id=TAG, tag="VIP"),
    catalogue.AuditNoteAdded(**_WHO, **_IDS, note_id=NOTE, content="Prefers morning appointments."),
    catalogue.AuditNoteDeleted(**_WHO, **_IDS, note_id=NOTE),
    catalogue.AuditAvatarUpdated(**_WHO, **_IDS, old_avatar_url=OLD_AVATAR, new_avatar_url=AVATAR),
    catalogue.AuditAvatarRemoved(**_WHO, **_IDS, old_avatar_url=AVATAR),
    catalogue.AuditStatsRecomputed(**_WHO, **_IDS),
    catalogue.AuditCustomerExported(**_WHO, **_IDS, notes_included=True),
    # An erasure of the activity consumer or of a user deletion from bee_auth_service: no caller.
    catalogue.AuditCustomerErased(
        **_IDS, actor=None, client_ip=None, user_agent=None, user_id=USER, gdpr_request_id=GDPR_REQUEST
    ),
)


def event_id(key: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, key))


def published_body(event: catalogue.CustomerEvent) -> dict[str, Any]:
    """The example's body, as `outbox.enqueue_event` writes it, with fixed envelope ids."""
    body = outbox.build_event(event.name, business_id=event.business_id, fields=event.fields(), occurred_at=WHEN)
    # Replaced in place: the keys keep the order of a real body.
    body.update(event_id=event_id(event.name), trace_id="4bf92f3577b34da6a3ce929d0e0e4736", request_id="req-8c1e2f")
    return body


def published_message(body: dict[str, Any], *, app_id: str) -> aio_pika.Message:
    """The AMQP message the relay makes of a body (events/broker.py `build_message`)."""
    outgoing = OutgoingEvent(
        event_id=body["event_id"],
        name=body["event"],
        body=json.dumps(body).encode(),
        trace_id=body["trace_id"],
        request_id=body["request_id"],
        occurred_at=WHEN,
    )
    return build_message(outgoing, app_id=app_id)


_UPSTREAM: dict[str, Any] = {"user_id": str(USER), "business_id": str(BUSINESS), "occurred_at": "2026-03-12T09:30:00Z"}
_SNAPSHOT = {"full_name": "Ana Popescu", "email": "ana.popescu@example.com", "phone": "+40700000001"}
_APPOINTMENT = {"appointment_id": "apt-2026-000184", "starts_at": "2026-03-20T14:00:00Z"}
_AT = "2026-03-12T09:29:41Z"

CONSUMED: dict[str, dict[str, Any]] = {
    activity_contract.ORDER_COMPLETED: {
        **_UPSTREAM,
        "order_id": "ord-2026-004512",
        "total": "249.90",
        "currency": "RON",
        "completed_at": _AT,
        "customer": _SNAPSHOT,
    },
    activity_contract.ORDER_RETURNED: {**_UPSTREAM, "order_id": "ord-2026-004512", "amount": 49.9, "returned_at": _AT},
    activity_contract.ORDER_CANCELLED: {**_UPSTREAM, "order_id": "ord-2026-004513", "cancelled_at": _AT},
    activity_contract.APPOINTMENT_BOOKED: {**_UPSTREAM, **_APPOINTMENT, "booked_at": _AT, "customer": _SNAPSHOT},
    activity_contract.APPOINTMENT_COMPLETED: {**_UPSTREAM, **_APPOINTMENT, "completed_at": "2026-03-20T15:00:00Z"},
    activity_contract.APPOINTMENT_CANCELLED: {**_UPSTREAM, **_APPOINTMENT, "cancelled_at": _AT},
    activity_contract.APPOINTMENT_NO_SHOW: {**_UPSTREAM, **_APPOINTMENT, "no_show_at": "2026-03-20T14:30:00Z"},
    identity_contract.USER_UPDATED: {
        "user_id": str(USER),
        "occurred_at": "2026-03-12T09:15:00Z",
        "email": "ana.p@example.com",
        "full_name": "Ana Maria Popescu",
    },
    identity_contract.USER_DELETED: {"user_id": str(USER), "occurred_at": "2026-03-12T10:00:00Z"},
}


def consumed_body(routing_key: str) -> dict[str, Any]:
    """The consumed example with its event_id first, as producers put it."""
    return {"event_id": event_id(routing_key), **CONSUMED[routing_key]}
