"""HTTP surface of tags (admins of the customer's business only)."""

import uuid

from fastapi import APIRouter, Depends
from starlette.responses import Response

from bee_customers_service.core.dependencies import ReadSessionDep, SessionDep, require_json
from bee_customers_service.core.idempotency import IdempotentRoute
from bee_customers_service.core.openapi import problems
from bee_customers_service.core.responses import json_response
from bee_customers_service.core.security import AdminCaller
from bee_customers_service.customers.dependencies import AdminOfCustomer, AdminOfCustomerRead
from bee_customers_service.tags import service
from bee_customers_service.tags.schemas import TagCreate, TagList, TagView

router = APIRouter(prefix="/customers/{customer_id}/tags", tags=["tags"], route_class=IdempotentRoute)


@router.post(
    "",
    status_code=201,
    response_model=TagView | TagList,
    dependencies=[Depends(require_json)],
    operation_id="add_tag",
    responses=problems(404, 409),
    summary="Tag a customer: `label` answers the tag, `labels` answers `{items}`",
)
async def add_tags(data: TagCreate, customer: AdminOfCustomer, session: SessionDep, principal: AdminCaller) -> Response:
    created = await service.add_tags(session, customer=customer, data=data, actor=principal)
    if data.labels is None:
        [tag] = created
        return json_response(
            TagView.model_validate(tag),
            status_code=201,
            headers={"Location": f"/customers/{customer.id}/tags/{tag.id}"},
        )
    return json_response(TagList(items=[TagView.model_validate(t) for t in created]), status_code=201)


@router.get("", response_model=TagList, responses=problems(404), summary="The customer's tags, oldest first")
async def list_tags(customer: AdminOfCustomerRead, session: ReadSessionDep) -> Response:
    tags = await service.list_tags(session, customer=customer)
    return json_response(TagList(items=[TagView.model_validate(t) for t in tags]))


@router.delete("/{tag_id}", status_code=204, responses=problems(404), summary="Remove a tag")
async def remove_tag(
    tag_id: uuid.UUID, customer: AdminOfCustomer, session: SessionDep, principal: AdminCaller
) -> Response:
    await service.remove_tag(session, customer=customer, tag_id=tag_id, actor=principal)
    return Response(status_code=204)
