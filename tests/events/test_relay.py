"""The outbox relay against a real RabbitMQ and PostgreSQL: what a consumer of our events sees.

Every test binds its own queue to the session's own exchange and looks only at its own business's
events (the relay publishes whatever is pending in the shared test database).
"""

import asyncio
import json
import re
import uuid
from urllib.parse import urlsplit

import aio_pika
import pytest
import structlog
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from bee_customers_service.app import create_app
from bee_customers_service.events import outbox
from bee_customers_service.events.relay import OutboxRelay
from tests.conftest import client_for, make_settings, running_app
from tests.events.tools import EventConsumer, TcpProxy, eventually, running_relay
from tests.services import free_port


async def _rows(fetch, business_id, *, audit_records=False):
    """The business's outbox rows of one stream: the events (the default) or the audit records."""
    return await fetch(
        "SELECT id, event_id, event_name, customer_id, attempts, last_error, published_at"
        " FROM outbox WHERE business_id = :b AND starts_with(event_name, 'v1.audit.') = :audit ORDER BY id",
        b=business_id,
        audit=audit_records,
    )


async def _drain(relay_settings, database_url, fetch):
    """Publish whatever other tests left pending, so this test's rows are the first in line."""
    async with running_relay(relay_settings(relay_batch_size=1000), database_url):
        await eventually(lambda: _pending_count(fetch, 0), what="the shared test outbox to drain", seconds=60)


async def _pending_count(fetch, expected):
    [row] = await fetch("SELECT count(*) AS n FROM outbox WHERE published_at IS NULL")
    return row["n"] == expected


async def _enqueue(engine, business_id, events):
    """Commit outbox events straight through `enqueue`, as a service would: [(customer_id, name)]."""
    async with AsyncSession(engine) as session:
        for customer_id, name in events:
            await outbox.enqueue(
                session, name, business_id=business_id, customer_id=customer_id, fields={"customer_id": customer_id}
            )
        await session.commit()


async def test_each_event_arrives_with_routing_key_body_and_headers(relay_settings, consumer, world, fetch):
    app = create_app(relay_settings())  # the relay runs inside the API process, as in `serve`
    async with running_app(app), client_for(app) as http:
        created = await http.post(
            "/customers",
            json=world.profile(),
            headers={**world.service.headers, "X-Trace-Id": "trace-from-gateway", "X-Request-Id": "req-1"},
        )
        assert created.status_code == 201
        customer = created.json()
        patched = await http.patch(
            f"/customers/{customer['id']}",
            json={"phone": "0798 765 432", "avatar_url": "https://cdn.example.com/ana.png"},
            headers={**world.admin.headers, "X-Trace-Id": "trace-2"},
        )
        assert patched.status_code == 200

        await consumer.wait_for_count(world.business_id, 3)
        ready = await http.get("/readyz")
        metrics = (await http.get("/metrics")).text

    messages = consumer.of(world.business_id)
    assert [m.routing_key for m in messages] == [
        "v1.customer.created",
        "v1.customer.updated",
        "v1.customer.avatar_updated",
    ]
    rows = await _rows(fetch, world.business_id)
    for message, row in zip(messages, rows, strict=True):
        body = json.loads(message.body)
        assert body["event"] == message.routing_key == row["event_name"]
        assert message.message_id == body["event_id"] == str(row["event_id"])
        assert message.content_type == "application/json"
        assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
        assert message.headers["trace_id"] == body["trace_id"]
        assert message.headers["request_id"] == body["request_id"]
        assert body["business_id"] == str(world.business_id)
        assert body["customer_id"] == customer["id"]
        assert body["occurred_at"].endswith("Z")
        assert row["published_at"] is not None

    created_body, updated_body, avatar_body = (json.loads(m.body) for m in messages)
    assert messages[0].headers["trace_id"] == "trace-from-gateway"
    assert created_body["request_id"] == "req-1"
    assert created_body["user_id"] == customer["user_id"]
    assert created_body["full_name"] == "Ana Popescu"
    assert created_body["email"] == "ana.popescu@email.com"
    assert created_body["created_at"] == customer["created_at"]
    assert updated_body["fields_changed"] == ["avatar_url", "phone"]
    assert updated_body["phone"] == "+40798765432"
    assert messages[1].headers["trace_id"] == "trace-2"
    assert avatar_body["old_avatar_url"] is None
    assert avatar_body["new_avatar_url"] == "https://cdn.example.com/ana.png"

    published = re.search(r'^events_published_total\{event="v1.customer.avatar_updated"\} ([0-9.]+)$', metrics, re.M)
    assert published is not None and float(published.group(1)) >= 1

    assert ready.status_code == 200
    events = ready.json()["checks"]["events"]
    assert events["broker"]["status"] == "up"
    assert events["relay"] == "leader"
    assert events["exchange"] == relay_settings().events_exchange


