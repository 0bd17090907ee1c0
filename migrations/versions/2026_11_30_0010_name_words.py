"""Each business's distinct name words, so a typo is searched among words, not among customers.

A typo query ("popscu") used to reach the similarity phase of the search: `word_similarity` over the
GIN trigram index of every name of the business, 50-500 ms at a million customers
(bench/README.md). A business has a few hundred to a few thousand distinct name words even then, so:

- `customer_name_words(business_id, word)`: every distinct word of the business's names, with a GIN
  trigram index on (business_id, word): "which words are similar to the query" and "does any name
  contain the query at all" are sub-millisecond lookups. The typo phase resolves a similar word to
  customers through the btree word indexes: the first word, the second word, and the last word of
  a name of three or more words (`bee_name_word(search_name, 1|2)`, `bee_name_last_word`);
- `ix_customers_business_last_word_created_at`: partial (names of three or more words only, rare),
  so a surname after two first names ("ana maria popescu") resolves like the other two words;
- kept by triggers on `customers`, whatever writes the row (POST /customers, the activity consumer's
  profiles, PATCH, GDPR erasure, the seed): statement-level with transition tables for INSERT and
  DELETE (one statement per batch), row-level `UPDATE OF full_name, business_id` for renames (the
  consumer's aggregate updates do not fire it). Inserts add missing words (`ON CONFLICT DO NOTHING`:
  no lock on an existing word, so concurrent inserts of "maria" do not wait for each other); a delete
  or rename removes the words no customer of the business still has (an erased customer's rare
  surname does not stay behind).
- `bee_prefix_upper(text)`: "starts with p" as the range [p, bee_prefix_upper(p)), which only the
  btree prefix indexes serve (with LIKE 'p%' the planner sometimes chose the email trigram index:
  9,752 rows rechecked for 645, 95 ms instead of 1.5 ms).

Known gap: a delete of the last customer holding a word, concurrent with an insert of a new customer
holding it (same business, both uncommitted at the same time), can remove the word; that customer is
then found by every phase but the typo phase until a write of the same word re-adds it.

Revision ID: 0010_name_words
Revises: 0009_search_perf
Create Date: 2026-11-30
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0010_name_words"
down_revision: str | None = "0009_search_perf"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FUNCTIONS = (
    # The last word of a name of three or more words (NULL otherwise: the first two words are indexed
    # by ix_customers_business_first/second_word_created_at already).
    """CREATE OR REPLACE FUNCTION public.bee_name_last_word(text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT
    AS $$ SELECT CASE WHEN public.bee_name_rest(public.bee_name_rest($1)) = '' THEN NULL
                 ELSE reverse(split_part(reverse(rtrim($1)), ' ', 1)) END $$""",
    # Every distinct word of a name (split on spaces, as bee_name_word splits).
    """CREATE OR REPLACE FUNCTION public.bee_name_words(text) RETURNS text[]
    LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT
    AS $$ SELECT coalesce(array_agg(DISTINCT w), '{}') FROM unnest(string_to_array($1, ' ')) AS w WHERE w <> '' $$""",
    # The upper bound of a prefix range: every string that starts with $1 is >= $1 and < this, in
    # byte order (text_pattern_ops; UTF-8 byte order is code point order). Written as a range, a
    # prefix test can only be served by the btree prefix indexes, never by a trigram bitmap.
    """CREATE OR REPLACE FUNCTION public.bee_prefix_upper(text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT
    AS $$ SELECT left($1, -1) || chr(CASE ascii(right($1, 1)) WHEN 55295 THEN 57344
                                     ELSE ascii(right($1, 1)) + 1 END) $$""",
    # Of the words in `gone` (business_id, word), drop those no customer of the business holds any
    # more. The three word indexes answer for the first, second and last word; a middle word of a
    # name of four or more words is looked for through the trigram index, only for a word that is in
    # none of those places (a rare word: an erased customer's own surname). With `keep_short` (a
    # rename), words under three characters are kept: they hold no trigram, so proving them gone
    # scans every name of the business (453 ms at a million customers, measured), and a stale word
    # costs the typo phase a lookup that finds no one. An erasure pays that scan: none of an erased
    # customer's words may stay behind unless another customer holds them.
    """CREATE OR REPLACE FUNCTION public.bee_name_words_forget(
        businesses uuid[], words text[], keep_short boolean DEFAULT false) RETURNS void
    LANGUAGE plpgsql VOLATILE
    AS $$
    DECLARE
        gone record;
    BEGIN
        FOR gone IN SELECT DISTINCT * FROM unnest(businesses, words) AS g(business_id, word) ORDER BY 1, 2 LOOP
            CONTINUE WHEN keep_short AND length(gone.word) < 3;
            CONTINUE WHEN EXISTS (SELECT 1 FROM public.customers c WHERE c.business_id = gone.business_id
                                  AND public.bee_name_word(c.search_name, 1) COLLATE "C" = gone.word);
            CONTINUE WHEN EXISTS (SELECT 1 FROM public.customers c WHERE c.business_id = gone.business_id
                                  AND public.bee_name_word(c.search_name, 2) COLLATE "C" = gone.word);
            CONTINUE WHEN EXISTS (SELECT 1 FROM public.customers c WHERE c.business_id = gone.business_id
                                  AND public.bee_name_last_word(c.search_name) IS NOT NULL
                                  AND public.bee_name_last_word(c.search_name) COLLATE "C" = gone.word);
            CONTINUE WHEN EXISTS (
                SELECT 1 FROM public.customers c WHERE c.business_id = gone.business_id
                AND c.search_name LIKE '%' || replace(replace(replace(gone.word, '!', '!!'), '%', '!%'), '_', '!_') || '%'
                    ESCAPE '!'
                AND strpos(' ' || c.search_name || ' ', ' ' || gone.word || ' ') > 0);
            DELETE FROM public.customer_name_words w WHERE w.business_id = gone.business_id AND w.word = gone.word;
        END LOOP;
    END $$""",
    """CREATE OR REPLACE FUNCTION public.bee_customers_words_inserted() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO public.customer_name_words (business_id, word)
        SELECT DISTINCT n.business_id, w.word
        FROM new_rows n, unnest(public.bee_name_words(n.search_name)) AS w(word)
        ORDER BY 1, 2
        ON CONFLICT DO NOTHING;
        RETURN NULL;
    END $$""",
    """CREATE OR REPLACE FUNCTION public.bee_customers_words_deleted() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM public.bee_name_words_forget(array_agg(o.business_id), array_agg(w.word))
        FROM old_rows o, unnest(public.bee_name_words(o.search_name)) AS w(word);
        RETURN NULL;
    END $$""",
    """CREATE OR REPLACE FUNCTION public.bee_customers_words_renamed() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO public.customer_name_words (business_id, word)
        SELECT NEW.business_id, w FROM unnest(public.bee_name_words(NEW.search_name)) AS w
        ORDER BY 1, 2
        ON CONFLICT DO NOTHING;
        PERFORM public.bee_name_words_forget(array_agg(OLD.business_id), array_agg(w), keep_short => true)
        FROM unnest(public.bee_name_words(OLD.search_name)) AS w;
        RETURN NULL;
    END $$""",
)


def upgrade() -> None:
    op.execute(FUNCTIONS[0])  # bee_name_last_word, for the index
    op.execute(
        "CREATE INDEX ix_customers_business_last_word_created_at ON customers"
        ' (business_id, (public.bee_name_last_word(search_name) COLLATE "C"), created_at, id)'
        " WHERE public.bee_name_last_word(search_name) IS NOT NULL"
    )
    op.execute(
        """CREATE TABLE customer_name_words (
            business_id uuid NOT NULL,
            word text COLLATE "C" NOT NULL,
            CONSTRAINT pk_customer_name_words PRIMARY KEY (business_id, word)
        )"""
    )
    for statement in FUNCTIONS[1:]:  # they refer to customer_name_words
        op.execute(statement)
    op.execute(
        "INSERT INTO customer_name_words (business_id, word)"
        " SELECT DISTINCT c.business_id, w.word"
        " FROM customers c, unnest(public.bee_name_words(c.search_name)) AS w(word)"
    )
    op.execute(
        "CREATE INDEX ix_customer_name_words_word_trgm ON customer_name_words"
        " USING gin (business_id, word gin_trgm_ops)"
    )
    op.execute(
        "CREATE TRIGGER customers_words_inserted AFTER INSERT ON customers"
        " REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT"
        " EXECUTE FUNCTION public.bee_customers_words_inserted()"
    )
    op.execute(
        "CREATE TRIGGER customers_words_deleted AFTER DELETE ON customers"
        " REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT"
        " EXECUTE FUNCTION public.bee_customers_words_deleted()"
    )
    op.execute(
        "CREATE TRIGGER customers_words_renamed AFTER UPDATE OF full_name, business_id ON customers"
        " FOR EACH ROW WHEN (OLD.search_name IS DISTINCT FROM NEW.search_name"
        " OR OLD.business_id IS DISTINCT FROM NEW.business_id)"
        " EXECUTE FUNCTION public.bee_customers_words_renamed()"
    )
    op.execute("ANALYZE customer_name_words")


def downgrade() -> None:
    for trigger in ("customers_words_renamed", "customers_words_deleted", "customers_words_inserted"):
        op.execute(f"DROP TRIGGER IF EXISTS {trigger} ON customers")
    op.execute("DROP TABLE IF EXISTS customer_name_words")
    for function in (
        "bee_customers_words_renamed()",
        "bee_customers_words_deleted()",
        "bee_customers_words_inserted()",
        "bee_name_words_forget(uuid[], text[], boolean)",
        "bee_name_words(text)",
        "bee_prefix_upper(text)",
    ):
        op.execute(f"DROP FUNCTION IF EXISTS public.{function}")
    op.drop_index("ix_customers_business_last_word_created_at", table_name="customers")
    op.execute("DROP FUNCTION IF EXISTS public.bee_name_last_word(text)")
