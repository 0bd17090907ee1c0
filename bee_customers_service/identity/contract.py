"""The consumed contract: user events from bee_auth_service (`BEE_AUTH_EXCHANGE`, docs/events.md).

`v1.user.updated` carries only the account fields that changed (`email`, `phone`, `full_name`);
`v1.user.deleted` only who and when. A message is parsed straight from its bytes into a
`UserChange`; anything that does not parse is a `Rejected` with a human-readable reason, which
the consumer parks in the dead-letter queue.
"""

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from bee_customers_service.core.types import SafeDatetime
from bee_customers_service.customers.schemas import Email, FullName, PhoneInput

USER_UPDATED = "v1.user.updated"
USER_DELETED = "v1.user.deleted"
KEYS = (USER_UPDATED, USER_DELETED)

# Fields auth may send as null: a phone can be removed; an email or a name cannot.
_NULLABLE = {"phone"}


class UserDeleted(BaseModel):
    # bee_auth_service adds fields over time: unknown fields are ignored, never fatal.
    model_config = ConfigDict(extra="ignore")

    event_id: uuid.UUID
    user_id: uuid.UUID
    occurred_at: SafeDatetime  # naive read as UTC; out of range refused


class UserUpdated(UserDeleted):
    email: Email | None = None
    phone: PhoneInput | None = None
    full_name: FullName | None = None


MODELS: dict[str, type[UserDeleted]] = {USER_UPDATED: UserUpdated, USER_DELETED: UserDeleted}


@dataclass(frozen=True, slots=True)
class UserChange:
    """One auth event, normalised: the account fields that changed (none for a deletion)."""

    event_id: uuid.UUID
    user_id: uuid.UUID
    occurred_at: datetime
    deleted: bool = False
    changes: dict[str, Any] = field(default_factory=dict)  # email, phone (raw: normalised later), full_name


@dataclass(frozen=True, slots=True)
class Rejected:
    """A message that can never be applied, and why (goes to the dead-letter queue)."""

    reason: str


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


def parse(routing_key: str, body: bytes) -> UserChange | Rejected:
    """Parse one message; never raises."""
    model = MODELS.get(routing_key)
    if model is None:
        return Rejected(f"unsupported routing key {routing_key!r}")
    try:
        event = model.model_validate_json(body)
    except ValidationError as exc:
        return Rejected(_describe(exc))
    if not isinstance(event, UserUpdated):
        return UserChange(event.event_id, event.user_id, event.occurred_at, deleted=True)
    sent = event.model_fields_set & {"email", "phone", "full_name"}
    nulls = sorted(name for name in sent - _NULLABLE if getattr(event, name) is None)
    if nulls:
        return Rejected("invalid payload: " + "; ".join(f"{name}: cannot be null" for name in nulls))
    changes = {name: getattr(event, name) for name in sorted(sent)}
    return UserChange(event.event_id, event.user_id, event.occurred_at, changes=changes)