async def test_rolled_back_change_publishes_nothing(relay_settings, consumer, world, engine, database_url, fetch):
    async with running_relay(relay_settings(), database_url):
        async with AsyncSession(engine) as session:
            rolled_back = await outbox.enqueue(
                session, "v1.customer.updated", business_id=world.business_id, customer_id=uuid.uuid4(), fields={}
            )
            await session.rollback()
        marker_customer = uuid.uuid4()
        await _enqueue(engine, world.business_id, [(marker_customer, "v1.customer.created")])

        await consumer.wait_for_count(world.business_id, 1)
        await consumer.flush()

    [body] = consumer.bodies(world.business_id)
    assert body["customer_id"] == str(marker_customer)
    assert rolled_back["event_id"] not in {m.message_id for m in consumer.messages}
    assert [row["event_name"] for row in await _rows(fetch, world.business_id)] == ["v1.customer.created"]


async def test_broker_outage_loses_nothing_and_keeps_order_per_customer(
    relay_settings, consumer, rabbitmq, world, client, fetch, database_url
):
    await _drain(relay_settings, database_url, fetch)
    broker = urlsplit(rabbitmq)
    proxy = TcpProxy(broker.hostname or "127.0.0.1", broker.port or 5672)  # closed until started
    settings = relay_settings(rabbitmq_url=f"amqp://guest:guest@127.0.0.1:{proxy.port}/")
    customers = []
    try:
        async with running_relay(settings, database_url) as relay:
            # Phase 1: the broker is down from the start.
            for _ in range(3):
                customers.append(await world.create_customer(client))
            for customer in customers:
                for phone in ("0711 111 111", "0722 222 222"):
                    response = await client.patch(
                        f"/customers/{customer['id']}", json={"phone": phone}, headers=world.admin.headers
                    )
                    assert response.status_code == 200
            failed = await eventually(
                lambda: _failed_rows(fetch, world.business_id), what="the relay to record the broker failure"
            )
            assert all(row["published_at"] is None for row in failed)
            assert relay.broker_report()["status"] == "down"
            assert consumer.bodies(world.business_id) == []

            await proxy.start()
            await consumer.wait_for_count(world.business_id, 9)

            # Phase 2: the broker goes away under an established connection, then comes back.
            await proxy.stop()
            for customer in customers:
                response = await client.patch(
                    f"/customers/{customer['id']}", json={"gender": "other"}, headers=world.admin.headers
                )
                assert response.status_code == 200
            await eventually(
                lambda: _failed_rows(fetch, world.business_id), what="the relay to notice the lost connection"
            )
            await proxy.start()
            await consumer.wait_for_count(world.business_id, 12)
        await consumer.flush()
    finally:
        await proxy.stop()

    rows = await _rows(fetch, world.business_id)
    assert all(row["published_at"] is not None for row in rows)
    received = consumer.bodies(world.business_id)
    received_ids = [body["event_id"] for body in received]
    assert len(received_ids) == len(set(received_ids)) == len(rows) == 12  # every event, none twice
    for customer in customers:
        in_outbox = [str(row["event_id"]) for row in rows if str(row["customer_id"]) == customer["id"]]
        arrived = [body["event_id"] for body in received if body["customer_id"] == customer["id"]]
        assert arrived == in_outbox  # created, updated, updated, updated: in the order they happened


