"""The filters and the keyset cursor as WHERE conditions, and the (key, id) order."""

from typing import Any

from sqlalchemy import ColumnElement, UnaryExpression, and_, exists, false, func, or_, tuple_

from bee_customers_service.customers.models import Customer
from bee_customers_service.search.repository.filters import FILTERS, Column, SearchFilters, distinct_tags
from bee_customers_service.search.repository.params import Params
from bee_customers_service.tags.models import CustomerTag


def where(filters: SearchFilters, params: Params) -> list[ColumnElement[bool]]:
    """The business and the optional filters (tags as EXISTS probes of the customer's tags)."""
    business = params.bind("business_id")
    conditions: list[ColumnElement[bool]] = [Customer.business_id == business]
    for field, column, compare in FILTERS:
        if getattr(filters, field) is not None:
            conditions.append(compare(column, params.bind(field)))
    if filters.tags:
        keys = [func.lower(func.btrim(params.bind(f"tag_{n}"))) for n in range(len(distinct_tags(filters)))]

        def has(*wanted: ColumnElement[Any]) -> ColumnElement[bool]:
            return exists().where(
                CustomerTag.customer_id == Customer.id,
                CustomerTag.business_id == business,
                CustomerTag.label_key.in_(wanted) if len(wanted) > 1 else CustomerTag.label_key == wanted[0],
            )

        conditions.append(and_(*(has(key) for key in keys)) if filters.tag_mode == "all" else has(*keys))
    return conditions


def cursor_condition(
    params: Params, key: Column, direction: str, rank: ColumnElement[int] | int | None = None
) -> ColumnElement[bool] | None:
    """Rows after the request's cursor in (rank desc, key, id <direction>) order; None when every row is.

    `rank` is None when the order has no rank (no query); an int for rows of one tier, compared with
    the cursor's rank here, so that the statement holds only the (key, id) range an index serves.
    """
    if "after_id" not in params:
        return None
    beyond = _beyond(params, key, direction)
    if rank is None:
        return beyond
    if isinstance(rank, int):
        after_rank = params.value("after_rank")
        return None if after_rank > rank else beyond if after_rank == rank else false()
    last_rank = params.bind("after_rank")
    return or_(rank < last_rank, and_(rank == last_rank, beyond))


def _beyond(params: Params, key: Column, direction: str) -> ColumnElement[bool]:
    """Rows strictly after the cursor's (key, id) in (key, id) <direction> order: an index range."""
    after = tuple_(params.bind("after_key"), params.bind("after_id"))
    if direction == "asc":
        return tuple_(key, Customer.id) > after
    return tuple_(key, Customer.id) < after


def order_by(key: Column, id_: Column, direction: str) -> list[UnaryExpression[Any]]:
    return [key.desc(), id_.desc()] if direction == "desc" else [key.asc(), id_.asc()]
