"""The activity consumer: bee.orders.events + bee.scheduling.events -> history and statistics.

Topology (declared on start, idempotent; docs/events.md):

    bee.orders.events (topic) ─┐ v1.order.completed|returned|cancelled
    bee.scheduling.events ─────┴─> bee.customers.activity (durable; x-dead-letter-exchange = DLX)
                                      │ transient failure: republished to <queue>.retry with a
                                      │ per-message TTL, which dead-letters back into the queue
                                      └ poison / gave up: published to the DLX with the reason
    bee.customers.activity.dlx (topic) -> bee.customers.activity.dlq

Messages are pulled into a local buffer (prefetch bounds it) and `concurrency` workers apply them
in batches: one database transaction per batch, each message with its own processed_events row,
acknowledged only after the commit. A batch that fails is split and its messages applied one by
one, so one bad message never holds back the others.
"""

import asyncio
import contextlib
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import aio_pika
import structlog
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue, AbstractRobustConnection
from sqlalchemy.exc import DBAPIError

from bee_customers_service.activity import contract
from bee_customers_service.activity import service as activity_service
from bee_customers_service.activity.contract import Change, Rejected
from bee_customers_service.core.config import Settings
from bee_customers_service.core.db import Database
from bee_customers_service.core.metrics import EVENTS_CONSUMED

log = structlog.get_logger(__name__)

HEADER_ATTEMPTS = "x-bee-attempts"
HEADER_ROUTING_KEY = "x-bee-routing-key"
HEADER_REASON = "x-bee-dead-letter-reason"
HEADER_LAST_ERROR = "x-bee-last-error"
HEADER_SOURCE_QUEUE = "x-bee-source-queue"

# Deadlocks and serialization failures are retried at once, in-process, before anything else.
_RETRYABLE_SQLSTATES = {"40P01", "40001"}
_IMMEDIATE_RETRIES = 3


Delivery = tuple[AbstractIncomingMessage, Change | Rejected]


def retry_queue_name(settings: Settings) -> str:
    return f"{settings.activity_queue}.retry"


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


async def delete_topology(channel: AbstractChannel, settings: Settings) -> None:
    """Remove what `declare_topology` made (throwaway topologies of tests and benchmarks)."""
    for queue in (settings.activity_queue, retry_queue_name(settings), settings.activity_dead_letter_queue):
        await channel.queue_delete(queue)
    for exchange in (settings.orders_exchange, settings.scheduling_exchange, settings.activity_dead_letter_exchange):
        await channel.exchange_delete(exchange)


async def declare_topology(channel: AbstractChannel, settings: Settings) -> AbstractQueue:
    """Declare the upstream exchanges, the queue and its retry and dead-letter companions."""
    durable_topic = {"type": aio_pika.ExchangeType.TOPIC, "durable": True}
    orders = await channel.declare_exchange(settings.orders_exchange, **durable_topic)
    scheduling = await channel.declare_exchange(settings.scheduling_exchange, **durable_topic)
    dead_letters = await channel.declare_exchange(settings.activity_dead_letter_exchange, **durable_topic)

    dlq = await channel.declare_queue(settings.activity_dead_letter_queue, durable=True)
    await dlq.bind(dead_letters, routing_key="#")
    # No consumer reads the retry queue: a message waits out its per-message TTL there, then
    # RabbitMQ dead-letters it back into the main queue through the default exchange.
    await channel.declare_queue(
        retry_queue_name(settings),
        durable=True,
        arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": settings.activity_queue},
    )
    queue = await channel.declare_queue(
        settings.activity_queue,
        durable=True,
        # A message rejected without requeue (our last resort when publishing to the DLX failed)
        # still lands in the dead-letter queue rather than being dropped.
        arguments={"x-dead-letter-exchange": settings.activity_dead_letter_exchange},
    )
    for key in contract.ORDER_KEYS:
        await queue.bind(orders, routing_key=key)
    for key in contract.APPOINTMENT_KEYS:
        await queue.bind(scheduling, routing_key=key)
    return queue


def original_routing_key(message: AbstractIncomingMessage) -> str:
    """The upstream routing key, also for a message that came back through the retry queue."""
    header = (message.headers or {}).get(HEADER_ROUTING_KEY)
    if isinstance(header, bytes):
        header = header.decode(errors="replace")
    return str(header) if header else (message.routing_key or "")


def _attempts(message: AbstractIncomingMessage) -> int:
    try:
        return int((message.headers or {}).get(HEADER_ATTEMPTS, 0))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 0


