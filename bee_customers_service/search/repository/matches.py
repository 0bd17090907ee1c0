"""`matched_on`: which fields of a page row the query text matched (name, email, phone, tag), for highlighting.

Computed in the page's own statement, for the page's rows only (after its LIMIT): a few comparisons
and one probe of the row's tags each.
"""

from typing import Any

from sqlalchemy import ColumnElement, case, exists, func, literal, literal_column, null
from sqlalchemy.dialects.postgresql import array

from bee_customers_service.search.repository.filters import Column
from bee_customers_service.search.repository.params import Params
from bee_customers_service.search.repository.query import TextQuery, typo_tolerant
from bee_customers_service.tags.models import CustomerTag

NO_MATCH: ColumnElement[Any] = literal_column("'{}'::text[]")


def matched_on(
    params: Params, *, customer_id: Column, search_name: Column, email: Column, phone_digits: Column
) -> ColumnElement[Any]:
    """text[] of the matched fields in the order name, email, phone, tag ('{}' without a query)."""
    if "q" not in params:
        return NO_MATCH
    normalised = func.bee_search_normalise(params.bind("q"))
    contained = literal("%") + func.bee_search_normalise(params.bind("q_escaped")) + literal("%")
    # Every name tier (equal, prefix, word prefix) is a substring; an almost-match is the typo condition.
    name: ColumnElement[bool] = search_name.like(contained)
    if typo_tolerant(TextQuery(raw=params.value("q"))):
        name = name | normalised.op("<%", is_comparison=True)(search_name)
    email_ = email.like(literal("%") + func.lower(params.bind("q_escaped")) + literal("%"))
    # A tag matches when the whole query is one of its labels, case, accents and spaces aside.
    tag = exists().where(
        CustomerTag.customer_id == customer_id,
        func.bee_search_normalise(func.btrim(CustomerTag.label)) == func.btrim(normalised),
    )
    fields: list[tuple[str, ColumnElement[bool]]] = [("name", name), ("email", email_)]
    if "phone_contains" in params:
        fields.append(("phone", phone_digits.like(params.bind("phone_contains"))))
    fields.append(("tag", tag))
    found = array([case((condition, literal_column(f"'{field}'")), else_=None) for field, condition in fields])
    return func.array_remove(found, null())
