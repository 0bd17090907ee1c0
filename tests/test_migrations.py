"""Migrations go up from an empty database and back down to empty."""

import asyncio

import asyncpg

from bee_customers_service.cli import run_migrations
from bee_customers_service.core.db import to_async_url
from tests.services import create_database, drop_database


async def _tables(url: str) -> set[str]:
    connection = await asyncpg.connect(url)
    try:
        rows = await connection.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        types = await connection.fetch("SELECT typname FROM pg_type WHERE typname = 'gender_enum'")
    finally:
        await connection.close()
    return {r["tablename"] for r in rows} | {r["typname"] for r in types}


async def _search_functions(url: str) -> set[str]:
    connection = await asyncpg.connect(url)
    try:
        rows = await connection.fetch("SELECT proname FROM pg_proc WHERE proname LIKE 'bee\\_%'")
    finally:
        await connection.close()
    return {r["proname"] for r in rows}


async def test_upgrade_from_empty_and_downgrade_to_empty(postgres_server):
    name, url = await create_database(postgres_server, prefix="bee_migrations")
    try:
        assert await _tables(url) == set()
        await asyncio.to_thread(run_migrations, to_async_url(url))
        upgraded = await _tables(url)
        assert {
            "customers",
            "customer_tags",
            "customer_notes",
            "customer_history",
            "outbox",
            "customer_activity",
            "processed_events",
            "alembic_version",
            "gender_enum",
            "gdpr_requests",
            "customer_name_words",
        } <= upgraded

        assert await _search_functions(url) == {
            "bee_unaccent",
            "bee_search_normalise",
            "bee_name_rest",
            "bee_name_word",
            "bee_name_last_word",
            "bee_name_words",
            "bee_name_words_forget",
            "bee_prefix_upper",
            "bee_customers_words_inserted",
            "bee_customers_words_deleted",
            "bee_customers_words_renamed",
        }

        await asyncio.to_thread(run_migrations, to_async_url(url), "base", downgrade=True)
        assert await _tables(url) == {"alembic_version"}
        assert await _search_functions(url) == set()

        await asyncio.to_thread(run_migrations, to_async_url(url))  # and up again: downgrades are clean
        assert await _tables(url) == upgraded
    finally:
        await drop_database(postgres_server, name)
