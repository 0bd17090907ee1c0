"""A real RabbitMQ topology with names unique to this test session, a running consumer, a publisher.

Other suites use the same broker at the same time, so every exchange and queue here carries a
random suffix and is deleted at the end of the session.
"""

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aio_pika
import pytest

from bee_customers_service.activity.consumer import ActivityConsumer, delete_topology
from bee_customers_service.core.config import Settings
from tests.conftest import make_settings
from tests.services import RABBITMQ_URL, require_service


def broker_names(tag: str) -> dict[str, str]:
    suffix = f"{tag}.{uuid.uuid4().hex[:10]}"
    return {
        "orders_exchange": f"test.{suffix}.orders.events",
        "scheduling_exchange": f"test.{suffix}.scheduling.events",
        "activity_queue": f"test.{suffix}.customers.activity",
        "activity_dead_letter_exchange": f"test.{suffix}.customers.activity.dlx",
        "activity_dead_letter_queue": f"test.{suffix}.customers.activity.dlq",
    }


def activity_settings_for(database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "rabbitmq_url": RABBITMQ_URL,
        "activity_consumer_enabled": True,
        "activity_concurrency": 4,
        "activity_batch_size": 10,
        "activity_batch_linger_ms": 5,
        "activity_prefetch": 50,
        "activity_retry_delay_ms": 100,
        "activity_max_attempts": 3,
        **broker_names("activity"),
    }
    values.update(overrides)
    return make_settings(database_url, **values)


async def remove_topology(settings: Settings) -> None:
    connection = await aio_pika.connect(RABBITMQ_URL)
    async with connection:
        await delete_topology(await connection.channel(), settings)


@pytest.fixture(scope="session")
def activity_settings(database_url: str) -> Settings:
    return activity_settings_for(database_url)


@pytest.fixture(scope="session")
async def consumer(app: Any, activity_settings: Settings) -> AsyncIterator[ActivityConsumer]:
    require_service("RabbitMQ", RABBITMQ_URL, 5672)
    running = ActivityConsumer(activity_settings, app.state.database)
    await running.start()
    yield running
    await running.stop()
    await remove_topology(activity_settings)


@dataclass
class DeadLetter:
    reason: str
    routing_key: str
    body: bytes
    headers: dict[str, Any]


class Feed:
    """Publishes upstream events to the real exchanges and waits for the consumer to settle them."""

    def __init__(self, settings: Settings, channel: aio_pika.abc.AbstractChannel, consumer: ActivityConsumer) -> None:
        self.settings = settings
        self.channel = channel
        self.consumer = consumer

    def settled(self) -> int:
        counters = self.consumer.counters
        return counters.applied + counters.duplicates + counters.dead_lettered

    async def publish(self, routing_key: str, body: dict[str, Any] | bytes) -> None:
        exchange_name = (
            self.settings.orders_exchange if routing_key.startswith("v1.order.") else self.settings.scheduling_exchange
        )
        exchange = await self.channel.get_exchange(exchange_name, ensure=False)
        raw = body if isinstance(body, bytes) else json.dumps(body, default=str).encode()
        message_id = body.get("event_id") if isinstance(body, dict) else None
        await exchange.publish(
            aio_pika.Message(
                raw,
                content_type="application/json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                message_id=str(message_id) if message_id else None,
                timestamp=datetime.now(UTC),
            ),
            routing_key=routing_key,
        )

    async def send(self, *messages: tuple[str, dict[str, Any] | bytes], within: float = 20.0) -> None:
        """Publish messages in order and wait until the consumer has settled that many more."""
        target = self.settled() + len(messages)
        for routing_key, body in messages:
            await self.publish(routing_key, body)
        await self.wait_settled(target, within=within)

    async def wait_settled(self, target: int, *, within: float = 20.0) -> None:
        deadline = time.monotonic() + within
        while self.settled() < target:
            if time.monotonic() > deadline:
                raise AssertionError(f"the consumer settled {self.settled()} of {target} messages in {within}s")
            await asyncio.sleep(0.02)

    async def dead_letters(self, *, expect: int = 0, within: float = 5.0) -> list[DeadLetter]:
        """Everything now in the dead-letter queue (taken out of it), waiting up to `within` seconds
        for `expect` of them: the copy is confirmed before the broker has routed it to the queue."""
        queue = await self.channel.get_queue(self.settings.activity_dead_letter_queue, ensure=False)
        found: list[DeadLetter] = []
        deadline = time.monotonic() + within
        while (message := await queue.get(no_ack=True, fail=False)) is not None or (
            len(found) < expect and time.monotonic() < deadline
        ):
            if message is None:
                await asyncio.sleep(0.02)
                continue
            headers = dict(message.headers or {})
            reason = headers.get("x-bee-dead-letter-reason", b"")
            found.append(
                DeadLetter(
                    reason=reason.decode() if isinstance(reason, bytes) else str(reason),
                    routing_key=message.routing_key or "",
                    body=message.body,
                    headers=headers,
                )
            )
        return found


@pytest.fixture(scope="session")
async def feed(consumer: ActivityConsumer, activity_settings: Settings) -> AsyncIterator[Feed]:
    connection = await aio_pika.connect(RABBITMQ_URL)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        yield Feed(activity_settings, channel, consumer)
