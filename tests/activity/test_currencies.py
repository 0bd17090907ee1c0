"""Money per currency: lifetime value and average order value per currency, never summed across them."""

import asyncio
import csv
import io
import uuid

import asyncpg

from bee_customers_service.cli import run_migrations
from bee_customers_service.core.db import to_async_url
from tests.activity.upstream import order_cancelled, order_completed, order_returned
from tests.services import create_database, drop_database


async def _stats(client, world, customer):
    response = await client.get(f"/customers/{customer['id']}/stats", headers=world.admin.headers)
    assert response.status_code == 200, response.text
    return response.json()


async def _profile(client, world, customer):
    response = await client.get(f"/customers/{customer['id']}", headers=world.admin.headers)
    assert response.status_code == 200, response.text
    return response.json()


async def _search(client, world, **params):
    query = {"business_id": str(world.business_id), **params}
    response = await client.get("/customers", params=query, headers=world.admin.headers)
    assert response.status_code == 200, response.text
    return response.json()


async def test_one_currency_keeps_the_single_value_its_currency_and_the_average(client, world, feed):
    customer = await world.create_customer(client)
    await feed.send(
        order_completed(customer, total="100.00", currency="RON"),
        order_completed(customer, total="50.01", currency="RON"),
    )

    stats = await _stats(client, world, customer)
    assert (stats["lifetime_value"], stats["lifetime_value_currency"]) == (150.01, "RON")
    assert stats["average_order_value"] == 75.01  # 75.005 rounded half up
    assert stats["lifetime_value_unavailable"] is None
    assert stats["lifetime_value_by_currency"] == [
        {"currency": "RON", "orders": 2, "lifetime_value": 150.01, "average_order_value": 75.01}
    ]
    profile = await _profile(client, world, customer)
    assert (profile["lifetime_value"], profile["lifetime_value_currency"]) == (150.01, "RON")


async def test_a_customer_with_no_order_has_zero_and_no_currency(client, world):
    customer = await world.create_customer(client)
    stats = await _stats(client, world, customer)
    assert (stats["lifetime_value"], stats["lifetime_value_currency"], stats["lifetime_value_unavailable"]) == (
        0.0,
        None,
        None,
    )
    assert stats["lifetime_value_by_currency"] == []
    assert stats["average_order_value"] is None


async def test_ron_and_eur_are_never_added_up(client, world, feed, fetch):
    customer = await world.create_customer(client)
    euro_order = str(uuid.uuid4())
    await feed.send(
        order_completed(customer, total="100.00", currency="RON"),
        order_completed(customer, total="200.00", currency="RON"),
        order_completed(customer, order_id=euro_order, total="30.00", currency="EUR"),
    )

    stats = await _stats(client, world, customer)
    assert stats["total_orders"] == 3
    assert stats["lifetime_value"] is None
    assert stats["lifetime_value_currency"] is None
    assert stats["average_order_value"] is None
    assert stats["lifetime_value_unavailable"] == "multiple_currencies"
    assert stats["lifetime_value_by_currency"] == [
        {"currency": "EUR", "orders": 1, "lifetime_value": 30.0, "average_order_value": 30.0},
        {"currency": "RON", "orders": 2, "lifetime_value": 300.0, "average_order_value": 150.0},
    ]
    profile = await _profile(client, world, customer)
    assert (profile["lifetime_value"], profile["lifetime_value_currency"]) == (None, None)
    [item] = [i for i in (await _search(client, world))["items"] if i["id"] == customer["id"]]
    assert (item["lifetime_value"], item["lifetime_value_currency"]) == (None, None)

    # The only EUR order is cancelled: its currency goes, and the single RON value comes back.
    await feed.send(order_cancelled(customer, order_id=euro_order))
    stats = await _stats(client, world, customer)
    assert (stats["lifetime_value"], stats["lifetime_value_currency"], stats["average_order_value"]) == (
        300.0,
        "RON",
        150.0,
    )
    assert stats["lifetime_value_unavailable"] is None
    assert [row["currency"] for row in stats["lifetime_value_by_currency"]] == ["RON"]
    rows = await fetch("SELECT currency FROM customer_spend WHERE customer_id = :c", c=uuid.UUID(customer["id"]))
    assert [row["currency"] for row in rows] == ["RON"]


