"""The statements of a page: one without a query or for phone / "@" queries, one per phase otherwise."""

from typing import Any, TypeAlias

from sqlalchemy import (
    ColumnElement,
    CompoundSelect,
    Integer,
    ScalarSelect,
    Select,
    case,
    cast,
    false,
    func,
    literal,
    literal_column,
    or_,
    select,
    true,
    union_all,
)
from sqlalchemy.dialects.postgresql import aggregate_order_by

from bee_customers_service.customers.models import Customer
from bee_customers_service.search.repository.conditions import cursor_condition, order_by, where
from bee_customers_service.search.repository.filters import SORT_KEYS, Column, SearchFilters
from bee_customers_service.search.repository.matches import NO_MATCH, matched_on
from bee_customers_service.search.repository.params import Params
from bee_customers_service.search.repository.phases import Phase, match, rank, starts_with, terms
from bee_customers_service.search.repository.query import TextQuery
from bee_customers_service.search.repository.typos import (
    LAST_WORD_INDEXED,
    NAME_SLOTS,
    TYPO_TIER,
    WORD_SIMILARITY_THRESHOLD,
    similar_pairs,
    similar_words,
    word_rank,
)
from bee_customers_service.tags.models import CustomerTag

COLUMNS = (
    Customer.id,
    Customer.full_name,
    Customer.email,
    Customer.phone,
    Customer.avatar_url,
    Customer.total_orders,
    Customer.lifetime_value,
    Customer.lifetime_value_currency,
    Customer.last_order_date,
)
# What `matched_on` reads besides COLUMNS, carried through the page subquery of a phone / "@" query.
_MATCHED_COLUMNS = (Customer.search_name, Customer.phone_digits)
# (id, sort_key, rank) rows of a phase, before `with_columns`.
Found: TypeAlias = Select[*tuple[Any, ...]] | CompoundSelect[*tuple[Any, ...]]
WORD_TIERS = (1000, 900, 800)  # the tiers of the word walk (`word_phase_statement`)


def tags_of(customer_id: Column) -> ScalarSelect[Any]:
    """The customer's tag labels in the order they were added (one index probe per row)."""
    return (
        select(
            func.coalesce(
                func.array_agg(aggregate_order_by(CustomerTag.label, CustomerTag.created_at, CustomerTag.id)),
                literal_column("'{}'::varchar[]"),
            )
        )
        .where(CustomerTag.customer_id == customer_id)
        .scalar_subquery()
    )


def page_statement(filters: SearchFilters, params: Params, *, sort: str, direction: str, limit: int) -> Select[Any]:
    """One page in one statement: no query (an index range from the cursor), or a phone / "@" query,
    where every match is ranked and a top-N sort keeps the page."""
    key = SORT_KEYS[sort]
    conditions = where(filters, params)
    if filters.query is None:
        if (after := cursor_condition(params, key, direction)) is not None:
            conditions.append(after)
        page = (
            select(*COLUMNS, key.label("sort_key"))
            .where(*conditions)
            .order_by(*order_by(key, Customer.id, direction))
            .limit(limit)
            .subquery("page")
        )
    else:
        ranked = rank(filters.query, params)
        conditions.append(match(filters.query, params))
        if (after := cursor_condition(params, key, direction, ranked)) is not None:
            conditions.append(after)
        page = (
            select(*COLUMNS, key.label("sort_key"), ranked.label("rank"), *_MATCHED_COLUMNS)
            .where(*conditions)
            .order_by(ranked.desc(), *order_by(key, Customer.id, direction))
            .limit(limit)
            .subquery("page")
        )
    # Tags are gathered for the page's rows only (outside the LIMIT).
    order = order_by(page.c.sort_key, page.c.id, direction)
    if filters.query is not None:
        order.insert(0, page.c.rank.desc())
    matched: ColumnElement[Any] = NO_MATCH
    if filters.query is not None:
        c = page.c
        matched = matched_on(
            params, customer_id=c.id, search_name=c.search_name, email=c.email, phone_digits=c.phone_digits
        )
    return select(page, tags_of(page.c.id).label("tags"), matched.label("matched_on")).order_by(*order).limit(limit)


