"""The search query over `customers`: one statement per page, every part served by an index.

Plans (checked with EXPLAIN ANALYZE at 1,000,000 customers in one business; bench/README.md):
- no query: an index range scan of (business_id, <sort key>, id), backwards for descending orders,
  starting at the cursor; filters are checked on the way and LIMIT stops the scan.
- query: bitmap scans of the GIN trigram indexes (search_name / email / phone_digits) ORed
  together (or, for a small business, its rows through the business_id index), then the filters,
  a relevance tier per row (exact name, name prefix, word prefix, substring, email, typo), and a
  top-N sort. The cost grows with the number of matches: a very common surname in a business of
  a million ranks tens of thousands of rows (see bench/README.md).
- tag filter: EXISTS probes of the unique (customer_id, label_key) index per candidate row, or a
  semi-join from (business_id, label_key, customer_id) when the tag is rare; the planner picks.
"""

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Integer,
    Select,
    and_,
    case,
    cast,
    exists,
    func,
    literal,
    literal_column,
    or_,
    select,
    text,
    tuple_,
)
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncSession

from bee_customers_service.customers.models import Customer
from bee_customers_service.tags.models import CustomerTag

# A customer who never ordered sorts as if their last order were on 1900-01-01 (last when newest
# first): the same expression as the index ix_customers_business_last_order_id, so the index serves it.
NO_ORDER_DATE = date(1900, 1, 1)
_last_order_key = func.coalesce(Customer.last_order_date, literal_column("DATE '1900-01-01'"))

SORT_KEYS: dict[str, ColumnElement[Any]] = {
    "created_at": Customer.created_at,
    "full_name": Customer.search_name,
    "last_order_date": _last_order_key,
    "lifetime_value": Customer.lifetime_value,
}
SORT_TYPES: dict[str, type] = {
    "created_at": datetime,
    "full_name": str,
    "last_order_date": date,
    "lifetime_value": Decimal,
}

_PHONE_LIKE = re.compile(r"^[0-9+()./\- ]+$")
_WORDS = re.compile(r"^[^\W\d_]+(?:[ '\-]+[^\W\d_]+)*$")  # letters, with spaces/hyphens/apostrophes between
MIN_TRIGRAM_QUERY = 3
TYPO_TIER = 300
WORD_SIMILARITY_THRESHOLD = 0.5  # pg_trgm's default 0.6 misses a dropped letter in a 7-letter name
_SESSION_SETTINGS = text(
    "SELECT set_config('plan_cache_mode', 'force_custom_plan', true),"
    f" set_config('pg_trgm.word_similarity_threshold', '{WORD_SIMILARITY_THRESHOLD}', true)"
)  # shorter fragments hold no trigram: substring match only, no typo tolerance


@dataclass(frozen=True)
class TextQuery:
    """What the `query` parameter means, decided once (see `interpret_query`)."""

    raw: str
    phone_digits: str | None = None  # set when the query is a phone fragment


def interpret_query(raw: str) -> TextQuery:
    """A phone fragment ("0712 345", "+40712345678") searches digits; anything else, name and email.

    National trunk prefixes are dropped so every spelling meets the stored E.164 digits:
    "0712 345" -> "712345", "0040712..." -> "40712...", "+40712..." -> "40712...".
    """
    text_ = raw.strip()
    digits = re.sub(r"\D", "", text_)
    if _PHONE_LIKE.match(text_) and len(digits) >= MIN_TRIGRAM_QUERY:
        if not text_.startswith("+"):
            if digits.startswith("00"):
                digits = digits[2:]
            elif digits.startswith("0"):
                digits = digits[1:]
        return TextQuery(raw=text_, phone_digits=digits or None)
    return TextQuery(raw=text_)


def _like_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


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