async def test_broker_that_stops_confirming_counts_as_down_until_it_answers(
    relay_settings, consumer, rabbitmq, world, engine, fetch, database_url
):
    await _drain(relay_settings, database_url, fetch)
    broker = urlsplit(rabbitmq)
    proxy = TcpProxy(broker.hostname or "127.0.0.1", broker.port or 5672)
    await proxy.start()
    settings = relay_settings(
        rabbitmq_url=f"amqp://guest:guest@127.0.0.1:{proxy.port}/", relay_publish_timeout_seconds=0.5
    )
    try:
        async with running_relay(settings, database_url) as relay:
            await _enqueue(engine, world.business_id, [(uuid.uuid4(), "v1.customer.created")])
            await consumer.wait_for_count(world.business_id, 1)

            proxy.stall()  # the connection stays open, but nothing comes back
            await _enqueue(engine, world.business_id, [(uuid.uuid4(), "v1.customer.created") for _ in range(3)])
            [failed, *_] = await eventually(
                lambda: _failed_rows(fetch, world.business_id), what="the confirm timeout to be recorded"
            )
            assert "no confirm" in failed["last_error"]
            assert relay.broker_report()["status"] == "down"

            proxy.resume()
            await eventually(lambda: _all_published(fetch, world.business_id), what="the stalled events to go out")
            assert relay.broker_report()["status"] == "up"
        await consumer.flush()
    finally:
        await proxy.stop()

    rows = await _rows(fetch, world.business_id)
    received = {body["event_id"] for body in consumer.bodies(world.business_id)}
    assert received == {str(row["event_id"]) for row in rows}  # every event arrived (some perhaps twice)


async def _failed_rows(fetch, business_id):
    """This business's pending rows on which the relay recorded a failed attempt."""
    rows = await _rows(fetch, business_id)
    return [row for row in rows if row["attempts"] > 0 and row["last_error"] and row["published_at"] is None]


async def test_two_relays_publish_each_event_once_and_one_takes_over(
    relay_settings, consumer, world, engine, database_url
):
    settings = relay_settings()
    first = OutboxRelay(settings, database_url)
    second = OutboxRelay(settings, database_url)
    first.start()
    second.start()
    try:
        await eventually(lambda: {first.role, second.role} == {"leader", "standby"}, what="one leader, one standby")
        leader, standby = (first, second) if first.role == "leader" else (second, first)

        customer_ids = [uuid.uuid4() for _ in range(4)]
        await _enqueue(engine, world.business_id, [(c, "v1.customer.updated") for c in customer_ids * 5])
        await consumer.wait_for_count(world.business_id, 20)

        await leader.stop()  # the active relay goes away: the standby takes over
        await eventually(lambda: standby.role == "leader", what="the standby to take over")
        await _enqueue(engine, world.business_id, [(c, "v1.customer.updated") for c in customer_ids])
        await consumer.wait_for_count(world.business_id, 24)
        await consumer.flush()
    finally:
        await first.stop()
        await second.stop()

    event_ids = [body["event_id"] for body in consumer.bodies(world.business_id)]
    assert len(event_ids) == len(set(event_ids)) == 24


class SimulatedCrash(BaseException):
    """Stands for the process dying: not an error the relay could catch and retry."""


class CrashBeforeMark(OutboxRelay):
    async def _mark_published(self, connection, ids, **claim):
        raise SimulatedCrash


