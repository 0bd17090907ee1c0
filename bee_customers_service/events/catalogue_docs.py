"""The generated part of docs/events.md: the catalogue's events and audit records as tables.

`python -m bee_customers_service.events.catalogue --write docs/events.md` regenerates it
(tests/events/test_catalogue.py fails when the document differs). The catalogue passes its
classes in (`catalogue.render_markdown`), so this module does not import it.
"""

import sys
import types
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Union, get_args, get_origin

from bee_customers_service.events.fields import ENVELOPE, FieldSpec

BEGIN_MARKER = "<!-- catalogue:begin -->"
END_MARKER = "<!-- catalogue:end -->"
REGENERATE = "python -m bee_customers_service.events.catalogue --write docs/events.md"

_JSON_TYPES: dict[Any, str] = {
    str: "string",
    uuid.UUID: "uuid",
    datetime: "date-time",
    type(None): "null",
    list[str]: "array of string",
    bool: "boolean",
}


def type_name(annotation: Any, more_types: Mapping[Any, str] | None = None) -> str:
    """The JSON type of a field as the documentation names it (`string or null`, `uuid`, ...)."""
    if get_origin(annotation) in (Union, types.UnionType):
        return " or ".join(type_name(arg, more_types) for arg in get_args(annotation))
    try:
        return {**_JSON_TYPES, **(more_types or {})}[annotation]
    except KeyError:
        raise TypeError(f"no documented JSON type for {annotation!r}: add it to _JSON_TYPES") from None


def _table(specs: tuple[FieldSpec, ...], more_types: Mapping[Any, str] | None = None) -> list[str]:
    lines = ["| Field | Type | Personal | Audit record | Meaning |", "| --- | --- | --- | --- | --- |"]
    for spec in specs:
        kind = type_name(spec.type, more_types) + (", may be absent" if spec.optional else "")
        personal = "**yes**" if spec.personal else ""
        audit = "yes" if spec.audit else ""
        lines.append(f"| `{spec.name}` | {kind} | {personal} | {audit} | {spec.meaning} |")
    return lines


def render_markdown(
    events: Sequence[type[Any]],
    records: Sequence[type[Any]],
    record_base: type[Any],
    more_types: Mapping[Any, str],
) -> str:
    """The generated part of docs/events.md, markers included (see REGENERATE): the `events`, then
    the audit `records` (the fields of `record_base` once, then each record's own)."""
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
    for event in events:
        lines += ["", f"### `{event.name}`", "", *_table(event.field_specs())]
        if event.counter is not None:
            lines += ["", f"Once committed, it counts in `{next(iter(event.counter.describe())).name}_total`."]
    lines += [
        "",
        "### Audit records (`BEE_AUDIT_EXCHANGE`)",
        "",
        "Every audit record carries the envelope, then these fields, then its own (below):",
        "",
        *_table(record_base.field_specs(), more_types),
    ]
    common = len(record_base.field_specs())
    for record in records:
        own = record.field_specs()[common:]
        lines += ["", f"### `{record.name}`", ""]
        lines += _table(own, more_types) if own else ["No fields of its own."]
    lines += ["", END_MARKER]
    return "\n".join(lines) + "\n"


def replace_generated_section(document: str, rendered: str) -> str:
    """The document with its generated section replaced by `rendered` (`render_markdown(...)`)."""
    start, end = document.index(BEGIN_MARKER), document.index(END_MARKER) + len(END_MARKER)
    return document[:start] + rendered.rstrip("\n") + document[end:]


def generated_section(document: str) -> str:
    """The generated section of a document as it stands, markers included."""
    start, end = document.index(BEGIN_MARKER), document.index(END_MARKER) + len(END_MARKER)
    return document[start:end] + "\n"


def main(argv: list[str], rendered: str) -> int:
    """`python -m bee_customers_service.events.catalogue` prints the section; `--write FILE` updates FILE."""
    if not argv:
        sys.stdout.write(rendered)
        return 0
    if len(argv) == 2 and argv[0] == "--write":
        path = Path(argv[1])
        path.write_text(replace_generated_section(path.read_text(encoding="utf-8"), rendered), encoding="utf-8")
        return 0
    sys.stderr.write(f"usage: {REGENERATE.rsplit(' --', 1)[0]} [--write docs/events.md]\n")
    return 2
