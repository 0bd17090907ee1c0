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
- the published-event tables of docs/events.md are `render_markdown()` (tests/events/test_catalogue.py
  fails when they differ; regenerate with `python -m bee_customers_service.events.catalogue --write docs/events.md`);
- fields marked `PERSONAL` (`personal_fields()`) are personal data: never in the audit record, and
  what an erasure has to scrub.

The body of an event is flat: the envelope `outbox.build_event` adds (event, event_id, occurred_at,
business_id, trace_id, request_id), then `customer_id`, then the event's own fields in the order
they are declared here. A field whose value is `NOT_SENT` is left out of the body (`phone=None`
is sent as null; `phone=NOT_SENT` is not sent at all).
"""

import dataclasses
import enum
import sys
import types
import uuid
from collections.abc import Iterator
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Annotated, Any, ClassVar, Self, Union, cast, get_args, get_origin, get_type_hints

from prometheus_client import Counter
from pydantic import TypeAdapter

from bee_customers_service.core.metrics import CUSTOMERS_CREATED, NOTES_CREATED, TAGGED_CUSTOMERS


@dataclasses.dataclass(frozen=True, slots=True)
class Marker:
    """A mark on a field, in its `Annotated[...]` metadata."""

    name: str

    def __repr__(self) -> str:
        return self.name


PERSONAL = Marker("PERSONAL")
"""Personal data about the customer: never in the audit record, scrubbed by an erasure."""
AUDIT = Marker("AUDIT")
"""Goes into the audit record of the event (the audit log is a whitelist: unmarked fields never do)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Meaning:
    """What a field means, for the generated documentation: `Annotated[str, Meaning("...")]`."""

    text: str


class NotSent(enum.Enum):
    NOT_SENT = "NOT_SENT"

    def __repr__(self) -> str:
        return "NOT_SENT"


NOT_SENT = NotSent.NOT_SENT
"""The default of an optional field: the field is left out of the body (unlike None, sent as null)."""


@dataclasses.dataclass(frozen=True, slots=True)
class FieldSpec:
    """One field of an event as the catalogue describes it (for docs, audit, erasure, AsyncAPI)."""

    name: str
    type: Any  # the field's type without `Annotated` and without `NotSent`, e.g. `str | None`
    personal: bool = False
    audit: bool = False
    optional: bool = False  # may be absent from the body (its default is NOT_SENT)
    meaning: str = ""


# The envelope `outbox.build_event` puts on every event, ahead of the event's fields. Only
# `event_id` and `business_id` go to the audit record (with `customer_id`, a field of every event).
ENVELOPE: tuple[FieldSpec, ...] = (
    FieldSpec("event", str, meaning="the routing key, e.g. `v1.customer.created`"),
    FieldSpec("event_id", uuid.UUID, audit=True, meaning="unique per event: consumers deduplicate on it"),
    FieldSpec("occurred_at", datetime, meaning="when the change was made (UTC)"),
    FieldSpec("business_id", uuid.UUID, audit=True, meaning="the business the customer belongs to"),
    FieldSpec("trace_id", str, meaning="the request's `X-Trace-Id` (generated when absent)"),
    FieldSpec("request_id", str, meaning="the request's `X-Request-Id` (generated when absent)"),
)
ENVELOPE_AUDIT_FIELDS = ("event_id",)  # business_id is audited as a field of the event


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class CustomerEvent:
    """An event about one customer. Subclasses set `name` (the routing key) and declare their fields."""

    name: ClassVar[str]
    # The business counter a committed event of this kind moves (core/metrics.py), if any.
    counter: ClassVar[Counter | None] = None

    customer_id: Annotated[uuid.UUID, AUDIT, Meaning("the customer profile")]
    business_id: Annotated[uuid.UUID, AUDIT, Meaning("the business the customer belongs to")]

    @classmethod
    def field_specs(cls) -> tuple[FieldSpec, ...]:
        """The event's fields in body order (`customer_id` first; `business_id` is in the envelope)."""
        return _field_specs(cls)

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
        return (*ENVELOPE_AUDIT_FIELDS, "customer_id", "business_id", *_own_audit_fields(cls))

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
            spec.name: _adapter(spec.type).validate_python(body[spec.name])
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


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class CustomerAvatarUpdated(CustomerEvent):
    name = "v1.customer.avatar_updated"

    old_avatar_url: Annotated[str | None, AUDIT, Meaning("the avatar before (null: none)")]
    new_avatar_url: Annotated[str | None, AUDIT, Meaning("the avatar now (null: removed)")]
    updated_by: Annotated[uuid.UUID, AUDIT, Meaning("the user who made the change")]
    updated_at: Annotated[datetime, Meaning("when the profile was changed")]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class CustomerTagged(CustomerEvent):
    name = "v1.customer.tagged"
    counter = TAGGED_CUSTOMERS

    tag: Annotated[str, AUDIT, Meaning("the label, as written")]
    tag_id: Annotated[uuid.UUID, AUDIT]
    color: Annotated[str | None, Meaning("`#RRGGBB`, upper case")]
    created_by: Annotated[uuid.UUID, AUDIT, Meaning("the admin who added the tag")]
    created_at: Annotated[datetime, Meaning("when the tag was added")]


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class CustomerUntagged(CustomerEvent):
    name = "v1.customer.untagged"

    tag: Annotated[str, AUDIT, Meaning("the label, as written")]
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
CATALOGUE: dict[str, type[CustomerEvent]] = {event.name: event for event in EVENTS}
assert len(CATALOGUE) == len(EVENTS), "two events share a routing key"


