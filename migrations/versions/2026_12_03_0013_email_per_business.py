"""One email per business: no two profiles of a business share an email (case and spaces aside).

A UNIQUE index on (business_id, lower(btrim(email))) enforces it, so racing writes cannot break it;
per business, so a clash never says anything about another business.

Existing duplicates are not resolved here: which profile keeps the email is a business decision
(merge them, or correct one). The upgrade looks for them first and, if any, fails listing each
business and the ids of its clashing profiles (never the emails); fix those and run it again.

Revision ID: 0013_email_per_business
Revises: 0012_gdpr_email_fingerprints
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013_email_per_business"
down_revision: str | None = "0012_gdpr_email_fingerprints"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "uq_customers_business_email_key"
_SHOWN = 50  # duplicate groups named in the error; the count says how many there are in all

_DUPLICATES = sa.text(
    """
    SELECT business_id, array_agg(id ORDER BY created_at, id) AS ids, count(*) OVER () AS groups
    FROM customers
    GROUP BY business_id, lower(btrim(email))
    HAVING count(*) > 1
    ORDER BY business_id, min(created_at)
    LIMIT :shown
    """
)


def upgrade() -> None:
    duplicates = op.get_bind().execute(_DUPLICATES, {"shown": _SHOWN}).all()
    if duplicates:
        lines = "\n".join(
            f"  business {row.business_id}: customers {', '.join(map(str, row.ids))}" for row in duplicates
        )
        more = duplicates[0].groups - len(duplicates)
        raise RuntimeError(
            f"0013_email_per_business: {duplicates[0].groups} group(s) of profiles share an email within a business"
            " (compared case- and whitespace-insensitively). Which one keeps it is yours to decide: merge or"
            f" correct them, then run the migration again.\n{lines}"
            + (f"\n  ... and {more} more group(s)" if more > 0 else "")
        )
    op.execute(f"CREATE UNIQUE INDEX {INDEX} ON customers (business_id, lower(btrim(email)))")


def downgrade() -> None:
    op.drop_index(INDEX, table_name="customers")
