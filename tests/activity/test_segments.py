"""The stored RFM segment (activity/segments.py) equals the live one of GET stats, and stays fresh."""

import asyncio
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from freezegun import freeze_time
from sqlalchemy import text
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from bee_customers_service.activity import repository, segments
from bee_customers_service.activity.segment_refresh import refresh_if_due
from bee_customers_service.activity.state import ActivityState
from bee_customers_service.cli import run_migrations
from bee_customers_service.core.db import to_async_url
from tests.activity.upstream import appointment, order_completed
from tests.conftest import make_settings, token_headers
from tests.services import create_database, drop_database

NOW = datetime(2031, 6, 1, 12, tzinfo=UTC)


def _days_ago(days: float, moment: datetime = NOW) -> datetime:
    return moment - timedelta(days=days)


async def _live(client, world, customer, moment: datetime | None = None) -> str:
    """rfm.segment of GET /customers/{id}/stats, at `moment` (default: the real clock)."""
    if moment is None:
        response = await client.get(f"/customers/{customer['id']}/stats", headers=world.admin.headers)
    else:
        with freeze_time(moment, real_asyncio=True):  # the token too is minted at that moment
            headers = token_headers(world.settings, roles=["admin_business"], business_ids=[world.business_id])
            response = await client.get(f"/customers/{customer['id']}/stats", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()["rfm"]["segment"]


async def _stored(fetch, *customers: dict[str, Any]) -> dict[str, tuple[str, Any]]:
    rows = await fetch(
        "SELECT id::text AS id, rfm_segment, rfm_segment_at, xmin::text AS xmin FROM customers WHERE id = ANY(:ids)",
        ids=[uuid.UUID(c["id"]) for c in customers],
    )
    return {r["id"]: (r["rfm_segment"], r["rfm_segment_at"], r["xmin"]) for r in rows}


async def _refresh(app, world, moment: datetime) -> segments.Refreshed:
    return await segments.refresh_segments(
        app.state.database.sessionmaker,
        business_id=world.business_id,
        now=moment,
        window_months=world.settings.stats_window_months,
    )


async def test_the_stored_segment_of_every_kind_of_customer_equals_the_live_one(app, client, world, feed, fetch):
    names = ("prospect", "new", "champion", "loyal", "promising", "at_risk", "hibernating", "lost")
    c = {name: await world.create_customer(client) for name in names}
    await feed.send(
        order_completed(c["new"], total="15.00", completed_at=_days_ago(4)),
        # 13 visits, every 10 days: 2+ a month in the window, recent, the business's top spender
        *(order_completed(c["champion"], total="100.00", completed_at=_days_ago(7 + 10 * n)) for n in range(13)),
        # 6 attended appointments in 6 months (1 a month) and a small order: frequent, not valuable
        *(appointment("completed", c["loyal"], starts_at=_days_ago(12 + 25 * n)) for n in range(6)),
        order_completed(c["loyal"], total="1.00", completed_at=_days_ago(12)),
        # 2 visits in 6 months: 0.33 a month rounds below 1/3 (frequency 1); the first is old, so not new
        order_completed(c["promising"], total="10.00", completed_at=_days_ago(20)),
        order_completed(c["promising"], total="10.00", completed_at=_days_ago(150)),
        # 120 days ago, the only customer paying in USD: monetary 5 in that currency
        order_completed(c["at_risk"], total="40.00", currency="USD", completed_at=_days_ago(120)),
        order_completed(c["hibernating"], total="2.00", completed_at=_days_ago(137)),
        order_completed(c["lost"], total="3.00", completed_at=_days_ago(240)),
    )

    done = await _refresh(app, world, NOW)
    assert (done.businesses, done.customers) == (1, len(names))
    stored = await _stored(fetch, *c.values())
    for name, customer in c.items():
        assert await _live(client, world, customer, NOW) == name
        assert stored[customer["id"]][0] == name
    # the consumer stored the segments as of its own clock; the refresh rewrote the changed ones
    assert stored[c["lost"]["id"]][1] == NOW

    # Nothing changed since: a second refresh at the same moment rewrites no row.
    again = await _refresh(app, world, NOW)
    assert again.changed == 0
    assert await _stored(fetch, *c.values()) == stored

    # 100 days later, without any new activity: recency drifted, the refresh follows the live segments.
    later = NOW + timedelta(days=100)
    drifted = await _refresh(app, world, later)
    assert drifted.changed > 0
    after = await _stored(fetch, *c.values())
    for customer in c.values():
        assert after[customer["id"]][0] == await _live(client, world, customer, later)
    assert after[c["champion"]["id"]][0] == "at_risk"
    assert after[c["prospect"]["id"]] == stored[c["prospect"]["id"]]  # unchanged, not rewritten


async def test_the_consumer_stores_the_segment_of_the_customers_it_changes(client, world, feed, fetch):
    customer = await world.create_customer(client)
    other = await world.create_customer(client)
    before = await _stored(fetch, customer, other)
    assert before[customer["id"]][:2] == ("prospect", None)  # never computed: the column's default

    now = datetime.now(UTC)
    await feed.send(order_completed(customer, total="20.00", completed_at=now - timedelta(days=3)))
    assert (await _stored(fetch, customer))[customer["id"]][0] == "new" == await _live(client, world, customer)

    # A third visit: no longer new, recent but not yet frequent.
    await feed.send(
        order_completed(customer, total="20.00", completed_at=now - timedelta(days=2)),
        appointment("completed", customer, starts_at=now - timedelta(days=1)),
    )
    assert (await _stored(fetch, customer))[customer["id"]][0] == "promising" == await _live(client, world, customer)
    assert await _stored(fetch, other) == {other["id"]: before[other["id"]]}  # not touched


async def test_recompute_and_the_refresh_command_correct_a_stale_segment(client, world, feed, engine, database_url):
    customer = await world.create_customer(client)
    await feed.send(order_completed(customer, total="20.00", completed_at=datetime.now(UTC) - timedelta(days=3)))

    async def spoil() -> None:
        async with engine.begin() as connection:
            await connection.execute(
                text("UPDATE customers SET rfm_segment = 'lost' WHERE business_id = :b"), {"b": world.business_id}
            )

    async def stored() -> str:
        async with engine.connect() as connection:
            query = text("SELECT rfm_segment FROM customers WHERE id = :id")
            return (await connection.execute(query, {"id": uuid.UUID(customer["id"])})).scalar_one()

    await spoil()
    response = await client.post(f"/customers/{customer['id']}/stats/recompute", headers=world.manager.headers)
    assert response.status_code == 200, response.text
    assert response.json()["rfm"]["segment"] == "new" == await stored()

    await spoil()
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "bee_customers_service.cli", "refresh-segments", "--business", str(world.business_id)],
        env={**os.environ, "BEE_DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "refreshed the segments of 1 customers in 1 businesses: 1 changed" in result.stdout
    assert await stored() == "new" == await _live(client, world, customer)


async def test_one_replica_refreshes_every_business_once_per_interval(app, client, world, engine, database_url):
    customer = await world.create_customer(client)
    settings = make_settings(database_url, segment_refresh_seconds=3600)
    lock_key = "hashtextextended('bee_customers_service.rfm_segment_refresh', 0)"

    async def spoil_and_refresh() -> tuple[bool, str]:
        async with engine.begin() as connection:
            query = text("UPDATE customers SET rfm_segment = 'lost' WHERE id = :id")
            await connection.execute(query, {"id": uuid.UUID(customer["id"])})
        refreshed = await refresh_if_due(app.state.database, settings)
        async with engine.connect() as connection:
            query = text("SELECT rfm_segment FROM customers WHERE id = :id")
            return refreshed, (await connection.execute(query, {"id": uuid.UUID(customer["id"])})).scalar_one()

    async with engine.connect() as other_replica:
        await other_replica.execute(text(f"SELECT pg_advisory_lock({lock_key})"))
        assert await spoil_and_refresh() == (False, "lost")  # the lock holder does it, not this one
        await other_replica.execute(text(f"SELECT pg_advisory_unlock({lock_key})"))

    assert await spoil_and_refresh() == (True, "prospect")
    assert await spoil_and_refresh() == (False, "lost")  # done less than an interval ago, by any replica
    async with engine.connect() as other_replica:  # and the lock was given back each time
        assert (await other_replica.execute(text(f"SELECT pg_try_advisory_lock({lock_key})"))).scalar() is True
        await other_replica.execute(text(f"SELECT pg_advisory_unlock({lock_key})"))


def _order(business_id: uuid.UUID, customer_id: uuid.UUID, at: datetime, amount: str) -> ActivityState:
    return ActivityState(
        business_id=business_id,
        customer_id=customer_id,
        kind="order",
        external_id=str(uuid.uuid4()),
        status="completed",
        occurred_at=at,
        status_at=at,
        amount=Decimal(amount),
        currency="RON",
        completed_at=at,
    )


async def test_the_migration_backfills_the_segment_of_existing_customers(postgres_server):
    name, url = await create_database(postgres_server, prefix="bee_segments")
    engine = create_async_engine(to_async_url(url))
    try:
        await asyncio.to_thread(run_migrations, to_async_url(url))
        business = uuid.uuid4()
        now = datetime.now(UTC)
        ids = {kind: uuid.uuid4() for kind in ("prospect", "new", "promising", "lost")}
        orders = [
            _order(business, ids["new"], now - timedelta(days=3), "10.00"),
            _order(business, ids["promising"], now - timedelta(days=40), "10.00"),
            _order(business, ids["promising"], now - timedelta(days=100), "10.00"),
            _order(business, ids["lost"], now - timedelta(days=300), "10.00"),
        ]
        sessionmaker = async_sessionmaker(engine)
        async with sessionmaker() as session:
            for kind, customer_id in ids.items():
                await session.execute(
                    text(
                        "INSERT INTO customers (id, user_id, business_id, full_name, email)"
                        " VALUES (:id, :user, :business, 'Backfill Test', :email)"
                    ),
                    {"id": customer_id, "user": uuid.uuid4(), "business": business, "email": f"{kind}@example.com"},
                )
            await repository.save_activity(session, orders)
            await repository.recompute(session, ids.values())
            await session.commit()

        # As before this revision: no stored segment. Upgrading computes every customer's.
        await asyncio.to_thread(run_migrations, to_async_url(url), "0016_money_per_currency", downgrade=True)
        await asyncio.to_thread(run_migrations, to_async_url(url))
        async with engine.connect() as connection:
            rows = await connection.execute(text("SELECT id, rfm_segment, rfm_segment_at FROM customers"))
            stored = {row.id: (row.rfm_segment, row.rfm_segment_at is not None) for row in rows}
        assert stored == {customer_id: (kind, True) for kind, customer_id in ids.items()}
        # ... exactly as the runtime computation does: it finds nothing to change.
        async with sessionmaker() as session:
            assert await segments.store(session, list(ids.values()), now=datetime.now(UTC), window_months=6) == 0
    finally:
        await engine.dispose()
        await drop_database(postgres_server, name)
