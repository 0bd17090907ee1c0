"""Upstream events published to the real exchanges, read back as a user sees them: stats and history."""

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta

from tests.activity.upstream import appointment, order_cancelled, order_completed, order_returned

NOW = datetime.now(UTC).replace(microsecond=0)


async def _stats(client, world, customer):
    response = await client.get(f"/customers/{customer['id']}/stats", headers=world.admin.headers)
    assert response.status_code == 200, response.text
    return response.json()


async def _history(client, world, customer, **params):
    response = await client.get(f"/customers/{customer['id']}/history", headers=world.admin.headers, params=params)
    assert response.status_code == 200, response.text
    return response.json()


async def test_a_completed_order_shows_in_stats_and_history(client, world, feed):
    customer = await world.create_customer(client)
    key, body = order_completed(customer, total="249.90", completed_at=NOW - timedelta(days=3))
    await feed.send((key, body))

    stats = await _stats(client, world, customer)
    assert stats["total_orders"] == 1
    assert stats["lifetime_value"] == 249.90
    assert stats["average_order_value"] == 249.90
    assert stats["last_order_date"] == (NOW - timedelta(days=3)).date().isoformat()
    assert stats["first_order_date"] == stats["last_order_date"]
    assert stats["days_since_last_visit"] == 3
    [item] = (await _history(client, world, customer))["items"]
    assert (item["kind"], item["external_id"], item["status"], item["amount"], item["currency"]) == (
        "order",
        body["order_id"],
        "completed",
        249.90,
        "RON",
    )
    # The profile itself carries the aggregates too (spec 2.1).
    profile = (await client.get(f"/customers/{customer['id']}", headers=world.admin.headers)).json()
    assert (profile["total_orders"], profile["lifetime_value"]) == (1, 249.90)


async def test_a_returned_order_counts_as_returned_and_its_refund_comes_off_the_lifetime_value(client, world, feed):
    customer = await world.create_customer(client)
    _, kept = order_completed(customer, total="50.00", completed_at=NOW - timedelta(days=9))
    _, returned = order_completed(customer, total="200.00", completed_at=NOW - timedelta(days=8))
    await feed.send(
        ("v1.order.completed", kept),
        ("v1.order.completed", returned),
    )
    await feed.send(order_returned(customer, order_id=returned["order_id"], amount="80.00"))

    stats = await _stats(client, world, customer)
    assert stats["total_orders"] == 2
    assert stats["returned_orders"] == 1
    assert stats["returned_amount"] == 80.0
    assert stats["lifetime_value"] == 170.0  # 50 + (200 - 80)
    assert stats["return_rate"] == 0.5
    statuses = {i["external_id"]: i["status"] for i in (await _history(client, world, customer))["items"]}
    assert statuses == {kept["order_id"]: "completed", returned["order_id"]: "returned"}


async def test_a_cancelled_order_is_listed_but_not_counted(client, world, feed):
    customer = await world.create_customer(client)
    order_id = str(uuid.uuid4())
    await feed.send(order_cancelled(customer, order_id=order_id))

    stats = await _stats(client, world, customer)
    assert (stats["total_orders"], stats["cancelled_orders"], stats["lifetime_value"]) == (0, 1, 0.0)
    assert stats["last_order_date"] is None
    [item] = (await _history(client, world, customer, kind="order"))["items"]
    assert (item["external_id"], item["status"]) == (order_id, "cancelled")


async def test_appointments_of_every_status(client, world, feed):
    customer = await world.create_customer(client)
    attended, cancelled, missed, upcoming = (str(uuid.uuid4()) for _ in range(4))
    await feed.send(
        appointment("booked", customer, appointment_id=attended, starts_at=NOW - timedelta(days=10)),
        appointment("booked", customer, appointment_id=cancelled, starts_at=NOW - timedelta(days=5)),
        appointment("booked", customer, appointment_id=missed, starts_at=NOW - timedelta(days=2)),
        appointment("booked", customer, appointment_id=upcoming, starts_at=NOW + timedelta(days=7)),
    )
    await feed.send(
        appointment("completed", customer, appointment_id=attended, starts_at=NOW - timedelta(days=10)),
        appointment("cancelled", customer, appointment_id=cancelled, starts_at=NOW - timedelta(days=5)),
        appointment("no_show", customer, appointment_id=missed, starts_at=NOW - timedelta(days=2)),
    )

    stats = await _stats(client, world, customer)
    assert stats["total_appointments"] == 1
    assert stats["cancelled_appointments"] == 1
    assert stats["no_shows"] == 1
    assert stats["upcoming_appointments"] == 1
    assert stats["cancellation_rate"] == 0.25  # 1 of the 4 appointments recorded
    assert stats["no_show_rate"] == 0.5  # 1 of the 2 that came due (attended or missed)
    assert stats["last_appointment_date"] == (NOW - timedelta(days=10)).date().isoformat()
    page = await _history(client, world, customer, kind="appointment")
    assert [(i["external_id"], i["status"]) for i in page["items"]] == [
        (upcoming, "booked"),
        (missed, "no_show"),
        (cancelled, "cancelled"),
        (attended, "completed"),
    ]


