"""The search query over `customers`: one statement per page, every part served by an index.

Plans (checked with EXPLAIN ANALYZE at 1,000,000 customers in one business; bench/README.md):
- no query: an index range scan of (business_id, <sort key>, id), backwards for descending orders,
  starting at the cursor; filters are checked on the way and LIMIT stops the scan.
- phone fragment, or a query with "@": bitmap scans of the GIN trigram indexes (phone_digits /
  email), a relevance tier per row and a top-N sort, in one statement.
- name/email query: phases, best tiers first, each one statement that runs only when the ones
  before it did not fill the page (`_phased_page`): (1) exact name / name prefix / surname prefix
  (btree word walk or prefix ranges), (2) name substring (trigram; skipped when no name word of the
  business holds the query), (3) email prefix (btree range), (4) email substring (trigram),
  (5) almost-matches: for a one-word query, the similar words of the business's distinct name words
  (customer_name_words, migration 0010), resolved to customers through the word indexes. Their
  statements are built once per shape and run with each request's values (`_cached`).
- tag filter: EXISTS probes of the unique (customer_id, label_key) index per candidate row, or a
  semi-join from (business_id, label_key, customer_id) when the tag is rare; the planner picks.
"""

import operator
import re
import string
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from functools import partial
from typing import Any

from pydantic import AwareDatetime
from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Integer,
    Select,
    Text,
    and_,
    bindparam,
    case,
    cast,
    exists,
    false,
    func,
    literal,
    literal_column,
    or_,
    select,
    text,
    true,
    tuple_,
    union,
    union_all,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncSession

from bee_customers_service.customers.models import Customer
from bee_customers_service.search.models import CustomerNameWord
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
    "created_at": AwareDatetime,  # a cursor carrying a naive time is refused (422), never sent to SQL
    "full_name": str,
    "last_order_date": date,
    "lifetime_value": Decimal,
}

_PHONE_LIKE = re.compile(r"^[0-9+()./\- ]+$")
_WORDS = re.compile(r"^[^\W\d_]+(?:[ '\-]+[^\W\d_]+)*$")  # letters, with spaces/hyphens/apostrophes between
MIN_TRIGRAM_QUERY = 3
TYPO_TIER = 300
WORD_SIMILARITY_THRESHOLD = 0.5  # pg_trgm's default 0.6 misses a dropped letter in a 7-letter name
# A one-word typo query is compared with the business's distinct name words (customer_name_words);
# at most this many similar words, most similar first, are resolved to customers.
SIMILAR_WORDS = 50
# A query of several words: the most similar words of each of its first two words, paired.
SIMILAR_PAIR_WORDS = 5
_SETTINGS = (
    "SELECT set_config('plan_cache_mode', '{mode}', true),"
    f" set_config('pg_trgm.word_similarity_threshold', '{WORD_SIMILARITY_THRESHOLD}', true)"
)  # shorter fragments hold no trigram: substring match only, no typo tolerance
_SESSION_SETTINGS = text(_SETTINGS.format(mode="force_custom_plan"))
_GENERIC_SESSION_SETTINGS = text(_SETTINGS.format(mode="force_generic_plan"))
# The word walk and the typo phase are planned once per connection (a generic plan: their shape does
# not depend on the values, and planning them cost 1.5-3.5 ms a request); the prefix and trigram
# phases keep custom plans (a generic plan of "email starts with 'nicolae.'" was 4x slower).
_PLAN_MODES = {
    mode: text(f"SELECT set_config('plan_cache_mode', '{mode}', true)")
    for mode in ("force_custom_plan", "force_generic_plan")
}


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


def _input(name: str, value: Any, type_: Any) -> BindParameter[Any]:
    """A value of the request as a named parameter `in_<name>`. The statements of a name/email
    query are built once per shape and run with each request's values (`_cached`, `_inputs`), so
    every request value in them must be one of these, never an anonymous literal."""
    return bindparam(f"in_{name}", value, type_=type_)


def _q(query: TextQuery) -> BindParameter[Any]:
    return _input("q", query.raw, Text())


def _q_escaped(query: TextQuery) -> BindParameter[Any]:
    return _input("q_escaped", _like_escape(query.raw), Text())


def _parts(query: TextQuery) -> list[str]:
    return [part for part in query.raw.split(" ") if part]


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


@dataclass(frozen=True)
class _Terms:
    """The pieces of a name/email query's conditions, built once."""

    normalised: ColumnElement[Any]
    prefix_pattern: ColumnElement[Any]
    name_prefix: ColumnElement[bool]
    rest_prefix: ColumnElement[bool]
    name_substring: ColumnElement[bool]
    email_prefix: ColumnElement[bool] | None
    email_substring: ColumnElement[bool] | None
    typo: ColumnElement[bool] | None


