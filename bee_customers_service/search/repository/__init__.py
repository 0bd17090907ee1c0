"""The search query over `customers`: one statement per page (or per relevance phase), every part served by an index.

- no query: an index range scan of (business_id, <sort key>, id), backwards for descending orders,
  from the cursor; filters are checked on the way and LIMIT stops the scan (`statements`).
- phone fragment, or a query with "@": trigram bitmap scans, a tier per row and a top-N sort.
- name/email query: phases of tiers, best first, each run only when the ones before it did not fill
  the page (`phases`); their statements are built once per shape and run with each request's values.
- tags: EXISTS probes of the (customer_id, label_key) index, or a semi-join for a rare tag (`conditions`).

Modules: `query` (the query text), `filters` (filters, sort keys), `params` (the bind parameters),
`conditions` (WHERE, cursor, order), `phases` (relevance), `typos` (similar name words), `statements`,
`matches` (a row's `matched_on`), `summary` (the total and the facets over the whole match set);
this one runs them in a session.
"""

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import orjson
from sqlalchemy import Float, Select, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncSession

from bee_customers_service.search.repository import summary
from bee_customers_service.search.repository.filters import (
    NO_ORDER_DATE,
    SORT_KEYS,
    SORT_TYPES,
    SearchFilters,
    filters_shape,
)
from bee_customers_service.search.repository.params import Params, request_params
from bee_customers_service.search.repository.phases import UNUSUAL_NAME, Phase, phases
from bee_customers_service.search.repository.query import TextQuery, interpret_query, one_word, phased, query_shape
from bee_customers_service.search.repository.statements import (
    page_statement,
    phase_statement,
    typo_pairs_statement,
    typo_words_statement,
    word_cursor_shape,
    word_phase_statement,
)
from bee_customers_service.search.repository.typos import WORD_SIMILARITY_THRESHOLD

_SETTINGS = (
    "SELECT set_config('plan_cache_mode', '{mode}', true),"
    f" set_config('pg_trgm.word_similarity_threshold', '{WORD_SIMILARITY_THRESHOLD}', true)"
)
_SESSION_SETTINGS = text(_SETTINGS.format(mode="force_custom_plan"))
_GENERIC_SESSION_SETTINGS = text(_SETTINGS.format(mode="force_generic_plan"))
# A generic plan (planned once per connection) is cheaper for the word walk and the typo phase, whose
# plans do not depend on the values; the prefix and trigram phases keep custom plans, which see the
# pattern (bench/README.md).
_PLAN_MODES = {
    mode: text(f"SELECT set_config('plan_cache_mode', '{mode}', true)")
    for mode in ("force_custom_plan", "force_generic_plan")
}

T = TypeVar("T")
_PERCENT = Float()


@dataclass(frozen=True)
class _Cached:
    statement: Select[Any]
    inputs: frozenset[str]  # the names of its request parameters (in_...)


_STATEMENTS: dict[tuple[Any, ...], Any] = {}
_STATEMENT_CACHE_SIZE = 2048


def _remembered(shape: tuple[Any, ...], build: Callable[[], T]) -> T:
    """What `build` gives for this shape, built once (building with SQLAlchemy costs more CPU than running it)."""
    found: T | None = _STATEMENTS.get(shape)
    if found is None:
        found = build()
        if len(_STATEMENTS) >= _STATEMENT_CACHE_SIZE:
            _STATEMENTS.clear()
        _STATEMENTS[shape] = found
    return found


def _cached(shape: tuple[Any, ...], build: Callable[[], Select[Any]]) -> _Cached:
    """The statement of this shape, built once and run with each request's values (`Params`).

    A built statement is checked for request values that slipped in as anonymous literals: they
    would be another request's values on the next run.
    """

    def checked() -> _Cached:
        statement = build()
        binds = statement.compile(dialect=postgresql.dialect()).binds.values()
        for bind in binds:
            constant = isinstance(bind.value, int | float) or bind.value in ("%", "", " ")
            if not bind.key.startswith("in_") and not constant:
                raise AssertionError(f"a request value is not a named parameter: {bind.value!r}")
        return _Cached(statement, frozenset(bind.key for bind in binds if bind.key.startswith("in_")))

    return _remembered(shape, checked)


