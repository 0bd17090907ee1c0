"""Queries on `customers`, the only module that reads or writes the table for other domains.

No rules and no HTTP here: services decide. Tenant scope is a WHERE clause (`visible_to`): a
customer outside the caller's reach is simply not found.
"""

import uuid
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Any, cast

from sqlalchemy import (
    JSON,
    CursorResult,
    Select,
    Update,
    any_,
    bindparam,
    column,
    delete,
    func,
    literal_column,
    or_,
    select,
    table,
    text,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import ARRAY, UUID, aggregate_order_by, insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import with_expression
from sqlalchemy.sql.dml import ReturningInsert

from bee_customers_service.core.db import Database
from bee_customers_service.core.security import CustomerScope
from bee_customers_service.customers.models import Customer

# Tags and notes as bare tables: their domains build on customers, so customers must not import them.
_tags = table(
    "customer_tags", column("id"), column("customer_id"), column("label"), column("color"), column("created_at")
)
_notes = table("customer_notes", column("customer_id"))

# Built once: a module-level statement keeps its SQLAlchemy cache key, so the hot read skips
# rebuilding and re-keying the expression on every request.
# Keys as SQL literals, not bind parameters: the raw read below is compiled from this expression.
_TAG_JSON = func.json_build_object(
    literal_column("'id'"),
    _tags.c.id,
    literal_column("'label'"),
    _tags.c.label,
    literal_column("'color'"),
    _tags.c.color,
)
_ADMIN_TAGS = (
    select(
        func.coalesce(
            func.json_agg(aggregate_order_by(_TAG_JSON, _tags.c.created_at, _tags.c.id)),
            text("'[]'::json"),
            type_=JSON,
        )
    )
    .where(_tags.c.customer_id == Customer.id)
    .correlate(Customer)
    .scalar_subquery()
)
_ADMIN_NOTES_COUNT = (
    select(func.count()).where(_notes.c.customer_id == Customer.id).correlate(Customer).scalar_subquery()
)

# The caller's reach (CustomerScope): the businesses it administers, and its own profiles. One
# shape for every caller (an empty array, a NULL user), so each statement is prepared once.
_VISIBLE = or_(
    Customer.business_id == any_(bindparam("admin_of", type_=ARRAY(UUID(as_uuid=True)))),
    Customer.user_id == bindparam("own_user_id", type_=UUID(as_uuid=True)),
)
_BY_ID = Customer.id == bindparam("customer_id", type_=UUID(as_uuid=True))


def _scope_params(scope: CustomerScope) -> dict[str, Any]:
    return {"admin_of": list(scope.admin_of), "own_user_id": scope.own_user_id}


_VISIBLE_BY_ID = select(Customer).where(_BY_ID, _VISIBLE)
_VISIBLE_BY_ID_WITH_ADMIN_EXTRAS = _VISIBLE_BY_ID.options(
    with_expression(Customer.admin_tags, _ADMIN_TAGS),
    with_expression(Customer.admin_notes_count, _ADMIN_NOTES_COUNT),
)


async def get_visible(
    session: AsyncSession, customer_id: uuid.UUID, scope: CustomerScope, *, with_admin_extras: bool = False
) -> Customer | None:
    """The customer if `scope` reaches it; with `with_admin_extras` its tags and note count come along."""
    statement = _VISIBLE_BY_ID_WITH_ADMIN_EXTRAS if with_admin_extras else _VISIBLE_BY_ID
    params = {"customer_id": customer_id, **_scope_params(scope)}
    return (await session.execute(statement, params)).scalar_one_or_none()


# --- Row locks ------------------------------------------------------------------------------------
# Every transaction locks customer rows in (business_id, user_id) order, so two writers never wait on
# each other in a cycle. These are the only functions that take customer row locks.

_BY_IDS = (
    select(Customer)
    .where(Customer.id == any_(bindparam("ids", type_=ARRAY(UUID(as_uuid=True)))))
    .order_by(Customer.business_id, Customer.user_id)
    # A locked read must replace what the session already holds: another writer may have changed the row.
    .execution_options(populate_existing=True)
)
_LOCK_BY_IDS = {
    False: _BY_IDS.with_for_update(),
    # FOR NO KEY UPDATE: still serialises the row's writers, but lets other transactions insert rows
    # that reference it (their foreign-key checks take KEY SHARE).
    True: _BY_IDS.with_for_update(key_share=True),
}
_LOCK_OF_USER = (
    select(Customer)
    .where(Customer.user_id == bindparam("user_id", type_=UUID(as_uuid=True)))
    .order_by(Customer.business_id, Customer.user_id)
    .with_for_update()
    .execution_options(populate_existing=True)
)
_UUIDS = ARRAY(UUID(as_uuid=True))
# The LATERAL ... LIMIT 1 makes PostgreSQL lock row by row, in the order of the arrays, through the
# unique index (a hash join would scan the whole table).
_LOCK_BY_USER = text(
    """
    SELECT c.id, c.business_id, c.user_id
    FROM unnest(:business_ids, :user_ids) WITH ORDINALITY AS k(business_id, user_id, n)
    CROSS JOIN LATERAL (
        SELECT id, business_id, user_id FROM customers
        WHERE user_id = k.user_id AND business_id = k.business_id
        LIMIT 1
        FOR UPDATE
    ) c
    ORDER BY k.n
    """
).bindparams(bindparam("business_ids", type_=_UUIDS), bindparam("user_ids", type_=_UUIDS))


async def lock(
    session: AsyncSession, customer_ids: Iterable[uuid.UUID], *, allow_references: bool = False
) -> Sequence[Customer]:
    """Lock these customers (those that exist), in the lock order; returns them in that order."""
    ids = sorted(set(customer_ids))
    if not ids:
        return []
    return (await session.execute(_LOCK_BY_IDS[allow_references], {"ids": ids})).scalars().all()


async def lock_of_user(session: AsyncSession, user_id: uuid.UUID) -> Sequence[Customer]:
    """Lock every profile of a user (one per business), in the lock order."""
    return (await session.execute(_LOCK_OF_USER, {"user_id": user_id})).scalars().all()


async def lock_by_user(
    session: AsyncSession, pairs: Iterable[tuple[uuid.UUID, uuid.UUID]]
) -> dict[tuple[uuid.UUID, uuid.UUID], uuid.UUID]:
    """Lock the profiles of (business_id, user_id) pairs, in the lock order; the id of each that exists."""
    ordered = sorted(set(pairs))
    if not ordered:
        return {}
    result = await session.execute(
        _LOCK_BY_USER, {"business_ids": [p[0] for p in ordered], "user_ids": [p[1] for p in ordered]}
    )
    return {(row.business_id, row.user_id): row.id for row in result}


# --- The GET hot path ------------------------------------------------------------------------------
# Database.read_connection: one statement on the raw asyncpg connection (its own prepared-statement
# cache, rows as mappings), compiled once from the same expression as the ORM read above.

_PROFILE_COLUMNS = [col for col in Customer.__table__.c if col.key not in {"search_name", "phone_digits"}]


def _asyncpg_sql(statement: Select[Any]) -> tuple[str, tuple[str, ...]]:
    """The statement's SQL with $n placeholders, and the bind name of each placeholder in order."""
    compiled = statement.compile(dialect=postgresql.asyncpg.dialect())
    return str(compiled), tuple(compiled.positiontup or ())


_PROFILE = select(*_PROFILE_COLUMNS).where(_BY_ID, _VISIBLE)
_READ_PROFILE, _READ_PROFILE_BINDS = _asyncpg_sql(_PROFILE)
_READ_ADMIN_PROFILE, _READ_ADMIN_PROFILE_BINDS = _asyncpg_sql(
    _PROFILE.add_columns(_ADMIN_TAGS.label("tags"), _ADMIN_NOTES_COUNT.label("notes_count"))
)


async def read_visible_profile(
    database: Database, customer_id: uuid.UUID, scope: CustomerScope, *, with_admin_extras: bool
) -> dict[str, Any] | None:
    """One profile `scope` reaches, as plain values (with `tags` and `notes_count` for an admin view)."""
    sql, binds = (
        (_READ_ADMIN_PROFILE, _READ_ADMIN_PROFILE_BINDS) if with_admin_extras else (_READ_PROFILE, _READ_PROFILE_BINDS)
    )
    values = {"customer_id": customer_id, "admin_of": list(scope.admin_of), "own_user_id": scope.own_user_id}
    async with database.read_connection() as connection:
        row = await connection.fetchrow(sql, *(values[name] for name in binds))
    return dict(row) if row is not None else None


async def of_user(session: AsyncSession, user_id: uuid.UUID) -> Sequence[Customer]:
    """Every profile of a user, oldest first."""
    statement = select(Customer).where(Customer.user_id == user_id).order_by(Customer.created_at, Customer.id)
    return (await session.execute(statement)).scalars().all()


async def get(session: AsyncSession, customer_id: uuid.UUID) -> Customer | None:
    """A profile by id, out of any caller's scope (the caller decided access already)."""
    return await session.get(Customer, customer_id)


async def find_id(session: AsyncSession, *, user_id: uuid.UUID, business_id: uuid.UUID) -> uuid.UUID | None:
    statement = select(Customer.id).where(Customer.user_id == user_id, Customer.business_id == business_id)
    return (await session.execute(statement)).scalar_one_or_none()


# One email per business, compared case- and whitespace-insensitively (migration 0013).
EMAIL_PER_BUSINESS = "uq_customers_business_email_key"


class EmailClash(Exception):
    """The write would give a second profile of the business the same email (EMAIL_PER_BUSINESS)."""


async def insert_if_absent(session: AsyncSession, values: dict[str, Any]) -> Customer | None:
    """Insert a profile; None when a unique rule refuses it: (user_id, business_id) already has a
    profile, or another profile of the business holds the email (`find_id` / `email_holder` tell which).

    ON CONFLICT DO NOTHING (no target: both unique rules) lets the unique indexes arbitrate racing
    creates: the loser waits for the winner's commit and gets no row back, never an exception
    mid-transaction.
    """
    statement = _insert_statement(tuple(sorted(values)))
    params = {f"new_{name}": value for name, value in values.items()}
    return (await session.execute(statement, params)).scalar_one_or_none()


@lru_cache(maxsize=16)
def _insert_statement(fields: tuple[str, ...]) -> ReturningInsert[Customer]:
    """Prebuilt per set of columns (always the same set in practice), like `_update_statement`."""
    return (
        insert(Customer)
        .values({name: bindparam(f"new_{name}") for name in fields})
        .on_conflict_do_nothing()
        .returning(Customer)
    )


async def email_holder(session: AsyncSession, *, business_id: uuid.UUID, email: str) -> uuid.UUID | None:
    """The profile of the business holding `email` (as EMAIL_PER_BUSINESS compares it), if any."""
    statement = select(Customer.id).where(
        Customer.business_id == business_id, func.lower(func.btrim(Customer.email)) == func.lower(func.btrim(email))
    )
    return (await session.execute(statement)).scalar_one_or_none()


async def update_if_version(
    session: AsyncSession, customer_id: uuid.UUID, *, expected_version: int, values: dict[str, Any]
) -> Customer | None:
    """Apply `values` only if the row is still at `expected_version`; bumps the version.

    EmailClash when the new email is taken in the business: the UPDATE then runs in a SAVEPOINT
    (only when the email changes), so the caller's transaction stays usable.
    """
    statement = _update_statement(tuple(sorted(values)))
    params = {f"new_{name}": value for name, value in values.items()}
    params |= {"customer_id": customer_id, "expected_version": expected_version}
    if "email" not in values:
        return (await session.execute(statement, params)).scalar_one_or_none()
    try:
        async with session.begin_nested():
            return (await session.execute(statement, params)).scalar_one_or_none()
    except IntegrityError as exc:
        if _violated_constraint(exc) == EMAIL_PER_BUSINESS:
            raise EmailClash from exc
        raise


def _violated_constraint(exc: IntegrityError) -> str | None:
    """The name of the constraint or unique index asyncpg reports (the DBAPI error wraps asyncpg's)."""
    for error in (exc.orig, getattr(exc.orig, "__cause__", None)):
        name = getattr(error, "constraint_name", None)
        if name:
            return str(name)
    return None


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


_ADMIN_EXTRAS_BY_ID = select(_ADMIN_TAGS, _ADMIN_NOTES_COUNT).where(_BY_ID)


async def delete_many(session: AsyncSession, customer_ids: Sequence[uuid.UUID]) -> int:
    """Delete these profiles (the erasure's last step); returns how many rows went."""
    result = await session.execute(delete(Customer).where(Customer.id.in_(customer_ids)))
    return cast(CursorResult[Any], result).rowcount
