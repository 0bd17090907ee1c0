"""Btree paths for the best relevance tiers of a name or email query, so a common word is cheap.

A trigram bitmap finds every row that contains the query; for a common first name or surname in a
business of a million that is ~13k rows, each fetched from the heap and ranked before a page is cut
(p95 763 ms, bench/README.md). The best tiers are prefixes, which a btree serves in order:

- `bee_name_rest(search_name)`: the name without its first word ("stefan popescu" -> "popescu"), so
  "the surname starts with the query" is a prefix range too;
- (business_id, search_name), (business_id, bee_name_rest(search_name)) and (business_id, email)
  with `text_pattern_ops` (LIKE 'q%' becomes a range whatever the database collation), INCLUDING the
  sort keys and id: the prefix tiers are ranked from index-only scans, without touching the heap.

Revision ID: 0009_search_perf
Revises: 0008_outbox_notify_trigger
Create Date: 2026-11-30
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009_search_perf"
down_revision: str | None = "0008_outbox_notify_trigger"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SORT_KEYS = "created_at, last_order_date, lifetime_value, id"


def upgrade() -> None:
    op.execute(
        """CREATE OR REPLACE FUNCTION public.bee_name_rest(text) RETURNS text
        LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT
        AS $$ SELECT CASE WHEN strpos($1, ' ') > 0 THEN ltrim(substr($1, strpos($1, ' ') + 1)) ELSE '' END $$"""
    )
    op.execute(
        """CREATE OR REPLACE FUNCTION public.bee_name_word(text, integer) RETURNS text
        LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT
        AS $$ SELECT CASE $2 WHEN 1 THEN split_part($1, ' ', 1) ELSE split_part(public.bee_name_rest($1), ' ', 1) END $$"""
    )
    for word, name in ((1, "first"), (2, "second")):
        op.execute(
            f"CREATE INDEX ix_customers_business_{name}_word_created_at ON customers"
            f' (business_id, (public.bee_name_word(search_name, {word}) COLLATE "C"), created_at, id)'
        )
    # Names with a digit or punctuation other than ' and - (rare): what a query such as "ioana.vl"
    # can be a substring of (search/repository/phases.py UNUSUAL_NAME, the same expression).
    op.execute(
        "CREATE INDEX ix_customers_business_unusual_name ON customers (business_id)"
        " WHERE search_name ~ '[^[:alpha:] ''-]'"
    )
    op.execute(
        "CREATE INDEX ix_customers_business_name_prefix ON customers"
        f" (business_id, search_name text_pattern_ops) INCLUDE ({SORT_KEYS})"
    )
    op.execute(
        "CREATE INDEX ix_customers_business_name_rest_prefix ON customers"
        f" (business_id, public.bee_name_rest(search_name) text_pattern_ops) INCLUDE (search_name, {SORT_KEYS})"
    )
    op.execute(
        "CREATE INDEX ix_customers_business_email_prefix ON customers"
        f" (business_id, email text_pattern_ops) INCLUDE (search_name, {SORT_KEYS})"
    )


def downgrade() -> None:
    for name in (
        "ix_customers_business_email_prefix",
        "ix_customers_business_name_rest_prefix",
        "ix_customers_business_name_prefix",
        "ix_customers_business_unusual_name",
        "ix_customers_business_second_word_created_at",
        "ix_customers_business_first_word_created_at",
    ):
        op.drop_index(name, table_name="customers")
    op.execute("DROP FUNCTION IF EXISTS public.bee_name_word(text, integer)")
    op.execute("DROP FUNCTION IF EXISTS public.bee_name_rest(text)")