def _starts_with(value: ColumnElement[Any], prefix: ColumnElement[Any]) -> ColumnElement[bool]:
    """`value` starts with `prefix`, as the range [prefix, bee_prefix_upper(prefix)) in byte order:
    only the btree prefix indexes (text_pattern_ops) can serve it. Written as LIKE 'prefix%', the
    planner could choose a trigram bitmap instead ("william.w%": 9,752 rows rechecked for 645)."""
    prefix = prefix.self_group()  # PostgreSQL gives ~>=~ and || the same precedence
    return and_(
        value.op("~>=~", is_comparison=True)(prefix),
        value.op("~<~", is_comparison=True)(func.bee_prefix_upper(prefix)),
    )


def _terms(query: TextQuery) -> _Terms:
    normalised = func.bee_search_normalise(_q(query))
    normalised_escaped = func.bee_search_normalise(_q_escaped(query))
    name = Customer.search_name
    email_prefix = email_substring = typo = None
    if " " not in query.raw:
        email_prefix = _starts_with(Customer.email, func.lower(_q(query)))
        email_substring = Customer.email.like(literal("%") + func.lower(_q_escaped(query)) + literal("%"))
    # Typo tolerance is for words ("popscu" finds "Popescu"); a fragment with digits or dots is an
    # email or a code, where "almost" matches are noise (and expensive to collect).
    if len(query.raw) >= MIN_TRIGRAM_QUERY and _WORDS.match(query.raw) is not None:
        # word_similarity(query, name) >= pg_trgm.word_similarity_threshold.
        typo = normalised.op("<%", is_comparison=True)(name)
    return _Terms(
        normalised=normalised,
        prefix_pattern=normalised_escaped + literal("%"),
        name_prefix=_starts_with(name, normalised),
        # "the name without its first word starts with it": the surname (or middle name) starts with it.
        rest_prefix=_starts_with(func.bee_name_rest(name), normalised),
        name_substring=name.like(literal("%") + normalised_escaped + literal("%")),
        email_prefix=email_prefix,
        email_substring=email_substring,
        typo=typo,
    )


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
    if "@" in query.raw:  # only an email has an "@": do not look at names at all
        email_prefix = func.lower(literal(escaped)) + literal("%")
        email_pattern = literal("%") + func.lower(literal(escaped)) + literal("%")
        return [(1000, Customer.email.like(email_prefix)), (900, Customer.email.like(email_pattern))]

    terms = _terms(query)
    tiers: list[tuple[int, ColumnElement[bool]]] = [
        (1000, Customer.search_name == terms.normalised),
        (900, terms.name_prefix),
        (800, terms.rest_prefix),
        (700, terms.name_substring),
    ]
    if terms.email_prefix is not None and terms.email_substring is not None:
        tiers += [(650, terms.email_prefix), (500, terms.email_substring)]
    if terms.typo is not None:
        tiers.append((TYPO_TIER, terms.typo))
    return tiers


def _match(query: TextQuery, business_id: uuid.UUID) -> ColumnElement[bool]:
    """Rows in any tier, written with as few index scans as possible: the substring conditions
    already contain the equal / prefix / word-prefix ones (which only rank)."""
    tiers = dict((rank, condition) for rank, condition in reversed(_tiers(query)))
    if query.phone_digits is not None or "@" in query.raw:
        return tiers[900]
    wanted = [tiers[700]] + [tiers[rank] for rank in (500, TYPO_TIER) if rank in tiers]
    first, second, last = _NAME_SLOTS
    if TYPO_TIER in tiers and _one_word(query):
        # The same almost-matches as the typo phase's: a first, second or last word among the similar ones.
        similar = select(_similar_words(query, business_id).c.word).scalar_subquery()
        wanted[-1] = or_(first.in_(similar), second.in_(similar), and_(_LAST_WORD_INDEXED, last.in_(similar)))
    elif TYPO_TIER in tiers:
        # ... and for several words: first two words a similar pair, similar enough as a whole.
        pairs = _similar_pairs(query, business_id)
        similarity = func.word_similarity(func.bee_search_normalise(_q(query)), Customer.search_name)
        wanted[-1] = and_(
            tuple_(first, second).in_(select(pairs.c.w1, pairs.c.w2)), similarity >= WORD_SIMILARITY_THRESHOLD
        )
    return or_(*wanted)


def _rank(query: TextQuery) -> ColumnElement[int]:
    """The first tier a row meets, for the one-statement path (`_page_statement`): phone fragments
    and queries with "@", which have no typo tier (name queries are ranked phase by phase)."""
    return case(*((condition, rank) for rank, condition in _tiers(query)), else_=literal(0))


