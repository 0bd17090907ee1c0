"""Response helpers: fast JSON from Pydantic models, ETags and a strict `If-Match` parser."""

import re

from pydantic import BaseModel
from starlette.responses import Response

from bee_customers_service.core.errors import DomainError

MAX_IF_MATCH_LENGTH = 1024
MAX_VERSION = 2**31 - 1  # customers.version is a PostgreSQL INTEGER

# RFC 9110 8.8.3: entity-tag = [ "W/" ] DQUOTE *etagc DQUOTE, etagc = %x21 / %x23-7E / obs-text
# (%x80-FF); If-Match = "*" / #entity-tag, list members separated by commas with optional
# whitespace (OWS: space, tab) and empty members allowed but not counted (RFC 9110 5.6.1).
_ENTITY_TAG = r'(?:W/)?"[\x21\x23-\x7e\x80-\xff]*"'
_IF_MATCH_LIST = re.compile(rf"[ \t,]*{_ENTITY_TAG}(?:[ \t]*,[ \t,]*{_ENTITY_TAG})*[ \t,]*")
_ENTITY_TAG_VALUE = re.compile(r"(?:W/)?\"([\x21\x23-\x7e\x80-\xff]*)\"")


class MalformedHeader(DomainError):
    """A 400: a request header that does not follow its grammar (not merely an unknown value)."""

    type_slug, title = "malformed-header", "Malformed header"


def json_response(model: BaseModel, *, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    """Serialise with Pydantic's Rust core in one step (no intermediate dict, no second encoder)."""
    return Response(
        content=model.model_dump_json(),
        status_code=status_code,
        headers=headers,
        media_type="application/json",
    )


def etag(version: int) -> str:
    return f'"{version}"'


def parse_if_match(header: str | None) -> frozenset[int] | None:
    """The versions an `If-Match` header accepts; None when absent or `*` (any current version).

    Parsed strictly (RFC 9110 13.1.1): `*`, or a comma-separated list of entity tags `"..."` /
    `W/"..."`; anything else (`3`, `"3`, `W/3`, `,`, control characters, over 1 KiB) is a 400
    `MalformedHeader`. Weak validators (`W/"3"`) are accepted as well as strong ones; well-formed
    entity tags that are not ours match nothing, so a PATCH carrying only those is refused with 412.
    """
    if header is None:
        return None
    if len(header) > MAX_IF_MATCH_LENGTH:
        raise MalformedHeader(f"If-Match is longer than {MAX_IF_MATCH_LENGTH} characters.")
    value = header.strip(" \t")
    if value == "*":
        return None
    if not _IF_MATCH_LIST.fullmatch(value):
        raise MalformedHeader('If-Match must be * or a comma-separated list of entity tags such as "3" or W/"3".')
    versions: set[int] = set()
    for opaque in _ENTITY_TAG_VALUE.findall(value):
        # Ours are `etag(version)`: canonical decimals of an INTEGER column. Any other tag matches nothing.
        canonical = opaque.isascii() and opaque.isdigit() and (opaque == "0" or not opaque.startswith("0"))
        if canonical and (version := int(opaque)) <= MAX_VERSION:
            versions.add(version)
    return frozenset(versions)