# --- introspection -----------------------------------------------------------------------------


def _strip_not_sent(annotation: Any) -> tuple[Any, bool]:
    """`str | NotSent | None` -> (`str | None`, True); any other type -> (itself, False)."""
    if get_origin(annotation) not in (Union, types.UnionType):
        return annotation, False
    args = get_args(annotation)
    if NotSent not in args:
        return annotation, False
    rest = tuple(arg for arg in args if arg is not NotSent)
    stripped = rest[0]
    for arg in rest[1:]:
        stripped = stripped | arg
    return stripped, True


_SPECS: dict[type[CustomerEvent], tuple[FieldSpec, ...]] = {}


def _field_specs(cls: type[CustomerEvent]) -> tuple[FieldSpec, ...]:
    if cls not in _SPECS:
        _SPECS[cls] = _read_field_specs(cls)
    return _SPECS[cls]


def _read_field_specs(cls: type[CustomerEvent]) -> tuple[FieldSpec, ...]:
    hints = get_type_hints(cls, include_extras=True)
    specs = []
    for field in dataclasses.fields(cls):
        if field.name == "business_id":
            continue  # in the envelope
        annotation, metadata = hints[field.name], cast(tuple[Any, ...], ())
        if get_origin(annotation) is Annotated:
            annotation, *extras = get_args(annotation)
            metadata = tuple(extras)
        bare, optional = _strip_not_sent(annotation)
        if optional != (field.default is NOT_SENT):
            raise TypeError(f"{cls.__name__}.{field.name}: a NotSent field must default to NOT_SENT (and only it)")
        spec = FieldSpec(
            name=field.name,
            type=bare,
            personal=PERSONAL in metadata,
            audit=AUDIT in metadata,
            optional=optional,
            meaning=" ".join(m.text for m in metadata if isinstance(m, Meaning)),
        )
        if spec.personal and spec.audit:
            raise TypeError(f"{cls.__name__}.{field.name}: personal data cannot go into the audit record")
        specs.append(spec)
    return tuple(specs)


def _own_audit_fields(cls: type[CustomerEvent]) -> Iterator[str]:
    return (spec.name for spec in _field_specs(cls) if spec.audit and spec.name != "customer_id")


@cache
def _adapter(annotation: Any) -> TypeAdapter[Any]:
    return TypeAdapter(annotation)


# --- documentation -----------------------------------------------------------------------------

BEGIN_MARKER = "<!-- catalogue:begin -->"
END_MARKER = "<!-- catalogue:end -->"
REGENERATE = "python -m bee_customers_service.events.catalogue --write docs/events.md"

_JSON_TYPES: dict[Any, str] = {
    str: "string",
    uuid.UUID: "uuid",
    datetime: "date-time",
    type(None): "null",
    list[str]: "array of string",
}


def type_name(annotation: Any) -> str:
    """The JSON type of a field as the documentation names it (`string or null`, `uuid`, ...)."""
    if get_origin(annotation) in (Union, types.UnionType):
        return " or ".join(type_name(arg) for arg in get_args(annotation))
    try:
        return _JSON_TYPES[annotation]
    except KeyError:
        raise TypeError(f"no documented JSON type for {annotation!r}: add it to _JSON_TYPES") from None


def _table(specs: tuple[FieldSpec, ...]) -> list[str]:
    lines = ["| Field | Type | Personal | Audit record | Meaning |", "| --- | --- | --- | --- | --- |"]
    for spec in specs:
        kind = type_name(spec.type) + (", may be absent" if spec.optional else "")
        personal = "**yes**" if spec.personal else ""
        audit = "yes" if spec.audit else ""
        lines.append(f"| `{spec.name}` | {kind} | {personal} | {audit} | {spec.meaning} |")
    return lines


def render_markdown() -> str:
    """The generated part of docs/events.md, markers included (see REGENERATE)."""
    lines = [
        BEGIN_MARKER,
        f"<!-- Generated from bee_customers_service/events/catalogue.py: do not edit; run `{REGENERATE}`. -->",
        "",
        "### Every event: the envelope",
        "",
        "Every body is one flat JSON object: these fields, then `customer_id`, then the event's own.",
        "",
        *_table(ENVELOPE),
    ]
    for event in EVENTS:
        lines += ["", f"### `{event.name}`", "", *_table(event.field_specs())]
        if event.counter is not None:
            lines += ["", f"Once committed, it counts in `{next(iter(event.counter.describe())).name}_total`."]
    lines += ["", END_MARKER]
    return "\n".join(lines) + "\n"


def replace_generated_section(document: str) -> str:
    """The document with its generated section replaced by `render_markdown()`."""
    start, end = document.index(BEGIN_MARKER), document.index(END_MARKER) + len(END_MARKER)
    return document[:start] + render_markdown().rstrip("\n") + document[end:]


def generated_section(document: str) -> str:
    """The generated section of a document as it stands, markers included."""
    start, end = document.index(BEGIN_MARKER), document.index(END_MARKER) + len(END_MARKER)
    return document[start:end] + "\n"


def main(argv: list[str]) -> int:
    """`python -m bee_customers_service.events.catalogue` prints the section; `--write FILE` updates FILE."""
    if not argv:
        sys.stdout.write(render_markdown())
        return 0
    if len(argv) == 2 and argv[0] == "--write":
        path = Path(argv[1])
        path.write_text(replace_generated_section(path.read_text(encoding="utf-8")), encoding="utf-8")
        return 0
    sys.stderr.write(f"usage: {REGENERATE.rsplit(' --', 1)[0]} [--write docs/events.md]\n")
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
