"""Keyset (cursor) pagination shared by every list endpoint: `?limit=&cursor=` -> `{items, next_cursor}`.

A cursor is the sort key of the last row a page returned, plus a `scope` naming the list and the
ordering it belongs to, as compact JSON in URL-safe base64. Clients treat it as opaque. A cursor
that does not decode, belongs to another list or ordering, or carries values of the wrong type is
a 422 (`InvalidCursor`), never a 500.

Usage (see notes/ and customers/search.py)::

    after = decode_cursor(cursor, scope="notes", types=(datetime, uuid.UUID))   # None on page 1
    rows = await repository.page(..., after=after, limit=limit + 1)           # one extra row
    items, next_cursor = page_of(rows, limit, key=lambda n: (n.created_at, n.id), scope="notes")
"""

import base64
import binascii
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

import orjson
from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic_core import to_jsonable_python

from bee_customers_service.core.errors import InvalidInput

T = TypeVar("T")
Item = TypeVar("Item")

DEFAULT_LIMIT = 20
MAX_LIMIT = 100
MAX_CURSOR_LENGTH = 2048


class InvalidCursor(InvalidInput):
    type_slug, title = "invalid-cursor", "Invalid cursor"

    def __init__(self) -> None:
        super().__init__("cursor", "is not a cursor this list handed out; start again without it", location="query")


class Page(BaseModel, Generic[T]):
    """One page of a list and the cursor of the next one (null on the last page)."""

    items: list[T]
    next_cursor: str | None = None


def encode_cursor(values: Sequence[Any], *, scope: str) -> str:
    """An opaque cursor for `values` (the sort key of the last row) within `scope`."""
    raw = orjson.dumps({"s": scope, "k": to_jsonable_python(list(values))})
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


_adapters: dict[tuple[Any, ...], TypeAdapter[Any]] = {}


def _adapter(types: Sequence[Any]) -> TypeAdapter[Any]:
    key = tuple(types)
    if key not in _adapters:
        _adapters[key] = TypeAdapter(tuple[key])  # tuple[(a, b)] is tuple[a, b]
    return _adapters[key]


def decode_cursor(cursor: str | None, *, scope: str, types: Sequence[Any]) -> tuple[Any, ...] | None:
    """The sort key a cursor carries, typed as `types`; None for no cursor; InvalidCursor if bad."""
    if cursor is None or cursor == "":
        return None
    if len(cursor) > MAX_CURSOR_LENGTH:
        raise InvalidCursor()
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        data = orjson.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (UnicodeEncodeError, binascii.Error, ValueError, orjson.JSONDecodeError) as exc:
        raise InvalidCursor() from exc
    if not isinstance(data, dict) or data.get("s") != scope or not isinstance(data.get("k"), list):
        raise InvalidCursor()
    try:
        return tuple(_adapter(types).validate_python(tuple(data["k"])))
    except ValidationError as exc:
        raise InvalidCursor() from exc


def page_of(
    rows: Sequence[Item], limit: int, *, key: Callable[[Item], Sequence[Any]], scope: str
) -> tuple[list[Item], str | None]:
    """Split a fetch of `limit + 1` rows into the page and the next cursor (None when no more)."""
    items = list(rows[:limit])
    if len(rows) <= limit or not items:
        return items, None
    return items, encode_cursor(key(items[-1]), scope=scope)
