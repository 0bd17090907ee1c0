"""GET /customers?business_id=...: the admin search (admin_business / admin_manager of that business)."""

from fastapi import APIRouter
from starlette.responses import Response

from bee_customers_service.core.dependencies import ReadTransactionDep, SettingsDep
from bee_customers_service.core.openapi import problems
from bee_customers_service.search import service
from bee_customers_service.search.dependencies import OwnBusinessSearch
from bee_customers_service.search.schemas import SearchPage

router = APIRouter(prefix="/customers", tags=["search"])


@router.get(
    "",
    response_model=SearchPage,
    response_model_exclude_none=True,
    responses=problems(403),
    summary="Search and list a business's customers (keyset pages, relevance first with `query`)",
)
async def search_customers(
    params: OwnBusinessSearch,
    session: ReadTransactionDep,  # its set_config(..., true) needs a transaction
    settings: SettingsDep,
) -> Response:
    page = await service.search_customers(session, params=params, settings=settings)
    body = page.model_dump_json(exclude={"total"} if page.total is None else None)
    return Response(content=body, media_type="application/json")
