"""Tags, notes and admin search: normalised tag labels, business_id on tags/notes, search columns.

- pg_trgm + unaccent, and `bee_unaccent` / `bee_search_normalise`: IMMUTABLE wrappers (unaccent()
  itself is only STABLE because its dictionary could change) so they can feed generated columns and
  indexes. They name the dictionary and the schema explicitly, so a different search_path (pg_dump,
  a connection pooler) cannot change what they return.
- customers.search_name (lower, unaccented full name) and customers.phone_digits (digits only),
  both STORED generated columns: every writer keeps them right, nobody has to remember to.
- GIN trigram indexes on (business_id, search_name / email / phone_digits) through btree_gin
  (substring and typo-tolerant search, scoped to one business inside the index);
  btree indexes (business_id, sort key, id) for each sort, so keyset pages are index range scans.
- customer_tags.label_key = lower(btrim(label)) with a UNIQUE index per customer: racing adds of
  "VIP" and " vip " are arbitrated by the database, not by a read-then-write.
- business_id on customer_tags and customer_notes (Citus distribution column; tag filters).

Revision ID: 0004_tags_notes_search
Revises: 0003_relay
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_tags_notes_search"
down_revision: str | None = "0003_relay"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FUNCTIONS = (
    """CREATE OR REPLACE FUNCTION public.bee_unaccent(text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT
    AS $$ SELECT public.unaccent('public.unaccent'::regdictionary, $1) $$""",
    """CREATE OR REPLACE FUNCTION public.bee_search_normalise(text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT
    AS $$ SELECT lower(public.bee_unaccent($1)) $$""",
)


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm WITH SCHEMA public")
    op.execute("CREATE EXTENSION IF NOT EXISTS unaccent WITH SCHEMA public")
    # btree_gin lets a GIN index start with business_id: a search scans one business's entries only.
    op.execute("CREATE EXTENSION IF NOT EXISTS btree_gin WITH SCHEMA public")
    for statement in FUNCTIONS:
        op.execute(statement)

    # --- customers: search columns and indexes -------------------------------------------------
    op.add_column(
        "customers",
        sa.Column("search_name", sa.Text(), sa.Computed("public.bee_search_normalise(full_name)", persisted=True)),
    )
    op.add_column(
        "customers",
        sa.Column(
            "phone_digits",
            sa.Text(),
            sa.Computed("regexp_replace(coalesce(phone, ''), '[^0-9]', '', 'g')", persisted=True),
        ),
    )
    op.execute(
        "CREATE INDEX ix_customers_search_name_trgm ON customers USING gin (business_id, search_name gin_trgm_ops)"
    )
    op.execute("CREATE INDEX ix_customers_email_trgm ON customers USING gin (business_id, email gin_trgm_ops)")
    op.execute(
        "CREATE INDEX ix_customers_phone_digits_trgm ON customers USING gin (business_id, phone_digits gin_trgm_ops)"
    )
    op.create_index("ix_customers_business_created_at_id", "customers", ["business_id", "created_at", "id"])
    op.create_index("ix_customers_business_search_name_id", "customers", ["business_id", "search_name", "id"])
    op.create_index("ix_customers_business_lifetime_value_id", "customers", ["business_id", "lifetime_value", "id"])
    op.execute(
        "CREATE INDEX ix_customers_business_last_order_id ON customers "
        "(business_id, (coalesce(last_order_date, DATE '1900-01-01')), id)"
    )

    # --- customer_tags ------------------------------------------------------------------------
    op.add_column("customer_tags", sa.Column("business_id", sa.UUID()))
    op.execute("UPDATE customer_tags t SET business_id = c.business_id FROM customers c WHERE c.id = t.customer_id")
    op.alter_column("customer_tags", "business_id", nullable=False)
    op.add_column(
        "customer_tags",
        sa.Column("label_key", sa.String(50), sa.Computed("lower(btrim(label))", persisted=True)),
    )
    op.create_index(
        "uq_customer_tags_customer_id_label_key", "customer_tags", ["customer_id", "label_key"], unique=True
    )
    op.create_index(
        "ix_customer_tags_business_label_key_customer", "customer_tags", ["business_id", "label_key", "customer_id"]
    )

    # --- customer_notes -----------------------------------------------------------------------
    op.add_column("customer_notes", sa.Column("business_id", sa.UUID()))
    op.execute("UPDATE customer_notes n SET business_id = c.business_id FROM customers c WHERE c.id = n.customer_id")
    op.alter_column("customer_notes", "business_id", nullable=False)
    op.create_index("ix_customer_notes_customer_created_at_id", "customer_notes", ["customer_id", "created_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_customer_notes_customer_created_at_id", table_name="customer_notes")
    op.drop_column("customer_notes", "business_id")

    op.drop_index("ix_customer_tags_business_label_key_customer", table_name="customer_tags")
    op.drop_index("uq_customer_tags_customer_id_label_key", table_name="customer_tags")
    op.drop_column("customer_tags", "label_key")
    op.drop_column("customer_tags", "business_id")

    for name in (
        "ix_customers_business_last_order_id",
        "ix_customers_business_lifetime_value_id",
        "ix_customers_business_search_name_id",
        "ix_customers_business_created_at_id",
        "ix_customers_phone_digits_trgm",
        "ix_customers_email_trgm",
        "ix_customers_search_name_trgm",
    ):
        op.drop_index(name, table_name="customers")
    op.drop_column("customers", "phone_digits")
    op.drop_column("customers", "search_name")
    op.execute("DROP FUNCTION IF EXISTS public.bee_search_normalise(text)")
    op.execute("DROP FUNCTION IF EXISTS public.bee_unaccent(text)")
    op.execute("DROP EXTENSION IF EXISTS btree_gin")
    op.execute("DROP EXTENSION IF EXISTS unaccent")
    op.execute("DROP EXTENSION IF EXISTS pg_trgm")
