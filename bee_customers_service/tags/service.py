"""Business rules of tags: unique per customer ignoring case/spaces, at most 50, events in the same transaction."""

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from bee_customers_service.core.errors import Conflict, CustomerNotFound, InvalidInput, NotFound
from bee_customers_service.core.security import Principal
from bee_customers_service.customers import service as customers_service
from bee_customers_service.customers.models import Customer
from bee_customers_service.events import audit, catalogue, outbox
from bee_customers_service.tags import repository
from bee_customers_service.tags.models import CustomerTag
from bee_customers_service.tags.schemas import MAX_TAGS_PER_CUSTOMER, TagCreate


class TagAlreadyExists(Conflict):
    type_slug, title = "tag-exists", "Tag already exists"

    def __init__(self, labels: list[str]) -> None:
        super().__init__("The customer already has this tag (tags ignore case and surrounding spaces).", labels=labels)


class TagNotFound(NotFound):
    type_slug, title = "tag-not-found", "Tag not found"

    def __init__(self, tag_id: uuid.UUID) -> None:
        super().__init__(f"No tag with id {tag_id} on this customer")


async def add_tags(
    session: AsyncSession, *, customer: Customer, data: TagCreate, actor: Principal
) -> list[CustomerTag]:
    """Add one or several tags atomically: 409 if any exists already, 422 beyond 50 per customer."""
    # Lock the customer row first: concurrent adds for one customer then count and insert one after
    # the other, so two requests cannot both see 49 tags and end at 51.
    if not await customers_service.lock_customers(session, [customer.id], allow_references=True):
        raise CustomerNotFound(customer.id)
    labels = data.all_labels
    current = await repository.count_for_customer(session, customer.id)
    if current + len(labels) > MAX_TAGS_PER_CUSTOMER:
        raise InvalidInput(
            "labels" if data.labels is not None else "label",
            f"a customer carries at most {MAX_TAGS_PER_CUSTOMER} tags (it has {current})",
        )

    created: list[CustomerTag] = []
    for label in labels:
        tag = await repository.insert_if_absent(
            session,
            {
                "id": uuid.uuid4(),
                "customer_id": customer.id,
                "business_id": customer.business_id,
                "label": label,
                "color": data.color.upper() if data.color else None,
                "created_by": actor.user_id,
            },
        )
        if tag is None:
            existing = await repository.existing_labels(session, customer.id, labels)
            raise TagAlreadyExists(existing or [label])
        created.append(tag)
        event = catalogue.CustomerTagged(
            customer_id=customer.id,
            business_id=customer.business_id,
            tag=tag.label,
            tag_id=tag.id,
            color=tag.color,
            created_by=actor.user_id,
            created_at=tag.created_at,
        )
        await outbox.enqueue_event(session, event)
        record = catalogue.AuditCustomerTagged(
            customer_id=customer.id,
            business_id=customer.business_id,
            actor=catalogue.Actor.of(actor),
            tag_id=tag.id,
            tag=tag.label,
            color=tag.color,
        )
        await audit.record(session, record)
    return created


async def list_tags(session: AsyncSession, *, customer: Customer) -> list[CustomerTag]:
    return list(await repository.list_for_customer(session, customer.id))


async def remove_tag(session: AsyncSession, *, customer: Customer, tag_id: uuid.UUID, actor: Principal) -> None:
    """Delete a tag of this customer (404 for a tag of another customer) and announce it."""
    tag = await repository.delete_tag(session, customer.id, tag_id)
    if tag is None:
        raise TagNotFound(tag_id)
    event = catalogue.CustomerUntagged(
        customer_id=customer.id,
        business_id=customer.business_id,
        tag=tag.label,
        tag_id=tag.id,
        removed_by=actor.user_id,
    )
    await outbox.enqueue_event(session, event)
    record = catalogue.AuditCustomerUntagged(
        customer_id=customer.id,
        business_id=customer.business_id,
        actor=catalogue.Actor.of(actor),
        tag_id=tag.id,
        tag=tag.label,
    )
    await audit.record(session, record)