async def test_a_return_comes_off_its_own_currency_only(client, world, feed):
    customer = await world.create_customer(client)
    returned = str(uuid.uuid4())
    await feed.send(
        order_completed(customer, total="100.00", currency="RON"),
        order_completed(customer, order_id=returned, total="50.00", currency="EUR"),
        order_completed(customer, total="25.00", currency="EUR"),
    )
    await feed.send(order_returned(customer, order_id=returned, amount="20.00"))

    stats = await _stats(client, world, customer)
    assert stats["returned_orders"] == 1
    assert stats["lifetime_value_by_currency"] == [
        {"currency": "EUR", "orders": 2, "lifetime_value": 55.0, "average_order_value": 27.5},
        {"currency": "RON", "orders": 1, "lifetime_value": 100.0, "average_order_value": 100.0},
    ]


async def test_the_monetary_score_ranks_within_each_currency_and_takes_the_best(client, world, feed):
    big, middle, small, mixed, euro = [await world.create_customer(client) for _ in range(5)]
    await feed.send(
        order_completed(big, total="1000.00", currency="RON"),
        order_completed(middle, total="500.00", currency="RON"),
        order_completed(small, total="100.00", currency="RON"),
        # The lowest RON spender (1 of 4: score 2), but the top EUR one (2 of 2: score 5).
        order_completed(mixed, total="10.00", currency="RON"),
        order_completed(mixed, total="40.00", currency="EUR"),
        order_completed(euro, total="20.00", currency="EUR"),
    )

    assert (await _stats(client, world, mixed))["rfm"]["monetary"] == 5
    assert (await _stats(client, world, euro))["rfm"]["monetary"] == 3  # 1 of 2 EUR spenders
    assert (await _stats(client, world, small))["rfm"]["monetary"] == 3  # 2 of 4 RON spenders
    assert (await _stats(client, world, big))["rfm"]["monetary"] == 5


async def test_sorting_by_lifetime_value_puts_several_currencies_last(client, world, feed):
    rich, poor, mixed, nobody = [await world.create_customer(client) for _ in range(4)]
    await feed.send(
        order_completed(rich, total="500.00", currency="RON"),
        order_completed(poor, total="10.00", currency="EUR"),
        order_completed(mixed, total="900.00", currency="RON"),
        order_completed(mixed, total="900.00", currency="EUR"),
    )
    expected = [rich["id"], poor["id"], nobody["id"], mixed["id"]]

    page = await _search(client, world, sort="lifetime_value")
    assert [item["id"] for item in page["items"]] == expected
    assert [(i["lifetime_value"], i["lifetime_value_currency"]) for i in page["items"]] == [
        (500.0, "RON"),
        (10.0, "EUR"),
        (0.0, None),
        (None, None),
    ]
    ascending = await _search(client, world, sort="lifetime_value", order="asc")
    assert [item["id"] for item in ascending["items"]] == expected[::-1]

    # Keyset pages of one go through the mixed customer's key (-1) like any other.
    seen: list[str] = []
    cursor = None
    while True:
        page = await _search(client, world, sort="lifetime_value", limit=1, **({"cursor": cursor} if cursor else {}))
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == expected

    # min_lifetime_value compares single-currency values: several currencies never match.
    filtered = await _search(client, world, min_lifetime_value="5")
    assert sorted(item["id"] for item in filtered["items"]) == sorted([rich["id"], poor["id"]])

    export = await client.get(
        "/customers/export",
        params={"business_id": str(world.business_id), "format": "csv"},
        headers=world.admin.headers,
    )
    assert export.status_code == 200, export.text
    rows = {row["id"]: row for row in csv.DictReader(io.StringIO(export.text, newline=""))}
    assert (rows[mixed["id"]]["lifetime_value"], rows[mixed["id"]]["lifetime_value_currency"]) == ("", "")
    assert (rows[rich["id"]]["lifetime_value"], rows[rich["id"]]["lifetime_value_currency"]) == ("500.00", "RON")