def phase_statement(
    phase: Phase, filters: SearchFilters, params: Params, *, key: Column, direction: str
) -> Select[Any]:
    """(id, sort_key, rank) of the phase's best rows after the cursor, then their columns. Only columns
    the prefix indexes include are read, so the btree phases are index-only scans."""
    conditions = where(filters, params)
    if (after := cursor_condition(params, key, direction, phase.rank)) is not None:
        conditions.append(after)
    branches: list[Found] = [
        # OFFSET 0 plans the branch's matches on their own (the prefix range, or the trigram bitmap) and
        # sorts them: without it the planner often walks the business's (created_at, id) index instead,
        # filtering every row, as it estimates a LIKE pattern to match ~1% of the business (bench/README.md).
        select(Customer.id.label("id"), key.label("sort_key"), phase.rank.label("rank"))
        .where(*conditions, branch)
        .offset(0)
        for branch in phase.branches
    ]
    return with_columns(union_all(*branches) if len(branches) > 1 else branches[0], params, direction)


def word_phase_statement(query: TextQuery, filters: SearchFilters, params: Params, *, direction: str) -> Select[Any]:
    """The first phase (tiers 1000/900/800) of a one-word query in created_at order, as a word walk.

    Rather than reading every match, the distinct first (second) words that start with the query are
    enumerated through the (business_id, word, created_at, id) index (a loose index scan: one probe per
    distinct word, "stefa" -> stefan, stefania, ...), and each word gives only its first rows in order.
    """
    key = Customer.created_at
    parts_ = terms(query, params)
    name = Customer.search_name
    conditions = where(filters, params)
    by = order_by(key, Customer.id, direction)
    after_rank = params.value("after_rank") if "after_rank" in params else None

    def after(tier: int) -> list[ColumnElement[bool]]:
        condition = cursor_condition(params, key, direction, tier)
        return [] if condition is None else [condition]

    found: list[Found] = []
    if after_rank is None or after_rank >= 1000:  # else the cursor is past this tier
        found.append(
            select(Customer.id.label("id"), key.label("sort_key"), literal(1000).label("rank"))
            .where(*conditions, name == parts_.normalised, *after(1000))
            .order_by(*by)
            .limit(params.bind("limit"))
        )
    for position, tier, extra in ((1, 900, name != parts_.normalised), (2, 800, ~parts_.name_prefix)):
        if after_rank is not None and after_rank < tier:
            continue  # the cursor is past this tier
        word = func.bee_name_word(name, literal_column(str(position))).collate("C")
        # Each probe is "the next word after w" with no upper bound, so that it is planned as an
        # ordered index scan stopped after one entry (with the prefix range in the probe, the
        # planner may read the whole range and sort it); the walk stops at the first word past it.
        business = Customer.business_id == params.bind("business_id")
        first = select(word).where(business, word >= parts_.normalised).order_by(word).limit(1).scalar_subquery()
        words = select(first.label("w")).cte(f"words_{position}", recursive=True)
        following = select(word).where(business, word > words.c.w).order_by(word).limit(1).scalar_subquery()
        words = words.union_all(
            select(following.label("w")).where(words.c.w.is_not(None), words.c.w.like(parts_.prefix_pattern))
        )
        per_word = (
            select(Customer.id.label("id"), key.label("sort_key"), literal(tier).label("rank"))
            .where(*conditions, words.c.w.like(parts_.prefix_pattern), word == words.c.w, extra, *after(tier))
            .order_by(*by)
            .limit(params.bind("limit"))
            .lateral(f"word_{position}")
        )
        found.append(
            select(per_word.c.id, per_word.c.sort_key, per_word.c.rank).select_from(words).join(per_word, true())
        )
    if not found:
        found.append(select(Customer.id.label("id"), key.label("sort_key"), literal(0).label("rank")).where(false()))
    return with_columns(union_all(*found) if len(found) > 1 else found[0], params, direction)


def word_cursor_shape(params: Params) -> tuple[int, ...] | None:
    """Where the cursor's rank is against each tier of the word walk (what decides its statement)."""
    if "after_rank" not in params:
        return None
    after_rank = params.value("after_rank")
    return tuple((after_rank > tier) - (after_rank < tier) for tier in WORD_TIERS)


