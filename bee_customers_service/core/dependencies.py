"""Request-scoped dependencies shared by every router."""

from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from bee_customers_service.core.config import Settings
from bee_customers_service.core.db import Database, get_read_session, get_read_transaction, get_session
from bee_customers_service.core.errors import UnsupportedMediaType
from bee_customers_service.core.security import Principal, get_principal


# async: FastAPI runs a plain `def` dependency in a worker thread, a thread hop per request.
async def get_app_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_database(request: Request) -> Database:
    return request.app.state.database


async def require_json(request: Request) -> None:
    """JSON endpoints accept `application/json` (or any `+json` type) only: 415 otherwise."""
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type != "application/json" and not media_type.endswith("+json"):
        raise UnsupportedMediaType("Send the body as application/json.")


# scope="function": the session ends (and a write commits) when the endpoint returns, before the
# response is sent; FastAPI's default scope would end it after the response.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
ReadSessionDep = Annotated[AsyncSession, Depends(get_read_session, scope="function")]
ReadTransactionDep = Annotated[AsyncSession, Depends(get_read_transaction, scope="function")]
SettingsDep = Annotated[Settings, Depends(get_app_settings)]
DatabaseDep = Annotated[Database, Depends(get_database)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]