@dataclass(frozen=True)
class _Phase:
    """Rows of a contiguous run of tiers (ranks `lowest`..`highest`), found by `branches`: each branch
    is one index path, and excludes the rows of the branches (and phases) before it. `rank` is
    exact for the phase's rows."""

    highest: int
    lowest: int
    branches: tuple[ColumnElement[bool], ...]
    rank: ColumnElement[int]
    by_words: bool = False  # the typo phase: resolved through the name words, not `branches`


def _held_by_a_word(query: TextQuery, business_id: uuid.UUID) -> ColumnElement[bool]:
    """False when no name of the business can contain the query: some part of it (between spaces) is
    inside none of the business's name words. Checked in customer_name_words (a few thousand words),
    it spares the trigram scan of every name for the many queries that no name contains (typos:
    "popscu", ~10 ms at a million). Uncorrelated, so PostgreSQL evaluates it once, before the scan."""
    return and_(
        *(
            exists().where(
                CustomerNameWord.business_id == _input("business_id", business_id, Customer.business_id.type),
                CustomerNameWord.word.like(
                    literal("%")
                    + func.bee_search_normalise(_input(f"part_{number}", _like_escape(part), Text()))
                    + literal("%")
                ),
            )
            for number, part in enumerate(_parts(query))
        )
    )


def _phases(query: TextQuery, business_id: uuid.UUID) -> list[_Phase]:
    """A name/email query as phases, best tiers first (same tiers and ranks as `_tiers`).

    The first phases are btree prefix ranges (index-only scans): a common word ("vlad": ~13k rows
    at a million) fills a page there, and the trigram phases below never run for that page.
    """
    terms = _terms(query)
    name = Customer.search_name
    phases = [
        _Phase(
            1000,
            800,
            (terms.name_prefix, and_(terms.rest_prefix, ~terms.name_prefix)),
            case((name == terms.normalised, 1000), (terms.name_prefix, 900), else_=800),
        ),
        _Phase(
            700,
            700,
            (and_(_held_by_a_word(query, business_id), terms.name_substring, ~terms.name_prefix, ~terms.rest_prefix),),
            literal(700),
        ),
    ]
    if _unusual(query):
        # The name must hold that character too: only the few such names of the business are read
        # (partial index ix_customers_business_unusual_name) instead of every name with its letters.
        # (strpos, not LIKE: the planner would otherwise prefer the trigram index, which cannot see
        # the character and returns every name holding the letters around it).
        contains = func.strpos(Customer.search_name, terms.normalised) > 0
        held = _held_by_a_word(query, business_id)
        phases[1] = _Phase(
            700, 700, (and_(held, contains, UNUSUAL_NAME, ~terms.name_prefix, ~terms.rest_prefix),), phases[1].rank
        )
    seen = terms.name_substring
    if terms.email_prefix is not None and terms.email_substring is not None:
        phases.append(_Phase(650, 650, (and_(terms.email_prefix, ~seen),), literal(650)))
        phases.append(_Phase(500, 500, (and_(terms.email_substring, ~seen, ~terms.email_prefix),), literal(500)))
        seen = or_(seen, terms.email_substring)
    if terms.typo is not None:
        # Built by `_typo_words_statement` (one word) or `_typo_pairs_statement` (several words).
        phases.append(_Phase(TYPO_TIER, 0, (~seen,), literal(0), by_words=True))
    return phases


def _one_word(query: TextQuery) -> bool:
    return " " not in query.raw


# The words of a name that the btree word indexes resolve (the same as SQL `bee_name_words`): the
# first, the second, and the last of a name of three or more words (NULL for shorter names).
_NAME_SLOTS: tuple[ColumnElement[Any], ...] = (
    func.bee_name_word(Customer.search_name, literal_column("1")).collate("C"),
    func.bee_name_word(Customer.search_name, literal_column("2")).collate("C"),
    func.bee_name_last_word(Customer.search_name).collate("C"),
)
_LAST_WORD_INDEXED = func.bee_name_last_word(Customer.search_name).is_not(None)  # the partial index's predicate


def _word_rank(normalised: ColumnElement[Any], word: ColumnElement[Any]) -> ColumnElement[int]:
    """The typo rank a name word gives (0 when it is not similar enough): 0..300."""
    similarity = func.word_similarity(normalised, word)
    return case(
        (and_(word != "", similarity >= WORD_SIMILARITY_THRESHOLD), cast(func.round(similarity * TYPO_TIER), Integer)),
        else_=0,
    )


