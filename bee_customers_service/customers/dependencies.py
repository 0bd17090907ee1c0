"""Access to one customer: each rule loads the customer through a scoped WHERE (404 when out of reach).

Write routes take `SelfOrAdmin` / `AdminOfCustomer` (loaded in the request's transaction, the one
that commits); read routes take the `...Read` twins, loaded in the read session.
"""

import uuid
from typing import Annotated

from fastapi import Depends
from sqlalchemy.ext.asyncio import AsyncSession

from bee_customers_service.core.dependencies import ReadSessionDep, SessionDep
from bee_customers_service.core.security import AdminCaller, CustomerOrAdminCaller, CustomerScope, Principal
from bee_customers_service.customers import service
from bee_customers_service.customers.models import Customer


async def _self_or_admin(session: AsyncSession, customer_id: uuid.UUID, principal: Principal) -> Customer:
    # An admin gets the admin view, so its extras come with the customer in one round trip.
    scope = CustomerScope.self_or_admin(principal)
    return await service.find_visible(session, customer_id, scope, with_admin_extras=principal.is_admin)


async def self_or_admin(customer_id: uuid.UUID, session: SessionDep, principal: CustomerOrAdminCaller) -> Customer:
    """The customer, if the caller is that customer or an admin of its business."""
    return await _self_or_admin(session, customer_id, principal)


async def self_or_admin_read(
    customer_id: uuid.UUID, session: ReadSessionDep, principal: CustomerOrAdminCaller
) -> Customer:
    return await _self_or_admin(session, customer_id, principal)


async def admin_of_customer(customer_id: uuid.UUID, session: SessionDep, principal: AdminCaller) -> Customer:
    """The customer, if the caller administers its business."""
    return await service.find_visible(session, customer_id, CustomerScope.admin(principal))


async def admin_of_customer_read(customer_id: uuid.UUID, session: ReadSessionDep, principal: AdminCaller) -> Customer:
    return await service.find_visible(session, customer_id, CustomerScope.admin(principal))


async def self_or_admin_scope(principal: CustomerOrAdminCaller) -> CustomerScope:
    """The reach of a self-or-admin caller, for reads that scope their own statement (GET profile)."""
    return CustomerScope.self_or_admin(principal)


SelfOrAdmin = Annotated[Customer, Depends(self_or_admin)]
SelfOrAdminRead = Annotated[Customer, Depends(self_or_admin_read)]
AdminOfCustomer = Annotated[Customer, Depends(admin_of_customer)]
AdminOfCustomerRead = Annotated[Customer, Depends(admin_of_customer_read)]
SelfOrAdminScope = Annotated[CustomerScope, Depends(self_or_admin_scope)]
