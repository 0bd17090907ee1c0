"""GET /customers?business_id=...: the admin search, and GET /customers/export: the whole business as a file
(admin_business / admin_manager of that business)."""

from fastapi import APIRouter, Request
from starlette.responses import Response, StreamingResponse

from bee_customers_service.core.dependencies import ReadTransactionDep, SettingsDep
from bee_customers_service.core.openapi import problems
from bee_customers_service.core.security import AdminCaller
from bee_customers_service.search import export, service
from bee_customers_service.search.dependencies import OwnBusinessExport, OwnBusinessSearch
from bee_customers_service.search.schemas import SearchPage

router = APIRouter(prefix="/customers", tags=["search"])


# Registered before customers/router.py's GET /customers/{customer_id} (app.py includes this
# router first), or "export" would be taken for a customer id (422).
@router.get(
    "/export",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "The business's customers as a CSV file (a header row) or NDJSON (one object a line).",
            "content": {export.MEDIA_TYPES["csv"]: {}, export.MEDIA_TYPES["ndjson"]: {}},
        },
        **problems(403),
    },
    summary="Export a business's customers (the search's filters) as CSV or NDJSON, streamed",
)
async def export_customers(params: OwnBusinessExport, principal: AdminCaller, request: Request) -> StreamingResponse:
    # A read-only transaction per page, opened while the body streams (the request's sessions are closed by then).
    sessionmaker = request.app.state.database.read_transaction_sessionmaker
    return StreamingResponse(
        export.stream(sessionmaker, params, requested_by=principal.user_id),
        media_type=export.MEDIA_TYPES[params.format],
        headers={"Content-Disposition": f'attachment; filename="{export.filename(params)}"'},
    )


@router.get(
    "",
    response_model=SearchPage,
    responses=problems(403),
    summary="Search and list a business's customers (keyset pages, relevance first with `query`)",
)
async def search_customers(
    params: OwnBusinessSearch,
    session: ReadTransactionDep,  # its set_config(..., true) needs a transaction
    settings: SettingsDep,
) -> Response:
    page = await service.search_customers(session, params=params, settings=settings)
    return Response(content=page.model_dump_json(), media_type="application/json")
