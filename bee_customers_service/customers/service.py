"""Business rules of the customer profile, and the one door other domains use to `customers`.

Services flush, never commit: the request's session dependency (or a worker's own transaction)
commits. Every customer row lock goes through `lock_customers` / `lock_profiles_of_user` /
`lock_profiles_by_user`, which take them in the one lock order (repository.py).
"""

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from bee_customers_service.core.config import Settings
from bee_customers_service.core.db import Database
from bee_customers_service.core.errors import Conflict, CustomerNotFound, InvalidInput, PreconditionFailed
from bee_customers_service.core.security import CustomerScope, Principal
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
from bee_customers_service.events import audit, catalogue, outbox


class CustomerAlreadyExists(Conflict):
    type_slug, title = "customer-exists", "Customer already exists"

    def __init__(self, existing_customer_id: uuid.UUID) -> None:
        super().__init__(
            "This user already has a profile in this business.",
            existing_customer_id=str(existing_customer_id),
        )


class EmailTaken(Conflict):
    """Another profile of the business holds the email; never says which (nor anything about it)."""

    type_slug, title = "email-taken", "Email already in use"

    def __init__(self) -> None:
        super().__init__("Another customer of this business already uses this email.", field="email")


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


async def create_customer(
    session: AsyncSession, *, data: CustomerCreate, settings: Settings, actor: Principal | None = None
) -> Customer:
    """Insert a profile and enqueue its `v1.customer.created`; 409 naming the existing profile,
    or 409 email-taken when another profile of the business holds the email (case and spaces aside).

    `actor` is the calling service (None: the activity consumer creating a profile on its own).

    ON CONFLICT DO NOTHING (repository) keeps the transaction usable after a duplicate, so the
    activity consumer can go on with the profile someone else just created.
    """
    values = data.model_dump(exclude={"preferences", "phone"})
    values["phone"] = _phone(data.phone, settings)
    values["preferences"] = data.preferences.model_dump(mode="json", exclude_none=True) if data.preferences else {}

    customer = await repository.insert_if_absent(session, values)
    if customer is None:
        existing_id = await repository.find_id(session, user_id=data.user_id, business_id=data.business_id)
        if existing_id is None:  # not the user's profile: the other unique rule, one email per business
            raise EmailTaken()
        raise CustomerAlreadyExists(existing_id)

    event = catalogue.CustomerCreated(
        customer_id=customer.id,
        business_id=customer.business_id,
        user_id=customer.user_id,
        full_name=customer.full_name,
        email=customer.email,
        created_at=customer.created_at,
    )
    await outbox.enqueue_event(session, event)
    record = catalogue.AuditCustomerCreated(
        customer_id=customer.id,
        business_id=customer.business_id,
        actor=catalogue.Actor.of(actor),
        user_id=customer.user_id,
    )
    await audit.record(session, record)  # with the caller's IP and User-Agent (core/context.py)
    return customer


async def get_or_create_customer(
    session: AsyncSession, *, data: CustomerCreate, settings: Settings, actor: Principal
) -> tuple[Customer, bool]:
    """The profile of (user, business), created from `data` when there is none (True: created now).

    Get-or-create, not an overwrite: an existing profile is returned unchanged. Racing calls make
    one profile (the insert's ON CONFLICT): only the one that created it enqueues its events.
    """
    try:
        return await create_customer(session, data=data, settings=settings, actor=actor), True
    except CustomerAlreadyExists as exists:
        existing = await repository.get(session, uuid.UUID(exists.extra["existing_customer_id"]))
        if existing is None:  # pragma: no cover - erased between the insert and this read
            raise CustomerNotFound(exists.extra["existing_customer_id"]) from exists
        return existing, False


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
        old_values = {field: getattr(customer, field) for field in values}  # before the row is updated
        # A name edited here is this business's own: bee_auth_service's name updates stop at it (identity/).
        written = {**values, "name_source": "local"} if "full_name" in values else values
        try:
            updated = await repository.update_if_version(
                session, customer.id, expected_version=customer.version, values=written
            )
        except repository.EmailClash as exc:
            raise EmailTaken() from exc
        if updated is not None:
            break
        # Another writer got in between our read and our write: decide again on the locked row.
        locked = await repository.lock(session, [customer.id])
        if not locked:
            raise CustomerNotFound(customer.id)
        customer = locked[0]
    else:  # pragma: no cover - the second attempt holds the row lock, so it cannot lose
        raise PreconditionFailed("The customer changed while it was being updated; retry.")

    await announce_update(session, customer=updated, changed=values, old_avatar_url=old_avatar, actor=actor)
    await _record_update(session, updated, old_values, values, actor)
    return updated