def _by_words(query: TextQuery, sort: str) -> bool:
    """One word in created_at order: the first phase walks the word indexes (`word_phase_statement`)."""
    return sort == "created_at" and one_word(query)


async def _phased_page(
    session: AsyncSession,
    filters: SearchFilters,
    query: TextQuery,
    *,
    sort: str,
    direction: str,
    after: Sequence[Any] | None,
    limit: int,
) -> Sequence[Row[Any]]:
    """Relevance first, one phase (run of tiers) at a time, a later phase only when the earlier ones
    cannot fill the page. Later phases rank lower, so the page is what ranking every match would give."""
    key = SORT_KEYS[sort]
    shape = (query_shape(query), filters_shape(filters), sort, direction)
    runs: list[Phase] = _remembered(
        ("phases", *shape), lambda: phases(query, request_params(filters, key=key, after=after))
    )
    found: list[Row[Any]] = []  # phases are in rank order: their rows follow each other
    plan_mode = None  # the first statement sets it with the other settings
    for number, phase in enumerate(runs):
        if after is not None and phase.lowest > after[0]:
            continue  # the cursor is past this phase's rows
        params = request_params(filters, key=key, after=after, limit=limit - len(found))
        if number == 0 and _by_words(query, sort):
            build = partial(word_phase_statement, query, filters, params, direction=direction)
            cached, generic = _cached(("words", *shape, word_cursor_shape(params)), build), True
        elif phase.by_words:
            if one_word(query):
                build = partial(typo_words_statement, phase, filters, params, key=key, direction=direction)
            else:
                build = partial(typo_pairs_statement, query, phase, filters, params, key=key, direction=direction)
            cached, generic = _cached(("typo", number, *shape, after is not None), build), True
        else:
            build = partial(phase_statement, phase, filters, params, key=key, direction=direction)
            cached, generic = _cached(("phase", number, *shape, after is not None), build), False
        wanted = "force_generic_plan" if generic else "force_custom_plan"
        if plan_mode is None:
            await session.execute(_GENERIC_SESSION_SETTINGS if generic else _SESSION_SETTINGS)
        elif wanted != plan_mode:
            await session.execute(_PLAN_MODES[wanted])
        plan_mode = wanted
        found += (await session.execute(cached.statement, params.values(cached.inputs))).all()
        if len(found) >= limit:
            break
    return found


async def search_page(
    session: AsyncSession, filters: SearchFilters, *, sort: str, direction: str, after: Sequence[Any] | None, limit: int
) -> Sequence[Row[Any]]:
    """One page of rows (list columns, sort_key, rank with a query, tags) after the cursor `after`."""
    if filters.query is not None:
        # For this transaction only: plan each search for its own values (a generic plan cannot see
        # which trigrams a pattern holds), and the typo threshold. The phased path sets them itself.
        if phased(filters.query):
            return await _phased_page(
                session, filters, filters.query, sort=sort, direction=direction, after=after, limit=limit
            )
        await session.execute(_SESSION_SETTINGS)
    params = request_params(filters, key=SORT_KEYS[sort], after=after)
    statement = page_statement(filters, params, sort=sort, direction=direction, limit=limit)
    return (await session.execute(statement)).all()


# Renames keep words under three characters in the typo table (migration 0010: proving one gone
# scans the business's names); an erasure must not, so it forgets those no customer holds any more.
# bee_name_words_forget finds a held word through the word indexes; only an orphan pays the scan.
_FORGET_SHORT_WORDS = text(
    """
    SELECT public.bee_name_words_forget(array_agg(w.business_id), array_agg(w.word))
    FROM customer_name_words w
    WHERE w.business_id = ANY(CAST(:business_ids AS uuid[])) AND length(w.word) < 3
    """
)


