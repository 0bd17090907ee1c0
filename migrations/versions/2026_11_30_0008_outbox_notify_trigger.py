"""Wake the relay from the database: NOTIFY on every insert into the outbox.

A statement-level trigger replaces the explicit `SELECT pg_notify(...)` each write made: one
round trip less per change, and no writer (SQL console, migration, another service) can forget it.

Revision ID: 0008_outbox_notify_trigger
Revises: 0007_gdpr
Create Date: 2026-11-30
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008_outbox_notify_trigger"
down_revision: str | None = "0007_gdpr"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        CREATE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('bee_customers_outbox', '');
            RETURN NULL;
        END;
        $$
        """
    )
    op.execute(
        "CREATE TRIGGER outbox_notify AFTER INSERT ON outbox FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER outbox_notify ON outbox")
    op.execute("DROP FUNCTION outbox_notify()")
