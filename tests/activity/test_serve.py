"""Inside `serve` (the app's lifespan) the consumer runs when enabled, and the readiness probe shows it."""

import asyncio
import json
import time
import uuid

import aio_pika

from bee_customers_service.activity.consumer import ActivityConsumer
from bee_customers_service.app import create_app
from tests.activity.conftest import activity_settings_for, remove_topology
from tests.activity.upstream import order_completed
from tests.conftest import client_for, running_app
from tests.services import RABBITMQ_URL, require_service


async def test_the_app_runs_the_consumer_when_enabled(database_url, world, client):
    require_service("RabbitMQ", RABBITMQ_URL, 5672)
    settings = activity_settings_for(database_url)
    customer = await world.create_customer(client)
    app = create_app(settings)
    try:
        async with running_app(app), client_for(app) as served:
            deadline = time.monotonic() + 20
            while (await served.get("/readyz")).json()["checks"].get("activity_consumer", {}).get("status") != "up":
                assert time.monotonic() < deadline, "the consumer did not start"
                await asyncio.sleep(0.05)

            connection = await aio_pika.connect(RABBITMQ_URL)
            async with connection:
                channel = await connection.channel()
                exchange = await channel.get_exchange(settings.orders_exchange)
                key, body = order_completed(customer, total="33.00", event_id=uuid.uuid4())
                await exchange.publish(aio_pika.Message(json.dumps(body).encode()), routing_key=key)

            while (await served.get(f"/customers/{customer['id']}/stats", headers=world.admin.headers)).json()[
                "total_orders"
            ] != 1:
                assert time.monotonic() < deadline, "the event was not applied"
                await asyncio.sleep(0.05)
            ready = (await served.get("/readyz")).json()
            assert ready["checks"]["activity_consumer"]["applied"] == 1
    finally:
        await remove_topology(settings)


async def test_every_applied_message_is_acknowledged_before_the_consumer_stops(app, database_url, world, client):
    """Acks go out as multiple-acks per settled run; none may be left behind (they would be redelivered)."""
    require_service("RabbitMQ", RABBITMQ_URL, 5672)
    settings = activity_settings_for(database_url, activity_concurrency=3, activity_batch_size=7)
    customers = [await world.create_customer(client) for _ in range(5)]
    consumer = ActivityConsumer(settings, app.state.database)
    try:
        await consumer.start()
        connection = await aio_pika.connect(RABBITMQ_URL)
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            exchange = await channel.get_exchange(settings.orders_exchange)
            for n in range(60):
                key, body = order_completed(customers[n % 5], total="1.00")
                await exchange.publish(aio_pika.Message(json.dumps(body).encode()), routing_key=key)
            deadline = time.monotonic() + 20
            while consumer.counters.applied < 60:
                assert time.monotonic() < deadline, "the events were not applied"
                await asyncio.sleep(0.05)
            await consumer.stop()
            queue = await channel.declare_queue(settings.activity_queue, passive=True)
            assert queue.declaration_result.message_count == 0  # nothing unacknowledged came back
        for customer in customers:
            stats = (await client.get(f"/customers/{customer['id']}/stats", headers=world.admin.headers)).json()
            assert stats["total_orders"] == 12
    finally:
        await consumer.stop()
        await remove_topology(settings)
