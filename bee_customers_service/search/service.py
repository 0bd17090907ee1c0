"""Admin search over a business's customers: decode the cursor, run the page query, the total and the facets."""

import hashlib
import uuid
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from bee_customers_service.core.config import Settings
from bee_customers_service.core.pagination import CursorCodec
from bee_customers_service.customers.schemas import view_context
from bee_customers_service.search import repository
from bee_customers_service.search.repository import SORT_TYPES, SearchFilters, interpret_query
from bee_customers_service.search.schemas import (
    FacetCount,
    Facets,
    SearchCriteria,
    SearchItem,
    SearchPage,
    SearchParams,
)

# Everything but paging: a cursor is only valid for the search (and ordering) that handed it out.
# `facets` and `include_total` only add numbers: a dashboard that toggles them keeps its cursor.
_PAGING_FIELDS = {"cursor", "limit", "include_total", "facets"}


async def forget_stale_short_words(session: AsyncSession, business_ids: list[uuid.UUID]) -> None:
    """After an erasure: no short word of an erased name (from before a rename) stays in the typo table."""
    await repository.forget_stale_short_words(session, business_ids)


def _scope(params: SearchParams) -> str:
    criteria = params.model_dump(mode="json", exclude=_PAGING_FIELDS)
    criteria["order"] = params.direction
    digest = hashlib.sha256(orjson.dumps(criteria, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]
    return f"search:v1:{digest}"


def filters_from(params: SearchCriteria) -> SearchFilters:
    return SearchFilters(
        business_id=params.business_id,
        query=interpret_query(params.query) if params.query else None,
        tags=params.tag,
        tag_mode=params.tag_mode,
        gender=params.gender,
        created_after=params.created_after,
        created_before=params.created_before,
        last_order_after=params.last_order_after,
        last_order_before=params.last_order_before,
        min_orders=params.min_orders,
        min_lifetime_value=params.min_lifetime_value,
    )


async def search_customers(session: AsyncSession, *, params: SearchParams, settings: Settings) -> SearchPage:
    """One page of a business's customers matching `params` (the caller is already authorised)."""
    filters = filters_from(params)
    scope = _scope(params)
    types: tuple[Any, ...] = (SORT_TYPES[params.sort], uuid.UUID)
    if filters.query is not None:
        types = (int, *types)  # relevance first
    cursors = CursorCodec.from_settings(settings)
    after = cursors.decode(params.cursor, scope=scope, types=types)

    rows = await repository.search_page(
        session, filters, sort=params.sort, direction=params.direction, after=after, limit=params.limit + 1
    )

    def key(row: Any) -> tuple[Any, ...]:
        base = (row.sort_key, row.id)
        return (row.rank, *base) if filters.query is not None else base

    page_rows, next_cursor = cursors.page_of(rows, params.limit, key=key, scope=scope)
    summary = await repository.summarise(session, filters, total=params.include_total, facets=params.facet_names)
    context = view_context(settings)
    facets = None
    if params.facet_names:
        facets = Facets.model_validate(
            {name: [FacetCount(value=value, count=n) for value, n in counts] for name, counts in summary.facets.items()}
        )
    return SearchPage(
        items=[SearchItem.model_validate(row._mapping, context=context) for row in page_rows],
        next_cursor=next_cursor,
        total=summary.total,
        total_is_estimate=summary.total_is_estimate,
        facets=facets,
        facets_are_estimates=summary.facets_are_estimates,
    )
