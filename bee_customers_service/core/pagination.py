"""Keyset (cursor) pagination shared by every list endpoint: `?limit=&cursor=` -> `{items, next_cursor}`.

A cursor is the sort key of the last row a page returned, as compact JSON, behind an HMAC-SHA256
tag (truncated to 16 bytes), in URL-safe base64. The tag covers the key AND a `scope` naming the
list and the ordering the cursor belongs to, with a key derived from `BEE_CURSOR_SECRET`: a client
can hand back only a cursor this service gave out for this very list. Clients treat it as opaque.
A cursor that does not decode, was altered, is unsigned or signed with another key, belongs to
another list or ordering, or carries values of the wrong type is a 422 (`InvalidCursor`), never a
500, and its values never reach SQL.

Usage (see notes/ and search/service.py)::

    cursors = CursorCodec.from_settings(settings)
    after = cursors.decode(cursor, scope="notes", types=(datetime, uuid.UUID))   # None on page 1
    rows = await repository.page(..., after=after, limit=limit + 1)            # one extra row
    items, next_cursor = cursors.page_of(rows, limit, key=lambda n: (n.created_at, n.id), scope="notes")
"""

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

import orjson
from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic_core import to_jsonable_python

from bee_customers_service.core.config import Settings
from bee_customers_service.core.errors import InvalidInput

T = TypeVar("T")
Item = TypeVar("Item")

DEFAULT_LIMIT = 20
MAX_LIMIT = 100
MAX_CURSOR_LENGTH = 2048
TAG_BYTES = 16  # 128 bits of HMAC-SHA256: unforgeable, and a cursor stays short
# Domain separation: the key that signs cursors is not the configured secret itself.
_KEY_LABEL = b"bee_customers_service/cursor/v1"
_BASE64URL = re.compile(r"[A-Za-z0-9_-]*")


class InvalidCursor(InvalidInput):
    type_slug, title = "invalid-cursor", "Invalid cursor"

    def __init__(self) -> None:
        super().__init__("cursor", "is not a cursor this list handed out; start again without it", location="query")


class Page(BaseModel, Generic[T]):
    """One page of a list and the cursor of the next one (null on the last page)."""

    items: list[T]
    next_cursor: str | None = None


_adapters: dict[tuple[Any, ...], TypeAdapter[Any]] = {}


def _adapter(types: Sequence[Any]) -> TypeAdapter[Any]:
    key = tuple(types)
    if key not in _adapters:
        _adapters[key] = TypeAdapter(tuple[key])  # type: ignore[valid-type]  # tuple[(a, b)] is tuple[a, b]
    return _adapters[key]


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


class CursorCodec:
    """Signs and verifies cursors with one server key (`CursorCodec.from_settings(settings)`)."""

    __slots__ = ("_key",)

    def __init__(self, secret: str | bytes) -> None:
        raw = secret.encode() if isinstance(secret, str) else secret
        if not raw:
            raise ValueError("a cursor secret must not be empty")
        self._key = hmac.new(raw, _KEY_LABEL, hashlib.sha256).digest()

    @classmethod
    def from_settings(cls, settings: Settings) -> "CursorCodec":
        return cls(settings.cursor_secret.get_secret_value())

    def _tag(self, scope: str, body: bytes) -> bytes:
        scope_bytes = scope.encode()
        message = len(scope_bytes).to_bytes(4, "big") + scope_bytes + body  # unambiguous (scope, body)
        return hmac.new(self._key, message, hashlib.sha256).digest()[:TAG_BYTES]

    def encode(self, values: Sequence[Any], *, scope: str) -> str:
        """An opaque cursor for `values` (the sort key of the last row) within `scope`."""
        body = orjson.dumps(to_jsonable_python(list(values)))
        return _b64(self._tag(scope, body) + body)

    def decode(self, cursor: str | None, *, scope: str, types: Sequence[Any]) -> tuple[Any, ...] | None:
        """The sort key a cursor carries, typed as `types`; None for no cursor; InvalidCursor if bad."""
        if cursor is None or cursor == "":
            return None
        if len(cursor) > MAX_CURSOR_LENGTH or not _BASE64URL.fullmatch(cursor):
            raise InvalidCursor()
        try:
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        except (binascii.Error, ValueError) as exc:
            raise InvalidCursor() from exc
        if _b64(raw) != cursor:  # non-canonical spelling of the same bytes: not what we handed out
            raise InvalidCursor()
        tag, body = raw[:TAG_BYTES], raw[TAG_BYTES:]
        if len(tag) != TAG_BYTES or not hmac.compare_digest(tag, self._tag(scope, body)):
            raise InvalidCursor()  # altered, unsigned, another key's, or another list's / ordering's
        # Signed by us, yet still checked: a cursor from an older release may carry other types.
        try:
            values = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise InvalidCursor() from exc
        if not isinstance(values, list):
            raise InvalidCursor()
        try:
            return tuple(_adapter(types).validate_python(tuple(values)))
        except ValidationError as exc:
            raise InvalidCursor() from exc

    def page_of(
        self, rows: Sequence[Item], limit: int, *, key: Callable[[Item], Sequence[Any]], scope: str
    ) -> tuple[list[Item], str | None]:
        """Split a fetch of `limit + 1` rows into the page and the next cursor (None when no more)."""
        items = list(rows[:limit])
        if len(rows) <= limit or not items:
            return items, None
        return items, self.encode(key(items[-1]), scope=scope)
