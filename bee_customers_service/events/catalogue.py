"""The catalogue of the events this service publishes: one typed class per routing key.

    from bee_customers_service.events import catalogue, outbox
    event = catalogue.CustomerUntagged(customer_id=customer.id, business_id=customer.business_id,
                                       tag=tag.label, tag_id=tag.id, removed_by=actor.user_id)
    await outbox.enqueue_event(session, event)  # the outbox row, in the caller's transaction

Services build events only through these classes. Everything else that needs to know what an
event carries reads this module instead of keeping its own list:

- the audit whitelist (`committed.AUDIT_FIELDS`) is `audit_fields()` of each class (fields marked
  `AUDIT`, plus `event_id`), so a new field never reaches the audit log unless it is marked;
- the business counters moved by a committed event are the classes' `counter`;
- the published-event tables of docs/events.md are `render_markdown()`
  (tests/events/test_catalogue.py fails when they differ; regenerate with
  `python -m bee_customers_service.events.catalogue --write docs/events.md`);
- fields marked `PERSONAL` (`personal_fields()`) are personal data: never in the audit record, and
  what an erasure has to scrub;
- the audit records (`AuditRecord`, routing keys `v1.audit.customer.<action>`) are catalogue
  classes too: one per action on a customer, published to `BEE_AUDIT_EXCHANGE` for bee_log_service
  (`exchange_setting`), written with `events/audit.record` in the transaction of the change. Their
  personal fields (IP, User-Agent, old and new values, note text, labels, URLs) are marked like any
  event's; they print no stdout audit line (`committed.AUDIT_FIELDS` covers `EVENTS` only).

The building blocks (field marks, `FieldSpec`, the envelope, introspection) are in events/fields.py.

The body of an event is flat: the envelope `outbox.build_event` adds (event, event_id, occurred_at,
business_id, trace_id, request_id), then `customer_id`, then the event's own fields in the order
they are declared here. A field whose value is `NOT_SENT` is left out of the body (`phone=None`
is sent as null; `phone=NOT_SENT` is not sent at all).
"""

import dataclasses
import sys
import uuid
from datetime import datetime
from typing import Annotated, Any, ClassVar, Self

from prometheus_client import Counter

from bee_customers_service.core.context import client_ip_var, user_agent_var
from bee_customers_service.core.metrics import CUSTOMERS_CREATED, NOTES_CREATED, TAGGED_CUSTOMERS
from bee_customers_service.core.security import Principal
from bee_customers_service.core.types import sanitize_header_text
from bee_customers_service.events import catalogue_docs
from bee_customers_service.events.catalogue_docs import BEGIN_MARKER, END_MARKER, REGENERATE, generated_section
from bee_customers_service.events.fields import (
    AUDIT,
    ENVELOPE,
    ENVELOPE_AUDIT_FIELDS,
    NOT_SENT,
    PERSONAL,
    FieldSpec,
    Marker,
    Meaning,
    NotSent,
    adapter,
    field_specs_of,
    own_audit_fields,
)