async def forget_stale_short_words(session: AsyncSession, business_ids: Sequence[uuid.UUID]) -> None:
    """Drop the businesses' short name words that no customer holds any more."""
    await session.execute(_FORGET_SHORT_WORDS, {"business_ids": list(business_ids)})


@dataclass(frozen=True)
class Summary:
    """`total` and the facets' (value, count) lists, each exact or estimated."""

    total: int | None
    total_is_estimate: bool
    facets: dict[str, list[tuple[str, int]]]
    facets_are_estimates: bool


def _summary_shape(filters: SearchFilters) -> tuple[Any, ...]:
    query = filters.query
    text_shape = None if query is None else (query.phone_digits is not None, "@" in query.raw, query_shape(query))
    return (text_shape, filters_shape(filters))


async def summarise(session: AsyncSession, filters: SearchFilters, *, total: bool, facets: tuple[str, ...]) -> Summary:
    """The matches' total (when `total`) and the top values of each facet, over the whole match set."""
    if not total and not facets:
        return Summary(None, False, {}, False)
    # Planned for this request's values (the EXPLAIN's estimate above all), with the typo threshold.
    await session.execute(_SESSION_SETTINGS)
    params = request_params(filters)
    shape = _summary_shape(filters)
    exact = _cached(("summary", *shape, facets), partial(summary.exact_statement, filters, params, facets))
    rows = (await session.execute(exact.statement, params.values(exact.inputs))).all()
    numbers = {row.facet: row.n for row in rows if row.value is None}
    found: dict[str, list[tuple[str, int]]] = {name: [] for name in facets}
    if numbers[summary.TOTAL] <= summary.EXACT_LIMIT:
        for row in rows:
            if row.value is not None:
                found[row.facet].append((row.value, row.n))
        return Summary(numbers[summary.TOTAL] if total else None, False, found, False)

    estimate = summary.estimate_statement(filters, params)  # not cached: EXPLAIN is not a Select
    plan = (await session.execute(estimate)).scalar_one()
    # FORMAT JSON comes back as text (asyncpg decodes json columns to str).
    planned = (orjson.loads(plan) if isinstance(plan, str | bytes) else plan)[0]["Plan"]["Plan Rows"]
    matches = max(int(planned), summary.EXACT_LIMIT + 1)  # more than EXACT_LIMIT were counted
    if facets:
        percent = summary.sample_percent(matches, numbers[summary.TABLE_ROWS])
        sampled = Params({**params.entries, "sample_percent": (percent, _PERCENT)})
        statement = _cached(("sampled", *shape, facets), partial(summary.sampled_statement, filters, sampled, facets))
        rows = (await session.execute(statement.statement, sampled.values(statement.inputs))).all()
        in_sample = next(row.n for row in rows if row.value is None)
        for row in rows:
            if row.value is not None:
                found[row.facet].append((row.value, round(row.n * matches / in_sample)))
    return Summary(matches if total else None, True, found, bool(facets))


def explain_statement(
    filters: SearchFilters, *, sort: str, direction: str, after: Sequence[Any] | None, limit: int
) -> Select[Any]:
    """The statement `search_page` runs (for EXPLAIN); for a name or email query, its first phase's."""
    key = SORT_KEYS[sort]
    params = request_params(filters, key=key, after=after, limit=limit)
    if filters.query is not None and phased(filters.query):
        if _by_words(filters.query, sort):
            return word_phase_statement(filters.query, filters, params, direction=direction)
        phase = phases(filters.query, params)[0]
        return phase_statement(phase, filters, params, key=key, direction=direction)
    return page_statement(filters, params, sort=sort, direction=direction, limit=limit)


__all__ = [
    "NO_ORDER_DATE",
    "SORT_TYPES",
    "UNUSUAL_NAME",
    "SearchFilters",
    "Summary",
    "TextQuery",
    "_cached",
    "explain_statement",
    "interpret_query",
    "search_page",
    "summarise",
]