def _similar_words(query: TextQuery, business_id: uuid.UUID) -> Any:
    """(word, rank) of the business's name words similar to a one-word query, best first: a lookup
    in the GIN trigram index of customer_name_words (a few thousand words even at a million)."""
    # A word that contains the query is not "almost" it: its holders are in the substring tier.
    contains = CustomerNameWord.word.like(literal("%") + func.bee_search_normalise(_q_escaped(query)) + literal("%"))
    return _words_like(func.bee_search_normalise(_q(query)), business_id, "similar_words", SIMILAR_WORDS, ~contains)


def _words_like(
    normalised: ColumnElement[Any], business_id: uuid.UUID, name: str, limit: int, *extra: ColumnElement[bool]
) -> Any:
    similarity = func.word_similarity(normalised, CustomerNameWord.word)
    rank = cast(func.round(similarity * TYPO_TIER), Integer)
    return (
        select(CustomerNameWord.word.label("word"), rank.label("rank"))
        .where(
            CustomerNameWord.business_id == _input("business_id", business_id, Customer.business_id.type),
            normalised.op("<%", is_comparison=True)(CustomerNameWord.word),
            *extra,
        )
        .order_by(rank.desc(), CustomerNameWord.word)
        .limit(limit)
        .cte(name)
    )


def _similar_pairs(query: TextQuery, business_id: uuid.UUID) -> Any:
    """(w1, w2, similarity): the SIMILAR_PAIR_WORDS name words most similar to each of the query's
    first two words, paired in either order, with the pair's similarity to the whole query."""
    normalised = func.bee_search_normalise(_q(query))
    words = [
        _words_like(
            func.bee_search_normalise(_input(f"word_{number}", part, Text())),
            business_id,
            f"similar_{number + 1}",
            SIMILAR_PAIR_WORDS,
        )
        for number, part in enumerate(_parts(query)[:2])
    ]
    pairs = union(
        *(
            select(
                a.c.word.label("w1"),
                b.c.word.label("w2"),
                func.word_similarity(normalised, a.c.word + literal(" ") + b.c.word).label("similarity"),
            ).select_from(a.join(b, true()))
            for a, b in (words, words[::-1])
        )
    ).cte("similar_pairs")
    # MATERIALIZED: otherwise the pair's similarity is inlined into (and recomputed for) every row.
    return pairs.prefix_with("MATERIALIZED")


def _typo_pairs_statement(
    query: TextQuery,
    phase: _Phase,
    filters: SearchFilters,
    *,
    key: ColumnElement[Any],
    direction: str,
    after: Sequence[Any] | None,
    limit: int,
) -> Select[Any]:
    """The typo phase of a query of several words ("ioana popscu"): names whose first two words are
    similar to the query's first two words, in either order. The SIMILAR_PAIR_WORDS most similar
    name words of each query word are paired, and each pair ("ioana popescu") is a prefix range of
    ix_customers_business_name_prefix (index-only). A row ranks by its name's similarity with the
    whole query, round(300 * word_similarity(query, name)) >= 0.5, as the typo tier always did."""
    normalised = func.bee_search_normalise(_q(query))
    name = Customer.search_name
    pairs = _similar_pairs(query, filters.business_id)
    head = (pairs.c.w1 + literal(" ") + pairs.c.w2).self_group().collate("default")
    # A name of exactly those two words has the pair's similarity: computed once per pair, not per row.
    similarity = case((name == head, pairs.c.similarity), else_=func.word_similarity(normalised, name))
    rank = cast(func.round(similarity * TYPO_TIER), Integer)
    conditions = [
        *_where(filters),
        *phase.branches,
        name.op("~>=~", is_comparison=True)(head),
        name.op("~<~", is_comparison=True)(func.bee_prefix_upper(head)),
        # its first two words are the pair: the name is the pair, or starts with the pair and a space
        # (comparisons, not bee_name_word: a SQL function call per row cost ~25 us)
        or_(name == head, _starts_with(name, head + literal(" "))),
        similarity >= WORD_SIMILARITY_THRESHOLD,
    ]
    if (cursor := _cursor(key, after)) is not None:
        last_rank, key_value, id_value = cursor
        conditions.append(or_(rank < last_rank, and_(rank == last_rank, _beyond(key, direction, key_value, id_value))))
    per_pair = (
        select(Customer.id.label("id"), key.label("sort_key"), rank.label("rank"))
        .where(*conditions)
        .order_by(rank.desc(), *_by(key, Customer.id, direction))
        .limit(_limit(limit))
        .lateral("typo_pair")
    )
    found = select(per_pair.c.id, per_pair.c.sort_key, per_pair.c.rank).select_from(pairs).join(per_pair, true())
    return _with_columns(found, direction, limit)


