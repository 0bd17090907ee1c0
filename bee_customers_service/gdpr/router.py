"""GDPR endpoints: export (a downloadable JSON document) and erasure (idempotent)."""

import uuid
from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from bee_customers_service.core.dependencies import DatabaseDep, ReadSessionDep, SessionDep, SettingsDep
from bee_customers_service.core.openapi import problems
from bee_customers_service.core.responses import json_response
from bee_customers_service.core.security import CustomerOrAdminCaller, SelfOrService
from bee_customers_service.customers.dependencies import SelfOrAdminRead
from bee_customers_service.gdpr import service
from bee_customers_service.gdpr.dependencies import AdminOrServiceScope
from bee_customers_service.gdpr.schemas import GdprRequestView

router = APIRouter(tags=["gdpr"])

_EXPORT_JSON = {
    "description": "A JSON attachment (Content-Disposition) with everything held.",
    "content": {"application/json": {"schema": {"type": "object"}}},
}


def _attachment(document: dict[str, Any], filename: str) -> Response:
    return Response(
        content=orjson.dumps(document),
        media_type="application/json",
        headers={"Content-Disposition": f'attachment; filename="{filename}"', "Cache-Control": "no-store"},
    )


def _erased(record_id: uuid.UUID) -> Response:
    return Response(status_code=204, headers={"Location": f"/gdpr/requests/{record_id}"})


@router.get(
    "/customers/{customer_id}/export",
    responses={200: _EXPORT_JSON, **problems(404)},
    summary="Export everything held about a customer",
)
async def export_customer(
    customer: SelfOrAdminRead, session: SessionDep, settings: SettingsDep, principal: CustomerOrAdminCaller
) -> Response:  # SessionDep: the export writes its audit record
    document = await service.export_customer(session, customer=customer, principal=principal, settings=settings)
    return _attachment(document, f"customer-{customer.id}.json")


@router.delete("/customers/{customer_id}", status_code=204, responses=problems(404), summary="Erase a customer (GDPR)")
async def erase_customer(
    request: Request,
    customer: SelfOrAdminRead,
    database: DatabaseDep,
    settings: SettingsDep,
    principal: CustomerOrAdminCaller,
) -> Response:
    # Its own transactions (the erasure, then the stored objects): a sessionmaker, not a request session.
    record = await service.erase_customer(
        database.sessionmaker,
        customer=customer,
        actor=principal,
        storage=request.app.state.avatar_storage,
        settings=settings,
    )
    return _erased(record.id)


@router.get(
    "/users/{user_id}/export",
    responses={200: _EXPORT_JSON},
    summary="Export a user's profiles in every business",
)
async def export_user(
    user_id: uuid.UUID, session: SessionDep, settings: SettingsDep, principal: SelfOrService
) -> Response:  # SessionDep: the export writes an audit record per profile
    document = await service.export_user(session, user_id=user_id, principal=principal, settings=settings)
    return _attachment(document, f"user-{user_id}.json")


@router.delete("/users/{user_id}", status_code=204, summary="Erase a user's profiles in every business")
async def erase_user(
    request: Request, user_id: uuid.UUID, database: DatabaseDep, settings: SettingsDep, principal: SelfOrService
) -> Response:
    # Its own transactions (the erasure, then the stored objects): a sessionmaker, not a request session.
    record = await service.erase_user(
        database.sessionmaker,
        user_id=user_id,
        actor=principal,
        storage=request.app.state.avatar_storage,
        settings=settings,
    )
    return _erased(record.id) if record is not None else Response(status_code=204)


@router.get(
    "/gdpr/requests/{request_id}",
    response_model=GdprRequestView,
    responses=problems(404),
    summary="An erasure record",
)
async def get_gdpr_request(request_id: uuid.UUID, session: ReadSessionDep, scope: AdminOrServiceScope) -> Response:
    record = await service.find_request(session, request_id=request_id, scope=scope)
    return json_response(GdprRequestView.model_validate(record))
