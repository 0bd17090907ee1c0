"""Payload schemas for docs/asyncapi.yaml: JSON Schema (draft-07, as AsyncAPI's Schema Object takes it).

A published event's schema is read from the catalogue (events/catalogue.py): the envelope, then
its fields in body order, each field's JSON Schema made by pydantic from the field's type (the
same types `outbox.build_event` serialises), personal fields marked `x-personal`. A consumed
event's schema is its contract model's (`model_json_schema`). Both have their `$defs` moved to
`components/schemas`, so no reference points into a `$defs` that is not there.
"""

import copy
from typing import Any

from pydantic import BaseModel

from bee_customers_service.events.catalogue import CustomerEvent
from bee_customers_service.events.fields import ENVELOPE, adapter
from bee_customers_service.gdpr.redaction import REDACTED

REF_TEMPLATE = "#/components/schemas/{model}"
NULL = {"type": "null"}
# Keys whose value maps names to schemas (not schema keywords): their keys are left alone.
_NAMED_SCHEMAS = ("properties", "patternProperties", "$defs", "definitions")


class Components:
    """The shared `components/schemas`: every `$defs` entry met, once (two different ones may not share a name)."""

    def __init__(self) -> None:
        self.schemas: dict[str, Any] = {}

    def add(self, name: str, schema: dict[str, Any]) -> None:
        if name in self.schemas and self.schemas[name] != schema:
            raise ValueError(f"two different schemas are named {name!r}")
        self.schemas[name] = schema

    def adopt(self, schema: dict[str, Any]) -> dict[str, Any]:
        """`schema` without its `$defs` (moved here) and without pydantic's generated titles."""
        schema = _without_titles(copy.deepcopy(schema))
        for name, definition in schema.pop("$defs", {}).items():
            self.add(name, definition)
        return schema


def _without_titles(schema: Any) -> Any:
    """Pydantic's `title`s ("Event Id") say nothing the property name does not; a property named `title` stays."""
    if isinstance(schema, list):
        return [_without_titles(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    cleaned: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "title" and isinstance(value, str):
            continue
        if key in _NAMED_SCHEMAS and isinstance(value, dict):
            cleaned[key] = {name: _without_titles(item) for name, item in value.items()}
        else:
            cleaned[key] = _without_titles(value)
    return cleaned


def type_schema(annotation: Any, components: Components) -> dict[str, Any]:
    """The JSON Schema of a field's values as they are on the wire (pydantic's serialisation)."""
    schema = adapter(annotation).json_schema(mode="serialization", ref_template=REF_TEMPLATE)
    return components.adopt(schema)


def allows_null(schema: dict[str, Any]) -> bool:
    return schema.get("type") == "null" or NULL in schema.get("anyOf", [])


def published_schema(event: type[CustomerEvent], components: Components) -> dict[str, Any]:
    """The body of a catalogue event: exactly the envelope and its fields (`redacted` after an erasure).

    An erasure (gdpr/redaction.py) sets the personal fields a pending body carries to null and adds
    `"redacted": true`; so a personal field may be null only in a body that says it is redacted.
    """
    properties: dict[str, Any] = {}
    required: list[str] = []
    strict: dict[str, Any] = {}
    for spec in (*ENVELOPE, *event.field_specs()):
        schema = type_schema(spec.type, components)
        if spec.name == "event":
            schema["const"] = event.name
        meaning = spec.meaning
        if spec.personal and not allows_null(schema):
            strict[spec.name] = {"not": NULL}
            schema = {"anyOf": [schema, NULL]}
            meaning = f"{meaning}; null only in a redacted body" if meaning else "null only in a redacted body"
        if meaning:
            schema["description"] = meaning
        if spec.personal:
            schema["x-personal"] = True
        properties[spec.name] = schema
        if not spec.optional:
            required.append(spec.name)
    properties[REDACTED] = {
        "const": True,
        "description": "present only when an erasure redacted the body before it was published",
    }
    result: dict[str, Any] = {
        "type": "object",
        "description": f"The JSON body of `{event.name}`: the envelope, `customer_id`, then the event's own fields.",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }
    if strict:
        result["if"] = {"required": [REDACTED]}
        result["else"] = {"properties": strict}
    return result


def consumed_schema(model: type[BaseModel], components: Components) -> dict[str, Any]:
    """A contract model's schema as it validates input (unknown fields allowed: they are ignored)."""
    schema = model.model_json_schema(mode="validation", ref_template=REF_TEMPLATE)
    return components.adopt(schema)
