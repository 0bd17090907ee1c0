"""Avatar rules: validate and store an upload, point the customer at it, clean up what it replaced.

The order keeps the database honest. The new object is written first, then `avatar_url` and the
events are committed together; only a committed URL can point at an object, and it always points at
one that exists. If the commit fails, the new object is deleted (unless the customer points at it
after all: a commit that went through while its reply was lost).
The object a new upload replaces is deleted only after the new URL is committed; a failure there
leaves an unreferenced object behind (logged), never a customer without an image.

Every change of one customer's avatar holds that customer's row lock while it writes its object
and commits, and deletions decide under the same lock: with content-addressed keys, two requests
can name the same object (A -> B -> A), and this keeps one from deleting what the other points at.
The lock is not held while the body streams in or the image is decoded.
"""

import hashlib
import hmac
import uuid
from dataclasses import dataclass
from functools import partial

import anyio
import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bee_customers_service.avatars import images
from bee_customers_service.avatars.storage import AvatarStorage, StorageError, customer_prefix, object_key
from bee_customers_service.core.config import Settings
from bee_customers_service.core.errors import CustomerNotFound, DomainError
from bee_customers_service.core.security import Principal
from bee_customers_service.customers import avatar_links
from bee_customers_service.customers import service as customers_service
from bee_customers_service.customers.models import Customer

log = structlog.get_logger(__name__)

# Decoding a 4096x4096 image takes ~64 MB and a CPU core for a while: at most two at a time per
# process, so a burst of uploads queues instead of exhausting memory.
_IMAGE_WORKERS = anyio.CapacityLimiter(2)


class AvatarStoreUnavailable(DomainError):
    status, type_slug, title = 503, "avatar-store-unavailable", "Avatar store unavailable"


@dataclass(frozen=True, slots=True)
class AvatarOwner:
    """What an upload needs to know about its customer, read before the body streams in."""

    customer_id: uuid.UUID
    business_id: uuid.UUID


@dataclass(frozen=True, slots=True)
class StoredAvatar:
    customer_id: uuid.UUID
    version: int  # the customer's version after the change
    image: images.CleanImage
    url: str


async def release_for_upload(session: AsyncSession, customer: Customer) -> AvatarOwner:
    """Hand the request's database connection back to the pool while a (slow) body streams in.

    A client trickling a 1 MB upload must not hold a pooled connection for the whole time.
    """
    owner = AvatarOwner(customer_id=customer.id, business_id=customer.business_id)
    await session.rollback()  # only a SELECT happened: nothing is lost
    return owner


async def _delete_quietly(storage: AvatarStorage, key: str, *, reason: str) -> None:
    """Delete an object we no longer need; a failure is logged and never fails the request."""
    try:
        await storage.delete(key)
    except Exception as exc:  # the request already succeeded (or failed for another reason)
        log.warning("avatar_object_not_deleted", key=key, reason=reason, error=str(exc))


def _our_key(storage: AvatarStorage, url: str | None, owner: AvatarOwner) -> str | None:
    """The key behind `url` when it is one of THIS customer's stored objects, else None.

    `avatar_url` can also be set by PATCH to any https URL, including another customer's object
    on our CDN: only objects under the customer's own prefix are ever deleted on its behalf.
    """
    if url is None:
        return None
    key = storage.key_for(url)
    if key is None or not key.startswith(customer_prefix(owner.business_id, owner.customer_id)):
        return None
    return key


def owned_object_key(storage: AvatarStorage, customer: Customer) -> str | None:
    """The stored object the customer's avatar_url points at, if it is the customer's own."""
    return _our_key(
        storage, customer.avatar_url, AvatarOwner(customer_id=customer.id, business_id=customer.business_id)
    )


async def _lock(session: AsyncSession, owner: AvatarOwner) -> Customer:
    """Begin a transaction holding the customer's row lock: avatar changes of one customer serialise."""
    locked = await customers_service.lock_customers(session, [owner.customer_id])
    if not locked:
        raise CustomerNotFound(owner.customer_id)
    return locked[0]


async def _point_at(session: AsyncSession, customer: Customer, *, new_url: str | None, actor: Principal) -> Customer:
    """Set `avatar_url` on the locked row with its events, and commit. Returns the updated row."""
    updated = await customers_service.set_avatar_url(session, customer, new_url=new_url, actor=actor)
    await session.commit()
    return updated


async def _rollback_quietly(session: AsyncSession) -> None:
    try:
        await session.rollback()
    except Exception as exc:  # the connection may be gone; the pool discards it
        log.warning("avatar_rollback_failed", error=type(exc).__name__)