__all__ = [
    "AUDIT",
    "BEGIN_MARKER",
    "END_MARKER",
    "ENVELOPE",
    "NOT_SENT",
    "PERSONAL",
    "REGENERATE",
    "FieldSpec",
    "Marker",
    "Meaning",
    "NotSent",
    "generated_section",
]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class CustomerEvent:
    """An event about one customer. Subclasses set `name` (the routing key) and declare their fields."""

    name: ClassVar[str]
    # The business counter a committed event of this kind moves (core/metrics.py), if any.
    counter: ClassVar[Counter | None] = None
    # The setting naming the exchange the relay publishes it to (core/config.py).
    exchange_setting: ClassVar[str] = "events_exchange"

    customer_id: Annotated[uuid.UUID, AUDIT, Meaning("the customer profile")]
    business_id: Annotated[uuid.UUID, AUDIT, Meaning("the business the customer belongs to")]

    @classmethod
    def field_specs(cls) -> tuple[FieldSpec, ...]:
        """The event's fields in body order (`customer_id` first; `business_id` is in the envelope)."""
        return field_specs_of(cls)

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """Every key the body can carry: the envelope's and the event's."""
        return (*(spec.name for spec in ENVELOPE), *(spec.name for spec in cls.field_specs()))

    @classmethod
    def personal_fields(cls) -> tuple[str, ...]:
        return tuple(spec.name for spec in cls.field_specs() if spec.personal)

    @classmethod
    def audit_fields(cls) -> tuple[str, ...]:
        """The keys of the body the audit record keeps: event_id, customer_id, business_id, then the event's."""
        return (*ENVELOPE_AUDIT_FIELDS, "customer_id", "business_id", *own_audit_fields(cls))

    def fields(self) -> dict[str, Any]:
        """The body's fields after the envelope (Python values; `build_event` makes them JSON)."""
        values: dict[str, Any] = {}
        for spec in self.field_specs():
            value = getattr(self, spec.name)
            if value is not NOT_SENT:
                values[spec.name] = value
        return values

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> Self:
        """The event back from a published body (the inverse of `build_event(..., fields=event.fields())`)."""
        if body.get("event") != cls.name:
            raise ValueError(f"a {body.get('event')!r} body is not a {cls.name}")
        values = {
            spec.name: adapter(spec.type).validate_python(body[spec.name])
            for spec in (*cls.field_specs(), _BUSINESS_ID)
            if spec.name in body
        }
        return cls(**values)


_BUSINESS_ID = FieldSpec("business_id", uuid.UUID)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class CustomerCreated(CustomerEvent):
    name = "v1.customer.created"
    counter = CUSTOMERS_CREATED

    user_id: Annotated[uuid.UUID, AUDIT, Meaning("the customer's user account")]
    full_name: Annotated[str, PERSONAL]
    email: Annotated[str, PERSONAL]
    created_at: Annotated[datetime, Meaning("when the profile was created")]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class CustomerUpdated(CustomerEvent):
    name = "v1.customer.updated"

    user_id: Annotated[uuid.UUID, Meaning("the customer's user account")]
    fields_changed: Annotated[list[str], AUDIT, Meaning("the names of the changed fields, sorted")]
    updated_by: Annotated[uuid.UUID, AUDIT, Meaning("the user who made the change")]
    updated_at: Annotated[datetime, Meaning("when the profile was changed")]
    email: Annotated[str | NotSent, PERSONAL, Meaning("the new email, only when it changed")] = NOT_SENT
    phone: Annotated[str | NotSent | None, PERSONAL, Meaning("the new phone (E.164), only when it changed")] = NOT_SENT
    source: Annotated[str | NotSent, Meaning("`auth`: mirrored from bee_auth_service (absent: an API call)")] = NOT_SENT


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class CustomerAvatarUpdated(CustomerEvent):
    name = "v1.customer.avatar_updated"

    old_avatar_url: Annotated[str | None, PERSONAL, Meaning("the avatar before (null: none)")]
    new_avatar_url: Annotated[str | None, PERSONAL, Meaning("the avatar now (null: removed)")]
    updated_by: Annotated[uuid.UUID, AUDIT, Meaning("the user who made the change")]
    updated_at: Annotated[datetime, Meaning("when the profile was changed")]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class CustomerTagged(CustomerEvent):
    name = "v1.customer.tagged"
    counter = TAGGED_CUSTOMERS

    # Free text an admin writes about a person ("diabetic", "prefers Mondays"): personal data.
    tag: Annotated[str, PERSONAL, Meaning("the label, as written")]
    tag_id: Annotated[uuid.UUID, AUDIT]
    color: Annotated[str | None, Meaning("`#RRGGBB`, upper case")]
    created_by: Annotated[uuid.UUID, AUDIT, Meaning("the admin who added the tag")]
    created_at: Annotated[datetime, Meaning("when the tag was added")]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class CustomerUntagged(CustomerEvent):
    name = "v1.customer.untagged"

    tag: Annotated[str, PERSONAL, Meaning("the label, as written")]
    tag_id: Annotated[uuid.UUID, AUDIT]
    removed_by: Annotated[uuid.UUID, AUDIT, Meaning("the admin who removed the tag")]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class CustomerNoteAdded(CustomerEvent):
    name = "v1.customer.note_added"
    counter = NOTES_CREATED

    note_id: Annotated[uuid.UUID, AUDIT]
    created_by: Annotated[uuid.UUID, AUDIT, Meaning("the admin who wrote the note")]
    note: Annotated[str, PERSONAL, Meaning("the note's text (spec 4.4: bee_log_service keeps the history)")]
    created_at: Annotated[datetime, Meaning("when the note was written")]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class CustomerDeleted(CustomerEvent):
    name = "v1.customer.deleted"

    user_id: Annotated[uuid.UUID, AUDIT, Meaning("the customer's user account")]
    gdpr_request_id: Annotated[uuid.UUID, AUDIT, Meaning("the erasure record (`gdpr_requests`)")]
    deleted_at: Annotated[datetime, Meaning("when the profile was erased")]


