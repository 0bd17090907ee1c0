"""Alembic environment, async: runs migrations over an asyncpg connection."""

import asyncio

from alembic import context
from sqlalchemy.ext.asyncio import create_async_engine

from bee_customers_service.core.config import get_settings
from bee_customers_service.core.db import resolve_database_url
from bee_customers_service.models import Base

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    return config.attributes.get("database_url") or resolve_database_url(get_settings())


def _run(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(connection=connection, target_metadata=target_metadata, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


async def _run_online() -> None:
    engine = create_async_engine(_url(), hide_parameters=True)
    async with engine.connect() as connection:
        await connection.run_sync(_run)
    await engine.dispose()


if context.is_offline_mode():
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(_run_online())