def typo_pairs_statement(
    query: TextQuery, phase: Phase, filters: SearchFilters, params: Params, *, key: Column, direction: str
) -> Select[Any]:
    """The typo phase of a query of several words ("ioana popscu"), through pairs of similar words.

    The most similar name words of the query's first two words are paired (in either order), and each
    pair ("ioana popescu") is a prefix range of ix_customers_business_name_prefix (index-only). A row
    ranks by its name's similarity with the whole query, round(300 * word_similarity(query, name)).
    """
    normalised = func.bee_search_normalise(params.bind("q"))
    name = Customer.search_name
    pairs = similar_pairs(params)
    head = (pairs.c.w1 + literal(" ") + pairs.c.w2).self_group().collate("default")
    # A name of exactly those two words has the pair's similarity: computed once per pair, not per row.
    similarity = case((name == head, pairs.c.similarity), else_=func.word_similarity(normalised, name))
    ranked = cast(func.round(similarity * TYPO_TIER), Integer)
    conditions = [
        *where(filters, params),
        *phase.branches,
        name.op("~>=~", is_comparison=True)(head),
        name.op("~<~", is_comparison=True)(func.bee_prefix_upper(head)),
        # its first two words are the pair: the name is the pair, or starts with the pair and a space
        # (comparisons, not bee_name_word: a SQL function call per row is dearer)
        or_(name == head, starts_with(name, head + literal(" "))),
        similarity >= WORD_SIMILARITY_THRESHOLD,
    ]
    if (after := cursor_condition(params, key, direction, ranked)) is not None:
        conditions.append(after)
    per_pair = (
        select(Customer.id.label("id"), key.label("sort_key"), ranked.label("rank"))
        .where(*conditions)
        .order_by(ranked.desc(), *order_by(key, Customer.id, direction))
        .limit(params.bind("limit"))
        .lateral("typo_pair")
    )
    found = select(per_pair.c.id, per_pair.c.sort_key, per_pair.c.rank).select_from(pairs).join(per_pair, true())
    return with_columns(found, params, direction)


def typo_words_statement(
    phase: Phase, filters: SearchFilters, params: Params, *, key: Column, direction: str
) -> Select[Any]:
    """The typo phase of a one-word query ("popscu"), through the business's similar name words.

    Each similar word gives its first customers through the word indexes (business_id, word,
    created_at, id), one slot (first / second / last word) at a time. A customer ranks by its most
    similar word, then by the requested sort, and appears once: under its best word (the earlier
    slot on a tie).
    """
    normalised = func.bee_search_normalise(params.bind("q"))
    similar = similar_words(params)
    base = where(filters, params)
    found: list[Found] = []
    for slot, word in enumerate(NAME_SLOTS):
        conditions = [*base, *phase.branches, word == similar.c.word]
        if slot == 2:
            conditions.append(LAST_WORD_INDEXED)
        for other, other_word in enumerate(NAME_SLOTS):
            if other != slot:  # not a better (or an equal, earlier) similar word in another slot
                better = word_rank(normalised, other_word)
                conditions.append(better < similar.c.rank if other < slot else better <= similar.c.rank)
        if (after := cursor_condition(params, key, direction, similar.c.rank)) is not None:
            conditions.append(after)
        per_word = (
            select(Customer.id.label("id"), key.label("sort_key"), similar.c.rank.label("rank"))
            .where(*conditions)
            .order_by(*order_by(key, Customer.id, direction))
            .limit(params.bind("limit"))
            .lateral(f"typo_{slot + 1}")
        )
        found.append(
            select(per_word.c.id, per_word.c.sort_key, per_word.c.rank).select_from(similar).join(per_word, true())
        )
    return with_columns(union_all(*found), params, direction)


def with_columns(found: Found, params: Params, direction: str) -> Select[Any]:
    """The best rows of `found` (id, sort_key, rank) with the list columns and tags, read for those rows only."""
    rows = found.subquery("phase")
    page = (
        select(rows.c.id, rows.c.sort_key, rows.c.rank)
        .order_by(rows.c.rank.desc(), *order_by(rows.c.sort_key, rows.c.id, direction))
        .limit(params.bind("limit"))
        .subquery("page")
    )
    columns = [c for c in COLUMNS if c is not Customer.id]
    return (
        select(
            page.c.id,
            *columns,
            page.c.sort_key,
            page.c.rank,
            tags_of(page.c.id).label("tags"),
            matched_on(
                params,
                customer_id=page.c.id,
                search_name=Customer.search_name,
                email=Customer.email,
                phone_digits=Customer.phone_digits,
            ).label("matched_on"),
        )
        .join_from(page, Customer, Customer.id == page.c.id)
        .order_by(page.c.rank.desc(), *order_by(page.c.sort_key, page.c.id, direction))
    )