async def test_crash_between_publish_and_mark_publishes_again(
    relay_settings, consumer, world, engine, database_url, fetch
):
    settings = relay_settings()
    crashing = CrashBeforeMark(settings, database_url)
    await _enqueue(engine, world.business_id, [(uuid.uuid4(), "v1.customer.created")])
    with pytest.raises(SimulatedCrash):
        await crashing.run()
    [first] = await consumer.wait_for_count(world.business_id, 1)
    [row] = await _rows(fetch, world.business_id)
    assert row["published_at"] is None  # confirmed by the broker, but never marked

    async with running_relay(settings, database_url):
        await consumer.wait_for_count(world.business_id, 2)
        await eventually(
            lambda: _all_published(fetch, world.business_id), what="the event to be marked after the republish"
        )
    first_copy, second_copy = consumer.of(world.business_id)
    assert first_copy.message_id == second_copy.message_id == first["event_id"]  # consumers dedupe on it
    assert first_copy.body == second_copy.body


async def _all_published(fetch, business_id):
    rows = await _rows(fetch, business_id)
    return rows and all(row["published_at"] is not None for row in rows)


async def test_refused_event_is_retried_and_holds_back_that_customer_only(
    relay_settings, rabbitmq, exchange_name, world, engine, database_url, fetch
):
    held, free = uuid.uuid4(), uuid.uuid4()
    narrow = EventConsumer(rabbitmq, exchange_name, ["v1.customer.created", "v1.customer.updated"])
    async with narrow, running_relay(relay_settings(), database_url):
        await _enqueue(
            engine,
            world.business_id,
            [
                (held, "v1.customer.created"),
                (free, "v1.customer.created"),
                (held, "v1.customer.unroutable_for_now"),  # no queue is bound for it yet
                (held, "v1.customer.updated"),
                (free, "v1.customer.updated"),
            ],
        )
        await narrow.wait_for_count(world.business_id, 3)
        refused = await eventually(
            lambda: _failed_rows(fetch, world.business_id), what="the unroutable event to be recorded"
        )
        assert [row["event_name"] for row in refused] == ["v1.customer.unroutable_for_now"]
        assert "unroutable" in refused[0]["last_error"]
        await narrow.flush()
        arrived = [(body["customer_id"], body["event"]) for body in narrow.bodies(world.business_id)]
        assert (str(held), "v1.customer.updated") not in arrived  # not published ahead of the refused one
        assert (str(free), "v1.customer.updated") in arrived  # other customers are not held back

        await narrow.bind("v1.customer.unroutable_for_now")  # a consumer appears: the retry goes out
        await narrow.wait_for_count(world.business_id, 5)

    held_events = [body["event"] for body in narrow.bodies(world.business_id) if body["customer_id"] == str(held)]
    assert held_events == ["v1.customer.created", "v1.customer.unroutable_for_now", "v1.customer.updated"]


async def test_readiness_reports_backlog_and_broker_outage_but_stays_ready(
    relay_settings, consumer, world, fetch, database_url
):
    await _drain(relay_settings, database_url, fetch)
    closed = f"amqp://guest:guest@127.0.0.1:{free_port()}/"
    app = create_app(relay_settings(rabbitmq_url=closed))
    async with running_app(app), client_for(app) as http:
        await world.create_customer(http)
        await world.create_customer(http)
        await eventually(lambda: _failed_rows(fetch, world.business_id), what="a failed publish attempt")
        response = await http.get("/readyz")
        metrics = (await http.get("/metrics")).text

    assert response.status_code == 200  # a broker outage never takes the API out of rotation
    body = response.json()
    assert body["status"] == "ready"
    events = body["checks"]["events"]
    assert events["status"] == "down"
    assert events["broker"]["status"] == "down"
    assert events["broker"]["error"]
    assert events["outbox"]["pending"] >= 2
    assert events["outbox"]["failing"] >= 1
    assert events["outbox"]["oldest_pending_age_seconds"] >= 0
    pending = re.search(r"^outbox_pending_events ([0-9.e+]+)$", metrics, re.M)
    assert pending is not None and float(pending.group(1)) >= 2
    assert re.search(r"^outbox_oldest_pending_seconds [0-9.e+]+$", metrics, re.M)


