"""A consumed queue's RabbitMQ topology (bindings, retry and dead-letter queues) and the copies sent there.

    source exchanges (topic) ── routing keys ──> <queue> (durable; x-dead-letter-exchange = DLX)
                                                   │ transient failure: republished to <queue>.retry
                                                   │ with a per-message TTL, which dead-letters it back
                                                   └ poison / gave up: published to the DLX with the reason
    <dead_letter_exchange> (topic) ── # ──> <dead_letter_queue>

Declared on start (idempotent; docs/events.md).
"""

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue

HEADER_ATTEMPTS = "x-bee-attempts"
HEADER_ROUTING_KEY = "x-bee-routing-key"
HEADER_REASON = "x-bee-dead-letter-reason"
HEADER_LAST_ERROR = "x-bee-last-error"
HEADER_SOURCE_QUEUE = "x-bee-source-queue"


@dataclass(frozen=True)
class QueueTopology:
    queue: str
    dead_letter_exchange: str
    dead_letter_queue: str
    # (source exchange, routing keys bound from it), in declaration order.
    bindings: Sequence[tuple[str, Sequence[str]]]

    @property
    def retry_queue(self) -> str:
        return f"{self.queue}.retry"

    async def declare(self, channel: AbstractChannel) -> AbstractQueue:
        """Declare the source exchanges, the queue and its retry and dead-letter companions."""
        sources = [
            await channel.declare_exchange(name, aio_pika.ExchangeType.TOPIC, durable=True) for name, _ in self.bindings
        ]
        dead_letters = await channel.declare_exchange(
            self.dead_letter_exchange, aio_pika.ExchangeType.TOPIC, durable=True
        )

        dlq = await channel.declare_queue(self.dead_letter_queue, durable=True)
        await dlq.bind(dead_letters, routing_key="#")
        # No consumer reads the retry queue: a message waits out its per-message TTL there, then
        # RabbitMQ dead-letters it back into the main queue through the default exchange.
        await channel.declare_queue(
            self.retry_queue,
            durable=True,
            arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": self.queue},
        )
        queue = await channel.declare_queue(
            self.queue,
            durable=True,
            # A message rejected without requeue (our last resort when publishing to the DLX failed)
            # still lands in the dead-letter queue rather than being dropped.
            arguments={"x-dead-letter-exchange": self.dead_letter_exchange},
        )
        for exchange, (_, keys) in zip(sources, self.bindings, strict=True):
            for key in keys:
                await queue.bind(exchange, routing_key=key)
        return queue

    async def delete(self, channel: AbstractChannel) -> None:
        """Remove what `declare` made (throwaway topologies of tests and benchmarks)."""
        for queue in (self.queue, self.retry_queue, self.dead_letter_queue):
            await channel.queue_delete(queue)
        for exchange in (*(name for name, _ in self.bindings), self.dead_letter_exchange):
            await channel.exchange_delete(exchange)


def original_routing_key(message: AbstractIncomingMessage) -> str:
    """The upstream routing key, also for a message that came back through the retry queue."""
    header = (message.headers or {}).get(HEADER_ROUTING_KEY)
    if isinstance(header, bytes):
        header = header.decode(errors="replace")
    return str(header) if header else (message.routing_key or "")


def attempts(message: AbstractIncomingMessage) -> int:
    """How many times the message has failed before (our header on its retry copies)."""
    value = (message.headers or {}).get(HEADER_ATTEMPTS, 0)
    try:
        return int(value) if isinstance(value, int | float | str | bytes | bytearray | Decimal) else 0
    except ValueError:
        return 0


def copy_message(message: AbstractIncomingMessage, headers: dict[str, Any], **kwargs: Any) -> aio_pika.Message:
    return aio_pika.Message(
        body=message.body,
        headers={**(message.headers or {}), **headers},
        content_type=message.content_type,
        content_encoding=message.content_encoding,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=message.message_id,
        correlation_id=message.correlation_id,
        timestamp=message.timestamp,
        type=message.type,
        app_id=message.app_id,
        **kwargs,
    )
