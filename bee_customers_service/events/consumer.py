"""A batching consumer of one RabbitMQ queue; a `BatchHandler` says what the messages mean.

Messages are pulled into local buffers (prefetch bounds them) and `concurrency` workers hand them
to the handler in batches; each message is acknowledged only after the handler applied it. A batch
that fails is split and its messages applied one by one, so one bad message never holds back the
others. Poison goes to the dead-letter queue with its reason; a failure that may pass is retried
through the retry queue after a delay, up to `max_attempts` (events/topology.py).
"""

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Hashable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Generic, Literal, Protocol, TypeVar

import aio_pika
import structlog
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue, AbstractRobustConnection

from bee_customers_service.core.metrics import EVENTS_CONSUMED
from bee_customers_service.events.acks import AckTracker
from bee_customers_service.events.broker import short_error
from bee_customers_service.events.topology import (
    HEADER_ATTEMPTS,
    HEADER_LAST_ERROR,
    HEADER_REASON,
    HEADER_ROUTING_KEY,
    HEADER_SOURCE_QUEUE,
    QueueTopology,
    attempts,
    copy_message,
    original_routing_key,
)

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Poison:
    """A message that can never be applied, and why (it goes to the dead-letter queue)."""

    reason: str


APPLIED: Literal["applied"] = "applied"
DUPLICATE: Literal["duplicate"] = "duplicate"
Outcome = Literal["applied", "duplicate"] | Poison

ItemT = TypeVar("ItemT")


class BatchHandler(Protocol[ItemT]):
    """What a consumer's messages mean: parse one, and apply a batch of parsed ones."""

    def parse(self, routing_key: str, body: bytes) -> ItemT | Poison:
        """One message as an item to apply, or why it never can be; never raises."""
        ...

    def partition(self, item: ItemT) -> Hashable:
        """Items with the same key go to the same worker (in order, never concurrently)."""
        ...

    async def apply(self, items: list[ItemT]) -> Sequence[Outcome]:
        """Apply `items` at once, one outcome each in order; raising fails the whole batch."""
        ...


@dataclass(frozen=True)
class ConsumerOptions:
    name: str  # in log event names, task names and the connection name
    prefetch: int
    concurrency: int
    batch_size: int
    batch_linger_ms: int
    retry_delay_ms: int
    max_attempts: int


@dataclass
class ConsumerCounters:
    """What the consumer has done since it started (readiness report, tests, benchmark)."""

    received: int = 0
    applied: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    retried: int = 0
    batches: int = 0
    last_lag_seconds: float | None = None


