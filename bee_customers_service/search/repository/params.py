"""The request's values as named bind parameters `in_<name>`: one registry for statements and their values."""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import BindParameter, Integer, Text, bindparam
from sqlalchemy.types import TypeEngine

from bee_customers_service.customers.models import Customer
from bee_customers_service.search.repository.filters import FILTERS, Column, SearchFilters, distinct_tags
from bee_customers_service.search.repository.query import like_escape, parts

# Types built once: `request_params` runs for every statement of every request.
_TEXT, _INTEGER = Text(), Integer()
_UUID = Customer.id.type
_PHONE = Customer.phone_digits.type
_FILTER_TYPES = tuple((field, column.type) for field, column, _compare in FILTERS)


@dataclass(frozen=True)
class Params:
    """Every value of one request that a statement may hold, with its SQL type, by name.

    The statements of a name/email query are built once per shape and run again with later requests'
    values (`_cached`): a request value enters a statement only as `bind(name)`, and a cached statement
    is run with `values(...)` of its bind names, both read from here, so the two cannot drift.
    """

    entries: dict[str, tuple[Any, TypeEngine[Any]]]

    def __contains__(self, name: object) -> bool:
        return name in self.entries

    def bind(self, name: str) -> BindParameter[Any]:
        value, type_ = self.entries[name]
        return bindparam(f"in_{name}", value, type_=type_)

    def value(self, name: str) -> Any:
        return self.entries[name][0]

    def values(self, bind_names: Iterable[str]) -> dict[str, Any]:
        """{in_<name>: value} for these bind names (KeyError rather than a stale value)."""
        return {bind_name: self.entries[bind_name.removeprefix("in_")][0] for bind_name in bind_names}


def request_params(
    filters: SearchFilters, *, key: Column | None = None, after: Sequence[Any] | None = None, limit: int | None = None
) -> Params:
    """The parameters of a request: its filters and query, the cursor (rank, key, id) or (key, id), the limit."""
    entries: dict[str, tuple[Any, TypeEngine[Any]]] = {"business_id": (filters.business_id, _UUID)}
    for field, type_ in _FILTER_TYPES:
        if (value := getattr(filters, field)) is not None:
            entries[field] = (value, type_)
    if filters.tags:
        entries.update((f"tag_{n}", (tag, _TEXT)) for n, tag in enumerate(distinct_tags(filters)))
    if (query := filters.query) is not None:
        words = parts(query)
        entries["q"] = (query.raw, _TEXT)
        entries["q_escaped"] = (like_escape(query.raw), _TEXT)
        entries.update((f"part_{n}", (like_escape(part), _TEXT)) for n, part in enumerate(words))
        entries.update((f"word_{n}", (part, _TEXT)) for n, part in enumerate(words[:2]))
        if (digits := query.phone_digits) is not None:
            entries["phone_ends"] = (f"%{digits}", _PHONE)
            entries["phone_contains"] = (f"%{digits}%", _PHONE)
    if limit is not None:
        entries["limit"] = (limit, _INTEGER)
    if after is not None:
        *rank, key_value, id_value = after
        if rank:
            entries["after_rank"] = (rank[0], _INTEGER)
        assert key is not None, "a cursor is compared with a sort key"
        entries["after_key"] = (key_value, key.type)
        entries["after_id"] = (id_value, _UUID)
    return Params(entries)
