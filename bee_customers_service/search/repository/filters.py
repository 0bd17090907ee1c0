"""The search's filters and sort keys (the data; `conditions` turns them into SQL)."""

import operator
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, TypeAlias

from pydantic import AwareDatetime
from sqlalchemy import ColumnElement, func, literal_column
from sqlalchemy.orm import InstrumentedAttribute

from bee_customers_service.customers.models import Customer
from bee_customers_service.search.repository.query import TextQuery

# A column of the model or an expression over columns: what SQLAlchemy's stubs accept in both places.
Column: TypeAlias = ColumnElement[Any] | InstrumentedAttribute[Any]

# A customer who never ordered sorts as if their last order were on 1900-01-01 (last when newest
# first): the same expression as the index ix_customers_business_last_order_id, so the index serves it.
NO_ORDER_DATE = date(1900, 1, 1)
_last_order_key = func.coalesce(Customer.last_order_date, literal_column("DATE '1900-01-01'"))

# Money per currency: a customer who paid in several currencies has no single lifetime value (NULL);
# they sort as -1, after every single-currency value when biggest first (ix_customers_business_lifetime_value_id).
_lifetime_value_key = func.coalesce(Customer.lifetime_value, literal_column("-1"))

SORT_KEYS: dict[str, Column] = {
    "created_at": Customer.created_at,
    "full_name": Customer.search_name,
    "last_order_date": _last_order_key,
    "lifetime_value": _lifetime_value_key,
}
SORT_TYPES: dict[str, type] = {
    "created_at": AwareDatetime,  # a cursor carrying a naive time is refused (422), never sent to SQL
    "full_name": str,
    "last_order_date": date,
    "lifetime_value": Decimal,
}


@dataclass
class SearchFilters:
    business_id: uuid.UUID
    query: TextQuery | None = None
    tags: Sequence[str] = ()
    tag_mode: str = "all"
    gender: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    last_order_after: date | None = None
    last_order_before: date | None = None
    min_orders: int | None = None
    min_lifetime_value: Decimal | None = None


# The optional filters: (field of SearchFilters, column, comparison). A value is the parameter in_<field>.
FILTERS: tuple[tuple[str, InstrumentedAttribute[Any], Callable[[Any, Any], ColumnElement[bool]]], ...] = (
    ("gender", Customer.gender, operator.eq),
    ("created_after", Customer.created_at, operator.ge),
    ("created_before", Customer.created_at, operator.lt),
    ("last_order_after", Customer.last_order_date, operator.ge),
    ("last_order_before", Customer.last_order_date, operator.lt),
    ("min_orders", Customer.total_orders, operator.ge),
    ("min_lifetime_value", Customer.lifetime_value, operator.ge),
)


def distinct_tags(filters: SearchFilters) -> list[str]:
    return list(dict.fromkeys(filters.tags))


def filters_shape(filters: SearchFilters) -> tuple[Any, ...]:
    """What of the filters decides how a statement is built (not their values)."""
    present = tuple(getattr(filters, field) is not None for field, _column, _compare in FILTERS)
    return (present, len(distinct_tags(filters)), filters.tag_mode if filters.tags else None)
