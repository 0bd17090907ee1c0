"""Relevance: a query's tiers (rank, condition), and a name/email query as phases of tiers, best first.

A name/email query runs phase by phase, each phase one statement that runs only when the ones before
it did not fill the page: (1) exact name / name prefix / surname prefix (btree), (2) name substring
(trigram; skipped when no name word of the business holds the query), (3) email prefix (btree),
(4) email substring (trigram), (5) almost-matches through the similar name words (`typos`). A common
word fills its page in the btree phase, and the trigram phases never run for it.
"""

from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, and_, case, exists, func, literal, literal_column, or_, select, tuple_

from bee_customers_service.customers.models import Customer
from bee_customers_service.search.models import CustomerNameWord
from bee_customers_service.search.repository.filters import Column
from bee_customers_service.search.repository.params import Params
from bee_customers_service.search.repository.query import TextQuery, one_word, parts, typo_tolerant, unusual
from bee_customers_service.search.repository.typos import (
    LAST_WORD_INDEXED,
    NAME_SLOTS,
    TYPO_TIER,
    WORD_SIMILARITY_THRESHOLD,
    similar_pairs,
    similar_words,
)

# A name holding a character that names rarely hold: the predicate of the partial index
# ix_customers_business_unusual_name (migration 0009).
UNUSUAL_NAME = Customer.search_name.op("~")(literal_column("'[^[:alpha:] ''-]'"))


@dataclass(frozen=True)
class Terms:
    """The pieces of a name/email query's conditions, built once."""

    normalised: ColumnElement[Any]
    prefix_pattern: ColumnElement[Any]
    name_prefix: ColumnElement[bool]
    rest_prefix: ColumnElement[bool]
    name_substring: ColumnElement[bool]
    email_prefix: ColumnElement[bool] | None
    email_substring: ColumnElement[bool] | None
    typo: ColumnElement[bool] | None


def starts_with(value: Column, prefix: ColumnElement[Any]) -> ColumnElement[bool]:
    """`value` starts with `prefix`, as the range [prefix, bee_prefix_upper(prefix)) in byte order.

    Only the btree prefix indexes (text_pattern_ops) can serve the range; written as LIKE 'prefix%',
    the planner could choose a trigram bitmap and recheck many more rows than match (bench/README.md).
    """
    prefix = prefix.self_group()  # PostgreSQL gives ~>=~ and || the same precedence
    return and_(
        value.op("~>=~", is_comparison=True)(prefix),
        value.op("~<~", is_comparison=True)(func.bee_prefix_upper(prefix)),
    )


def terms(query: TextQuery, params: Params) -> Terms:
    normalised = func.bee_search_normalise(params.bind("q"))
    normalised_escaped = func.bee_search_normalise(params.bind("q_escaped"))
    name = Customer.search_name
    email_prefix = email_substring = typo = None
    if one_word(query):
        email_prefix = starts_with(Customer.email, func.lower(params.bind("q")))
        email_substring = Customer.email.like(literal("%") + func.lower(params.bind("q_escaped")) + literal("%"))
    if typo_tolerant(query):
        # word_similarity(query, name) >= pg_trgm.word_similarity_threshold.
        typo = normalised.op("<%", is_comparison=True)(name)
    return Terms(
        normalised=normalised,
        prefix_pattern=normalised_escaped + literal("%"),
        name_prefix=starts_with(name, normalised),
        # "the name without its first word starts with it": the surname (or middle name) starts with it.
        rest_prefix=starts_with(func.bee_name_rest(name), normalised),
        name_substring=name.like(literal("%") + normalised_escaped + literal("%")),
        email_prefix=email_prefix,
        email_substring=email_substring,
        typo=typo,
    )


def tiers(query: TextQuery, params: Params) -> list[tuple[int, ColumnElement[bool]]]:
    """The relevance tiers of a query, best first: (rank, condition). A row belongs to the first tier
    whose condition it meets; within a tier rows follow the requested sort."""
    if query.phone_digits is not None:
        return [
            (1000, Customer.phone_digits.like(params.bind("phone_ends"))),  # the number ends with it
            (900, Customer.phone_digits.like(params.bind("phone_contains"))),
        ]
    if "@" in query.raw:  # only an email has an "@": do not look at names at all
        email_prefix = func.lower(params.bind("q_escaped")) + literal("%")
        email_pattern = literal("%") + func.lower(params.bind("q_escaped")) + literal("%")
        return [(1000, Customer.email.like(email_prefix)), (900, Customer.email.like(email_pattern))]

    parts_ = terms(query, params)
    found: list[tuple[int, ColumnElement[bool]]] = [
        (1000, Customer.search_name == parts_.normalised),
        (900, parts_.name_prefix),
        (800, parts_.rest_prefix),
        (700, parts_.name_substring),
    ]
    if parts_.email_prefix is not None and parts_.email_substring is not None:
        found += [(650, parts_.email_prefix), (500, parts_.email_substring)]
    if parts_.typo is not None:
        found.append((TYPO_TIER, parts_.typo))
    return found


