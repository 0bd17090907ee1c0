"""Inside `serve` (the app's lifespan) the consumer runs when enabled, and the readiness probe shows it."""

import asyncio
import json
import os
import signal
import sys
import time
import uuid
from pathlib import Path

import aio_pika

from bee_customers_service.activity.consumer import ActivityConsumer
from bee_customers_service.app import create_app
from tests.activity.conftest import activity_settings_for, remove_topology
from tests.activity.upstream import order_completed
from tests.conftest import JWT_SECRET, client_for, running_app
from tests.services import RABBITMQ_URL, require_service

ROOT = Path(__file__).resolve().parent.parent.parent


async def _wait_for_total_orders(http, world, customer, expected: int, deadline: float) -> None:
    path = f"/customers/{customer['id']}/stats"
    while (await http.get(path, headers=world.admin.headers)).json()["total_orders"] != expected:
        assert time.monotonic() < deadline, "the event was not applied"
        await asyncio.sleep(0.05)


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

            await _wait_for_total_orders(served, world, customer, 1, deadline)
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


async def test_the_consume_command_applies_events_and_stops_cleanly_on_sigterm(database_url, world, client):
    """`bee-customers consume` as it runs in production: its own process (on uvloop), env settings."""
    require_service("RabbitMQ", RABBITMQ_URL, 5672)
    settings = activity_settings_for(database_url)
    customer = await world.create_customer(client)
    names = {
        "BEE_ORDERS_EXCHANGE": settings.orders_exchange,
        "BEE_SCHEDULING_EXCHANGE": settings.scheduling_exchange,
        "BEE_ACTIVITY_QUEUE": settings.activity_queue,
        "BEE_ACTIVITY_DEAD_LETTER_EXCHANGE": settings.activity_dead_letter_exchange,
        "BEE_ACTIVITY_DEAD_LETTER_QUEUE": settings.activity_dead_letter_queue,
    }
    env = {
        **os.environ,
        **names,
        "BEE_DATABASE_URL": database_url,
        "BEE_RABBITMQ_URL": RABBITMQ_URL,
        "BEE_JWT_SECRET": JWT_SECRET,
        "BEE_LOG_LEVEL": "WARNING",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bee_customers_service.cli", "consume", cwd=ROOT, env=env
    )
    try:
        connection = await aio_pika.connect(RABBITMQ_URL)
        async with connection:
            channel = await connection.channel()
            # The command declares the topology on start; publish once the queue is bound.
            deadline = time.monotonic() + 30
            while True:
                assert process.returncode is None, "the consumer exited during start-up"
                try:
                    await (await connection.channel()).get_queue(settings.activity_queue, ensure=True)
                    break
                except aio_pika.exceptions.ChannelClosed:
                    assert time.monotonic() < deadline, "the consumer did not declare its queue"
                    await asyncio.sleep(0.1)
            exchange = await channel.declare_exchange(
                settings.orders_exchange, aio_pika.ExchangeType.TOPIC, durable=True
            )
            key, body = order_completed(customer, total="12.50", event_id=uuid.uuid4())
            await exchange.publish(aio_pika.Message(json.dumps(body).encode()), routing_key=key)

        await _wait_for_total_orders(client, world, customer, 1, deadline)
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 30) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        await remove_topology(settings)