def _tiers(query: TextQuery) -> list[tuple[int, ColumnElement[bool]]]:
    """The relevance tiers of a query, best first: (rank, condition). A row belongs to the first
    tier whose condition it meets; within a tier rows follow the requested sort."""
    if query.phone_digits is not None:
        digits = query.phone_digits
        return [
            (1000, Customer.phone_digits.like(f"%{digits}")),  # the number ends with it
            (900, Customer.phone_digits.like(f"%{digits}%")),
        ]

    escaped = _like_escape(query.raw)
    email_prefix = func.lower(literal(escaped)) + literal("%")
    email_pattern = literal("%") + func.lower(literal(escaped)) + literal("%")
    if "@" in query.raw:  # only an email has an "@": do not look at names at all
        return [(1000, Customer.email.like(email_prefix)), (900, Customer.email.like(email_pattern))]

    normalised = func.bee_search_normalise(literal(query.raw))
    normalised_escaped = func.bee_search_normalise(literal(escaped))
    name = Customer.search_name
    tiers: list[tuple[int, ColumnElement[bool]]] = [
        (1000, name == normalised),
        (900, name.like(normalised_escaped + literal("%"))),
        (800, name.like(literal("% ") + normalised_escaped + literal("%"))),
        (700, name.like(literal("%") + normalised_escaped + literal("%"))),
    ]
    if " " not in query.raw:
        tiers += [(650, Customer.email.like(email_prefix)), (500, Customer.email.like(email_pattern))]
    # Typo tolerance is for words ("popscu" finds "Popescu"); a fragment with digits or dots is an
    # email or a code, where "almost" matches are noise (and expensive to collect).
    if len(query.raw) >= MIN_TRIGRAM_QUERY and _WORDS.match(query.raw) is not None:
        # word_similarity(query, name) >= pg_trgm.word_similarity_threshold.
        tiers.append((TYPO_TIER, normalised.op("<%", is_comparison=True)(name)))
    return tiers


def _match(query: TextQuery) -> ColumnElement[bool]:
    """Rows in any tier, written with as few index scans as possible: the substring conditions
    already contain the equal / prefix / word-prefix ones (which only rank)."""
    tiers = dict((rank, condition) for rank, condition in reversed(_tiers(query)))
    if query.phone_digits is not None or "@" in query.raw:
        return tiers[900]
    wanted = [tiers[700]] + [tiers[rank] for rank in (500, TYPO_TIER) if rank in tiers]
    return or_(*wanted)


def _rank(query: TextQuery) -> ColumnElement[int]:
    """The first tier a row meets; typo-tolerant matches rank by how similar they are (0..300)."""
    tiers = _tiers(query)
    if tiers[-1][0] == TYPO_TIER:
        *exact, _ = tiers
        similarity = func.word_similarity(func.bee_search_normalise(literal(query.raw)), Customer.search_name)
        fallback: ColumnElement[Any] = cast(func.round(similarity * TYPO_TIER), Integer)
    else:
        exact, fallback = tiers, literal(0)
    return case(*((condition, rank) for rank, condition in exact), else_=fallback)


def _where(filters: SearchFilters) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = [Customer.business_id == filters.business_id]
    if filters.gender is not None:
        where.append(Customer.gender == filters.gender)
    if filters.created_after is not None:
        where.append(Customer.created_at >= filters.created_after)
    if filters.created_before is not None:
        where.append(Customer.created_at < filters.created_before)
    if filters.last_order_after is not None:
        where.append(Customer.last_order_date >= filters.last_order_after)
    if filters.last_order_before is not None:
        where.append(Customer.last_order_date < filters.last_order_before)
    if filters.min_orders is not None:
        where.append(Customer.total_orders >= filters.min_orders)
    if filters.min_lifetime_value is not None:
        where.append(Customer.lifetime_value >= filters.min_lifetime_value)
    if filters.tags:
        keys = [func.lower(func.btrim(literal(tag))) for tag in dict.fromkeys(filters.tags)]

        def has(*wanted: ColumnElement[Any]) -> ColumnElement[bool]:
            return exists().where(
                CustomerTag.customer_id == Customer.id,
                CustomerTag.business_id == filters.business_id,
                CustomerTag.label_key.in_(wanted) if len(wanted) > 1 else CustomerTag.label_key == wanted[0],
            )

        where.append(and_(*(has(key) for key in keys)) if filters.tag_mode == "all" else has(*keys))
    return where