class QueueConsumer(Generic[ItemT]):
    """Consumes `topology.queue` until stopped. `async with consumer.running(): ...`."""

    def __init__(
        self, url: str | None, topology: QueueTopology, handler: BatchHandler[ItemT], options: ConsumerOptions
    ) -> None:
        self.url = url
        self.topology = topology
        self.handler = handler
        self.options = options
        self.name = options.name
        self.counters = ConsumerCounters()
        self.connected = False
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractChannel | None = None
        self._queue: AbstractQueue | None = None
        self._consumer_tag: str | None = None
        self._buffers: list[asyncio.Queue[tuple[AbstractIncomingMessage, ItemT | Poison]]] = self._new_buffers()
        self._acks = AckTracker(self.name)
        self._workers: list[asyncio.Task[None]] = []
        self._in_flight = 0

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect, declare the topology and start consuming (raises when the broker does not answer)."""
        assert self.url, "BEE_RABBITMQ_URL is required"
        options = self.options
        self._connection = await aio_pika.connect_robust(
            self.url, client_properties={"connection_name": f"bee_customers_service.{self.name}"}
        )
        try:
            self._channel = await self._connection.channel(publisher_confirms=True)
            await self._channel.set_qos(prefetch_count=options.prefetch)
            self._queue = await self.topology.declare(self._channel)
            self._workers = [
                asyncio.create_task(self._work(self._buffers[n]), name=f"{self.name}-worker-{n}")
                for n in range(options.concurrency)
            ]
            self._consumer_tag = await self._queue.consume(self._receive)
        except BaseException:
            await self._close()
            raise
        self.connected = True
        log.info(
            f"{self.name}_consumer_started",
            queue=self.topology.queue,
            prefetch=options.prefetch,
            concurrency=options.concurrency,
            batch_size=options.batch_size,
        )

    async def _close(self) -> None:
        for task in self._workers:
            task.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers = []
        if self._connection is not None:
            with contextlib.suppress(Exception):
                await self._connection.close()
        self._connection = self._channel = self._queue = None
        self._consumer_tag = None
        self._buffers = self._new_buffers()  # leftovers belong to the closed channel: RabbitMQ redelivers them
        self._acks = AckTracker(self.name)
        self.connected = False

    async def stop(self, *, drain_timeout: float = 10.0) -> None:
        """Stop taking messages, finish the ones in hand, close (the buffered rest goes back to RabbitMQ)."""
        if self._queue is not None and self._consumer_tag is not None:
            with contextlib.suppress(Exception):
                await self._queue.cancel(self._consumer_tag)
        deadline = time.monotonic() + drain_timeout
        while (self._in_flight or any(not b.empty() for b in self._buffers)) and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        await self._close()
        log.info(f"{self.name}_consumer_stopped", **asdict(self.counters))

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator["QueueConsumer[ItemT]"]:
        await self.start()
        try:
            yield self
        finally:
            await self.stop()

    async def report(self) -> dict[str, Any]:
        """Readiness detail: `up`, `reconnecting` (the robust connection is re-opening) or `down`."""
        connection = self._connection
        if not self.connected or connection is None or connection.is_closed:
            status = "down"
        elif not connection.connected.is_set():
            status = "reconnecting"
        else:
            status = "up"
        return {"status": status, **asdict(self.counters)}

    # --- receiving and batching ----------------------------------------------------------------

    def _new_buffers(self) -> list[asyncio.Queue[tuple[AbstractIncomingMessage, ItemT | Poison]]]:
        return [asyncio.Queue() for _ in range(self.options.concurrency)]

    async def _receive(self, message: AbstractIncomingMessage) -> None:
        """Parse, then hand the message to the worker that owns its partition (no waits on each other's locks)."""
        self.counters.received += 1
        self._acks.add(message)
        parsed = self.handler.parse(original_routing_key(message), message.body)
        if isinstance(parsed, Poison):
            worker = self.counters.received % len(self._buffers)
        else:
            worker = hash(self.handler.partition(parsed)) % len(self._buffers)
        await self._buffers[worker].put((message, parsed))

    async def _next_batch(
        self, buffer: asyncio.Queue[tuple[AbstractIncomingMessage, ItemT | Poison]]
    ) -> list[tuple[AbstractIncomingMessage, ItemT | Poison]]:
        batch = [await buffer.get()]
        self._in_flight += 1
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.options.batch_linger_ms / 1000
        try:
            while len(batch) < self.options.batch_size:
                if not buffer.empty():
                    batch.append(buffer.get_nowait())
                    continue
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(buffer.get(), remaining))
                except TimeoutError:
                    break
        except BaseException:
            self._in_flight -= 1
            raise
        return batch

    async def _work(self, buffer: asyncio.Queue[tuple[AbstractIncomingMessage, ItemT | Poison]]) -> None:
        while True:
            batch = await self._next_batch(buffer)
            try:
                await self.handle(batch)
            except asyncio.CancelledError:
                raise
            except Exception:  # never let a worker die: log, the messages will come back
                log.exception(f"{self.name}_batch_crashed", size=len(batch))
                for message, _ in batch:
                    with contextlib.suppress(Exception):
                        await message.nack(requeue=True)
                    self._acks.settle(message, ack=False)
            finally:
                self._in_flight -= 1
                await self._acks.flush()

    # --- applying ------------------------------------------------------------------------------

    async def handle(self, batch: Sequence[tuple[AbstractIncomingMessage, ItemT | Poison]]) -> None:
        """Apply a batch at once and acknowledge; poison to the DLQ, failures to retry."""
        self.counters.batches += 1
        parsed: list[tuple[AbstractIncomingMessage, ItemT]] = []
        for message, result in batch:
            if isinstance(result, Poison):
                await self._dead_letter(message, result.reason)
            else:
                parsed.append((message, result))
        if not parsed:
            return
        try:
            outcomes = await self.handler.apply([item for _, item in parsed])
        except Exception as exc:
            if len(parsed) == 1:
                await self._retry_later(parsed[0][0], exc)
                return
            log.warning(f"{self.name}_batch_split", size=len(parsed), error=short_error(exc))
            for pair in parsed:
                await self.handle_one(*pair)
            return
        for (message, _), outcome in zip(parsed, outcomes, strict=True):
            await self._settle(message, outcome)

    async def handle_one(self, message: AbstractIncomingMessage, item: ItemT) -> None:
        try:
            (outcome,) = await self.handler.apply([item])
        except Exception as exc:
            await self._retry_later(message, exc)
            return
        await self._settle(message, outcome)

    async def _settle(self, message: AbstractIncomingMessage, outcome: Outcome) -> None:
        if isinstance(outcome, Poison):
            await self._dead_letter(message, outcome.reason)
            return
        if outcome == APPLIED:
            self.counters.applied += 1
            EVENTS_CONSUMED.labels(result="applied").inc()
            if message.timestamp is not None:
                self.counters.last_lag_seconds = max(0.0, time.time() - message.timestamp.timestamp())
        else:
            self.counters.duplicates += 1
            EVENTS_CONSUMED.labels(result="duplicate").inc()
        self._acks.settle(message, ack=True)  # the worker's flush after the batch sends the (multiple) ack

    async def _dead_letter(self, message: AbstractIncomingMessage, reason: str) -> None:
        """Park the message in the DLQ with the reason (a header), then acknowledge it."""
        routing_key = original_routing_key(message)
        self.counters.dead_lettered += 1
        EVENTS_CONSUMED.labels(result="dead_lettered").inc()
        log.warning(
            f"{self.name}_message_dead_lettered", reason=reason, routing_key=routing_key, message_id=message.message_id
        )
        assert self._channel is not None
        headers = {
            HEADER_REASON: reason,
            HEADER_ROUTING_KEY: routing_key,
            HEADER_SOURCE_QUEUE: self.topology.queue,
            HEADER_ATTEMPTS: attempts(message) + 1,
        }
        try:
            exchange = await self._channel.get_exchange(self.topology.dead_letter_exchange, ensure=False)
            await exchange.publish(copy_message(message, headers), routing_key=routing_key or "unroutable")
        except Exception as exc:
            # Without a confirmed copy in the DLQ, let RabbitMQ dead-letter it (x-death says why).
            log.error(f"{self.name}_dead_letter_publish_failed", error=short_error(exc))
            with contextlib.suppress(Exception):
                await message.reject(requeue=False)
            self._acks.settle(message, ack=False)
            return
        self._acks.settle(message, ack=True)

    async def _retry_later(self, message: AbstractIncomingMessage, exc: BaseException) -> None:
        """A failure that may pass (database down ...): try again after the retry delay, N times."""
        attempt = attempts(message) + 1
        error = short_error(exc)
        if attempt >= self.options.max_attempts:
            await self._dead_letter(message, f"gave up after {attempt} attempts: {error}")
            return
        self.counters.retried += 1
        EVENTS_CONSUMED.labels(result="retried").inc()
        log.warning(f"{self.name}_message_retry", attempts=attempt, error=error, message_id=message.message_id)
        assert self._channel is not None
        headers = {
            HEADER_ATTEMPTS: attempt,
            HEADER_ROUTING_KEY: original_routing_key(message),
            HEADER_LAST_ERROR: error,
        }
        try:
            await self._channel.default_exchange.publish(
                copy_message(message, headers, expiration=self.options.retry_delay_ms / 1000),
                routing_key=self.topology.retry_queue,
            )
        except Exception as publish_error:
            log.error(f"{self.name}_retry_publish_failed", error=short_error(publish_error))
            with contextlib.suppress(Exception):
                await message.nack(requeue=True)
            self._acks.settle(message, ack=False)
            return
        self._acks.settle(message, ack=True)


