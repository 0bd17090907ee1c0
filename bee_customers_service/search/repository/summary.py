"""The dashboard's numbers over the whole match set: `total` and the facets (per tag label, per RFM segment).

Exact while the matches are at most EXACT_LIMIT: one statement reads at most EXACT_LIMIT + 1 matches
(a count over a LIMIT, so a million matches cost what 10,001 do) and, only when there were not more,
groups those same rows by tag and by segment. Beyond, the total is the planner's row estimate of the
same filter (EXPLAIN), and the facets are counted in a page sample of the table (TABLESAMPLE SYSTEM,
REPEATABLE so a refresh shows the same numbers) and scaled to that total.
"""

from typing import Any

from sqlalchemy import (
    ColumnElement,
    CompoundSelect,
    Executable,
    FromClause,
    Select,
    and_,
    func,
    literal,
    literal_column,
    or_,
    select,
    tablesample,
    true,
    union_all,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import ClauseElement
from sqlalchemy.sql.util import ClauseAdapter

from bee_customers_service.customers.models import Customer
from bee_customers_service.search.repository.conditions import where
from bee_customers_service.search.repository.filters import SearchFilters
from bee_customers_service.search.repository.params import Params
from bee_customers_service.search.repository.phases import match, phases, starts_with
from bee_customers_service.search.repository.query import one_word, phased
from bee_customers_service.search.repository.typos import (
    LAST_WORD_INDEXED,
    NAME_SLOTS,
    WORD_SIMILARITY_THRESHOLD,
    similar_pairs,
    similar_words,
)
from bee_customers_service.tags.models import CustomerTag

EXACT_LIMIT = 10_000
TOP_VALUES = 20
# The sample aims at this many matching rows, and reads at most this share of the table's rows.
SAMPLE_MATCHES = 2_000
SAMPLE_MAX_ROWS = 40_000
TOTAL, TABLE_ROWS = "#total", "#table_rows"  # not facet names: rows of the summary's answer


class Explain(Executable, ClauseElement):
    """EXPLAIN (FORMAT JSON) of a statement, with its bind parameters (planned for their values)."""

    inherit_cache = False

    def __init__(self, statement: Select[Any] | CompoundSelect[*tuple[Any, ...]]) -> None:
        self.statement = statement


@compiles(Explain, "postgresql")
def _explain(element: Explain, compiler: Any, **kw: Any) -> str:
    return "EXPLAIN (FORMAT JSON) " + compiler.process(element.statement, **kw)


def matching(filters: SearchFilters, params: Params) -> list[ColumnElement[bool]]:
    """The filters and the query (any tier) as one condition list: for the sample, read row by row."""
    conditions = where(filters, params)
    if filters.query is not None:
        conditions.append(match(filters.query, params))
    return conditions


def branches(filters: SearchFilters, params: Params, *, with_rows: bool = True) -> list[Select[*tuple[Any, ...]]]:
    """The matches as disjoint selects of (id, rfm_segment), each one index path: the page's phases'
    branches (OFFSET 0: planned alone, as in `phase_statement`), so no count walks the whole business."""
    base = where(filters, params)
    # Only a count (no facets): no column to read, so an index-only scan can serve it.
    columns = (
        (Customer.id, Customer.rfm_segment) if with_rows else (literal(1).label("id"), literal(1).label("rfm_segment"))
    )
    query = filters.query
    if query is None or not phased(query):
        return [select(*columns).where(*matching(filters, params))]
    found: list[Select[*tuple[Any, ...]]] = []
    for phase in phases(query, params):
        if not phase.by_words:
            found += [select(*columns).where(*base, branch).offset(0) for branch in phase.branches]
            continue
        unseen = phase.branches[0]
        first, second, last = NAME_SLOTS
        if one_word(query):
            similar = select(similar_words(params).c.word)
            slots = [first.in_(similar), second.in_(similar), and_(LAST_WORD_INDEXED, last.in_(similar))]
            for number, slot in enumerate(slots):
                earlier = [~other for other in slots[:number]]
                found.append(select(*columns).where(*base, unseen, slot, *earlier).offset(0))
        else:
            # Per similar pair "w1 w2": the names starting with it, a prefix range (as `typo_pairs_statement`).
            pairs = similar_pairs(params)
            head = (pairs.c.w1 + literal(" ") + pairs.c.w2).self_group().collate("default")
            name = Customer.search_name
            similarity = func.word_similarity(func.bee_search_normalise(params.bind("q")), name)
            per_pair = (
                select(*columns)
                .where(
                    *base,
                    unseen,
                    name.op("~>=~", is_comparison=True)(head),
                    name.op("~<~", is_comparison=True)(func.bee_prefix_upper(head)),
                    or_(name == head, starts_with(name, head + literal(" "))),
                    similarity >= WORD_SIMILARITY_THRESHOLD,
                )
                .lateral("typo_pair")
            )
            found.append(select(per_pair.c.id, per_pair.c.rfm_segment).select_from(pairs).join(per_pair, true()))
    return found


def _number(name: str, value: ColumnElement[Any]) -> Select[Any]:
    return select(
        literal_column(f"'{name}'").label("facet"), literal_column("NULL::varchar").label("value"), value.label("n")
    )


def _facet_rows(rows: FromClause, facets: tuple[str, ...], params: Params) -> list[Select[Any]]:
    """(facet, value, count) of the top values among `rows` (its columns id, rfm_segment)."""
    found: list[Select[*tuple[Any, ...]]] = []
    if "tags" in facets:
        # Grouped by label_key alone, an index-only probe per row (uq_customer_tags_customer_id_label_key);
        # the label as written (one customer's spelling) is read for the top keys only.
        top = (
            select(CustomerTag.label_key.label("key"), func.count().label("n"))
            .select_from(rows.join(CustomerTag, CustomerTag.customer_id == rows.c.id))
            .group_by(CustomerTag.label_key)
            .order_by(func.count().desc(), CustomerTag.label_key.collate("C"))
            .limit(TOP_VALUES)
            .subquery("top_tags")
        )
        shown = (
            select(CustomerTag.label)
            .where(CustomerTag.business_id == params.bind("business_id"), CustomerTag.label_key == top.c.key)
            .order_by(CustomerTag.customer_id)  # the order of ix_customer_tags_business_label_key_customer
            .limit(1)
            .scalar_subquery()
        )
        found.append(select(literal_column("'tags'").label("facet"), shown.label("value"), top.c.n))
    if "segment" in facets:
        found.append(
            select(
                literal_column("'segment'").label("facet"), rows.c.rfm_segment.label("value"), func.count().label("n")
            )
            .group_by(rows.c.rfm_segment)
            .order_by(func.count().desc(), rows.c.rfm_segment.collate("C"))
            .limit(TOP_VALUES)
        )
    return found


def _union(parts: list[Select[Any]]) -> Select[Any]:
    return union_all(*(part.subquery().select() for part in parts)).subquery("summary").select()


def exact_statement(filters: SearchFilters, params: Params, facets: tuple[str, ...]) -> Select[Any]:
    """Rows (facet, value, count): ('#total', NULL, n <= EXACT_LIMIT + 1), ('#table_rows', NULL, the
    table's size as last analysed), and when n <= EXACT_LIMIT, each facet's top values."""
    found = branches(filters, params, with_rows=bool(facets))
    every = (union_all(*found) if len(found) > 1 else found[0]).subquery("found")
    capped = select(every.c.id, every.c.rfm_segment).limit(EXACT_LIMIT + 1).cte("matches")
    capped = capped.prefix_with("MATERIALIZED")  # counted, then grouped: read once
    count = select(func.count()).select_from(capped).scalar_subquery()
    parts: list[Select[Any]] = [
        _number(TOTAL, count),
        # The table's size as last analysed (pg_class.reltuples: -1 before the first ANALYZE).
        _number(
            TABLE_ROWS,
            literal_column("(SELECT greatest(reltuples, 0)::bigint FROM pg_class WHERE oid = 'customers'::regclass)"),
        ),
    ]
    # The grouping runs only when the count is exact (a one-time filter: evaluated once).
    parts += [part.where(count <= EXACT_LIMIT) for part in _facet_rows(capped, facets, params)]
    return _union(parts)


def estimate_statement(filters: SearchFilters, params: Params) -> Explain:
    """The planner's estimate of the matches (EXPLAIN of the filter statement, run with its values)."""
    found = branches(filters, params, with_rows=False)
    return Explain(union_all(*found) if len(found) > 1 else found[0])


def sampled_statement(filters: SearchFilters, params: Params, facets: tuple[str, ...]) -> Select[Any]:
    """('#total', NULL, matches in the sample), then each facet's top values in the sample.

    The sample's percentage is the parameter in_sample_percent; the conditions are the search's own,
    pointed at the sampled table.
    """
    sample = tablesample(
        Customer.__table__, func.system(params.bind("sample_percent")), name="sampled", seed=literal(0)
    )
    adapter = ClauseAdapter(sample)
    conditions = [adapter.traverse(condition) for condition in matching(filters, params)]
    rows = select(sample.c.id, sample.c.rfm_segment).where(*conditions).cte("sample")
    rows = rows.prefix_with("MATERIALIZED")
    parts: list[Select[Any]] = [_number(TOTAL, select(func.count()).select_from(rows).scalar_subquery())]
    parts += _facet_rows(rows, facets, params)
    return _union(parts)


def sample_percent(estimate: int, table_rows: int) -> float:
    """The share of the table's pages to sample (0..100): about SAMPLE_MATCHES matches, at most SAMPLE_MAX_ROWS rows."""
    share = min(SAMPLE_MATCHES / max(estimate, 1), SAMPLE_MAX_ROWS / max(table_rows, 1), 1.0)
    return round(100 * share, 4)