EVENTS: tuple[type[CustomerEvent], ...] = (
    CustomerCreated,
    CustomerUpdated,
    CustomerAvatarUpdated,
    CustomerTagged,
    CustomerUntagged,
    CustomerNoteAdded,
    CustomerDeleted,
)


# --- audit records (spec 5.3): every action, for bee_log_service, on BEE_AUDIT_EXCHANGE -----------

AUDIT_PREFIX = "v1.audit."  # every audit record's routing key starts so (the relay orders per prefix)


@dataclasses.dataclass(frozen=True, slots=True)
class Actor:
    """Who acted, as the verified token says."""

    user_id: uuid.UUID
    roles: tuple[str, ...]

    @classmethod
    def of(cls, principal: Principal | None) -> "Actor | None":
        return None if principal is None else cls(user_id=principal.user_id, roles=tuple(sorted(principal.roles)))


@dataclasses.dataclass(frozen=True, slots=True)
class Change:
    """One changed field of a profile: its value before and after."""

    old: Any
    new: Any


def _client_ip() -> str | None:
    return client_ip_var.get()


def _user_agent() -> str | None:
    # The client's raw text: cleaned where it is recorded (no NUL, controls, surrogates).
    return sanitize_header_text(user_agent_var.get())


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class AuditRecord(CustomerEvent):
    """One action on a customer, written in the transaction of the change (`events/audit.py`).

    `client_ip` and `user_agent` default to the current request's (core/context.py).
    """

    exchange_setting = "audit_exchange"

    actor: Annotated[Actor | None, Meaning("who acted (null: this service on its own, e.g. the activity consumer)")]
    client_ip: Annotated[str | None, PERSONAL, Meaning("the caller's address")] = dataclasses.field(
        default_factory=_client_ip
    )
    user_agent: Annotated[str | None, PERSONAL, Meaning("the caller's User-Agent, sanitised")] = dataclasses.field(
        default_factory=_user_agent
    )


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class AuditCustomerCreated(AuditRecord):
    name = "v1.audit.customer.created"

    user_id: Annotated[uuid.UUID, Meaning("the customer's user account")]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class AuditCustomerUpdated(AuditRecord):
    name = "v1.audit.customer.updated"

    fields_changed: Annotated[list[str], Meaning("the names of the changed fields, sorted")]
    changes: Annotated[dict[str, Change], PERSONAL, Meaning("per changed field, its `old` and `new` value")]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class AuditCustomerTagged(AuditRecord):
    name = "v1.audit.customer.tagged"

    tag_id: Annotated[uuid.UUID, Meaning("the tag")]
    # Free text an admin writes about a person ("diabetic", "late payer"): personal data.
    tag: Annotated[str, PERSONAL, Meaning("the label, as written")]
    color: Annotated[str | None, Meaning("`#RRGGBB`, upper case")]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class AuditCustomerUntagged(AuditRecord):
    name = "v1.audit.customer.untagged"

    tag_id: Annotated[uuid.UUID, Meaning("the tag")]
    tag: Annotated[str, PERSONAL, Meaning("the label, as written")]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class AuditNoteAdded(AuditRecord):
    name = "v1.audit.customer.note_added"

    note_id: Annotated[uuid.UUID, Meaning("the note")]
    content: Annotated[str, PERSONAL, Meaning("the note's text")]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class AuditNoteDeleted(AuditRecord):
    name = "v1.audit.customer.note_deleted"

    note_id: Annotated[uuid.UUID, Meaning("the note")]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class AuditAvatarUpdated(AuditRecord):
    name = "v1.audit.customer.avatar_updated"

    old_avatar_url: Annotated[str | None, PERSONAL, Meaning("the avatar before (null: none)")]
    new_avatar_url: Annotated[str, PERSONAL, Meaning("the avatar now")]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class AuditAvatarRemoved(AuditRecord):
    name = "v1.audit.customer.avatar_removed"

    old_avatar_url: Annotated[str | None, PERSONAL, Meaning("the avatar removed")]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class AuditStatsRecomputed(AuditRecord):
    name = "v1.audit.customer.stats_recomputed"


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class AuditCustomerExported(AuditRecord):
    name = "v1.audit.customer.exported"

    notes_included: Annotated[bool, Meaning("whether the document carried the internal notes")]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class AuditCustomerErased(AuditRecord):
    name = "v1.audit.customer.erased"

    user_id: Annotated[uuid.UUID, Meaning("the customer's user account")]
    gdpr_request_id: Annotated[uuid.UUID, Meaning("the erasure record (`gdpr_requests`)")]


