"""Inside `serve` (the app's lifespan) the consumer runs when enabled, and the readiness probe shows it."""

import asyncio
import json
import time
import uuid

import aio_pika

from bee_customers_service.app import create_app
from tests.activity.conftest import activity_settings_for, delete_topology
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
        await delete_topology(settings)
