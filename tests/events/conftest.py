"""Fixtures for the events tests: unique exchanges per test session, relay settings, consumers."""

import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import aio_pika
import pytest

from bee_customers_service.core.config import Settings
from tests.conftest import make_settings
from tests.events.tools import EventConsumer
from tests.services import RABBITMQ_URL, require_service


async def _own_exchange(prefix: str) -> AsyncIterator[str]:
    """An exchange of our own, so suites running at the same time on the broker never cross-talk."""
    name = f"{prefix}.test.{uuid.uuid4().hex[:12]}"
    yield name
    try:
        connection = await aio_pika.connect(RABBITMQ_URL)
    except Exception:  # the broker is not there (the tests were skipped): nothing to clean up
        return
    async with connection:
        channel = await connection.channel()
        await channel.exchange_delete(name)


@pytest.fixture(scope="session")
async def exchange_name() -> AsyncIterator[str]:
    async for name in _own_exchange("bee.customers.events"):
        yield name


@pytest.fixture(scope="session")
async def audit_exchange_name() -> AsyncIterator[str]:
    """The audit records' exchange (BEE_AUDIT_EXCHANGE), deleted at the end like the events'."""
    async for name in _own_exchange("bee.audit.events"):
        yield name


@pytest.fixture
def rabbitmq() -> str:
    require_service("RabbitMQ", RABBITMQ_URL, 5672)
    return RABBITMQ_URL


@pytest.fixture
async def audit_consumer(rabbitmq: str, audit_exchange_name: str) -> AsyncIterator[EventConsumer]:
    """Every audit record the relay publishes (`#` on the test audit exchange)."""
    async with EventConsumer(rabbitmq, audit_exchange_name, ["#"]) as records:
        yield records


@pytest.fixture
def relay_settings(
    database_url: str, exchange_name: str, audit_exchange_name: str, rabbitmq: str, audit_consumer: EventConsumer
) -> Callable[..., Settings]:
    """Settings for a relay publishing to the test exchanges, with short waits and backoffs.

    The audit records of every test go to the session's audit exchange, where `audit_consumer`
    takes them, so they never sit unroutable in the shared outbox (the drains wait for it to empty).
    """

    def build(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "rabbitmq_url": rabbitmq,
            "events_exchange": exchange_name,
            "audit_exchange": audit_exchange_name,
            "relay_enabled": True,
            "relay_poll_seconds": 0.2,
            "relay_max_backoff_seconds": 0.4,
            "relay_publish_timeout_seconds": 5.0,
        }
        values.update(overrides)
        return make_settings(database_url, **values)

    return build


@pytest.fixture
async def consumer(rabbitmq: str, exchange_name: str) -> AsyncIterator[EventConsumer]:
    async with EventConsumer(rabbitmq, exchange_name) as events:
        yield events