def _typo_words_statement(
    query: TextQuery,
    phase: _Phase,
    filters: SearchFilters,
    *,
    key: ColumnElement[Any],
    direction: str,
    after: Sequence[Any] | None,
    limit: int,
) -> Select[Any]:
    """The typo phase of a one-word query ("popscu"): the few similar words of the business are
    found among its distinct name words, then each word gives its first `limit` customers through the
    word indexes (business_id, word, created_at, id), one slot (first / second / last word) at a time.

    Ranking: a customer ranks by its most similar word, round(300 * word_similarity(query, word)),
    then by the requested sort. A customer with two similar words is kept only under its best one
    (the earlier slot on a tie), so it appears once."""
    normalised = func.bee_search_normalise(_q(query))
    similar = _similar_words(query, filters.business_id)
    where = _where(filters)
    cursor = _cursor(key, after)
    parts: list[Select[Any]] = []
    for slot, word in enumerate(_NAME_SLOTS):
        conditions = [*where, *phase.branches, word == similar.c.word]
        if slot == 2:
            conditions.append(_LAST_WORD_INDEXED)
        for other, other_word in enumerate(_NAME_SLOTS):
            if other != slot:  # not a better (or an equal, earlier) similar word in another slot
                better = _word_rank(normalised, other_word)
                conditions.append(better < similar.c.rank if other < slot else better <= similar.c.rank)
        if cursor is not None:
            last_rank, key_value, id_value = cursor
            conditions.append(
                or_(
                    similar.c.rank < last_rank,
                    and_(similar.c.rank == last_rank, _beyond(key, direction, key_value, id_value)),
                )
            )
        per_word = (
            select(Customer.id.label("id"), key.label("sort_key"), similar.c.rank.label("rank"))
            .where(*conditions)
            .order_by(*_by(key, Customer.id, direction))
            .limit(_limit(limit))
            .lateral(f"typo_{slot + 1}")
        )
        parts.append(
            select(per_word.c.id, per_word.c.sort_key, per_word.c.rank).select_from(similar).join(per_word, true())
        )
    return _with_columns(union_all(*parts), direction, limit)


# The optional filters: (field of SearchFilters, column, comparison). A value is the parameter in_<field>.
_FILTERS: tuple[tuple[str, Any, Callable[[Any, Any], ColumnElement[bool]]], ...] = (
    ("gender", Customer.gender, operator.eq),
    ("created_after", Customer.created_at, operator.ge),
    ("created_before", Customer.created_at, operator.lt),
    ("last_order_after", Customer.last_order_date, operator.ge),
    ("last_order_before", Customer.last_order_date, operator.lt),
    ("min_orders", Customer.total_orders, operator.ge),
    ("min_lifetime_value", Customer.lifetime_value, operator.ge),
)


def _tags(filters: SearchFilters) -> list[str]:
    return list(dict.fromkeys(filters.tags))


def _where(filters: SearchFilters) -> list[ColumnElement[bool]]:
    business = _input("business_id", filters.business_id, Customer.business_id.type)
    where: list[ColumnElement[bool]] = [Customer.business_id == business]
    for field, column, compare in _FILTERS:
        value = getattr(filters, field)
        if value is not None:
            where.append(compare(column, _input(field, value, column.type)))
    if filters.tags:
        keys = [func.lower(func.btrim(_input(f"tag_{n}", tag, Text()))) for n, tag in enumerate(_tags(filters))]

        def has(*wanted: ColumnElement[Any]) -> ColumnElement[bool]:
            return exists().where(
                CustomerTag.customer_id == Customer.id,
                CustomerTag.business_id == business,
                CustomerTag.label_key.in_(wanted) if len(wanted) > 1 else CustomerTag.label_key == wanted[0],
            )

        where.append(and_(*(has(key) for key in keys)) if filters.tag_mode == "all" else has(*keys))
    return where


def _cursor(key: ColumnElement[Any], after: Sequence[Any] | None) -> tuple[Any, Any, Any] | None:
    """The cursor (rank, sort key, id) as parameters."""
    if after is None:
        return None
    rank, key_value, id_value = after
    return (
        _input("after_rank", rank, Integer()),
        _input("after_key", key_value, key.type),
        _input("after_id", id_value, Customer.id.type),
    )


def _limit(limit: int) -> BindParameter[Any]:
    return _input("limit", limit, Integer())