def match(query: TextQuery, params: Params) -> ColumnElement[bool]:
    """Rows in any tier, with as few index scans as possible: the substring conditions already
    contain the equal / prefix / word-prefix ones (which only rank)."""
    by_rank = dict((rank, condition) for rank, condition in reversed(tiers(query, params)))
    if query.phone_digits is not None or "@" in query.raw:
        return by_rank[900]
    wanted = [by_rank[700]] + [by_rank[rank] for rank in (500, TYPO_TIER) if rank in by_rank]
    first, second, last = NAME_SLOTS
    if TYPO_TIER in by_rank and one_word(query):
        # The same almost-matches as the typo phase's: a first, second or last word among the similar ones.
        similar = select(similar_words(params).c.word).scalar_subquery()
        wanted[-1] = or_(first.in_(similar), second.in_(similar), and_(LAST_WORD_INDEXED, last.in_(similar)))
    elif TYPO_TIER in by_rank:
        # ... and for several words: first two words a similar pair, similar enough as a whole.
        pairs = similar_pairs(params)
        similarity = func.word_similarity(func.bee_search_normalise(params.bind("q")), Customer.search_name)
        wanted[-1] = and_(
            tuple_(first, second).in_(select(pairs.c.w1, pairs.c.w2)), similarity >= WORD_SIMILARITY_THRESHOLD
        )
    return or_(*wanted)


def rank(query: TextQuery, params: Params) -> ColumnElement[int]:
    """The first tier a row meets, for the one-statement path (phone fragments, queries with "@")."""
    return case(*((condition, rank) for rank, condition in tiers(query, params)), else_=literal(0))


@dataclass(frozen=True)
class Phase:
    """Rows of a contiguous run of tiers (ranks `lowest`..`highest`), found by `branches`: each branch
    is one index path, and excludes the rows of the branches (and phases) before it. `rank` is
    exact for the phase's rows."""

    highest: int
    lowest: int
    branches: tuple[ColumnElement[bool], ...]
    rank: ColumnElement[int]
    by_words: bool = False  # the typo phase: resolved through the name words, not `branches`


def held_by_a_word(query: TextQuery, params: Params) -> ColumnElement[bool]:
    """False when some part of the query is inside none of the business's name words.

    Checked in customer_name_words (a few thousand words), it spares the trigram scan of every name
    for the many queries that no name contains (typos). Uncorrelated, so evaluated once, before the scan.
    """
    return and_(
        *(
            exists().where(
                CustomerNameWord.business_id == params.bind("business_id"),
                CustomerNameWord.word.like(
                    literal("%") + func.bee_search_normalise(params.bind(f"part_{number}")) + literal("%")
                ),
            )
            for number in range(len(parts(query)))
        )
    )


def phases(query: TextQuery, params: Params) -> list[Phase]:
    """A name/email query as phases, best tiers first (the tiers and ranks of `tiers`)."""
    parts_ = terms(query, params)
    name = Customer.search_name
    found = [
        Phase(
            1000,
            800,
            (parts_.name_prefix, and_(parts_.rest_prefix, ~parts_.name_prefix)),
            case((name == parts_.normalised, 1000), (parts_.name_prefix, 900), else_=800),
        ),
        Phase(
            700,
            700,
            (and_(held_by_a_word(query, params), parts_.name_substring, ~parts_.name_prefix, ~parts_.rest_prefix),),
            literal(700),
        ),
    ]
    if unusual(query):
        # The name must hold that character too: only the few such names of the business are read
        # (partial index ix_customers_business_unusual_name) instead of every name with its letters.
        # (strpos, not LIKE: the planner would otherwise prefer the trigram index, which cannot see
        # the character and returns every name holding the letters around it).
        contains = func.strpos(Customer.search_name, parts_.normalised) > 0
        held = held_by_a_word(query, params)
        found[1] = Phase(
            700, 700, (and_(held, contains, UNUSUAL_NAME, ~parts_.name_prefix, ~parts_.rest_prefix),), found[1].rank
        )
    seen = parts_.name_substring
    if parts_.email_prefix is not None and parts_.email_substring is not None:
        found.append(Phase(650, 650, (and_(parts_.email_prefix, ~seen),), literal(650)))
        found.append(Phase(500, 500, (and_(parts_.email_substring, ~seen, ~parts_.email_prefix),), literal(500)))
        seen = or_(seen, parts_.email_substring)
    if parts_.typo is not None:
        # Built by `typo_words_statement` (one word) or `typo_pairs_statement` (several words).
        found.append(Phase(TYPO_TIER, 0, (~seen,), literal(0), by_words=True))
    return found
