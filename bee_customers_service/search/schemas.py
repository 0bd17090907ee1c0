"""Request and response shapes of the admin search: GET /customers?business_id=..."""

import uuid
from datetime import date
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, StringConstraints, WithJsonSchema

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

FacetName = Literal["tags", "segment"]
FACET_NAMES: tuple[FacetName, ...] = ("tags", "segment")
MatchedField = Literal["name", "email", "phone", "tag"]


def _facet_list(value: str) -> str:
    names = [name.strip() for name in value.split(",")]
    for name in names:
        if name not in FACET_NAMES:
            raise ValueError(f"unknown facet {name!r}: a comma-separated list of {', '.join(FACET_NAMES)}")
    if len(set(names)) != len(names):
        raise ValueError("a facet is listed twice")
    return ",".join(names)


# `?facets=tags,segment`: one comma-separated value (the pattern documents the accepted lists).
FacetList = Annotated[
    str,
    AfterValidator(_facet_list),
    WithJsonSchema({"type": "string", "pattern": "^(tags|segment|tags,segment|segment,tags)$"}),
]


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
    min_lifetime_value: NonNegativeMoneyInput | None = Field(
        default=None,
        description="lifetime_value >= this, in the customer's one currency: a customer who paid in several"
        " currencies (lifetime_value null) never matches.",
    )


class SearchParams(SearchCriteria):
    """Query parameters; unknown parameters are refused (422) so a typo never silently widens a search."""

    sort: SortField = "created_at"
    order: Literal["asc", "desc"] | None = Field(default=None, description="Default depends on `sort`.")
    limit: int = Field(default=DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)
    cursor: SafeStr | None = None
    # Off by default: at 1,000,000 customers the capped count costs more than the page for name
    # queries and tag filters (bench/README.md), so a dashboard asks for it on the first page only.
    include_total: bool = Field(
        default=False,
        description="Count the matches (`total`): exact up to 10,000, then the planner's estimate "
        "(`total_is_estimate`). Ask on the first page: a cursor stays valid either way.",
    )
    facets: FacetList | None = Field(
        default=None,
        description="`tags`, `segment` or both (comma-separated): the 20 commonest values among all the matches.",
    )

    @property
    def direction(self) -> str:
        return self.order or DEFAULT_ORDER[self.sort]

    @property
    def facet_names(self) -> tuple[FacetName, ...]:
        return tuple(name for name in FACET_NAMES if self.facets is not None and name in self.facets.split(","))


class SearchItem(ShowsAvatar):
    """What an admin list view shows per customer, without a second call."""

    id: uuid.UUID
    full_name: str
    email: str
    phone: str | None
    avatar_url: str | None
    tags: list[str]
    total_orders: int
    lifetime_value: Money | None  # null: paid in several currencies (GET .../stats lists each)
    lifetime_value_currency: str | None
    last_order_date: date | None
    matched_on: list[MatchedField] = Field(
        default_factory=list,
        description="The fields the query text matched (in the order name, email, phone, tag); [] without a query.",
    )


class FacetCount(OutputModel):
    value: str
    count: int


class Facets(OutputModel):
    """Per facet asked for, its commonest values among all the matches (count desc, then value)."""

    tags: list[FacetCount] | None = Field(default=None, description="Per tag label (as written).")
    segment: list[FacetCount] | None = Field(default=None, description="Per RFM segment.")


class SearchPage(OutputModel):
    items: list[SearchItem]
    next_cursor: str | None = None
    total: int | None = Field(default=None, description="The matches (null unless include_total=true).")
    total_is_estimate: bool = Field(
        default=False, description="`total` is the planner's estimate (more than 10,000 matches), not a count."
    )
    facets: Facets | None = Field(default=None, description="Only with `facets`.")
    facets_are_estimates: bool = Field(
        default=False, description="The facet counts are scaled from a sample (more than 10,000 matches)."
    )


ExportFormat = Literal["csv", "ndjson"]


class ExportParams(SearchCriteria):
    """GET /customers/export: the search's filters and the file format; always in (created_at, id) order."""

    format: ExportFormat = Field(default="csv", description="`csv` (RFC 4180, a header row) or `ndjson`.")