async def _record_update(
    session: AsyncSession, customer: Customer, old_values: dict[str, Any], values: dict[str, Any], actor: Principal
) -> None:
    record = catalogue.AuditCustomerUpdated(
        customer_id=customer.id,
        business_id=customer.business_id,
        actor=catalogue.Actor.of(actor),
        fields_changed=sorted(values),
        changes={field: catalogue.Change(old=old_values[field], new=new) for field, new in sorted(values.items())},
    )
    await audit.record(session, record)


AdminExtras = tuple[list[dict[str, Any]], int]


async def announce_update(
    session: AsyncSession,
    *,
    customer: Customer,
    changed: dict[str, Any],
    old_avatar_url: str | None,
    actor: Principal,
    source: str | catalogue.NotSent = catalogue.NOT_SENT,
) -> None:
    """The events of a profile change, in the caller's transaction: v1.customer.updated, and
    v1.customer.avatar_updated (old and new URL, spec 5.3) when the avatar changed."""
    updated = catalogue.CustomerUpdated(
        customer_id=customer.id,
        business_id=customer.business_id,
        user_id=customer.user_id,
        fields_changed=sorted(changed),
        updated_by=actor.user_id,
        updated_at=customer.updated_at,
        # The fields bee_auth_service mirrors (spec 5.5) carry their new values; the rest only a name.
        email=changed.get("email", catalogue.NOT_SENT),
        phone=changed.get("phone", catalogue.NOT_SENT),
        source=source,  # "auth" when mirrored from bee_auth_service: it ignores those (no loop)
    )
    await outbox.enqueue_event(session, updated)
    if "avatar_url" in changed:
        avatar = catalogue.CustomerAvatarUpdated(
            customer_id=customer.id,
            business_id=customer.business_id,
            old_avatar_url=old_avatar_url,
            new_avatar_url=customer.avatar_url,
            updated_by=actor.user_id,
            updated_at=customer.updated_at,
        )
        await outbox.enqueue_event(session, avatar)


async def admin_extras_for(session: AsyncSession, customer: Customer, principal: Principal) -> AdminExtras | None:
    """What only an admin of the customer's business sees (tags, note count); None for others."""
    if not principal.is_admin_of(customer.business_id):
        return None
    if customer.admin_notes_count is not None:  # loaded with the customer (the usual case)
        return customer.admin_tags or [], customer.admin_notes_count
    return await repository.admin_extras(session, customer.id)


def render_view(customer: Customer, extras: AdminExtras | None, context: dict[str, Any]) -> CustomerView:
    """The admin view when `extras` were loaded for an admin, the customer's own view otherwise."""
    if extras is None:
        return CustomerView.model_validate(customer, context=context)
    tags, notes_count = extras
    return AdminCustomerView.model_validate(
        {
            **CustomerView.model_validate(customer, context=context).model_dump(),
            "tags": tags,
            "notes_count": notes_count,
        }
    )


async def read_view(
    database: Database, customer_id: uuid.UUID, scope: CustomerScope, context: dict[str, Any]
) -> CustomerView:
    """The profile as this caller may see it (its own view, or an admin's with tags and note count),
    in one statement; 404 when `scope` does not reach it."""
    row = await repository.read_visible_profile(database, customer_id, scope, with_admin_extras=bool(scope.admin_of))
    if row is None:
        raise CustomerNotFound(customer_id)
    view_type = AdminCustomerView if scope.is_admin_of(row["business_id"]) else CustomerView
    return view_type.model_validate(row, context=context)


async def find_visible(
    session: AsyncSession, customer_id: uuid.UUID, scope: CustomerScope, *, with_admin_extras: bool = False
) -> Customer:
    """The customer `scope` reaches; 404 otherwise (another business's customer looks missing)."""
    customer = await repository.get_visible(session, customer_id, scope, with_admin_extras=with_admin_extras)
    if customer is None:
        raise CustomerNotFound(customer_id)
    return customer


async def find_by_id_unscoped(session: AsyncSession, customer_id: uuid.UUID) -> Customer | None:
    """The customer by id with no tenant scope: only for the public generated-avatar URL, whose HMAC
    token proves the caller was handed the URL (customers/avatar_links.py)."""
    return await session.get(Customer, customer_id)