async def test_a_redelivered_event_changes_nothing(client, world, feed, fetch):
    customer = await world.create_customer(client)
    key, body = order_completed(customer, total="75.00")
    await feed.send((key, body), (key, body))
    await feed.send((key, body))

    stats = await _stats(client, world, customer)
    assert (stats["total_orders"], stats["lifetime_value"]) == (1, 75.0)
    rows = await fetch(
        "SELECT count(*) AS n FROM processed_events WHERE event_id = :id", id=uuid.UUID(body["event_id"])
    )
    assert rows[0]["n"] == 1


async def test_concurrent_events_for_one_customer_are_all_counted(client, world, feed):
    customer = await world.create_customer(client)
    orders = [order_completed(customer, total="10.25") for _ in range(40)]
    appointments = [appointment("completed", customer, starts_at=NOW - timedelta(hours=n)) for n in range(20)]
    target = feed.settled() + 60
    await asyncio.gather(*(feed.publish(key, body) for key, body in orders + appointments))
    await feed.wait_settled(target)

    stats = await _stats(client, world, customer)
    assert stats["total_orders"] == 40
    assert stats["lifetime_value"] == 410.0
    assert stats["total_appointments"] == 20


async def test_a_return_before_its_completion_ends_with_the_right_totals(client, world, feed):
    customer = await world.create_customer(client)
    order_id = str(uuid.uuid4())
    await feed.send(order_returned(customer, order_id=order_id, amount="30.00", returned_at=NOW - timedelta(days=1)))
    early = await _stats(client, world, customer)
    assert (early["total_orders"], early["lifetime_value"]) == (0, 0.0)  # nothing was bought yet, as far as we know

    await feed.send(order_completed(customer, order_id=order_id, total="100.00", completed_at=NOW - timedelta(days=2)))
    stats = await _stats(client, world, customer)
    assert (stats["total_orders"], stats["returned_orders"], stats["lifetime_value"]) == (1, 1, 70.0)
    [item] = (await _history(client, world, customer))["items"]
    assert item["status"] == "returned"
    assert item["occurred_at"].startswith((NOW - timedelta(days=2)).date().isoformat())


async def test_a_late_booking_does_not_undo_a_completed_appointment(client, world, feed):
    customer = await world.create_customer(client)
    appointment_id = str(uuid.uuid4())
    starts = NOW - timedelta(days=1)
    await feed.send(appointment("completed", customer, appointment_id=appointment_id, starts_at=starts))
    await feed.send(
        appointment("booked", customer, appointment_id=appointment_id, starts_at=starts, at=starts - timedelta(days=20))
    )
    stats = await _stats(client, world, customer)
    assert (stats["total_appointments"], stats["upcoming_appointments"]) == (1, 0)
    [item] = (await _history(client, world, customer))["items"]
    assert item["status"] == "completed"


async def test_an_unknown_customer_with_a_snapshot_gets_a_profile(client, world, feed, fetch):
    user_id = uuid.uuid4()
    stranger = {"user_id": str(user_id), "business_id": str(world.business_id)}
    snapshot = {"full_name": "Ioana Marin", "email": "Ioana@Example.com", "phone": "0722 000 111"}
    await feed.send(order_completed(stranger, total="42.00", snapshot=snapshot))

    [row] = await fetch(
        "SELECT id FROM customers WHERE user_id = :u AND business_id = :b", u=user_id, b=world.business_id
    )
    profile = await client.get(f"/customers/{row['id']}", headers=world.admin.headers)
    assert profile.status_code == 200
    assert (profile.json()["full_name"], profile.json()["email"], profile.json()["phone"]) == (
        "Ioana Marin",
        "ioana@example.com",
        "+40722000111",
    )
    assert profile.json()["total_orders"] == 1
    events = await fetch("SELECT event_name FROM outbox WHERE customer_id = :c ORDER BY id", c=row["id"])
    assert [e["event_name"] for e in events] == ["v1.customer.created", "v1.audit.customer.created"]


