"""HTTP surface of the customer profile: parse, call the service, shape the response (access: the signature)."""

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request
from starlette.responses import Response

from bee_customers_service.core.dependencies import DatabaseDep, SessionDep, SettingsDep, require_json
from bee_customers_service.core.errors import PreconditionFailed
from bee_customers_service.core.idempotency import IdempotentRoute
from bee_customers_service.core.openapi import problems
from bee_customers_service.core.ratelimit import RateLimiter
from bee_customers_service.core.responses import etag, json_response, parse_if_match
from bee_customers_service.core.security import CustomerOrAdminCaller, ServiceCaller
from bee_customers_service.core.types import SafeStr
from bee_customers_service.customers import service
from bee_customers_service.customers.dependencies import SelfOrAdmin, SelfOrAdminScope
from bee_customers_service.customers.schemas import (
    AdminCustomerView,
    CustomerCreate,
    CustomerProfileIn,
    CustomerUpdate,
    CustomerView,
    view_context,
)

# No prefix: PUT /businesses/{business_id}/customers/{user_id} lives here too.
router = APIRouter(tags=["customers"], route_class=IdempotentRoute)

_views: dict[int | str, dict[str, Any]] = {
    200: {"model": AdminCustomerView, "description": "Admins get tags and notes_count too."}
}


@router.post(
    "/customers",
    status_code=201,
    response_model=CustomerView,
    dependencies=[Depends(require_json)],
    responses=problems(409),
    summary="Create a customer profile (internal services)",
)
async def create_customer(
    data: CustomerCreate,
    session: SessionDep,
    settings: SettingsDep,
    _caller: ServiceCaller,
) -> Response:
    customer = await service.create_customer(session, data=data, settings=settings, actor=_caller)
    return json_response(
        CustomerView.model_validate(customer, context=view_context(settings)),
        status_code=201,
        headers={"Location": f"/customers/{customer.id}", "ETag": etag(customer.version)},
    )


@router.put(
    "/businesses/{business_id}/customers/{user_id}",
    response_model=CustomerView,
    responses={201: {"model": CustomerView, "description": "Created: there was no profile."}, **problems(409)},
    dependencies=[Depends(require_json)],
    summary="Get or create the profile of a user in a business (internal services)",
    description="Get-or-create, not an overwrite: an existing profile is returned unchanged (200); "
    "otherwise it is created from the body (201, with its v1.customer.created).",
)
async def get_or_create_customer(
    business_id: uuid.UUID,
    user_id: uuid.UUID,
    data: CustomerProfileIn,
    session: SessionDep,
    settings: SettingsDep,
    _caller: ServiceCaller,
) -> Response:
    create = CustomerCreate.model_validate({**dict(data), "user_id": user_id, "business_id": business_id})
    customer, created = await service.get_or_create_customer(session, data=create, settings=settings, actor=_caller)
    headers = {"ETag": etag(customer.version)}
    if created:
        headers["Location"] = f"/customers/{customer.id}"
    view = CustomerView.model_validate(customer, context=view_context(settings))
    return json_response(view, status_code=201 if created else 200, headers=headers)


@router.get(
    "/customers/{customer_id}",
    response_model=CustomerView,
    responses={**_views, **problems(404)},
    summary="Read a profile",
)
async def get_customer(
    customer_id: uuid.UUID, database: DatabaseDep, settings: SettingsDep, scope: SelfOrAdminScope
) -> Response:
    view = await service.read_view(database, customer_id, scope, view_context(settings))
    return json_response(view, headers={"ETag": etag(view.version)})


async def _patch_rate_limits(
    request: Request,
    customer: SelfOrAdmin,
    principal: CustomerOrAdminCaller,
) -> None:
    """Anti-flood (spec 5.4): counted per customer and per caller, after authorization."""
    limiter: RateLimiter = request.app.state.rate_limiter
    limit = request.app.state.settings.patch_rate_limit
    await limiter.hit("customer-patch", limit, str(customer.id))
    await limiter.hit("caller-patch", limit, str(principal.user_id))


@router.patch(
    "/customers/{customer_id}",
    response_model=CustomerView,
    responses={**_views, **problems(404, 409, 412)},
    dependencies=[Depends(require_json), Depends(_patch_rate_limits)],
    summary="Update a profile (partial; honours If-Match)",
)
async def update_customer(
    changes: CustomerUpdate,
    customer: SelfOrAdmin,
    session: SessionDep,
    settings: SettingsDep,
    principal: CustomerOrAdminCaller,
    if_match: Annotated[SafeStr | None, Header()] = None,
) -> Response:
    expected = parse_if_match(if_match)
    if expected is not None and not expected:
        raise PreconditionFailed("If-Match names no version of this customer.")
    # Read inside the update's transaction: a PATCH changes neither tags nor notes.
    extras = await service.admin_extras_for(session, customer, principal)
    updated = await service.update_customer(
        session, customer=customer, changes=changes, expected_versions=expected, actor=principal, settings=settings
    )
    view = service.render_view(updated, extras, view_context(settings))
    return json_response(view, headers={"ETag": etag(updated.version)})
