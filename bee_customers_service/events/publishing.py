"""The leading relay's broker side: one EventBroker, the batches published through it, its backoff.

A batch is published one chain per customer and exchange (each row after the previous one's
confirm), chains concurrently, and each row is marked published as its confirm arrives
(ConfirmedMarks). A customer whose row failed is held back on that exchange by the claim
(events/outbox.py CLAIM_SQL) until it goes out.

Each row goes to the exchange its event's catalogue class names (`exchange_setting`): the events to
`BEE_EVENTS_EXCHANGE`, the audit records (`v1.audit.*`) to `BEE_AUDIT_EXCHANGE`; both are declared
when the broker connects.
"""

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import structlog

from bee_customers_service.core.config import Settings
from bee_customers_service.core.metrics import EVENTS_PUBLISHED
from bee_customers_service.events import outbox
from bee_customers_service.events.broker import BrokerUnavailable, EventBroker, OutgoingEvent, PublishRejected
from bee_customers_service.events.catalogue import exchange_setting_of
from bee_customers_service.events.readiness import DOWN_AFTER_SECONDS

log = structlog.get_logger(__name__)

# First retry delay; doubled per failure up to `relay_max_backoff_seconds`.
BASE_BACKOFF_SECONDS = 0.5
# During the broker backoff: how often a fresh connection is tried (when there is none to wait on).
BROKER_PROBE_SECONDS = 0.25
# The robust broker connection's retry interval once an established connection is lost.
BROKER_RECONNECT_SECONDS = 1.0
# Messages awaiting their confirm at any time (one per customer chain in flight).
PUBLISH_WINDOW = 8
# Confirmed rows are marked published in groups of up to about this many (see ConfirmedMarks).
MARK_GROUP_SIZE = 5
MARK_LINGER_SECONDS = 0.005


@dataclass
class BatchOutcome:
    published: list[int] = field(default_factory=list)
    rejected: list[tuple[int, str]] = field(default_factory=list)
    unavailable: list[tuple[int, str]] = field(default_factory=list)