async def test_an_unknown_customer_without_a_snapshot_is_dead_lettered(client, world, feed, fetch):
    stranger = {"user_id": str(uuid.uuid4()), "business_id": str(world.business_id)}
    key, body = order_completed(stranger)
    await feed.send((key, body))

    [dead] = [d for d in await feed.dead_letters(expect=1) if json.loads(d.body).get("event_id") == body["event_id"]]
    assert dead.reason.startswith("unknown customer")
    assert dead.routing_key == key
    assert await fetch("SELECT 1 FROM customers WHERE business_id = :b", b=world.business_id) == []


async def test_malformed_and_incomplete_messages_are_dead_lettered_and_later_ones_still_applied(client, world, feed):
    customer = await world.create_customer(client)
    _, missing_total = order_completed(customer)
    del missing_total["total"]
    await feed.send(
        ("v1.order.completed", b"{not json"),
        ("v1.order.completed", missing_total),
        ("v1.appointment.completed", b"[1, 2, 3]"),
        order_completed(customer, total="12.00"),
    )

    reasons = sorted(d.reason for d in await feed.dead_letters(expect=3))
    assert reasons == ["invalid payload: missing field total", "malformed JSON", "the body is not a JSON object"]
    assert (await _stats(client, world, customer))["total_orders"] == 1


async def test_a_message_that_keeps_failing_is_retried_then_parked_with_the_error(client, world, feed):
    customer = await world.create_customer(client)
    # Two maximal orders overflow Numeric(12, 2) for the lifetime value: the database refuses the
    # second every time, so it is retried (BEE_ACTIVITY_MAX_ATTEMPTS = 3 here) and then parked.
    await feed.send(order_completed(customer, total="9999999999.99"))
    retried = feed.consumer.counters.retried
    key, body = order_completed(customer, total="9999999999.99")
    await feed.send((key, body))

    [dead] = [d for d in await feed.dead_letters(expect=1) if json.loads(d.body).get("event_id") == body["event_id"]]
    assert dead.reason.startswith("gave up after 3 attempts")
    assert dead.routing_key == key
    assert feed.consumer.counters.retried - retried == 2
    assert (await _stats(client, world, customer))["total_orders"] == 1


async def test_late_events_after_an_erasure_do_not_resurrect_the_customer(client, world, feed, fetch):
    customer = await world.create_customer(client)
    await feed.send(order_completed(customer, total="30.00"))
    export = (await client.get(f"/customers/{customer['id']}/export", headers=world.admin.headers)).json()
    assert [row["amount"] for row in export["tables"]["customer_activity"]] == ["30.00"]
    assert export["statistics"]["total_orders"] == 1

    erased = await client.delete(f"/customers/{customer['id']}", headers=world.admin.headers)
    assert erased.status_code == 204
    assert await fetch("SELECT 1 FROM customer_activity WHERE customer_id = :c", c=uuid.UUID(customer["id"])) == []

    snapshot = {"full_name": "Ana Popescu", "email": "ana@example.com"}
    key, body = order_completed(customer, total="55.00", snapshot=snapshot)  # an order completed after the delete
    await feed.send((key, body))

    [dead] = [d for d in await feed.dead_letters(expect=1) if json.loads(d.body).get("event_id") == body["event_id"]]
    assert dead.reason.startswith("erased customer")
    assert await fetch("SELECT 1 FROM customers WHERE user_id = :u", u=uuid.UUID(customer["user_id"])) == []


def _consumed(metrics_text: str, result: str) -> float:
    import re

    match = re.search(rf'^events_consumed_total\{{result="{result}"\}} ([0-9.e+]+)$', metrics_text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


async def test_consumed_events_are_counted_by_outcome_in_metrics(client, world, feed):
    customer = await world.create_customer(client)
    before = (await client.get("/metrics")).text
    await feed.send(order_completed(customer, total="10.00"), ("v1.order.completed", b"{not json"))
    after = (await client.get("/metrics")).text
    assert _consumed(after, "applied") - _consumed(before, "applied") == 1
    assert _consumed(after, "dead_lettered") - _consumed(before, "dead_lettered") == 1
    await feed.dead_letters()  # leave the dead-letter queue empty for the other tests
