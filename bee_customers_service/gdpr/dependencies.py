"""Access rules of the GDPR routes that are not about one customer (those use customers/dependencies.py)."""

from typing import Annotated

from fastapi import Depends

from bee_customers_service.core.errors import Forbidden
from bee_customers_service.core.security import Principal, get_principal
from bee_customers_service.gdpr.access import RecordScope


async def admin_or_service_scope(principal: Principal = Depends(get_principal)) -> RecordScope:
    """Erasure records are for internal services (all) and admins (their businesses'); 403 for others."""
    if principal.is_service:
        return RecordScope(admin_of=frozenset(), every_business=True)
    if principal.is_admin:
        return RecordScope(admin_of=principal.business_ids)
    raise Forbidden("Erasure records are for business administrators and internal services.")


AdminOrServiceScope = Annotated[RecordScope, Depends(admin_or_service_scope)]