def _short_error(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"[:300]


class AckWindow:
    """Acknowledges settled deliveries of ONE channel with one `basic.ack(multiple=True)` per
    contiguous run of settled delivery tags.

    Workers settle messages out of order; a delivery tag is acknowledged (with every tag below
    it) only once all of them are settled, so nothing is acknowledged before its commit. One
    frame per batch instead of one per message: per-message acks were the consumer's bottleneck.
    """

    def __init__(self, channel: Any) -> None:
        self.channel = channel
        self._entries: OrderedDict[int, list[Any]] = OrderedDict()  # tag -> [message, settled, to_ack]

    def add(self, message: AbstractIncomingMessage) -> None:
        self._entries[message.delivery_tag or 0] = [message, False, False]

    def settle(self, message: AbstractIncomingMessage, *, ack: bool) -> None:
        entry = self._entries.get(message.delivery_tag or 0)
        if entry is not None and entry[0] is message:
            entry[1], entry[2] = True, ack

    def take_ready(self) -> AbstractIncomingMessage | None:
        """Drop the settled prefix; the last message in it that needs an ack (None if none)."""
        last: AbstractIncomingMessage | None = None
        while self._entries:
            message, settled, to_ack = next(iter(self._entries.values()))
            if not settled:
                break
            self._entries.popitem(last=False)
            if to_ack:
                last = message
        return last


class AckTracker:
    """One AckWindow per underlying AMQP channel: after a reconnect the delivery tags start
    again at 1 on a new channel, and the old channel's messages can no longer be acknowledged."""

    def __init__(self) -> None:
        self._windows: dict[int, AckWindow] = {}
        self._lock = asyncio.Lock()

    def _window(self, message: AbstractIncomingMessage) -> AckWindow | None:
        try:
            channel = message.channel
        except Exception:  # closed: RabbitMQ has requeued its unacknowledged messages already
            return None
        window = self._windows.get(id(channel))
        if window is None or window.channel is not channel:
            self._windows = {k: w for k, w in self._windows.items() if not w.channel.is_closed}
            window = self._windows[id(channel)] = AckWindow(channel)
        return window

    def add(self, message: AbstractIncomingMessage) -> None:
        window = self._window(message)
        if window is not None:
            window.add(message)

    def settle(self, message: AbstractIncomingMessage, *, ack: bool) -> None:
        window = self._window(message)
        if window is not None:
            window.settle(message, ack=ack)

    async def flush(self) -> None:
        async with self._lock:  # acks of one channel must leave in tag order
            for window in list(self._windows.values()):
                last = window.take_ready()
                if last is None:
                    continue
                try:
                    await last.ack(multiple=True)
                except Exception as exc:  # the channel died after our commit: redeliveries are duplicates
                    log.warning("activity_ack_failed", error=_short_error(exc))


class ActivityConsumer:
    """Consumes upstream events until stopped. `async with consumer.running(): ...`."""

    def __init__(self, settings: Settings, database: Database) -> None:
        self.settings = settings
        self.database = database
        self.counters = ConsumerCounters()
        self.connected = False
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractChannel | None = None
        self._queue: AbstractQueue | None = None
        self._consumer_tag: str | None = None
        self._buffers: list[asyncio.Queue[Delivery]] = self._new_buffers()
        self._acks = AckTracker()
        self._workers: list[asyncio.Task[None]] = []
        self._in_flight = 0

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect, declare the topology and start consuming (raises when the broker does not answer)."""
        assert self.settings.rabbitmq_url, "BEE_RABBITMQ_URL is required"
        self._connection = await aio_pika.connect_robust(
            self.settings.rabbitmq_url, client_properties={"connection_name": "bee_customers_service.activity"}
        )
        try:
            self._channel = await self._connection.channel(publisher_confirms=True)
            await self._channel.set_qos(prefetch_count=self.settings.activity_prefetch)
            self._queue = await declare_topology(self._channel, self.settings)
            self._workers = [
                asyncio.create_task(self._work(self._buffers[n]), name=f"activity-worker-{n}")
                for n in range(self.settings.activity_concurrency)
            ]
            self._consumer_tag = await self._queue.consume(self._receive)
        except BaseException:
            await self._close()
            raise
        self.connected = True
        log.info(
            "activity_consumer_started",
            queue=self.settings.activity_queue,
            prefetch=self.settings.activity_prefetch,
            concurrency=self.settings.activity_concurrency,
            batch_size=self.settings.activity_batch_size,
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
        self._acks = AckTracker()
        self.connected = False

    async def stop(self, *, drain_timeout: float = 10.0) -> None:
        """Stop taking messages, finish the ones in hand, close the connection.

        Messages still in the local buffer are not acknowledged; closing the channel hands them
        back to RabbitMQ for the next consumer.
        """
        if self._queue is not None and self._consumer_tag is not None:
            with contextlib.suppress(Exception):
                await self._queue.cancel(self._consumer_tag)
        deadline = time.monotonic() + drain_timeout
        while (self._in_flight or any(not b.empty() for b in self._buffers)) and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        await self._close()
        log.info("activity_consumer_stopped", **asdict(self.counters))

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator["ActivityConsumer"]:
        await self.start()
        try:
            yield self
        finally:
            await self.stop()

    async def report(self) -> dict[str, Any]:
        """Readiness detail (never makes the service unready: the API works without the consumer).

        `up`: consuming over a live connection; `reconnecting`: the connection was lost and the
        robust connection is re-opening it (deliveries resume by themselves); `down`: not connected
        (the broker refused the first connection, or the consumer stopped).
        """
        connection = self._connection
        if not self.connected or connection is None or connection.is_closed:
            status = "down"
        elif not connection.connected.is_set():
            status = "reconnecting"
        else:
            status = "up"
        return {"status": status, **asdict(self.counters)}

    # --- receiving and batching ----------------------------------------------------------------

    def _new_buffers(self) -> list[asyncio.Queue[Delivery]]:
        return [asyncio.Queue() for _ in range(self.settings.activity_concurrency)]

    async def _receive(self, message: AbstractIncomingMessage) -> None:
        """Parse, then hand the message to the worker that owns its customer.

        One customer's messages always go to the same worker, so the workers of this process
        never wait on each other's row locks (replicas still may; the locks keep that correct).
        """
        self.counters.received += 1
        self._acks.add(message)
        parsed = contract.parse(original_routing_key(message), message.body)
        if isinstance(parsed, Rejected):
            worker = self.counters.received % len(self._buffers)
        else:
            worker = hash((parsed.business_id, parsed.user_id)) % len(self._buffers)
        await self._buffers[worker].put((message, parsed))

    async def _next_batch(self, buffer: "asyncio.Queue[Delivery]") -> list[Delivery]:
        batch = [await buffer.get()]
        self._in_flight += 1
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.activity_batch_linger_ms / 1000
        try:
            while len(batch) < self.settings.activity_batch_size:
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

    async def _work(self, buffer: "asyncio.Queue[Delivery]") -> None:
        while True:
            batch = await self._next_batch(buffer)
            try:
                await self.handle(batch)
            except asyncio.CancelledError:
                raise
            except Exception:  # never let a worker die: log, the messages will come back
                log.exception("activity_batch_crashed", size=len(batch))
                for message, _ in batch:
                    with contextlib.suppress(Exception):
                        await message.nack(requeue=True)
                    self._acks.settle(message, ack=False)
            finally:
                self._in_flight -= 1
                await self._acks.flush()

    # --- applying ------------------------------------------------------------------------------

    async def handle(self, batch: Sequence[Delivery]) -> None:
        """Apply a batch in one transaction and acknowledge; poison to the DLQ, failures to retry."""
        self.counters.batches += 1
        parsed: list[tuple[AbstractIncomingMessage, Change]] = []
        for message, result in batch:
            if isinstance(result, Rejected):
                await self._dead_letter(message, result.reason)
            else:
                parsed.append((message, result))
        if not parsed:
            return
        try:
            outcomes = await self._apply([change for _, change in parsed])
        except Exception as exc:
            if len(parsed) == 1:
                await self._retry_later(parsed[0][0], exc)
                return
            log.warning("activity_batch_split", size=len(parsed), error=_short_error(exc))
            for pair in parsed:
                await self.handle_one(*pair)
            return
        for (message, _), outcome in zip(parsed, outcomes, strict=True):
            await self._settle(message, outcome)

    async def handle_one(self, message: AbstractIncomingMessage, change: Change) -> None:
        try:
            (outcome,) = await self._apply([change])
        except Exception as exc:
            await self._retry_later(message, exc)
            return
        await self._settle(message, outcome)

    async def _apply(self, changes: list[Change]) -> list[activity_service.Outcome]:
        for attempt in range(_IMMEDIATE_RETRIES):
            async with self.database.sessionmaker() as session:
                try:
                    outcomes = await activity_service.apply_changes(session, changes, settings=self.settings)
                    await session.commit()
                    return outcomes
                except DBAPIError as exc:
                    await session.rollback()
                    sqlstate = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
                    if sqlstate in _RETRYABLE_SQLSTATES and attempt + 1 < _IMMEDIATE_RETRIES:
                        await asyncio.sleep(0.01 * (attempt + 1))
                        continue
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    async def _settle(self, message: AbstractIncomingMessage, outcome: activity_service.Outcome) -> None:
        if isinstance(outcome, activity_service.Refused):
            await self._dead_letter(message, outcome.reason)
            return
        if outcome == activity_service.APPLIED:
            self.counters.applied += 1
            EVENTS_CONSUMED.labels(result="applied").inc()
            if message.timestamp is not None:
                self.counters.last_lag_seconds = max(0.0, time.time() - message.timestamp.timestamp())
        else:
            self.counters.duplicates += 1
            EVENTS_CONSUMED.labels(result="duplicate").inc()
        await self._ack(message)

    async def _ack(self, message: AbstractIncomingMessage) -> None:
        """Mark as done; the worker's flush after the batch sends the (multiple) ack."""
        self._acks.settle(message, ack=True)

    def _copy(self, message: AbstractIncomingMessage, headers: dict[str, Any], **kwargs: Any) -> aio_pika.Message:
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

    async def _dead_letter(self, message: AbstractIncomingMessage, reason: str) -> None:
        """Park the message in the DLQ with the reason (a header), then acknowledge it."""
        routing_key = original_routing_key(message)
        self.counters.dead_lettered += 1
        EVENTS_CONSUMED.labels(result="dead_lettered").inc()
        log.warning(
            "activity_message_dead_lettered", reason=reason, routing_key=routing_key, message_id=message.message_id
        )
        assert self._channel is not None
        try:
            exchange = await self._channel.get_exchange(self.settings.activity_dead_letter_exchange, ensure=False)
            await exchange.publish(
                self._copy(
                    message,
                    {
                        HEADER_REASON: reason,
                        HEADER_ROUTING_KEY: routing_key,
                        HEADER_SOURCE_QUEUE: self.settings.activity_queue,
                        HEADER_ATTEMPTS: _attempts(message) + 1,
                    },
                ),
                routing_key=routing_key or "unroutable",
            )
        except Exception as exc:
            # Without a confirmed copy in the DLQ, let RabbitMQ dead-letter it (x-death says why).
            log.error("activity_dead_letter_publish_failed", error=_short_error(exc))
            with contextlib.suppress(Exception):
                await message.reject(requeue=False)
            self._acks.settle(message, ack=False)
            return
        await self._ack(message)

    async def _retry_later(self, message: AbstractIncomingMessage, exc: BaseException) -> None:
        """A failure that may pass (database down ...): try again after the retry delay, N times."""
        attempts = _attempts(message) + 1
        error = _short_error(exc)
        if attempts >= self.settings.activity_max_attempts:
            await self._dead_letter(message, f"gave up after {attempts} attempts: {error}")
            return
        self.counters.retried += 1
        EVENTS_CONSUMED.labels(result="retried").inc()
        log.warning("activity_message_retry", attempts=attempts, error=error, message_id=message.message_id)
        assert self._channel is not None
        try:
            await self._channel.default_exchange.publish(
                self._copy(
                    message,
                    {
                        HEADER_ATTEMPTS: attempts,
                        HEADER_ROUTING_KEY: original_routing_key(message),
                        HEADER_LAST_ERROR: error,
                    },
                    expiration=self.settings.activity_retry_delay_ms / 1000,
                ),
                routing_key=retry_queue_name(self.settings),
            )
        except Exception as publish_error:
            log.error("activity_retry_publish_failed", error=_short_error(publish_error))
            with contextlib.suppress(Exception):
                await message.nack(requeue=True)
            self._acks.settle(message, ack=False)
            return
        await self._ack(message)


async def run_until_stopped(consumer: ActivityConsumer, stop: asyncio.Event, *, max_backoff: float = 30.0) -> None:
    """Keep a consumer running until `stop` is set, (re)connecting with backoff while the broker is away."""
    delay = 1.0
    while not stop.is_set():
        try:
            await consumer.start()
        except Exception as exc:
            log.warning("activity_consumer_connect_failed", error=_short_error(exc), retry_in=delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            delay = min(delay * 2, max_backoff)
            continue
        try:
            await stop.wait()  # connect_robust reconnects by itself from here on
        finally:
            await consumer.stop()
        return


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
        app.state.readiness_reporters["activity_consumer"] = consumer.report
        stop = asyncio.Event()
        task = asyncio.create_task(run_until_stopped(consumer, stop), name="activity-consumer")
        try:
            yield
        finally:
            stop.set()
            await asyncio.gather(task, return_exceptions=True)

    return component()