async def run_until_stopped(consumer: QueueConsumer[Any], stop: asyncio.Event, *, max_backoff: float = 30.0) -> None:
    """Keep a consumer running until `stop` is set, (re)connecting with backoff while the broker is away."""
    delay = 1.0
    while not stop.is_set():
        try:
            await consumer.start()
        except Exception as exc:
            log.warning(f"{consumer.name}_consumer_connect_failed", error=short_error(exc), retry_in=delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            delay = min(delay * 2, max_backoff)
            continue
        try:
            await stop.wait()  # connect_robust reconnects by itself from here on
        finally:
            await consumer.stop()
        return


@contextlib.asynccontextmanager
async def running_in_background(
    app: Any,
    name: str,
    consumer: QueueConsumer[Any],
    companions: dict[str, Callable[[asyncio.Event], Coroutine[Any, Any, None]]] | None = None,
) -> AsyncIterator[None]:
    """A consumer inside `serve`: run until the app stops (with `companions`, tasks that take the
    same stop event), its report in /readyz as `<name>_consumer`."""
    app.state.readiness_reporters[f"{name}_consumer"] = consumer.report
    stop = asyncio.Event()
    tasks = [asyncio.create_task(run_until_stopped(consumer, stop), name=f"{name}-consumer")]
    tasks += [asyncio.create_task(run(stop), name=task) for task, run in (companions or {}).items()]
    try:
        yield
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
