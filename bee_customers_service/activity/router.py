"""HTTP surface of the activity: statistics, history, recomputation."""

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from starlette.responses import Response

from bee_customers_service.activity import service
from bee_customers_service.activity.schemas import CustomerStats, HistoryPage
from bee_customers_service.core.dependencies import ReadSessionDep, SessionDep, SettingsDep
from bee_customers_service.core.idempotency import IdempotentRoute
from bee_customers_service.core.openapi import problems
from bee_customers_service.core.responses import json_response
from bee_customers_service.core.security import AdminCaller
from bee_customers_service.core.types import SafeStr
from bee_customers_service.customers.dependencies import AdminOfCustomer, SelfOrAdminRead

router = APIRouter(prefix="/customers", tags=["activity"], route_class=IdempotentRoute)


@router.get(
    "/{customer_id}/stats",
    response_model=CustomerStats,
    responses=problems(404),
    summary="Statistics, frequency and RFM segment",
)
async def get_stats(customer: SelfOrAdminRead, session: ReadSessionDep, settings: SettingsDep) -> Response:
    return json_response(await service.stats(session, customer, settings=settings))


@router.get(
    "/{customer_id}/history",
    response_model=HistoryPage,
    responses=problems(404),
    summary="Orders and appointments, newest first",
)
async def get_history(
    customer: SelfOrAdminRead,
    session: ReadSessionDep,
    settings: SettingsDep,
    kind: Annotated[Literal["order", "appointment"] | None, Query(description="only orders or appointments")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[SafeStr | None, Query(max_length=200, description="next_cursor of the previous page")] = None,
) -> Response:
    return json_response(
        await service.history(session, customer, kind=kind, limit=limit, cursor=cursor, settings=settings)
    )


@router.post(
    "/{customer_id}/stats/recompute",
    response_model=CustomerStats,
    responses=problems(404),
    summary="Rebuild the aggregates from the activity rows (admins)",
)
async def recompute_stats(
    customer: AdminOfCustomer, session: SessionDep, settings: SettingsDep, principal: AdminCaller
) -> Response:
    return json_response(await service.recompute_customer(session, customer, settings=settings, actor=principal))
