"""Queries on `customers`. No rules and no HTTP here: services decide."""

import uuid
from functools import lru_cache
from typing import Any

from sqlalchemy import JSON, Update, bindparam, func, select, text, update
from sqlalchemy.dialects.postgresql import Insert, aggregate_order_by, insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import with_expression

from bee_customers_service.core.db import Database
from bee_customers_service.customers.models import Customer
from bee_customers_service.notes.models import CustomerNote
from bee_customers_service.tags.models import CustomerTag

# Built once: a module-level statement keeps its SQLAlchemy cache key, so the hot read skips
# rebuilding and re-keying the expression on every request.
_TAG_JSON = func.json_build_object("id", CustomerTag.id, "label", CustomerTag.label, "color", CustomerTag.color)
_ADMIN_TAGS = (
    select(
        func.coalesce(
            func.json_agg(aggregate_order_by(_TAG_JSON, CustomerTag.created_at, CustomerTag.id)),
            text("'[]'::json"),
            type_=JSON,
        )
    )
    .where(CustomerTag.customer_id == Customer.id)
    .correlate(Customer)
    .scalar_subquery()
)
_ADMIN_NOTES_COUNT = (
    select(func.count()).where(CustomerNote.customer_id == Customer.id).correlate(Customer).scalar_subquery()
)
_BY_ID = select(Customer).where(Customer.id == bindparam("customer_id"))
_BY_ID_WITH_ADMIN_EXTRAS = _BY_ID.options(
    with_expression(Customer.admin_tags, _ADMIN_TAGS),
    with_expression(Customer.admin_notes_count, _ADMIN_NOTES_COUNT),
)


async def get(
    session: AsyncSession, customer_id: uuid.UUID, *, for_update: bool = False, with_admin_extras: bool = False
) -> Customer | None:
    """One customer; with `with_admin_extras` its tags and note count come in the same round trip."""
    statement = _BY_ID_WITH_ADMIN_EXTRAS if with_admin_extras else _BY_ID
    if for_update:
        # A locked re-read must replace what this session already holds (another writer may have
        # changed the row); a plain read comes first in its session, so it skips that bookkeeping.
        statement = statement.with_for_update().execution_options(populate_existing=True)
    return (await session.execute(statement, {"customer_id": customer_id})).scalar_one_or_none()


# The GET hot path (Database.read_connection): one statement, asyncpg's own prepared-statement
# cache, rows as mappings. The admin variant carries the same tags and note count as
# _BY_ID_WITH_ADMIN_EXTRAS above.
_PROFILE_COLUMNS = (
    "c.id, c.user_id, c.business_id, c.full_name, c.email, c.phone, c.gender, c.avatar_url, c.preferences,"
    " c.total_orders, c.total_appointments, c.last_order_date, c.last_appointment_date, c.lifetime_value,"
    " c.created_at, c.updated_at, c.version"
)
_READ_PROFILE = f"SELECT {_PROFILE_COLUMNS} FROM customers c WHERE c.id = $1"  # noqa: S608 (constants only)
_READ_ADMIN_PROFILE = f"""SELECT {_PROFILE_COLUMNS},
    (SELECT coalesce(json_agg(json_build_object('id', t.id, 'label', t.label, 'color', t.color)
                              ORDER BY t.created_at, t.id), '[]'::json)
     FROM customer_tags t WHERE t.customer_id = c.id) AS tags,
    (SELECT count(*) FROM customer_notes n WHERE n.customer_id = c.id) AS notes_count
FROM customers c WHERE c.id = $1"""  # noqa: S608 (constants only)


async def read_profile(database: Database, customer_id: uuid.UUID, *, with_admin_extras: bool) -> dict[str, Any] | None:
    """One profile as plain values (with `tags` and `notes_count` for an admin view), or None."""
    async with database.read_connection() as connection:
        row = await connection.fetchrow(_READ_ADMIN_PROFILE if with_admin_extras else _READ_PROFILE, customer_id)
    return dict(row) if row is not None else None


async def find_id(session: AsyncSession, *, user_id: uuid.UUID, business_id: uuid.UUID) -> uuid.UUID | None:
    statement = select(Customer.id).where(Customer.user_id == user_id, Customer.business_id == business_id)
    return (await session.execute(statement)).scalar_one_or_none()


async def insert_if_absent(session: AsyncSession, values: dict[str, Any]) -> Customer | None:
    """Insert a profile; None when (user_id, business_id) already has one.

    ON CONFLICT DO NOTHING lets the unique constraint arbitrate racing creates: the loser waits for
    the winner's commit and gets no row back, never an exception mid-transaction.
    """
    statement = _insert_statement(tuple(sorted(values)))
    params = {f"new_{name}": value for name, value in values.items()}
    return (await session.execute(statement, params)).scalar_one_or_none()


@lru_cache(maxsize=16)
def _insert_statement(fields: tuple[str, ...]) -> Insert:
    """Prebuilt per set of columns (always the same set in practice), like `_update_statement`."""
    return (
        insert(Customer)
        .values({name: bindparam(f"new_{name}") for name in fields})
        .on_conflict_do_nothing(constraint="uq_user_per_business")
        .returning(Customer)
    )


async def update_if_version(
    session: AsyncSession, customer_id: uuid.UUID, *, expected_version: int, values: dict[str, Any]
) -> Customer | None:
    """Apply `values` only if the row is still at `expected_version`; bumps the version."""
    statement = _update_statement(tuple(sorted(values)))
    params = {f"new_{name}": value for name, value in values.items()}
    return (
        await session.execute(statement, {"customer_id": customer_id, "expected_version": expected_version, **params})
    ).scalar_one_or_none()


@lru_cache(maxsize=128)
def _update_statement(fields: tuple[str, ...]) -> Update:
    """One prebuilt UPDATE per set of changed fields (a handful in practice): building the
    statement and its cache key on every PATCH cost more than running it."""
    return (
        update(Customer)
        .where(Customer.id == bindparam("customer_id"), Customer.version == bindparam("expected_version"))
        .values(
            {
                **{name: bindparam(f"new_{name}") for name in fields},
                "version": Customer.version + 1,
                "updated_at": func.now(),
            }
        )
        .returning(Customer)
        .execution_options(synchronize_session=False, populate_existing=True)
    )


async def admin_extras(session: AsyncSession, customer_id: uuid.UUID) -> tuple[list[dict[str, Any]], int]:
    """The customer's tags (oldest first) and how many notes it has, in one round trip."""
    row = (await session.execute(_ADMIN_EXTRAS_BY_ID, {"customer_id": customer_id})).one()
    return row[0], row[1]


_ADMIN_EXTRAS_BY_ID = select(_ADMIN_TAGS, _ADMIN_NOTES_COUNT).where(Customer.id == bindparam("customer_id"))
