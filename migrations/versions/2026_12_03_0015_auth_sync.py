"""bee_auth_service sync: where a profile's name came from, and the last auth event applied.

`customers.name_source` is 'auth' (the name came from the account, and auth's `v1.user.updated`
keeps it current) or 'local' (a PATCH changed it here: auth's name updates no longer apply).
Existing profiles start as 'auth': their names were given by the calling service, from the account.
`customers.auth_synced_at` is the `occurred_at` of the last auth event applied to the profile, so
an older event arriving late changes nothing (identity/, docs/events.md).

Revision ID: 0015_auth_sync
Revises: 0014_idempotency_keys
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015_auth_sync"
down_revision: str | None = "0014_idempotency_keys"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("customers", sa.Column("name_source", sa.String(10), server_default="auth", nullable=False))
    op.add_column("customers", sa.Column("auth_synced_at", sa.DateTime(timezone=True), nullable=True))
    op.create_check_constraint(op.f("ck_customers_name_source"), "customers", "name_source IN ('auth', 'local')")


def downgrade() -> None:
    op.drop_constraint(op.f("ck_customers_name_source"), "customers", type_="check")
    op.drop_column("customers", "auth_synced_at")
    op.drop_column("customers", "name_source")
