"""Dependencies that load a customer and check the caller may act on it (404 otherwise)."""

import uuid
from typing import Annotated

from fastapi import Depends

from bee_customers_service.core.dependencies import SessionDep
from bee_customers_service.core.errors import CustomerNotFound
from bee_customers_service.core.security import (
    Principal,
    require_admin_of_subject,
    require_admin_role,
    require_customer_or_admin_role,
    require_self_or_admin,
)
from bee_customers_service.customers import repository
from bee_customers_service.customers.models import Customer


async def _load(session: SessionDep, customer_id: uuid.UUID, *, with_admin_extras: bool = False) -> Customer:
    customer = await repository.get(session, customer_id, with_admin_extras=with_admin_extras)
    if customer is None:
        raise CustomerNotFound(customer_id)
    return customer


async def customer_for_self_or_admin(
    customer_id: uuid.UUID,
    session: SessionDep,
    principal: Principal = Depends(require_customer_or_admin_role),
) -> Customer:
    """The customer, if the caller is that customer or an admin of its business."""
    # An admin gets the admin view, so its extras come with the customer in one round trip.
    customer = await _load(session, customer_id, with_admin_extras=principal.is_admin)
    require_self_or_admin(principal, customer, not_found=CustomerNotFound(customer_id))
    return customer


async def customer_for_admin(
    customer_id: uuid.UUID,
    session: SessionDep,
    principal: Principal = Depends(require_admin_role),
) -> Customer:
    """The customer, if the caller administers its business."""
    customer = await _load(session, customer_id)
    require_admin_of_subject(principal, customer, not_found=CustomerNotFound(customer_id))
    return customer


SelfOrAdminCustomer = Annotated[Customer, Depends(customer_for_self_or_admin)]
AdminCustomer = Annotated[Customer, Depends(customer_for_admin)]
