"""The building blocks of the event catalogue (events/catalogue.py): field marks, field specs, the
envelope, and the introspection that reads an event class's `Annotated` fields.

Kept apart from the catalogue so that the catalogue holds the events and records themselves.
"""

import dataclasses
import enum
import types
import uuid
from collections.abc import Iterator
from datetime import datetime
from functools import cache
from typing import Annotated, Any, Union, cast, get_args, get_origin, get_type_hints

from pydantic import TypeAdapter


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


_SPECS: dict[type[Any], tuple[FieldSpec, ...]] = {}


def field_specs_of(cls: type[Any]) -> tuple[FieldSpec, ...]:
    if cls not in _SPECS:
        _SPECS[cls] = _read_field_specs(cls)
    return _SPECS[cls]


def _read_field_specs(cls: type[Any]) -> tuple[FieldSpec, ...]:
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


def own_audit_fields(cls: type[Any]) -> Iterator[str]:
    return (spec.name for spec in field_specs_of(cls) if spec.audit and spec.name != "customer_id")


@cache
def adapter(annotation: Any) -> TypeAdapter[Any]:
    return TypeAdapter(annotation)