async def set_avatar_url(
    session: AsyncSession, customer: Customer, *, new_url: str | None, actor: Principal
) -> Customer:
    """Point the locked customer at `new_url` and announce it (avatars/ stores the object)."""
    old_url = customer.avatar_url
    updated = await repository.update_if_version(
        session, customer.id, expected_version=customer.version, values={"avatar_url": new_url}
    )
    assert updated is not None  # the caller holds the row lock: its version cannot have moved
    await announce_update(
        session, customer=updated, changed={"avatar_url": new_url}, old_avatar_url=old_url, actor=actor
    )
    who = catalogue.Actor.of(actor)
    record: catalogue.AuditRecord = (
        catalogue.AuditAvatarRemoved(
            customer_id=updated.id, business_id=updated.business_id, actor=who, old_avatar_url=old_url
        )
        if new_url is None
        else catalogue.AuditAvatarUpdated(
            customer_id=updated.id,
            business_id=updated.business_id,
            actor=who,
            old_avatar_url=old_url,
            new_avatar_url=new_url,
        )
    )
    await audit.record(session, record)
    return updated


async def lock_customers(
    session: AsyncSession, customer_ids: Iterable[uuid.UUID], *, allow_references: bool = False
) -> Sequence[Customer]:
    """Row-lock these customers (in the lock order) until the transaction ends; those that exist.

    `allow_references`: lets other transactions meanwhile insert rows that reference them.
    """
    return await repository.lock(session, customer_ids, allow_references=allow_references)


async def lock_profiles_of_user(session: AsyncSession, user_id: uuid.UUID) -> Sequence[Customer]:
    """Row-lock every profile of a user (in the lock order)."""
    return await repository.lock_of_user(session, user_id)


async def lock_profiles_by_user(
    session: AsyncSession, pairs: Iterable[tuple[uuid.UUID, uuid.UUID]]
) -> dict[tuple[uuid.UUID, uuid.UUID], uuid.UUID]:
    """Row-lock the profiles of (business_id, user_id) pairs; the customer id of each that exists."""
    return await repository.lock_by_user(session, pairs)


async def profiles_of_user(session: AsyncSession, user_id: uuid.UUID) -> Sequence[Customer]:
    """Every profile of a user (one per business), oldest first."""
    return await repository.of_user(session, user_id)


async def delete_profiles(session: AsyncSession, customer_ids: Sequence[uuid.UUID]) -> int:
    """Delete these (locked) profiles: the last step of an erasure. Returns how many went."""
    return await repository.delete_many(session, customer_ids)


async def email_taken_by_another(session: AsyncSession, *, customer: Customer, email: str) -> bool:
    """Whether another profile of the customer's business holds `email` (lower(btrim(email)) compared)."""
    holder = await repository.email_holder(session, business_id=customer.business_id, email=email)
    return holder is not None and holder != customer.id


async def apply_identity_change(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    changes: dict[str, Any],
    occurred_at: datetime,
    actor: Principal,
    settings: Settings,
) -> str | None:
    """Mirror a bee_auth_service account change into every profile of the user (identity/): `email`
    and `phone` everywhere, `full_name` where name_source is 'auth'; profiles that reflect a newer
    auth event (auth_synced_at) stay. Returns why the whole event is refused (nothing kept), or None."""
    try:
        wanted = {**changes, **({"phone": _phone(changes["phone"], settings)} if "phone" in changes else {})}
    except InvalidInput as exc:
        return f"invalid {exc.detail}"
    plans: list[tuple[Customer, dict[str, Any]]] = []
    for profile in await lock_profiles_of_user(session, user_id):
        if profile.auth_synced_at is not None and profile.auth_synced_at > occurred_at:
            continue  # an older event arriving late
        values = {f: v for f, v in sorted(wanted.items()) if v != getattr(profile, f)}
        if profile.name_source != "auth":
            values.pop("full_name", None)
        if "email" in values and await email_taken_by_another(session, customer=profile, email=values["email"]):
            return f"email clash: another customer of business {profile.business_id} already uses the new email"
        plans.append((profile, values))
    for profile, values in plans:
        if not values:  # nothing to change: only how far auth's events reached (no version bump, no event)
            profile.auth_synced_at = occurred_at
            continue
        old_values = {field: getattr(profile, field) for field in values}
        try:
            updated = await repository.update_if_version(
                session, profile.id, expected_version=profile.version, values={**values, "auth_synced_at": occurred_at}
            )
        except repository.EmailClash:  # taken meanwhile (the unique index)
            return f"email clash: another customer of business {profile.business_id} already uses the new email"
        assert updated is not None  # locked above: its version cannot have moved
        await announce_update(
            session, customer=updated, changed=values, old_avatar_url=None, actor=actor, source="auth"
        )
        await _record_update(session, updated, old_values, values, actor)
    await session.flush()
    return None