class ConfirmedMarks:
    """Marks rows published as their confirms arrive, in small groups, one query at a time.

    The leader's connection runs one query at a time, so a single task writes the marks: each
    write takes the ids confirmed since the previous one, once `MARK_GROUP_SIZE` have come or
    `MARK_LINGER_SECONDS` after the first (a trickle is marked at once, a flood in groups). A relay
    killed mid-batch thus republishes only the rows whose confirm was in flight plus at most about
    one group. A failed mark (the connection is gone) is kept and raised by `flush`; publishing
    checks `failed` and stops early.
    """

    def __init__(self, mark: Callable[[list[int]], Awaitable[None]]) -> None:
        self._mark = mark
        self._pending: list[int] = []
        self._task: asyncio.Task[None] | None = None
        self._error: BaseException | None = None
        self._group_full = asyncio.Event()
        self._flushing = False

    @property
    def failed(self) -> bool:
        return self._error is not None

    def add(self, row_id: int) -> None:
        self._pending.append(row_id)
        if len(self._pending) >= MARK_GROUP_SIZE:
            self._group_full.set()
        if self._error is None and (self._task is None or self._task.done()):
            self._task = asyncio.create_task(self._write(), name="outbox-relay-marks")

    async def _write(self) -> None:
        try:
            while self._pending:
                if len(self._pending) < MARK_GROUP_SIZE and not self._flushing:
                    self._group_full.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._group_full.wait(), MARK_LINGER_SECONDS)
                ids, self._pending = self._pending, []
                await self._mark(ids)
        except BaseException as exc:
            self._error = exc
            raise

    async def flush(self) -> None:
        """Wait until every confirmed row is marked (raises what a mark raised)."""
        self._flushing = True
        self._group_full.set()
        while self._task is not None:
            task = self._task
            try:
                await task
            finally:
                if self._task is task:
                    self._task = None
            if self._pending and self._error is None:  # added while the last write finished
                self._task = asyncio.create_task(self._write(), name="outbox-relay-marks")

    async def abandon(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


def exchange_for(settings: Settings, event_name: str) -> str:
    """The exchange an event is published to: the setting its catalogue class names."""
    name: str = getattr(settings, exchange_setting_of(event_name))
    return name


def outgoing(row: asyncpg.Record, settings: Settings) -> OutgoingEvent:
    """A claimed outbox row as the broker publishes it."""
    return OutgoingEvent(
        event_id=row["event_id"],
        name=row["event_name"],
        body=row["body"].encode(),
        trace_id=row["trace_id"],
        request_id=row["request_id"],
        occurred_at=row["created_at"],
        exchange=exchange_for(settings, row["event_name"]),
    )


class RelayPublisher:
    """Publishes claimed batches for the leader; `mark` sets `published_at` on confirmed rows."""

    def __init__(self, settings: Settings, mark: Callable[[asyncpg.Connection, list[int]], Awaitable[None]]) -> None:
        self.settings = settings
        self.broker: EventBroker | None = None
        self.published_count = 0
        self.last_confirm_at: float | None = None  # time.monotonic() of the last broker confirm
        self._mark = mark

    async def connected(self) -> EventBroker | None:
        """The broker, connected now if it was not (None when it cannot be reached)."""
        if self.broker is None:
            assert self.settings.rabbitmq_url
            self.broker = EventBroker(
                self.settings.rabbitmq_url,
                self.settings.events_exchange,
                other_exchanges=[self.settings.audit_exchange],
                app_id=self.settings.service_name,
                reconnect_interval=min(BROKER_RECONNECT_SECONDS, self.settings.relay_max_backoff_seconds),
                down_after_seconds=DOWN_AFTER_SECONDS,
            )
        try:
            await self.broker.connect()
        except BrokerUnavailable:
            await self.broker.close()
            return None
        return self.broker

    async def close(self) -> None:
        if self.broker is not None:
            await self.broker.close()
            self.broker = None

    async def relay(
        self, connection: asyncpg.Connection, rows: Sequence[asyncpg.Record], *, halted: Callable[[], bool]
    ) -> BatchOutcome:
        """Publish a claimed batch, marking each row as its confirm arrives, then record the failures.

        `halted()` (the database connection is lost) stops publishing: the marks could not be written.
        """
        outcome = BatchOutcome()
        broker = await self.connected()
        if broker is None:
            error = self.broker.last_error if self.broker else "broker not connected"
            outcome.unavailable = [(row["id"], error or "broker not connected") for row in rows]
        else:
            marks = ConfirmedMarks(lambda ids: self._write_marks(connection, ids))
            try:
                await self._publish(broker, rows, outcome, marks, halted)
            except BaseException:
                await marks.abandon()
                raise
            await marks.flush()
        await self._record_failures(connection, outcome)
        return outcome

    async def backoff(
        self,
        delay: float,
        reconnects: int,
        *,
        interrupted: Callable[[], bool],
        pause: Callable[[float], Awaitable[None]],
    ) -> None:
        """The pause after the broker failed, cut short when it is back (or when `interrupted()`)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + delay
        while not interrupted():
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            step = min(remaining, BROKER_PROBE_SECONDS)
            broker = self.broker
            if broker is not None and broker.is_open:
                # The robust connection reconnects by itself: its return ends the pause at once.
                if await broker.wait_recovered(reconnects, step):
                    return
            else:
                await pause(step)
                if await self.connected() is not None:  # a fresh connection: try again now
                    return

    async def _write_marks(self, connection: asyncpg.Connection, ids: list[int]) -> None:
        if ids:
            await self._mark(connection, ids)
            self.published_count += len(ids)

    async def _publish(
        self,
        broker: EventBroker,
        rows: Sequence[asyncpg.Record],
        outcome: BatchOutcome,
        marks: ConfirmedMarks,
        halted: Callable[[], bool],
    ) -> None:
        # At most PUBLISH_WINDOW chains in flight, so few messages are unconfirmed when the relay dies.
        # One chain per customer and exchange (the claim holds a customer back per exchange too).
        chains: dict[Any, list[asyncpg.Record]] = {}
        for row in rows:
            exchange = exchange_for(self.settings, row["event_name"])
            chains.setdefault((exchange, row["customer_id"] or row["id"]), []).append(row)

        async def publish_chain(chain: list[asyncpg.Record]) -> None:
            for row in chain:
                if marks.failed or halted():
                    return
                try:
                    await broker.publish(outgoing(row, self.settings))
                except PublishRejected as exc:
                    outcome.rejected.append((row["id"], str(exc)))
                    return
                except BrokerUnavailable as exc:
                    outcome.unavailable.append((row["id"], str(exc)))
                    return
                outcome.published.append(row["id"])
                marks.add(row["id"])
                self.last_confirm_at = time.monotonic()
                EVENTS_PUBLISHED.labels(event=row["event_name"]).inc()

        seconds = self.settings.relay_publish_timeout_seconds
        try:
            async with asyncio.timeout(seconds):  # one timer for the whole batch of confirms
                if len(chains) == 1:  # one customer (or one event): no tasks needed
                    await publish_chain(next(iter(chains.values())))
                else:
                    queue = iter(chains.values())

                    async def publish_chains() -> None:
                        for chain in queue:
                            await publish_chain(chain)

                    await asyncio.gather(*(publish_chains() for _ in range(min(PUBLISH_WINDOW, len(chains)))))
        except TimeoutError:
            error = f"no confirm from the broker within {seconds:g} s"
            broker.mark_unavailable(error)
            settled = set(outcome.published) | {row_id for row_id, _ in outcome.rejected + outcome.unavailable}
            outcome.unavailable.extend((row["id"], error) for row in rows if row["id"] not in settled)

    async def _record_failures(self, connection: asyncpg.Connection, outcome: BatchOutcome) -> None:
        """Refused rows back off on their own; unavailable ones stay due (the relay-wide backoff paces them)."""
        cap = self.settings.relay_max_backoff_seconds
        if outcome.rejected:
            await outbox.record_failures(
                connection, outcome.rejected, reschedule=True, base_backoff=BASE_BACKOFF_SECONDS, max_backoff=cap
            )
            log.warning(
                "events_publish_rejected",
                count=len(outcome.rejected),
                first_error=outcome.rejected[0][1],
                detail="retried with backoff; later events of the same customers wait",
            )
        if outcome.unavailable:
            await outbox.record_failures(
                connection, outcome.unavailable, reschedule=False, base_backoff=BASE_BACKOFF_SECONDS, max_backoff=cap
            )
