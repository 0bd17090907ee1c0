"""Erasure records keep a keyed email fingerprint: `email_sha256` becomes `email_fingerprints`.

`gdpr_requests.email_sha256` held the bare sha256 of each erased (normalised) email, so anyone
holding the table and a list of emails could test who had been a customer. The fingerprint is now
HMAC-SHA256 under `BEE_GDPR_FINGERPRINT_KEY` (gdpr/service.py `email_fingerprint`).

The old values are cleared, not kept: a bare hash cannot be turned into a keyed one without the
email, which is exactly what was erased, and keeping them would keep the exposure this revision
removes (for every erasure made so far). The cost: erasures recorded before this revision no
longer recognise a re-import of the same email; their ids, counts and dates stay. The downgrade
restores the column name but not the values (the keyed ones are no sha256: they are cleared too).

A GIN index serves `erasures_of_email` (`email_fingerprints @> ARRAY[fingerprint]`).

Revision ID: 0012_gdpr_email_fingerprints
Revises: 0011_prefix_upper_unicode
Create Date: 2026-12-03
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0012_gdpr_email_fingerprints"
down_revision: str | None = "0011_prefix_upper_unicode"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.alter_column("gdpr_requests", "email_sha256", new_column_name="email_fingerprints")
    op.execute("UPDATE gdpr_requests SET email_fingerprints = '{}' WHERE cardinality(email_fingerprints) > 0")
    op.execute("CREATE INDEX ix_gdpr_requests_email_fingerprints ON gdpr_requests USING gin (email_fingerprints)")


def downgrade() -> None:
    op.drop_index("ix_gdpr_requests_email_fingerprints", table_name="gdpr_requests")
    op.execute("UPDATE gdpr_requests SET email_fingerprints = '{}' WHERE cardinality(email_fingerprints) > 0")
    op.alter_column("gdpr_requests", "email_fingerprints", new_column_name="email_sha256")