_CUSTOMER_0015 = (
    "INSERT INTO customers (id, user_id, business_id, full_name, email, lifetime_value) VALUES ($1, $2, $3, $4, $5, $6)"
)
_ORDER_0015 = """
INSERT INTO customer_activity (business_id, customer_id, kind, external_id, status, amount, returned_amount, currency,
                               occurred_at, completed_at, cancelled_at, status_at)
VALUES ($1, $2, 'order', $3, $4::varchar, $5, $6, $7, now(), CASE WHEN $4::varchar = 'pending' THEN NULL ELSE now() END,
        CASE WHEN $4::varchar = 'cancelled' THEN now() END, now())
"""


async def test_the_migration_rebuilds_the_money_per_currency(postgres_server):
    name, url = await create_database(postgres_server, prefix="bee_currency_migration")
    business = uuid.uuid4()
    mixed, single, legacy, nobody = (uuid.uuid4() for _ in range(4))
    try:
        await asyncio.to_thread(run_migrations, to_async_url(url), "0015_auth_sync")
        connection = await asyncpg.connect(url)
        try:
            # The old aggregate: one number adding RON and EUR.
            for number, (customer, value) in enumerate(((mixed, 335), (single, 80), (legacy, 12), (nobody, 0))):
                await connection.execute(
                    _CUSTOMER_0015, customer, uuid.uuid4(), business, "Ana Popescu", f"ana{number}@email.com", value
                )
            orders = [
                (mixed, "m1", "completed", 100, 0, "RON"),
                (mixed, "m2", "returned", 200, 50, "RON"),
                (mixed, "m3", "completed", 85, 0, "EUR"),
                (mixed, "m4", "cancelled", 999, 0, "USD"),  # cancelled: no USD row
                (mixed, "m5", "pending", 999, 0, "GBP"),  # not completed: no GBP row
                (single, "s1", "completed", 80, 0, "RON"),
                (legacy, "l1", "completed", 12, 0, None),  # no currency: ISO 4217 'XXX'
            ]
            for customer, external, status, amount, returned, currency in orders:
                await connection.execute(_ORDER_0015, business, customer, external, status, amount, returned, currency)
        finally:
            await connection.close()

        await asyncio.to_thread(run_migrations, to_async_url(url), "0016_money_per_currency")
        connection = await asyncpg.connect(url)
        try:
            spend = await connection.fetch(
                "SELECT customer_id, business_id, currency, orders, lifetime_value FROM customer_spend"
                " ORDER BY customer_id, currency"
            )
            customers = {
                row["id"]: (row["lifetime_value"], row["lifetime_value_currency"])
                for row in await connection.fetch("SELECT id, lifetime_value, lifetime_value_currency FROM customers")
            }
        finally:
            await connection.close()
        assert sorted((r["customer_id"], r["currency"], r["orders"], r["lifetime_value"]) for r in spend) == sorted(
            [(mixed, "EUR", 1, 85), (mixed, "RON", 2, 250), (single, "RON", 1, 80), (legacy, "XXX", 1, 12)]
        )
        assert {r["business_id"] for r in spend} == {business}
        assert customers == {mixed: (None, None), single: (80, "RON"), legacy: (12, "XXX"), nobody: (0, None)}

        # Down again: the old meaning, one sum over every currency.
        await asyncio.to_thread(run_migrations, to_async_url(url), "0015_auth_sync", downgrade=True)
        connection = await asyncpg.connect(url)
        try:
            values = dict(await connection.fetch("SELECT id, lifetime_value FROM customers"))
        finally:
            await connection.close()
        assert values == {mixed: 335, single: 80, legacy: 12, nobody: 0}
    finally:
        await drop_database(postgres_server, name)