def _inputs(filters: SearchFilters, query: TextQuery, *, after: Sequence[Any] | None, limit: int) -> dict[str, Any]:
    """This request's value of every parameter `_input` names (the other half of the statement cache)."""
    values: dict[str, Any] = {
        "in_business_id": filters.business_id,
        "in_limit": limit,
        "in_q": query.raw,
        "in_q_escaped": _like_escape(query.raw),
    }
    for field, _column, _compare in _FILTERS:
        if (value := getattr(filters, field)) is not None:
            values[f"in_{field}"] = value
    values.update((f"in_tag_{n}", tag) for n, tag in enumerate(_tags(filters)))
    values.update((f"in_part_{n}", _like_escape(part)) for n, part in enumerate(_parts(query)))
    values.update((f"in_word_{n}", part) for n, part in enumerate(_parts(query)[:2]))
    if after is not None:
        values.update(in_after_rank=after[0], in_after_key=after[1], in_after_id=after[2])
    return values


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


def _tags_of(customer_id: ColumnElement[Any]) -> Any:
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
        where.append(_match(filters.query, filters.business_id))
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
    tags = _tags_of(page.c.id)
    order = _by(page.c.sort_key, page.c.id, direction)
    if filters.query is not None:
        order.insert(0, page.c.rank.desc())
    return select(page, tags.label("tags")).order_by(*order).limit(limit)


# Digits and ASCII punctuation other than ' and -: rare in names, common in email fragments
# ("ioana.vl"). The same test in SQL is the predicate of the partial index in migration 0009.
_UNUSUAL_CHARACTERS = frozenset(string.punctuation + string.digits) - {"'", "-"}
UNUSUAL_NAME = Customer.search_name.op("~")(literal_column("'[^[:alpha:] ''-]'"))


def _unusual(query: TextQuery) -> bool:
    return any(character in _UNUSUAL_CHARACTERS for character in query.raw)


def _phased(query: TextQuery) -> bool:
    return query.phone_digits is None and "@" not in query.raw


def _by_words(query: TextQuery, sort: str) -> bool:
    """One word in created_at order: the first phase walks the word indexes (`_word_phase_statement`)."""
    return sort == "created_at" and " " not in query.raw


def _phase_statement(
    phase: _Phase,
    filters: SearchFilters,
    *,
    key: ColumnElement[Any],
    direction: str,
    after: Sequence[Any] | None,
    limit: int,
) -> Select[Any]:
    """(id, sort_key, rank) of the phase's best `limit` rows after the cursor. Only columns that the
    prefix indexes include are read, so the btree phases are index-only scans."""
    where = _where(filters)
    if (cursor := _cursor(key, after)) is not None:
        last_rank, key_value, id_value = cursor
        where.append(
            or_(phase.rank < last_rank, and_(phase.rank == last_rank, _beyond(key, direction, key_value, id_value)))
        )
    branches = []
    for branch in phase.branches:
        candidates = select(Customer.id.label("id"), key.label("sort_key"), phase.rank.label("rank")).where(
            *where, branch
        )
        # OFFSET 0 plans the phase's matches on their own (the prefix range, or the trigram bitmap),
        # then the top `limit` are sorted out of them. Without it, the planner often prefers walking
        # the business's (created_at, id) index newest first, filtering every row, because it
        # estimates a LIKE pattern matches ~1% of the business: "george.ha%" (180 rows at a
        # million) walked 176,000 rows for 21 (690 ms; 10 ms with the fence).
        candidates = candidates.offset(0)
        branches.append(candidates)
    return _with_columns(union_all(*branches) if len(branches) > 1 else branches[0], direction, limit)


