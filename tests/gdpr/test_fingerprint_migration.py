"""Migration 0012: `email_sha256` becomes `email_fingerprints`, and the unkeyed legacy hashes are cleared."""

import asyncio
import hashlib
import uuid

import asyncpg

from bee_customers_service.cli import run_migrations
from bee_customers_service.core.db import to_async_url
from tests.services import create_database, drop_database

INSERT_0011 = """
INSERT INTO gdpr_requests (id, kind, scope, subject_user_id, customer_ids, business_ids, requested_by,
                           requested_by_roles, status, erased, email_sha256, pending_objects)
VALUES ($1, 'erasure', 'customer', $2, ARRAY[$2]::uuid[], ARRAY[$2]::uuid[], $2, ARRAY['service'],
        'completed', '{"customers": 1}', ARRAY[$3], '{}')
"""


async def test_legacy_bare_hashes_are_cleared_and_the_record_stays(postgres_server):
    name, url = await create_database(postgres_server, prefix="bee_gdpr_migration")
    try:
        await asyncio.to_thread(run_migrations, to_async_url(url), "0011_prefix_upper_unicode")
        record_id, legacy = uuid.uuid4(), hashlib.sha256(b"ana.popescu@email.com").hexdigest()
        connection = await asyncpg.connect(url)
        try:
            await connection.execute(INSERT_0011, record_id, uuid.uuid4(), legacy)
        finally:
            await connection.close()

        await asyncio.to_thread(run_migrations, to_async_url(url), "0012_gdpr_email_fingerprints")

        connection = await asyncpg.connect(url)
        try:
            row = await connection.fetchrow("SELECT * FROM gdpr_requests WHERE id = $1", record_id)
            indexes = await connection.fetchval(
                "SELECT count(*) FROM pg_indexes WHERE indexname = 'ix_gdpr_requests_email_fingerprints'"
            )
        finally:
            await connection.close()
        assert "email_sha256" not in dict(row)
        assert row["email_fingerprints"] == []  # the bare hash is what the issue removes: not kept
        assert row["erased"] is not None and row["status"] == "completed"  # the record itself stays
        assert indexes == 1

        await asyncio.to_thread(run_migrations, to_async_url(url), "0011_prefix_upper_unicode", downgrade=True)
        connection = await asyncpg.connect(url)
        try:
            assert await connection.fetchval("SELECT email_sha256 FROM gdpr_requests WHERE id = $1", record_id) == []
        finally:
            await connection.close()
    finally:
        await drop_database(postgres_server, name)
