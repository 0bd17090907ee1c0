"""The identity consumer: bee.auth.events (v1.user.updated, v1.user.deleted) -> the user's profiles.

The queue machinery (batches, acks, retries, dead letters) is events/consumer.py; this module says
what a message means (identity/contract.py) and applies it (identity/service.py). User events are
few: each is applied in a transaction of its own (a deletion in gdpr's erasure transactions, then
the claim of its event id in one more), so one refused event never undoes another.
"""

import contextlib
from collections.abc import AsyncIterator, Hashable
from typing import Any

from aio_pika.abc import AbstractChannel, AbstractQueue

from bee_customers_service.avatars.storage import AvatarStorage
from bee_customers_service.core.config import Settings
from bee_customers_service.core.db import Database, retrying_conflicts
from bee_customers_service.events.consumer import (
    ConsumerOptions,
    Outcome,
    Poison,
    QueueConsumer,
    running_in_background,
)
from bee_customers_service.events.topology import QueueTopology
from bee_customers_service.identity import contract
from bee_customers_service.identity import service as identity_service
from bee_customers_service.identity.contract import Rejected, UserChange


def identity_topology(settings: Settings) -> QueueTopology:
    """The auth queue, bound to bee_auth_service's user events (docs/events.md)."""
    return QueueTopology(
        queue=settings.auth_queue,
        dead_letter_exchange=settings.auth_dead_letter_exchange,
        dead_letter_queue=settings.auth_dead_letter_queue,
        bindings=((settings.auth_exchange, contract.KEYS),),
    )


async def declare_topology(channel: AbstractChannel, settings: Settings) -> AbstractQueue:
    return await identity_topology(settings).declare(channel)


async def delete_topology(channel: AbstractChannel, settings: Settings) -> None:
    await identity_topology(settings).delete(channel)


class IdentityHandler:
    """The identity's BatchHandler: parse with the contract, apply each event with the service."""

    def __init__(self, settings: Settings, database: Database, storage: AvatarStorage) -> None:
        self.settings = settings
        self.database = database
        self.storage = storage

    def parse(self, routing_key: str, body: bytes) -> UserChange | Poison:
        parsed = contract.parse(routing_key, body)
        return Poison(parsed.reason) if isinstance(parsed, Rejected) else parsed

    def partition(self, item: UserChange) -> Hashable:
        return item.user_id  # one user's events: one worker, in order

    async def apply(self, items: list[UserChange]) -> list[Outcome]:
        """In order, one at a time; raising fails the batch (the consumer then retries one by one,
        and the ones applied already come back as duplicates)."""
        return [await (self._erase(item) if item.deleted else self._update(item)) for item in items]

    async def _update(self, change: UserChange) -> Outcome:
        """One transaction, retried at once on a deadlock or serialization failure; rolled back when refused."""

        async def update() -> Outcome:
            async with self.database.sessionmaker() as session:
                outcome = await identity_service.apply_update(session, change, settings=self.settings)
                if isinstance(outcome, identity_service.Refused):
                    await session.rollback()  # not even the claim: a refused event changes nothing
                    return Poison(outcome.reason)
                await session.commit()
                return outcome

        return await retrying_conflicts(update)

    async def _erase(self, change: UserChange) -> Outcome:
        async with self.database.sessionmaker() as session:
            if await identity_service.already_processed(session, change):
                return identity_service.DUPLICATE
        await identity_service.erase_user(
            self.database.sessionmaker, change, storage=self.storage, settings=self.settings
        )
        async with self.database.sessionmaker() as session:
            fresh = await identity_service.claim(session, change)
            await session.commit()
        return identity_service.APPLIED if fresh else identity_service.DUPLICATE


class IdentityConsumer(QueueConsumer[UserChange]):
    """Consumes bee_auth_service's user events until stopped. `async with consumer.running(): ...`."""

    def __init__(self, settings: Settings, database: Database, storage: AvatarStorage) -> None:
        options = ConsumerOptions(
            name="identity",
            prefetch=settings.auth_prefetch,
            concurrency=settings.auth_concurrency,
            batch_size=settings.auth_batch_size,
            batch_linger_ms=settings.auth_batch_linger_ms,
            retry_delay_ms=settings.auth_retry_delay_ms,
            max_attempts=settings.auth_max_attempts,
        )
        handler = IdentityHandler(settings, database, storage)
        super().__init__(settings.rabbitmq_url, identity_topology(settings), handler, options)
        self.settings = settings
        self.database = database


def identity_component(app: Any) -> contextlib.AbstractAsyncContextManager[None]:
    """The consumer inside `serve` (app._background_components), when enabled and a broker is set."""

    @contextlib.asynccontextmanager
    async def component() -> AsyncIterator[None]:
        settings: Settings = app.state.settings
        if not (settings.auth_consumer_enabled and settings.rabbitmq_url):
            yield
            return
        consumer = IdentityConsumer(settings, app.state.database, app.state.avatar_storage)
        app.state.identity_consumer = consumer
        async with running_in_background(app, "identity", consumer):
            yield

    return component()
