"""Inside `serve` (the app's lifespan) the identity consumer runs when enabled, and /readyz shows it."""

import asyncio
import json
import os
import signal
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import aio_pika

from bee_customers_service.activity.consumer import delete_topology as delete_activity_topology
from bee_customers_service.app import create_app
from bee_customers_service.identity.consumer import delete_topology
from tests.activity.conftest import activity_settings_for
from tests.conftest import JWT_SECRET, client_for, running_app
from tests.identity.conftest import identity_settings_for
from tests.services import RABBITMQ_URL, require_service

ROOT = Path(__file__).resolve().parent.parent.parent


async def test_the_app_runs_the_identity_consumer_when_enabled(database_url, world, client, fetch):
    require_service("RabbitMQ", RABBITMQ_URL, 5672)
    settings = identity_settings_for(database_url)
    customer = await world.create_customer(client, email=f"serve.{uuid.uuid4().hex[:8]}@example.com")
    new_email = f"served.{uuid.uuid4().hex[:8]}@example.com"
    app = create_app(settings)
    try:
        async with running_app(app), client_for(app) as served:
            deadline = time.monotonic() + 20
            while (await served.get("/readyz")).json()["checks"].get("identity_consumer", {}).get("status") != "up":
                assert time.monotonic() < deadline, "the consumer did not start"
                await asyncio.sleep(0.05)

            connection = await aio_pika.connect(RABBITMQ_URL)
            async with connection:
                exchange = await (await connection.channel()).get_exchange(settings.auth_exchange)
                body = {
                    "event_id": str(uuid.uuid4()),
                    "user_id": customer["user_id"],
                    "occurred_at": datetime.now(UTC).isoformat(),
                    "email": new_email,
                }
                await exchange.publish(aio_pika.Message(json.dumps(body).encode()), routing_key="v1.user.updated")

            query = "SELECT email FROM customers WHERE id = :c"
            while (await fetch(query, c=uuid.UUID(customer["id"])))[0]["email"] != new_email:
                assert time.monotonic() < deadline, "the event was not applied"
                await asyncio.sleep(0.05)
            ready = (await served.get("/readyz")).json()
            assert ready["checks"]["identity_consumer"]["applied"] == 1
    finally:
        connection = await aio_pika.connect(RABBITMQ_URL)
        async with connection:
            await delete_topology(await connection.channel(), settings)


async def test_the_consume_command_runs_the_identity_consumer_too(database_url, world, client, fetch):
    """`bee-customers consume` runs both consumers in its own process; SIGTERM stops them cleanly."""
    require_service("RabbitMQ", RABBITMQ_URL, 5672)
    activity = activity_settings_for(database_url)
    settings = identity_settings_for(database_url)
    customer = await world.create_customer(client, email=f"cli.{uuid.uuid4().hex[:8]}@example.com")
    env = {
        **os.environ,
        "BEE_ORDERS_EXCHANGE": activity.orders_exchange,
        "BEE_SCHEDULING_EXCHANGE": activity.scheduling_exchange,
        "BEE_ACTIVITY_QUEUE": activity.activity_queue,
        "BEE_ACTIVITY_DEAD_LETTER_EXCHANGE": activity.activity_dead_letter_exchange,
        "BEE_ACTIVITY_DEAD_LETTER_QUEUE": activity.activity_dead_letter_queue,
        "BEE_AUTH_EXCHANGE": settings.auth_exchange,
        "BEE_AUTH_QUEUE": settings.auth_queue,
        "BEE_AUTH_DEAD_LETTER_EXCHANGE": settings.auth_dead_letter_exchange,
        "BEE_AUTH_DEAD_LETTER_QUEUE": settings.auth_dead_letter_queue,
        "BEE_DATABASE_URL": database_url,
        "BEE_RABBITMQ_URL": RABBITMQ_URL,
        "BEE_JWT_SECRET": JWT_SECRET,
        "BEE_LOG_LEVEL": "WARNING",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bee_customers_service.cli", "consume", cwd=ROOT, env=env
    )
    new_name = "Ana From Auth"
    try:
        connection = await aio_pika.connect(RABBITMQ_URL)
        async with connection:
            deadline = time.monotonic() + 30
            while True:  # the command declares the topology on start; publish once the queue is bound
                assert process.returncode is None, "the consumer exited during start-up"
                try:
                    await (await connection.channel()).get_queue(settings.auth_queue, ensure=True)
                    break
                except aio_pika.exceptions.ChannelClosed:
                    assert time.monotonic() < deadline, "the consumer did not declare its queue"
                    await asyncio.sleep(0.1)
            exchange = await (await connection.channel()).get_exchange(settings.auth_exchange)
            body = {
                "event_id": str(uuid.uuid4()),
                "user_id": customer["user_id"],
                "occurred_at": datetime.now(UTC).isoformat(),
                "full_name": new_name,
            }
            await exchange.publish(aio_pika.Message(json.dumps(body).encode()), routing_key="v1.user.updated")

        query = "SELECT full_name FROM customers WHERE id = :c"
        while (await fetch(query, c=uuid.UUID(customer["id"])))[0]["full_name"] != new_name:
            assert time.monotonic() < deadline, "the event was not applied"
            await asyncio.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 30) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        connection = await aio_pika.connect(RABBITMQ_URL)
        async with connection:
            channel = await connection.channel()
            await delete_topology(channel, settings)
            await delete_activity_topology(channel, activity)
