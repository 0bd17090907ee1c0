"""`bee_prefix_upper` never leaves Unicode: a prefix ending in U+10FFFF no longer fails the search.

The 0010 function incremented the prefix's last code point; for U+10FFFF, the last one Unicode has,
that asked `chr(1114112)` and the query failed ("requested character too large for encoding"): a
one-word search ending in U+10FFFF answered 500. Every string that starts with `p` + U+10FFFF... also
sorts before the successor of `p`, so trailing U+10FFFF characters are dropped and the character
before them is incremented. A prefix made only of U+10FFFF has no upper bound in text: NULL, which
matches nothing in the prefix tiers (the substring tiers still search).

Revision ID: 0011_prefix_upper_unicode
Revises: 0010_name_words
Create Date: 2026-12-03
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0011_prefix_upper_unicode"
down_revision: str | None = "0010_name_words"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# 1114111 is U+10FFFF; 55295 -> 57344 steps over the surrogates (U+D800..U+DFFF), which text cannot hold.
PREFIX_UPPER = """CREATE OR REPLACE FUNCTION public.bee_prefix_upper(text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT
    AS $$ SELECT CASE WHEN $1 <> '' AND p = '' THEN NULL
                 ELSE left(p, -1) || chr(CASE ascii(right(p, 1)) WHEN 55295 THEN 57344
                                         ELSE ascii(right(p, 1)) + 1 END) END
          FROM (SELECT rtrim($1, chr(1114111)) AS p) AS trimmed $$"""

PREFIX_UPPER_0010 = """CREATE OR REPLACE FUNCTION public.bee_prefix_upper(text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT
    AS $$ SELECT left($1, -1) || chr(CASE ascii(right($1, 1)) WHEN 55295 THEN 57344
                                     ELSE ascii(right($1, 1)) + 1 END) $$"""


def upgrade() -> None:
    op.execute(PREFIX_UPPER)


def downgrade() -> None:
    op.execute(PREFIX_UPPER_0010)