async def _delete_unless_current(
    session: AsyncSession, storage: AvatarStorage, owner: AvatarOwner, key: str, *, reason: str
) -> None:
    """Delete `key` unless the customer points at it, deciding and deleting under the row lock.

    Keys are content addressed, so a concurrent upload of the same bytes may point the customer
    at this very key again; holding the lock (uploads write their object under it too) means
    the object is deleted only if no committed or in-flight upload wants it. When the database
    cannot tell, the object is kept: an unreferenced object is harmless, a dangling URL is not.
    """
    url = storage.url_for(key)
    try:
        locked = await customers_service.lock_customers(session, [owner.customer_id])
        if not locked or locked[0].avatar_url != url:
            await _delete_quietly(storage, key, reason=reason)
        await session.commit()  # releases the lock; commit (not rollback) keeps loaded rows usable
    except Exception as exc:
        log.warning("avatar_object_kept", key=key, reason=reason, error=type(exc).__name__)
        await _rollback_quietly(session)


async def upload_avatar(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    owner: AvatarOwner,
    data: bytes,
    storage: AvatarStorage,
    actor: Principal,
    max_dimension: int,
) -> StoredAvatar:
    """Validate `data`, store the clean image and make it the customer's avatar."""
    image = await anyio.to_thread.run_sync(
        partial(images.clean_avatar, data, max_dimension=max_dimension), limiter=_IMAGE_WORKERS
    )
    key = object_key(owner.business_id, owner.customer_id, image.sha256, image.format.ext)
    new_url = storage.url_for(key)

    # Several transactions (the new URL, then each clean-up under a fresh lock): its own sessions.
    async with sessionmaker() as session:
        customer = await _lock(session, owner)
        old_url = customer.avatar_url
        try:
            # Written under the row lock, before the commit that publishes its URL.
            await storage.put(key, image.data, content_type=image.format.content_type)
        except StorageError as exc:
            await _rollback_quietly(session)
            log.error("avatar_store_failed", key=key, backend=storage.backend, error=str(exc))
            raise AvatarStoreUnavailable("The avatar could not be stored; try again later.") from exc

        if old_url == new_url:  # the same image again: nothing changes, no event
            await session.commit()
        else:
            try:
                customer = await _point_at(session, customer, new_url=new_url, actor=actor)
            except Exception:
                await _rollback_quietly(session)
                await _delete_unless_current(session, storage, owner, key, reason="commit_failed")
                raise
            old_key = _our_key(storage, old_url, owner)
            if old_key is not None:
                await _delete_unless_current(session, storage, owner, old_key, reason="replaced")
    log.info("avatar_uploaded", customer_id=str(owner.customer_id), key=key, bytes=len(image.data))
    return StoredAvatar(customer_id=customer.id, version=customer.version, image=image, url=new_url)


async def remove_avatar(
    sessionmaker: async_sessionmaker[AsyncSession], *, customer: Customer, storage: AvatarStorage, actor: Principal
) -> None:
    """Back to the generated avatar; the stored object (if ours) is deleted after the commit."""
    owner = AvatarOwner(customer_id=customer.id, business_id=customer.business_id)
    # Two transactions (the URL, then the object's clean-up under a fresh lock): its own session.
    async with sessionmaker() as session:
        locked = await _lock(session, owner)
        old_url = locked.avatar_url
        if old_url is None:
            return
        await _point_at(session, locked, new_url=None, actor=actor)
        old_key = _our_key(storage, old_url, owner)
        if old_key is not None:
            await _delete_unless_current(session, storage, owner, old_key, reason="removed")


@dataclass(frozen=True, slots=True)
class GeneratedAvatar:
    svg: bytes
    etag: str


def generated_avatar(customer: Customer) -> GeneratedAvatar:
    """The initials SVG and its strong ETag (a hash of the bytes: it changes with the name)."""
    svg = images.initials_svg(customer.id, customer.full_name)
    return GeneratedAvatar(svg=svg, etag=f'"{hashlib.sha256(svg).hexdigest()[:32]}"')


# --- the public URL of the generated avatar (customers/avatar_links.py) --------------------------


def generated_path(settings: Settings, customer_id: uuid.UUID, full_name: str) -> str:
    """The public, cacheable path of the generated avatar (`GET` it without a token)."""
    return avatar_links.generated_path(
        avatar_links.link_key(settings.cursor_secret.get_secret_value()), customer_id, full_name
    )


async def public_generated_avatar(
    session: AsyncSession, settings: Settings, customer_id: uuid.UUID, token: str
) -> GeneratedAvatar | None:
    """The generated avatar when `token` is the customer's current one; None when missing or stale."""
    customer = await customers_service.find_by_id_unscoped(session, customer_id)
    if customer is None:
        return None
    key = avatar_links.link_key(settings.cursor_secret.get_secret_value())
    expected = avatar_links.generated_token(key, customer.id, customer.full_name)
    if not hmac.compare_digest(expected, token):
        return None
    return generated_avatar(customer)
