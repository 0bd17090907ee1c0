"""Time-window statistics (freezegun), RFM segments, history pages, recomputation (API and CLI)."""

import asyncio
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta

from freezegun import freeze_time

from tests.activity.upstream import appointment, order_cancelled, order_completed
from tests.conftest import token_headers


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


async def _stats_at(client, world, customer, moment: str):
    # The token is minted inside the frozen clock, so it is valid at that moment.
    with freeze_time(moment, real_asyncio=True):
        headers = token_headers(world.settings, roles=["admin_business"], business_ids=[world.business_id])
        response = await client.get(f"/customers/{customer['id']}/stats", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


async def test_visits_per_month_counts_distinct_visit_days_inside_the_window(client, world, feed):
    customer = await world.create_customer(client)
    await feed.send(
        order_completed(customer, total="40.00", completed_at=_at("2031-03-01T10:00:00")),
        # the same day as the order: one visit, not two
        appointment("completed", customer, starts_at=_at("2031-03-01T09:00:00")),
        order_completed(customer, total="60.00", completed_at=_at("2031-02-10T16:00:00")),
        appointment("completed", customer, starts_at=_at("2030-12-01T11:00:00")),
        # before the 6-month window that ends on 2031-03-15 (it starts on 2030-09-15)
        order_completed(customer, total="100.00", completed_at=_at("2030-08-01T12:00:00")),
    )

    stats = await _stats_at(client, world, customer, "2031-03-15T12:00:00Z")
    assert stats["window_months"] == 6
    assert stats["visits_in_window"] == 3
    assert stats["visits_per_month"] == 0.5
    assert stats["last_visit_date"] == "2031-03-01"
    assert stats["days_since_last_visit"] == 14
    assert stats["first_order_date"] == "2030-08-01"
    assert stats["first_appointment_date"] == "2030-12-01"
    assert stats["rfm"]["recency"] == 5
    assert stats["rfm"]["frequency"] == 2
    assert stats["rfm"]["segment"] == "promising"
    assert stats["computed_at"].startswith("2031-03-15T12:00:00")

    # Half a year later nothing happened: no visit inside the window, the customer is lost.
    later = await _stats_at(client, world, customer, "2031-10-01T12:00:00Z")
    assert (later["visits_in_window"], later["visits_per_month"]) == (0, 0.0)
    assert later["days_since_last_visit"] == 214
    assert later["rfm"]["recency"] == 1
    assert later["rfm"]["segment"] == "lost"
    # the totals do not depend on the clock
    assert (later["total_orders"], later["total_appointments"], later["lifetime_value"]) == (3, 2, 200.0)


async def test_rfm_segments_for_a_champion_a_newcomer_and_a_prospect(client, world, feed):
    champion = await world.create_customer(client)
    newcomer = await world.create_customer(client)
    prospect = await world.create_customer(client)
    start = _at("2031-01-01T10:00:00")
    visits = [order_completed(champion, total="90.00", completed_at=start + timedelta(days=3 * n)) for n in range(50)]
    await feed.send(*visits, order_completed(newcomer, total="15.00", completed_at=_at("2031-05-28T10:00:00")))

    at = "2031-06-01T12:00:00Z"
    top = await _stats_at(client, world, champion, at)
    assert top["rfm"] == {"recency": 5, "frequency": 5, "monetary": 5, "score": "555", "segment": "champion"}
    fresh = await _stats_at(client, world, newcomer, at)
    assert fresh["rfm"]["segment"] == "new"
    assert fresh["rfm"]["monetary"] == 3  # 2 customers with spending in the business, this one the lower
    nobody = await _stats_at(client, world, prospect, at)
    assert nobody["rfm"] == {"recency": None, "frequency": None, "monetary": None, "score": None, "segment": "prospect"}
    assert nobody["days_since_last_visit"] is None
    assert nobody["average_order_value"] is None
    assert nobody["cancellation_rate"] is None


async def test_history_is_newest_first_keyset_paginated_and_filtered_by_kind(client, world, feed):
    customer = await world.create_customer(client)
    base = _at("2031-02-01T08:00:00")
    orders = [order_completed(customer, completed_at=base + timedelta(days=n)) for n in range(3)]
    appointments = [appointment("booked", customer, starts_at=base + timedelta(days=n, hours=1)) for n in range(3)]
    await feed.send(
        *orders, *appointments, order_cancelled(customer, order_id="legacy-17", cancelled_at=base - timedelta(hours=1))
    )

    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        response = await client.get(
            f"/customers/{customer['id']}/history",
            params=params,
            headers=world.customer(uuid.UUID(customer["user_id"])).headers,
        )
        assert response.status_code == 200, response.text
        page = response.json()
        seen += [item["occurred_at"] for item in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert len(seen) == 7
    assert seen == sorted(seen, reverse=True)

    only_orders = (
        await client.get(f"/customers/{customer['id']}/history", params={"kind": "order"}, headers=world.admin.headers)
    ).json()
    assert [i["kind"] for i in only_orders["items"]] == ["order"] * 4
    assert only_orders["items"][-1]["external_id"] == "legacy-17"
    assert only_orders["next_cursor"] is None


async def test_history_refuses_a_forged_cursor_and_a_bad_limit(client, world):
    customer = await world.create_customer(client)
    url = f"/customers/{customer['id']}/history"
    forged = await client.get(url, params={"cursor": "bm90LWEtY3Vyc29y"}, headers=world.admin.headers)
    assert forged.status_code == 422
    assert forged.json()["errors"][0]["loc"] == ["query", "cursor"]
    too_many = await client.get(url, params={"limit": 101}, headers=world.admin.headers)
    assert too_many.status_code == 422
    wrong_kind = await client.get(url, params={"kind": "invoice"}, headers=world.admin.headers)
    assert wrong_kind.status_code == 422


async def test_recompute_rebuilds_the_aggregates_from_the_activity_rows(client, world, feed, engine):
    customer = await world.create_customer(client)
    await feed.send(order_completed(customer, total="30.00"), order_completed(customer, total="20.00"))
    async with engine.begin() as connection:
        await connection.exec_driver_sql(
            "UPDATE customers SET total_orders = 99, lifetime_value = 1 WHERE id = $1", (uuid.UUID(customer["id"]),)
        )

    response = await client.post(f"/customers/{customer['id']}/stats/recompute", headers=world.manager.headers)
    assert response.status_code == 200, response.text
    assert (response.json()["total_orders"], response.json()["lifetime_value"]) == (2, 50.0)
    stats = (await client.get(f"/customers/{customer['id']}/stats", headers=world.admin.headers)).json()
    assert (stats["total_orders"], stats["lifetime_value"]) == (2, 50.0)


async def test_the_recompute_command_rebuilds_every_customer_of_a_business(client, world, feed, engine, database_url):
    first = await world.create_customer(client)
    second = await world.create_customer(client)
    await feed.send(order_completed(first, total="10.00"), order_completed(second, total="5.00"))
    async with engine.begin() as connection:
        await connection.exec_driver_sql(
            "UPDATE customers SET total_orders = 0, lifetime_value = 0 WHERE business_id = $1", (world.business_id,)
        )

    env = {**os.environ, "BEE_DATABASE_URL": database_url}
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "bee_customers_service.cli", "recompute", "--business", str(world.business_id)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert f"recomputed 2 customers of business {world.business_id}" in result.stdout
    for customer, value in ((first, 10.0), (second, 5.0)):
        stats = (await client.get(f"/customers/{customer['id']}/stats", headers=world.admin.headers)).json()
        assert (stats["total_orders"], stats["lifetime_value"]) == (1, value)