def _word_phase_statement(
    query: TextQuery, filters: SearchFilters, *, direction: str, after: Sequence[Any] | None, limit: int
) -> Select[Any]:
    """The first phase (tiers 1000/900/800) for a one-word query in created_at order, without reading
    every match: the distinct first (second) words that start with the query are enumerated through
    the (business_id, word, created_at, id) index (a loose index scan: one probe per distinct word,
    "stefa" -> stefan, stefania, ...), and each word gives only its first `limit` rows in order."""
    key = Customer.created_at
    terms = _terms(query)
    name = Customer.search_name
    where = _where(filters)
    by = _by(key, Customer.id, direction)

    def cursor(rank: int) -> list[ColumnElement[bool]] | None:
        if after is None or after[0] > rank:
            return []
        if after[0] < rank:
            return None  # the cursor is past this tier
        _rank, key_value, id_value = _cursor(key, after) or ()
        return [_beyond(key, direction, key_value, id_value)]

    parts: list[Select[Any]] = []
    if (condition := cursor(1000)) is not None:
        parts.append(
            select(Customer.id.label("id"), key.label("sort_key"), literal(1000).label("rank"))
            .where(*where, name == terms.normalised, *condition)
            .order_by(*by)
            .limit(_limit(limit))
        )
    for position, rank, extra in ((1, 900, name != terms.normalised), (2, 800, ~terms.name_prefix)):
        if (condition := cursor(rank)) is None:
            continue
        word = func.bee_name_word(name, literal_column(str(position))).collate("C")
        # Each probe is "the next word after w" with no upper bound, so that it is planned as an
        # ordered index scan stopped after one entry (with the prefix range in the probe, the
        # planner may read the whole range and sort it); the walk stops at the first word past it.
        business = Customer.business_id == _input("business_id", filters.business_id, Customer.business_id.type)
        first = select(word).where(business, word >= terms.normalised).order_by(word).limit(1).scalar_subquery()
        words = select(first.label("w")).cte(f"words_{position}", recursive=True)
        following = select(word).where(business, word > words.c.w).order_by(word).limit(1).scalar_subquery()
        words = words.union_all(
            select(following.label("w")).where(words.c.w.is_not(None), words.c.w.like(terms.prefix_pattern))
        )
        per_word = (
            select(Customer.id.label("id"), key.label("sort_key"), literal(rank).label("rank"))
            .where(*where, words.c.w.like(terms.prefix_pattern), word == words.c.w, extra, *condition)
            .order_by(*by)
            .limit(_limit(limit))
            .lateral(f"word_{position}")
        )
        parts.append(
            select(per_word.c.id, per_word.c.sort_key, per_word.c.rank).select_from(words).join(per_word, true())
        )
    if not parts:
        parts.append(select(Customer.id.label("id"), key.label("sort_key"), literal(0).label("rank")).where(false()))
    return _with_columns(union_all(*parts) if len(parts) > 1 else parts[0], direction, limit)


def _with_columns(found: Any, direction: str, limit: int) -> Select[Any]:
    """The best `limit` of `found` (id, sort_key, rank) with the list view columns and tags: the
    heap and the tags are read for those rows only, after the LIMIT."""
    rows = found.subquery("phase")
    page = (
        select(rows.c.id, rows.c.sort_key, rows.c.rank)
        .order_by(rows.c.rank.desc(), *_by(rows.c.sort_key, rows.c.id, direction))
        .limit(_limit(limit))
        .subquery("page")
    )
    columns = [c for c in _COLUMNS if c is not Customer.id]
    return (
        select(page.c.id, *columns, page.c.sort_key, page.c.rank, _tags_of(page.c.id).label("tags"))
        .join_from(page, Customer, Customer.id == page.c.id)
        .order_by(page.c.rank.desc(), *_by(page.c.sort_key, page.c.id, direction))
    )


def _query_shape(query: TextQuery) -> tuple[Any, ...]:
    """What of a name/email query decides how its statements are built (not their values)."""
    typo = len(query.raw) >= MIN_TRIGRAM_QUERY and _WORDS.match(query.raw) is not None
    return (_one_word(query), _unusual(query), typo, len(_parts(query)))


def _filters_shape(filters: SearchFilters) -> tuple[Any, ...]:
    present = tuple(getattr(filters, field) is not None for field, _column, _compare in _FILTERS)
    return (present, len(_tags(filters)), filters.tag_mode if filters.tags else None)


def _word_cursor_shape(after: Sequence[Any] | None) -> tuple[int, ...] | None:
    """Where the cursor's rank is against each tier of the word phase (what `cursor()` there decides)."""
    if after is None:
        return None
    return tuple((after[0] > rank) - (after[0] < rank) for rank in (1000, 900, 800))


@dataclass(frozen=True)
class _Cached:
    statement: Any
    inputs: frozenset[str]  # the names of its request parameters (in_...)


_STATEMENTS: dict[tuple[Any, ...], Any] = {}
_STATEMENT_CACHE_SIZE = 2048


