"""Access to the search: the admin searches one of the businesses it administers (403 otherwise)."""

from typing import Annotated

from fastapi import Depends, Query

from bee_customers_service.core.security import AdminCaller, require_admin_of
from bee_customers_service.search.schemas import ExportParams, SearchParams


async def search_of_own_business(params: Annotated[SearchParams, Query()], principal: AdminCaller) -> SearchParams:
    """The search's parameters, once the caller is known to administer `business_id`."""
    require_admin_of(principal, params.business_id)
    return params


OwnBusinessSearch = Annotated[SearchParams, Depends(search_of_own_business)]


async def export_of_own_business(params: Annotated[ExportParams, Query()], principal: AdminCaller) -> ExportParams:
    """The export's parameters, once the caller is known to administer `business_id`."""
    require_admin_of(principal, params.business_id)
    return params


OwnBusinessExport = Annotated[ExportParams, Depends(export_of_own_business)]
