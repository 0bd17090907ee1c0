"""Business rules of the customer profile. Owns the transaction and writes the outbox events."""

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from bee_customers_service.core.config import Settings
from bee_customers_service.core.db import Database
from bee_customers_service.core.errors import Conflict, CustomerNotFound, InvalidInput, PreconditionFailed
from bee_customers_service.core.security import Principal, require_self_or_admin
from bee_customers_service.customers import repository
from bee_customers_service.customers.models import Customer
from bee_customers_service.customers.phones import normalise_phone
from bee_customers_service.customers.schemas import (
    AdminCustomerView,
    CustomerCreate,
    CustomerUpdate,
    CustomerView,
    Preferences,
)
from bee_customers_service.events import outbox

EVENT_CREATED = "v1.customer.created"
EVENT_UPDATED = "v1.customer.updated"
EVENT_AVATAR_UPDATED = "v1.customer.avatar_updated"

# Changes other services must mirror (spec 5.5: bee_auth_service syncs email and phone), so the
# updated event carries their new values; every other field is announced by name only.
SYNCED_FIELDS = ("email", "phone")


class CustomerAlreadyExists(Conflict):
    type_slug, title = "customer-exists", "Customer already exists"

    def __init__(self, existing_customer_id: uuid.UUID) -> None:
        super().__init__(
            "This user already has a profile in this business.",
            existing_customer_id=str(existing_customer_id),
        )


def _phone(raw: str | None, settings: Settings) -> str | None:
    if raw is None:
        return None
    try:
        return normalise_phone(raw, default_region=settings.default_phone_region)
    except ValueError as exc:
        raise InvalidInput("phone", str(exc)) from exc


def _merge_preferences(current: dict[str, Any], patch: Preferences) -> dict[str, Any]:
    merged = dict(current)
    sent = patch.model_dump(mode="json", include=patch.model_fields_set)
    for key, value in sent.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


async def insert_customer(session: AsyncSession, *, data: CustomerCreate, settings: Settings) -> Customer | None:
    """Insert a profile and enqueue its `v1.customer.created` event WITHOUT committing.

    None when the user already has a profile in the business. The caller owns the transaction:
    the HTTP create commits at once, the activity consumer commits together with the message
    that brought the profile in.
    """
    values = data.model_dump(exclude={"preferences", "phone"})
    values["phone"] = _phone(data.phone, settings)
    values["preferences"] = data.preferences.model_dump(mode="json", exclude_none=True) if data.preferences else {}

    customer = await repository.insert_if_absent(session, values)
    if customer is None:
        return None

    await outbox.enqueue_for_customer(
        session,
        EVENT_CREATED,
        customer,
        {
            "user_id": customer.user_id,
            "full_name": customer.full_name,
            "email": customer.email,
            "created_at": customer.created_at,
        },
    )
    return customer


async def create_customer(session: AsyncSession, *, data: CustomerCreate, settings: Settings) -> Customer:
    """Create a profile and announce it; 409 naming the existing profile on a duplicate."""
    customer = await insert_customer(session, data=data, settings=settings)
    if customer is None:
        existing_id = await repository.find_id(session, user_id=data.user_id, business_id=data.business_id)
        await session.rollback()
        raise CustomerAlreadyExists(existing_id or uuid.UUID(int=0))
    await session.commit()
    return customer


def _changed_values(customer: Customer, changes: CustomerUpdate, settings: Settings) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for field in changes.model_fields_set:
        if field == "preferences":
            assert changes.preferences is not None  # nulls are refused by the schema
            new: Any = _merge_preferences(customer.preferences, changes.preferences)
        elif field == "phone":
            new = _phone(changes.phone, settings)
        else:
            new = getattr(changes, field)
        if new != getattr(customer, field):
            values[field] = new
    return values


async def update_customer(
    session: AsyncSession,
    *,
    customer: Customer,
    changes: CustomerUpdate,
    expected_versions: frozenset[int] | None,
    actor: Principal,
    settings: Settings,
) -> Customer:
    """Apply a partial update; 412 when `If-Match` names a version that is no longer current."""
    for _attempt in range(2):
        if expected_versions is not None and customer.version not in expected_versions:
            raise PreconditionFailed(f"The customer is at version {customer.version}; reload and retry.")
        values = _changed_values(customer, changes, settings)
        if not values:
            return customer  # nothing changed: no version bump, no event
        old_avatar = customer.avatar_url
        updated = await repository.update_if_version(
            session, customer.id, expected_version=customer.version, values=values
        )
        if updated is not None:
            break
        # Another writer got in between our read and our write: decide again on the locked row.
        reread = await repository.get(session, customer.id, for_update=True)
        if reread is None:
            raise CustomerNotFound(customer.id)
        customer = reread
    else:  # pragma: no cover - the second attempt holds the row lock, so it cannot lose
        raise PreconditionFailed("The customer changed while it was being updated; retry.")

    await announce_update(session, customer=updated, changed=values, old_avatar_url=old_avatar, actor=actor)
    await session.commit()
    return updated


AdminExtras = tuple[list[dict[str, Any]], int]


async def announce_update(
    session: AsyncSession,
    *,
    customer: Customer,
    changed: dict[str, Any],
    old_avatar_url: str | None,
    actor: Principal,
) -> None:
    """The events of a profile change, in the caller's transaction: v1.customer.updated, and
    v1.customer.avatar_updated (old and new URL, spec 5.3) when the avatar changed."""
    fields: dict[str, Any] = {
        "user_id": customer.user_id,
        "fields_changed": sorted(changed),
        "updated_by": actor.user_id,
        "updated_at": customer.updated_at,
    }
    fields.update({name: changed[name] for name in SYNCED_FIELDS if name in changed})
    await outbox.enqueue_for_customer(session, EVENT_UPDATED, customer, fields)
    if "avatar_url" in changed:
        await outbox.enqueue_for_customer(
            session,
            EVENT_AVATAR_UPDATED,
            customer,
            {
                "old_avatar_url": old_avatar_url,
                "new_avatar_url": customer.avatar_url,
                "updated_by": actor.user_id,
                "updated_at": customer.updated_at,
            },
        )


async def admin_extras_for(session: AsyncSession, customer: Customer, principal: Principal) -> AdminExtras | None:
    """What only an admin of the customer's business sees (tags, note count); None for others."""
    if not principal.is_admin_of(customer.business_id):
        return None
    if customer.admin_notes_count is not None:  # loaded with the customer (the usual case)
        return customer.admin_tags or [], customer.admin_notes_count
    return await repository.admin_extras(session, customer.id)


def render_view(customer: Customer, extras: AdminExtras | None) -> CustomerView:
    """The admin view when `extras` were loaded for an admin, the customer's own view otherwise."""
    if extras is None:
        return CustomerView.model_validate(customer)
    tags, notes_count = extras
    return AdminCustomerView.model_validate(
        {**CustomerView.model_validate(customer).model_dump(), "tags": tags, "notes_count": notes_count}
    )


async def read_view(database: Database, customer_id: uuid.UUID, principal: Principal) -> CustomerView:
    """The profile as this caller may see it (the customer's own view, or an admin's with tags
    and note count), in one statement; 404 for anyone else."""
    row = await repository.read_profile(database, customer_id, with_admin_extras=principal.is_admin)
    if row is None:
        raise CustomerNotFound(customer_id)
    view_type = AdminCustomerView if principal.is_admin_of(row["business_id"]) else CustomerView
    view = view_type.model_validate(row)
    require_self_or_admin(principal, view, not_found=CustomerNotFound(customer_id))
    return view