def _cached(shape: tuple[Any, ...], build: Callable[[], Any]) -> Any:
    """The statement (or phase list) of this shape, built once: building the phase statements of a
    typo query with SQLAlchemy's constructs cost ~15 ms of CPU per request, more than running them.
    Every request value in a statement is a named parameter (`_input`), passed again on each run;
    a built statement is checked for request values that slipped in as anonymous literals (they
    would be another request's values on the next run)."""
    cached = _STATEMENTS.get(shape)
    if cached is None:
        built = build()
        if isinstance(built, list):  # phases: their parameters are checked in the statements
            cached = built
        else:
            binds = built.compile(dialect=postgresql.dialect()).binds.values()
            for bind in binds:
                constant = isinstance(bind.value, int | float) or bind.value in ("%", "", " ")
                if not bind.key.startswith("in_") and not constant:
                    raise AssertionError(f"a request value is not a named parameter: {bind.value!r}")
            cached = _Cached(built, frozenset(bind.key for bind in binds if bind.key.startswith("in_")))
        if len(_STATEMENTS) >= _STATEMENT_CACHE_SIZE:
            _STATEMENTS.clear()
        _STATEMENTS[shape] = cached
    return cached


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
    """Relevance first, one phase (run of tiers) at a time: a later phase runs only when the earlier
    ones cannot fill the page, so a common word is served by the btree phase alone. Ranks of later
    phases are all lower, so the page is exactly what ranking every match would give. The typo tier
    is bounded: for a one-word query, the SIMILAR_WORDS most similar name words, through a name's
    first, second and last word (`_typo_words_statement`); for a longer query, the pairs of the
    SIMILAR_PAIR_WORDS most similar words of its first two words (`_typo_pairs_statement`)."""
    key = SORT_KEYS[sort]
    shape = (_query_shape(query), _filters_shape(filters), sort, direction)
    phases: list[_Phase] = _cached(("phases", *shape), partial(_phases, query, filters.business_id))
    found: list[Row[Any]] = []  # phases are in rank order: their rows follow each other
    plan_mode = None  # the first statement sets it with the other settings
    for number, phase in enumerate(phases):
        if after is not None and phase.lowest > after[0]:
            continue  # the cursor is past this phase's rows
        remaining = limit - len(found)
        if number == 0 and _by_words(query, sort):
            build = partial(_word_phase_statement, query, filters, direction=direction, after=after, limit=remaining)
            cached, generic = _cached(("words", *shape, _word_cursor_shape(after)), build), True
        elif phase.by_words:
            typo = _typo_words_statement if _one_word(query) else _typo_pairs_statement
            build = partial(typo, query, phase, filters, key=key, direction=direction, after=after, limit=remaining)
            cached, generic = _cached(("typo", number, *shape, after is not None), build), True
        else:
            build = partial(
                _phase_statement, phase, filters, key=key, direction=direction, after=after, limit=remaining
            )
            cached, generic = _cached(("phase", number, *shape, after is not None), build), False
        values = _inputs(filters, query, after=after, limit=remaining)
        parameters = {name: values[name] for name in cached.inputs}  # KeyError rather than a stale value
        wanted = "force_generic_plan" if generic else "force_custom_plan"
        if plan_mode is None:
            await session.execute(_GENERIC_SESSION_SETTINGS if generic else _SESSION_SETTINGS)
        elif wanted != plan_mode:
            await session.execute(_PLAN_MODES[wanted])
        plan_mode = wanted
        found += (await session.execute(cached.statement, parameters)).all()
        if len(found) >= limit:
            break
    return found


async def search_page(
    session: AsyncSession, filters: SearchFilters, *, sort: str, direction: str, after: Sequence[Any] | None, limit: int
) -> Sequence[Row[Any]]:
    if filters.query is not None:
        # For this transaction only: plan each search for its own values (a generic plan cannot see
        # which trigrams a pattern holds), and accept one typo in a short word ("popscu" -> "Popescu").
        # (The phased path sets them with its first statement's plan mode.)
        if _phased(filters.query):
            return await _phased_page(
                session, filters, filters.query, sort=sort, direction=direction, after=after, limit=limit
            )
        await session.execute(_SESSION_SETTINGS)
    statement = _page_statement(filters, sort=sort, direction=direction, after=after, limit=limit)
    return (await session.execute(statement)).all()


async def count(session: AsyncSession, filters: SearchFilters) -> int:
    if filters.query is not None:
        await session.execute(_SESSION_SETTINGS)
    where = _where(filters)
    if filters.query is not None:
        where.append(_match(filters.query, filters.business_id))
    statement = select(func.count()).select_from(Customer).where(*where)
    return (await session.execute(statement)).scalar_one()


def explain_statement(
    filters: SearchFilters, *, sort: str, direction: str, after: Sequence[Any] | None, limit: int
) -> Select[Any]:
    """The statement `search_page` runs (for EXPLAIN in bench/search.py); for a name or email query,
    the first phase's (what serves a page of a common word)."""
    if filters.query is not None and _phased(filters.query):
        if _by_words(filters.query, sort):
            return _word_phase_statement(filters.query, filters, direction=direction, after=after, limit=limit)
        phase = _phases(filters.query, filters.business_id)[0]
        return _phase_statement(phase, filters, key=SORT_KEYS[sort], direction=direction, after=after, limit=limit)
    return _page_statement(filters, sort=sort, direction=direction, after=after, limit=limit)


__all__ = ["NO_ORDER_DATE", "SORT_TYPES", "SearchFilters", "count", "interpret_query", "search_page"]