def _beyond(key: ColumnElement[Any], direction: str, key_value: Any, id_value: Any) -> ColumnElement[bool]:
    """Rows strictly after (key_value, id_value) in (key, id) <direction> order: an index range."""
    if direction == "asc":
        return tuple_(key, Customer.id) > tuple_(key_value, id_value)
    return tuple_(key, Customer.id) < tuple_(key_value, id_value)


def _by(key: ColumnElement[Any], id_: ColumnElement[Any], direction: str) -> list[Any]:
    return [key.desc(), id_.desc()] if direction == "desc" else [key.asc(), id_.asc()]


_COLUMNS = (
    Customer.id,
    Customer.full_name,
    Customer.email,
    Customer.phone,
    Customer.avatar_url,
    Customer.total_orders,
    Customer.lifetime_value,
    Customer.last_order_date,
)


def _page_statement(
    filters: SearchFilters, *, sort: str, direction: str, after: Sequence[Any] | None, limit: int
) -> Select[Any]:
    key = SORT_KEYS[sort]
    where = _where(filters)
    if filters.query is None:
        if after is not None:
            where.append(_beyond(key, direction, after[0], after[1]))
        page = (
            select(*_COLUMNS, key.label("sort_key"))
            .where(*where)
            .order_by(*_by(key, Customer.id, direction))
            .limit(limit)
            .subquery("page")
        )
    else:
        # Relevance first: every match of the business is ranked (integer tiers, see `_tiers`) and
        # a top-N sort keeps one page. The cursor (rank, key, id) resumes inside its tier.
        rank = _rank(filters.query)
        where.append(_match(filters.query))
        if after is not None:
            last_rank, key_value, id_value = after
            where.append(or_(rank < last_rank, and_(rank == last_rank, _beyond(key, direction, key_value, id_value))))
        page = (
            select(*_COLUMNS, key.label("sort_key"), rank.label("rank"))
            .where(*where)
            .order_by(rank.desc(), *_by(key, Customer.id, direction))
            .limit(limit)
            .subquery("page")
        )

    # Tags are gathered for the page's rows only (outside the LIMIT), one index probe each.
    tags = (
        select(
            func.coalesce(
                func.array_agg(aggregate_order_by(CustomerTag.label, CustomerTag.created_at, CustomerTag.id)),
                literal_column("'{}'::varchar[]"),
            )
        )
        .where(CustomerTag.customer_id == page.c.id)
        .scalar_subquery()
    )
    order = _by(page.c.sort_key, page.c.id, direction)
    if filters.query is not None:
        order.insert(0, page.c.rank.desc())
    return select(page, tags.label("tags")).order_by(*order).limit(limit)


async def search_page(
    session: AsyncSession, filters: SearchFilters, *, sort: str, direction: str, after: Sequence[Any] | None, limit: int
) -> Sequence[Row[Any]]:
    if filters.query is not None:
        # For this transaction only: plan each search for its own values (a generic plan cannot see
        # which trigrams a pattern holds), and accept one typo in a short word ("popscu" -> "Popescu").
        await session.execute(_SESSION_SETTINGS)
    statement = _page_statement(filters, sort=sort, direction=direction, after=after, limit=limit)
    return (await session.execute(statement)).all()


async def count(session: AsyncSession, filters: SearchFilters) -> int:
    if filters.query is not None:
        await session.execute(_SESSION_SETTINGS)
    where = _where(filters)
    if filters.query is not None:
        where.append(_match(filters.query))
    statement = select(func.count()).select_from(Customer).where(*where)
    return (await session.execute(statement)).scalar_one()


def explain_statement(
    filters: SearchFilters, *, sort: str, direction: str, after: Sequence[Any] | None, limit: int
) -> Select[Any]:
    """The statement `search_page` runs (for EXPLAIN in bench/search.py)."""
    return _page_statement(filters, sort=sort, direction=direction, after=after, limit=limit)


__all__ = ["NO_ORDER_DATE", "SORT_TYPES", "SearchFilters", "count", "interpret_query", "search_page"]
