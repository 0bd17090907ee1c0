"""Request and response shapes of the admin search: GET /customers?business_id=..."""

import uuid
from datetime import date
from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from bee_customers_service.core.pagination import DEFAULT_LIMIT, MAX_LIMIT
from bee_customers_service.core.schemas import InputModel, Money, OutputModel
from bee_customers_service.core.types import NonNegativeInt4, NonNegativeMoneyInput, SafeDatetime, SafeStr
from bee_customers_service.customers.schemas import Gender, ShowsAvatar
from bee_customers_service.tags.schemas import Label

SortField = Literal["created_at", "full_name", "last_order_date", "lifetime_value"]
# Each sort's natural direction when `order` is not given: newest, A-Z, most recent order, biggest spender.
DEFAULT_ORDER: dict[str, str] = {
    "created_at": "desc",
    "full_name": "asc",
    "last_order_date": "desc",
    "lifetime_value": "desc",
}


# A timestamp without an offset is read as UTC; one beyond PostgreSQL's range under its offset is a 422.
Timestamp = SafeDatetime
SearchText = Annotated[SafeStr, StringConstraints(min_length=1, max_length=100)]


class SearchCriteria(InputModel):
    """The search's filters (no paging, no sort): shared by the search and the export."""

    business_id: uuid.UUID
    query: SearchText | None = Field(
        default=None,
        description='Full name (case/accent-insensitive, typo-tolerant), email fragment or phone digits ("0712 345").',
    )
    tag: list[Label] = Field(default_factory=list, max_length=20, description="Repeatable tag label.")
    tag_mode: Literal["all", "any"] = Field(default="all", description="`all` tags, or `any` of them.")
    gender: Gender | None = None
    created_after: Timestamp | None = Field(default=None, description="created_at >= this (inclusive)")
    created_before: Timestamp | None = Field(default=None, description="created_at < this (exclusive)")
    last_order_after: date | None = Field(default=None, description="last_order_date >= this (inclusive)")
    last_order_before: date | None = Field(default=None, description="last_order_date < this (exclusive)")
    min_orders: NonNegativeInt4 | None = None  # total_orders is int4: a wider bound overflows the comparison
    min_lifetime_value: NonNegativeMoneyInput | None = None


class SearchParams(SearchCriteria):
    """Query parameters; unknown parameters are refused (422) so a typo never silently widens a search."""

    sort: SortField = "created_at"
    order: Literal["asc", "desc"] | None = Field(default=None, description="Default depends on `sort`.")
    limit: int = Field(default=DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)
    cursor: SafeStr | None = None
    include_total: bool = Field(default=False, description="Add `total`, an exact count of the matches.")

    @property
    def direction(self) -> str:
        return self.order or DEFAULT_ORDER[self.sort]


class SearchItem(ShowsAvatar):
    """What an admin list view shows per customer, without a second call."""

    id: uuid.UUID
    full_name: str
    email: str
    phone: str | None
    avatar_url: str | None
    tags: list[str]
    total_orders: int
    lifetime_value: Money
    last_order_date: date | None


class SearchPage(OutputModel):
    items: list[SearchItem]
    next_cursor: str | None = None
    total: int | None = Field(default=None, description="Only with include_total=true.")


ExportFormat = Literal["csv", "ndjson"]


class ExportParams(SearchCriteria):
    """GET /customers/export: the search's filters and the file format; always in (created_at, id) order."""

    format: ExportFormat = Field(default="csv", description="`csv` (RFC 4180, a header row) or `ndjson`.")
