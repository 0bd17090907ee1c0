"""The activity consumer: bee.orders.events + bee.scheduling.events -> history and statistics.

The queue machinery (batches, acks, retries, dead letters) is events/consumer.py; this module
says what a message means (activity/contract.py) and applies a batch in one transaction
(activity/service.py), each message with its own processed_events row.
"""

import asyncio
import contextlib
from collections.abc import AsyncIterator, Hashable
from typing import Any

import structlog
from aio_pika.abc import AbstractChannel, AbstractQueue

from bee_customers_service.activity import contract
from bee_customers_service.activity import service as activity_service
from bee_customers_service.activity.contract import Change, Rejected
from bee_customers_service.core.config import Settings
from bee_customers_service.core.db import Database, retrying_conflicts
from bee_customers_service.events.broker import short_error
from bee_customers_service.events.consumer import (
    ConsumerOptions,
    Outcome,
    Poison,
    QueueConsumer,
    running_in_background,
)
from bee_customers_service.events.topology import QueueTopology

log = structlog.get_logger(__name__)


def activity_topology(settings: Settings) -> QueueTopology:
    """The activity queue, bound to the order and appointment events it folds in (docs/events.md)."""
    return QueueTopology(
        queue=settings.activity_queue,
        dead_letter_exchange=settings.activity_dead_letter_exchange,
        dead_letter_queue=settings.activity_dead_letter_queue,
        bindings=(
            (settings.orders_exchange, contract.ORDER_KEYS),
            (settings.scheduling_exchange, contract.APPOINTMENT_KEYS),
        ),
    )


async def declare_topology(channel: AbstractChannel, settings: Settings) -> AbstractQueue:
    return await activity_topology(settings).declare(channel)


async def delete_topology(channel: AbstractChannel, settings: Settings) -> None:
    await activity_topology(settings).delete(channel)


class ActivityHandler:
    """The activity's BatchHandler: parse with the contract, apply with the service."""

    def __init__(self, settings: Settings, database: Database) -> None:
        self.settings = settings
        self.database = database

    def parse(self, routing_key: str, body: bytes) -> Change | Poison:
        parsed = contract.parse(routing_key, body)
        return Poison(parsed.reason) if isinstance(parsed, Rejected) else parsed

    def partition(self, item: Change) -> Hashable:
        return (item.business_id, item.user_id)  # one customer's events: one worker, in order

    async def apply(self, items: list[Change]) -> list[Outcome]:
        """One transaction for the batch, retried at once on a deadlock or serialization failure."""

        async def batch() -> list[Outcome]:
            async with self.database.sessionmaker() as session:
                outcomes = await activity_service.apply_changes(session, items, settings=self.settings)
                await session.commit()
            return [Poison(o.reason) if isinstance(o, activity_service.Refused) else o for o in outcomes]

        return await retrying_conflicts(batch)


class ActivityConsumer(QueueConsumer[Change]):
    """Consumes upstream events until stopped. `async with consumer.running(): ...`."""

    def __init__(self, settings: Settings, database: Database) -> None:
        options = ConsumerOptions(
            name="activity",
            prefetch=settings.activity_prefetch,
            concurrency=settings.activity_concurrency,
            batch_size=settings.activity_batch_size,
            batch_linger_ms=settings.activity_batch_linger_ms,
            retry_delay_ms=settings.activity_retry_delay_ms,
            max_attempts=settings.activity_max_attempts,
        )
        super().__init__(
            settings.rabbitmq_url, activity_topology(settings), ActivityHandler(settings, database), options
        )
        self.settings = settings
        self.database = database


async def prune_periodically(database: Database, settings: Settings, stop: asyncio.Event) -> None:
    """Prune old processed_events while the consumer runs (every replica: the deletes are idempotent)."""
    while not stop.is_set():
        try:
            pruned = await activity_service.prune_processed_events(database.sessionmaker, settings=settings)
            if pruned:
                log.info("processed_events_pruned", rows=pruned)
        except Exception as exc:  # the database may be away: try again at the next interval
            log.warning("processed_events_prune_failed", error=short_error(exc))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=settings.processed_events_prune_interval_seconds)


def activity_component(app: Any) -> contextlib.AbstractAsyncContextManager[None]:
    """The consumer inside `serve` (app._background_components), when enabled and a broker is set."""

    @contextlib.asynccontextmanager
    async def component() -> AsyncIterator[None]:
        settings: Settings = app.state.settings
        if not (settings.activity_consumer_enabled and settings.rabbitmq_url):
            yield
            return
        consumer = ActivityConsumer(settings, app.state.database)
        app.state.activity_consumer = consumer

        async def prune(stop: asyncio.Event) -> None:
            await prune_periodically(app.state.database, settings, stop)

        async with running_in_background(app, "activity", consumer, {"processed-events-prune": prune}):
            yield

    return component()