async def test_without_a_broker_publishing_is_off_logged_once_and_events_kept(database_url, world, fetch):
    app = create_app(make_settings(database_url, relay_enabled=True, rabbitmq_url=None))
    with structlog.testing.capture_logs() as logs:
        async with running_app(app), client_for(app) as http:
            await world.create_customer(http)
            await world.create_customer(http)
            await asyncio.sleep(0.3)  # room for a (wrong) retry loop to log again
            response = await http.get("/readyz")

    assert [entry["event"] for entry in logs].count("events_publishing_off") == 1
    assert response.status_code == 200
    events = response.json()["checks"]["events"]
    assert events["broker"]["status"] == "not_configured"
    assert events["relay"] == "disabled"
    assert events["outbox"]["pending"] >= 2
    rows = await _rows(fetch, world.business_id)
    assert len(rows) == 2 and all(row["published_at"] is None for row in rows)
    records = await _rows(fetch, world.business_id, audit_records=True)  # the audit records wait too
    assert [row["event_name"] for row in records] == ["v1.audit.customer.created"] * 2
    assert all(row["published_at"] is None for row in records)


async def test_published_rows_are_purged_after_retention(relay_settings, consumer, world, engine, database_url, fetch):
    await _enqueue(engine, world.business_id, [(uuid.uuid4(), "v1.customer.updated") for _ in range(3)])
    old_published, recent_published, old_pending = (row["id"] for row in await _rows(fetch, world.business_id))
    async with engine.begin() as connection:
        await connection.execute(
            text(
                "UPDATE outbox SET created_at = now() - interval '100 hours',"
                " published_at = now() - interval '80 hours' WHERE id = :i"
            ),
            {"i": old_published},
        )
        await connection.execute(
            text("UPDATE outbox SET published_at = now() - interval '1 hour' WHERE id = :i"), {"i": recent_published}
        )
        await connection.execute(
            text("UPDATE outbox SET created_at = now() - interval '100 hours' WHERE id = :i"), {"i": old_pending}
        )

    async with running_relay(relay_settings(outbox_retention_hours=72), database_url):
        await consumer.wait_for_count(world.business_id, 1)
        await eventually(lambda: _all_published(fetch, world.business_id), what="the pending row to go out")

    remaining = [row["id"] for row in await _rows(fetch, world.business_id)]
    assert remaining == [recent_published, old_pending]  # pending rows are never purged, however old


async def test_stop_finishes_the_batch_in_flight(relay_settings, consumer, world, engine, database_url, fetch):
    await _enqueue(engine, world.business_id, [(uuid.uuid4(), "v1.customer.updated") for _ in range(150)])
    async with running_relay(relay_settings(relay_batch_size=20), database_url) as relay:
        await consumer.wait_for_count(world.business_id, 1)
        relay.request_stop()
    await consumer.flush()

    rows = await _rows(fetch, world.business_id)
    marked = {str(row["event_id"]) for row in rows if row["published_at"] is not None}
    received = {body["event_id"] for body in consumer.bodies(world.business_id)}
    assert marked  # it published something before stopping
    assert received == marked  # everything delivered was marked: nothing left half done
    await _drain(relay_settings, database_url, fetch)  # leave no backlog to the next test


async def test_readiness_reports_backlog_where_the_relay_runs_elsewhere(client, world):
    await world.create_customer(client)  # the session app: no broker, relay disabled in this process
    response = await client.get("/readyz")

    assert response.status_code == 200
    events = response.json()["checks"]["events"]
    assert events["relay"] == "not_running"
    assert events["broker"]["status"] == "not_configured"
    assert events["outbox"]["pending"] >= 1
    assert events["outbox"]["oldest_pending_age_seconds"] >= 0
