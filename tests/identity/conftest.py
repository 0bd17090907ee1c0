"""A real RabbitMQ topology for bee_auth_service's user events, a running identity consumer, a publisher.

Names are unique to this test session (other suites share the broker) and deleted at its end;
the same pattern as tests/activity/conftest.py.
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

from bee_customers_service.core.config import Settings
from bee_customers_service.identity.consumer import IdentityConsumer, delete_topology
from tests.conftest import make_settings
from tests.services import RABBITMQ_URL, require_service


def identity_settings_for(database_url: str, **overrides: Any) -> Settings:
    suffix = f"identity.{uuid.uuid4().hex[:10]}"
    values: dict[str, Any] = {
        "rabbitmq_url": RABBITMQ_URL,
        "auth_exchange": f"test.{suffix}.auth.events",
        "auth_queue": f"test.{suffix}.customers.auth",
        "auth_dead_letter_exchange": f"test.{suffix}.customers.auth.dlx",
        "auth_dead_letter_queue": f"test.{suffix}.customers.auth.dlq",
        "auth_concurrency": 2,
        "auth_batch_size": 10,
        "auth_batch_linger_ms": 5,
        "auth_retry_delay_ms": 100,
        "auth_max_attempts": 3,
        "auth_consumer_enabled": True,  # make_settings leaves it off for the other suites
    }
    values.update(overrides)
    return make_settings(database_url, **values)


@pytest.fixture(scope="session")
def identity_settings(database_url: str) -> Settings:
    return identity_settings_for(database_url)


@pytest.fixture(scope="session")
async def identity_consumer(app: Any, identity_settings: Settings) -> AsyncIterator[IdentityConsumer]:
    require_service("RabbitMQ", RABBITMQ_URL, 5672)
    running = IdentityConsumer(identity_settings, app.state.database, app.state.avatar_storage)
    await running.start()
    yield running
    await running.stop()
    connection = await aio_pika.connect(RABBITMQ_URL)
    async with connection:
        await delete_topology(await connection.channel(), identity_settings)


@dataclass
class DeadLetter:
    reason: str
    routing_key: str
    body: bytes


class AuthFeed:
    """Publishes bee_auth_service events to the real exchange and waits for the consumer to settle them."""

    def __init__(self, settings: Settings, channel: aio_pika.abc.AbstractChannel, consumer: IdentityConsumer) -> None:
        self.settings = settings
        self.channel = channel
        self.consumer = consumer

    def settled(self) -> int:
        counters = self.consumer.counters
        return counters.applied + counters.duplicates + counters.dead_lettered

    async def send(self, *messages: tuple[str, dict[str, Any] | bytes], within: float = 20.0) -> None:
        """Publish in order and wait until the consumer has settled that many more."""
        target = self.settled() + len(messages)
        exchange = await self.channel.get_exchange(self.settings.auth_exchange, ensure=False)
        for routing_key, body in messages:
            raw = body if isinstance(body, bytes) else json.dumps(body, default=str).encode()
            await exchange.publish(
                aio_pika.Message(
                    raw,
                    content_type="application/json",
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    timestamp=datetime.now(UTC),
                ),
                routing_key=routing_key,
            )
        deadline = time.monotonic() + within
        while self.settled() < target:
            if time.monotonic() > deadline:
                raise AssertionError(f"the consumer settled {self.settled()} of {target} messages in {within}s")
            await asyncio.sleep(0.02)

    async def dead_letters(self, *, expect: int = 0, within: float = 5.0) -> list[DeadLetter]:
        """Everything now in the dead-letter queue (taken out), waiting up to `within` s for `expect`."""
        queue = await self.channel.get_queue(self.settings.auth_dead_letter_queue, ensure=False)
        found: list[DeadLetter] = []
        deadline = time.monotonic() + within
        while (message := await queue.get(no_ack=True, fail=False)) is not None or (
            len(found) < expect and time.monotonic() < deadline
        ):
            if message is None:
                await asyncio.sleep(0.02)
                continue
            reason = dict(message.headers or {}).get("x-bee-dead-letter-reason", b"")
            found.append(
                DeadLetter(
                    reason=reason.decode() if isinstance(reason, bytes) else str(reason),
                    routing_key=message.routing_key or "",
                    body=message.body,
                )
            )
        return found


@pytest.fixture(scope="session")
async def auth_feed(identity_consumer: IdentityConsumer, identity_settings: Settings) -> AsyncIterator[AuthFeed]:
    connection = await aio_pika.connect(RABBITMQ_URL)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        yield AuthFeed(identity_settings, channel, identity_consumer)
