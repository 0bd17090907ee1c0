"""Typo words: the business's name words (customer_name_words) similar to the query's words."""

from typing import Any

from sqlalchemy import CTE, ColumnElement, Integer, and_, case, cast, func, literal, literal_column, select, true, union

from bee_customers_service.customers.models import Customer
from bee_customers_service.search.models import CustomerNameWord
from bee_customers_service.search.repository.params import Params

TYPO_TIER = 300
WORD_SIMILARITY_THRESHOLD = 0.5  # pg_trgm's default 0.6 misses a dropped letter in a 7-letter name
# A one-word typo query: at most this many similar words, most similar first, are resolved to customers.
SIMILAR_WORDS = 50
# A query of several words: the most similar words of each of its first two words, paired.
SIMILAR_PAIR_WORDS = 5

# The words of a name that the btree word indexes resolve (the same as SQL `bee_name_words`): the
# first, the second, and the last of a name of three or more words (NULL for shorter names).
NAME_SLOTS: tuple[ColumnElement[Any], ...] = (
    func.bee_name_word(Customer.search_name, literal_column("1")).collate("C"),
    func.bee_name_word(Customer.search_name, literal_column("2")).collate("C"),
    func.bee_name_last_word(Customer.search_name).collate("C"),
)
LAST_WORD_INDEXED = func.bee_name_last_word(Customer.search_name).is_not(None)  # the partial index's predicate


def word_rank(normalised: ColumnElement[Any], word: ColumnElement[Any]) -> ColumnElement[int]:
    """The typo rank a name word gives (0 when it is not similar enough): 0..300."""
    similarity = func.word_similarity(normalised, word)
    return case(
        (and_(word != "", similarity >= WORD_SIMILARITY_THRESHOLD), cast(func.round(similarity * TYPO_TIER), Integer)),
        else_=0,
    )


def similar_words(params: Params) -> CTE:
    """(word, rank) of the business's name words similar to a one-word query, best first (GIN trigram lookup)."""
    # A word that contains the query is not "almost" it: its holders are in the substring tier.
    contains = CustomerNameWord.word.like(
        literal("%") + func.bee_search_normalise(params.bind("q_escaped")) + literal("%")
    )
    normalised = func.bee_search_normalise(params.bind("q"))
    return _words_like(normalised, params, "similar_words", SIMILAR_WORDS, ~contains)


def _words_like(
    normalised: ColumnElement[Any], params: Params, name: str, limit: int, *extra: ColumnElement[bool]
) -> CTE:
    similarity = func.word_similarity(normalised, CustomerNameWord.word)
    rank = cast(func.round(similarity * TYPO_TIER), Integer)
    return (
        select(CustomerNameWord.word.label("word"), rank.label("rank"))
        .where(
            CustomerNameWord.business_id == params.bind("business_id"),
            normalised.op("<%", is_comparison=True)(CustomerNameWord.word),
            *extra,
        )
        .order_by(rank.desc(), CustomerNameWord.word)
        .limit(limit)
        .cte(name)
    )


def similar_pairs(params: Params) -> CTE:
    """(w1, w2, similarity): the most similar name words of each of the query's first two words, paired
    in either order, with the pair's similarity to the whole query."""
    normalised = func.bee_search_normalise(params.bind("q"))
    similar = [
        _words_like(
            func.bee_search_normalise(params.bind(f"word_{number}")),
            params,
            f"similar_{number + 1}",
            SIMILAR_PAIR_WORDS,
        )
        for number in range(2)
        if f"word_{number}" in params
    ]
    pairs = union(
        *(
            select(
                a.c.word.label("w1"),
                b.c.word.label("w2"),
                func.word_similarity(normalised, a.c.word + literal(" ") + b.c.word).label("similarity"),
            ).select_from(a.join(b, true()))
            for a, b in (similar, similar[::-1])
        )
    ).cte("similar_pairs")
    # MATERIALIZED: otherwise the pair's similarity is inlined into (and recomputed for) every row.
    return pairs.prefix_with("MATERIALIZED")