AUDIT_RECORDS: tuple[type[AuditRecord], ...] = (
    AuditCustomerCreated,
    AuditCustomerUpdated,
    AuditCustomerTagged,
    AuditCustomerUntagged,
    AuditNoteAdded,
    AuditNoteDeleted,
    AuditAvatarUpdated,
    AuditAvatarRemoved,
    AuditStatsRecomputed,
    AuditCustomerExported,
    AuditCustomerErased,
)
CATALOGUE: dict[str, type[CustomerEvent]] = {event.name: event for event in (*EVENTS, *AUDIT_RECORDS)}
assert len(CATALOGUE) == len(EVENTS) + len(AUDIT_RECORDS), "two events share a routing key"
assert all(cls.name.startswith(AUDIT_PREFIX) == issubclass(cls, AuditRecord) for cls in CATALOGUE.values())


def exchange_setting_of(event_name: str) -> str:
    """The setting naming the exchange of an outbox row's event (by its prefix outside the catalogue)."""
    cls = CATALOGUE.get(event_name)
    if cls is not None:
        return cls.exchange_setting
    return AuditRecord.exchange_setting if event_name.startswith(AUDIT_PREFIX) else CustomerEvent.exchange_setting


# --- documentation (events/catalogue_docs.py) ------------------------------------------------------

_DOCUMENTED_TYPES = {Actor: "object `{user_id, roles}`", dict[str, Change]: "object: field name -> `{old, new}`"}


def render_markdown() -> str:
    """The generated part of docs/events.md, markers included (see REGENERATE)."""
    return catalogue_docs.render_markdown(EVENTS, AUDIT_RECORDS, AuditRecord, _DOCUMENTED_TYPES)


def main(argv: list[str]) -> int:
    """`python -m bee_customers_service.events.catalogue` prints the section; `--write FILE` updates FILE."""
    return catalogue_docs.main(argv, render_markdown())


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
