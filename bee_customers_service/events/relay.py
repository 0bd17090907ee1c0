"""The outbox relay: publishes committed outbox rows to RabbitMQ, at least once, in order.

How it works
- Leadership: every relay (one per `serve` process, plus any `bee-customers relay`) opens one
  dedicated PostgreSQL connection and tries `pg_try_advisory_lock(RELAY_LOCK_KEY)` on it. The
  holder is the only active relay; the others retry every `relay_poll_seconds`. A leader that
  dies loses its connection and with it the lock, so a standby takes over. Claims and marks run
  on that same connection, so a relay can only mark rows while it still holds the lock.
- Wake-ups: the leader LISTENs on `OUTBOX_CHANNEL` (enqueue NOTIFYs at commit) and works at once;
  a poll every `relay_poll_seconds` catches anything a lost notification would miss.
- Order: pending rows are claimed in id order (`relay_batch_size` at a time). Rows of one customer
  are published one after another, each after the previous one's confirm; different customers'
  rows are published concurrently and their confirms awaited together. A customer whose row
  failed is held back (later rows are neither claimed nor published) until that row goes out.
- Delivery: a row is marked `published_at` only after the broker confirmed it. A crash between the
  confirm and the mark publishes the row again later: delivery is at least once, and consumers
  dedupe on `event_id` (= AMQP `message_id`).
- Failures: a message the broker refuses (unroutable, nacked) is retried with exponential backoff
  per row (`available_at`); a broker that cannot be reached pauses the whole relay with exponential
  backoff. Both record `attempts` and `last_error` on the rows, capped at
  `relay_max_backoff_seconds`.
- Retention: published rows older than `outbox_retention_hours` are deleted by the leader.
- No broker configured: logged once; events stay in the outbox until a broker is configured.
"""

import asyncio
import contextlib
import signal
import zlib
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import asyncpg
import structlog
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from bee_customers_service.core.config import Settings
from bee_customers_service.core.metrics import EVENTS_PUBLISHED, OUTBOX_OLDEST_PENDING, OUTBOX_PENDING
from bee_customers_service.events.broker import (
    BrokerUnavailable,
    EventBroker,
    OutgoingEvent,
    PublishRejected,
    describe,
)
from bee_customers_service.events.outbox import OUTBOX_CHANNEL

log = structlog.get_logger(__name__)

# One lock per database, whatever the number of replicas (a stable 32-bit key from the name).
RELAY_LOCK_KEY = zlib.crc32(b"bee_customers_service.outbox_relay")
# First retry delay; doubled per failure up to `relay_max_backoff_seconds`.
BASE_BACKOFF_SECONDS = 0.5
PURGE_CHUNK = 5000
READINESS_TIMEOUT_SECONDS = 2.0

Role = Literal["starting", "standby", "leader", "disabled", "stopped"]

# Pending rows in outbox order, except those of a customer whose earlier row is waiting for a
# retry (a failed row is never overtaken by a later row of the same customer).
CLAIM_SQL = """
SELECT o.id, o.event_id::text AS event_id, o.event_name, o.customer_id, o.created_at,
       o.payload::text AS body, o.payload->>'trace_id' AS trace_id, o.payload->>'request_id' AS request_id
FROM outbox AS o
WHERE o.published_at IS NULL
  AND o.available_at <= now()
  AND NOT EXISTS (
      SELECT 1 FROM outbox AS earlier
      WHERE earlier.customer_id = o.customer_id
        AND earlier.published_at IS NULL
        AND earlier.id < o.id
        AND earlier.available_at > now()
  )
  AND o.id <> ALL($2::bigint[])
ORDER BY o.id
LIMIT $1
"""

MARK_PUBLISHED_SQL = """
UPDATE outbox SET published_at = now(), attempts = attempts + 1, last_error = NULL
WHERE id = ANY($1::bigint[]) AND published_at IS NULL
"""

# Mark the confirmed ids ($2) and claim the next batch in one round trip (the claim's snapshot
# predates the update, so it leaves those ids out explicitly).
MARKED_CTE = """
WITH marked AS (
    UPDATE outbox SET published_at = now(), attempts = attempts + 1, last_error = NULL
    WHERE id = ANY($2::bigint[]) AND published_at IS NULL
)"""
MARK_AND_CLAIM_SQL = MARKED_CTE + CLAIM_SQL

# `reschedule` pushes `available_at` back (a refused message); without it the row stays due and
# the relay-wide backoff paces the retry (the broker as a whole was unreachable).
RECORD_FAILURE_SQL = """
UPDATE outbox AS o
SET attempts = o.attempts + 1,
    last_error = f.error,
    available_at = CASE WHEN $3::boolean
        THEN now() + make_interval(secs => LEAST($5::float8, $4::float8 * power(2, o.attempts)))
        ELSE o.available_at END
FROM unnest($1::bigint[], $2::text[]) AS f(id, error)
WHERE o.id = f.id AND o.published_at IS NULL
"""

NEXT_RETRY_SQL = """
SELECT EXTRACT(EPOCH FROM min(available_at) - now())::float8
FROM outbox WHERE published_at IS NULL AND available_at > now()
"""

PURGE_SQL = """
DELETE FROM outbox WHERE id IN (
    SELECT id FROM outbox WHERE published_at < now() - make_interval(secs => $1::float8) LIMIT $2
)
"""

BACKLOG_SQL = """
SELECT count(*) AS pending,
       count(*) FILTER (WHERE last_error IS NOT NULL) AS failing,
       EXTRACT(EPOCH FROM now() - min(created_at))::float8 AS oldest_age
FROM outbox WHERE published_at IS NULL
"""


def asyncpg_dsn(database_url: str) -> str:
    """The SQLAlchemy URL (`postgresql+asyncpg://`) as a plain libpq-style DSN for asyncpg."""
    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


def backoff_seconds(failures: int, cap: float) -> float:
    return min(cap, BASE_BACKOFF_SECONDS * 2 ** max(failures - 1, 0))


@dataclass
class BatchOutcome:
    published: list[int] = field(default_factory=list)
    rejected: list[tuple[int, str]] = field(default_factory=list)
    unavailable: list[tuple[int, str]] = field(default_factory=list)
    deferred: list[int] = field(default_factory=list)


class OutboxRelay:
    """Moves committed outbox rows to the broker; see the module docstring for the guarantees."""

    def __init__(self, settings: Settings, database_url: str) -> None:
        self.settings = settings
        self.dsn = asyncpg_dsn(database_url)
        self.role: Role = "starting"
        self.broker: EventBroker | None = None
        self.published_count = 0
        self.last_error: str | None = None
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._retries_scheduled = True  # rows may be waiting for a retry from an earlier leader

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Run the relay in a background task."""
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name="outbox-relay")

    def request_stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    async def stop(self, grace_seconds: float = 30.0) -> None:
        """Stop after the batch in flight has been published and marked."""
        self.request_stop()
        task, self._task = self._task, None
        if task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(task), grace_seconds)
        except TimeoutError:
            log.warning("outbox_relay_stop_timeout", grace_seconds=grace_seconds)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def run(self) -> None:
        """Lead or stand by until stopped; survive database and broker outages."""
        if not self.settings.rabbitmq_url:
            self.role = "disabled"
            log.warning(
                "events_publishing_off",
                reason="BEE_RABBITMQ_URL is not set",
                detail="events are kept in the outbox and published once a broker is configured",
            )
            await self._stopping.wait()
            self.role = "stopped"
            return
        failures = 0
        try:
            while not self._stopping.is_set():
                try:
                    await self._session()
                    failures = 0
                except Exception as exc:  # the database went away (or a bug): start over after a pause
                    failures += 1
                    self.last_error = describe(exc)
                    delay = backoff_seconds(failures, self.settings.relay_max_backoff_seconds)
                    expected = isinstance(exc, OSError | TimeoutError | asyncpg.PostgresError | asyncpg.InterfaceError)
                    log.warning(
                        "outbox_relay_error",
                        error=self.last_error,
                        retry_in_seconds=delay,
                        exc_info=not expected,
                    )
                    await self._sleep(delay)
        finally:
            self.role = "stopped"
            if self.broker is not None:
                await self.broker.close()
                self.broker = None

    # --- one database session: stand by, then lead ------------------------------------------

    async def _session(self) -> None:
        connection: asyncpg.Connection = await asyncpg.connect(
            self.dsn,
            timeout=10,
            command_timeout=max(self.settings.database_statement_timeout_ms / 1000, 30.0),
            server_settings={
                "application_name": f"{self.settings.service_name}.relay",
                # This connection only writes bookkeeping (published_at, attempts, purges). If the
                # database crashes before such a write reaches the disk, the row is published once
                # more: a duplicate, never a loss. So it need not wait for the WAL flush.
                "synchronous_commit": "off",
            },
        )
        try:
            if not await self._acquire_leadership(connection):
                return
            log.info("outbox_relay_leader", lock_key=RELAY_LOCK_KEY)
            await connection.add_listener(OUTBOX_CHANNEL, self._on_notify)
            try:
                await self._lead(connection)
            finally:
                self.role = "standby"
                if self.broker is not None:
                    await self.broker.close()
                    self.broker = None
        finally:
            # Closing the session releases the advisory lock (and LISTEN) for the next leader.
            if not connection.is_closed():
                try:
                    await asyncio.wait_for(connection.close(), timeout=5)
                except Exception:
                    connection.terminate()

    async def _acquire_leadership(self, connection: asyncpg.Connection) -> bool:
        while not self._stopping.is_set():
            if await connection.fetchval("SELECT pg_try_advisory_lock($1::bigint)", RELAY_LOCK_KEY):
                self.role = "leader"
                return True
            if self.role != "standby":
                log.info("outbox_relay_standby", reason="another relay holds the lock")
            self.role = "standby"
            await self._sleep(self.settings.relay_poll_seconds)
        return False

    def _on_notify(self, *_args: object) -> None:
        self._wake.set()

    async def _lead(self, connection: asyncpg.Connection) -> None:
        loop = asyncio.get_running_loop()
        await self._purge(connection)
        await self._connected_broker()  # connect now, so /readyz tells the truth before any event
        next_purge = loop.time() + self.settings.relay_purge_interval_seconds
        broker_failures = 0
        batch_size = self.settings.relay_batch_size
        # Ids confirmed by the broker in the previous batch and not marked yet. After a full batch
        # they are marked while the next batch is being published; after a partial one, in the
        # same round trip as the next claim. Either way the claim leaves them out meanwhile.
        confirmed: list[int] = []
        mark_with_claim = False
        while not self._stopping.is_set():
            # Cleared before the claim: a NOTIFY for a commit after this point wakes the next wait.
            self._wake.clear()
            if confirmed and mark_with_claim:
                rows = await self._mark_published(connection, confirmed, then_claim=batch_size)
                self.published_count += len(confirmed)
                confirmed = []
            else:
                rows = await connection.fetch(CLAIM_SQL, batch_size, confirmed)
            if rows:
                outcome = await self._relay(connection, rows, confirmed)
                confirmed = []
                if outcome.unavailable:
                    broker_failures += 1
                    delay = backoff_seconds(broker_failures, self.settings.relay_max_backoff_seconds)
                    log.warning(
                        "events_broker_unavailable",
                        error=outcome.unavailable[0][1],
                        pending_in_batch=len(rows) - len(outcome.published),
                        retry_in_seconds=delay,
                    )
                    await self._sleep(delay)
                    continue
                if broker_failures:
                    log.info("events_broker_recovered", after_failures=broker_failures)
                broker_failures = 0
                confirmed = outcome.deferred
            if loop.time() >= next_purge:
                await self._purge(connection)
                next_purge = loop.time() + self.settings.relay_purge_interval_seconds
            mark_with_claim = len(rows) < batch_size
            if mark_with_claim and not confirmed:
                if self.broker is None or not self.broker.is_open:  # idle: try to reconnect meanwhile
                    await self._connected_broker()
                await self._wait_for_work(await self._idle_seconds(connection))
        await self._mark(connection, confirmed)  # stopping: finish the batch in flight

    async def _idle_seconds(self, connection: asyncpg.Connection) -> float:
        """The poll interval, or less when a refused row is due for its retry sooner."""
        wait_seconds = self.settings.relay_poll_seconds
        if self._retries_scheduled:
            due_in = await connection.fetchval(NEXT_RETRY_SQL)
            if due_in is None:
                self._retries_scheduled = False
            else:
                wait_seconds = min(wait_seconds, max(due_in, 0.01))
        return wait_seconds

    # --- one batch ------------------------------------------------------------------------

    async def _relay(
        self, connection: asyncpg.Connection, rows: Sequence[asyncpg.Record], previous: list[int]
    ) -> BatchOutcome:
        """Publish a claimed batch (marking the previous one meanwhile), then settle its outcome.

        When every row was confirmed, their marking is deferred to the next batch
        (`outcome.deferred`); otherwise they are marked and the failures recorded right away, so
        the next claim already holds back the customers whose rows failed.
        """
        outcome = BatchOutcome()
        broker = await self._connected_broker()
        if broker is None:
            await self._mark(connection, previous)
            error = self.broker.last_error if self.broker else "broker not connected"
            outcome.unavailable = [(row["id"], error or "broker not connected") for row in rows]
        elif not previous:
            await self._publish(broker, rows, outcome)
        else:
            publishing = asyncio.create_task(self._publish(broker, rows, outcome))
            try:
                await self._mark(connection, previous)  # the database works while the broker does
            except BaseException:  # the mark failed (or we are cancelled): abandon the batch
                publishing.cancel()
                await asyncio.gather(publishing, return_exceptions=True)
                raise
            await publishing
        if not outcome.rejected and not outcome.unavailable:
            outcome.deferred = outcome.published
            return outcome
        await self._mark(connection, outcome.published)
        if outcome.rejected:
            await self._record_failures(connection, outcome.rejected, reschedule=True)
            self._retries_scheduled = True
            log.warning(
                "events_publish_rejected",
                count=len(outcome.rejected),
                first_error=outcome.rejected[0][1],
                detail="retried with backoff; later events of the same customers wait",
            )
        if outcome.unavailable:
            await self._record_failures(connection, outcome.unavailable, reschedule=False)
        return outcome

    async def _mark(self, connection: asyncpg.Connection, ids: list[int]) -> None:
        if ids:
            await self._mark_published(connection, ids)
            self.published_count += len(ids)

    async def _connected_broker(self) -> EventBroker | None:
        if self.broker is None:
            assert self.settings.rabbitmq_url
            self.broker = EventBroker(
                self.settings.rabbitmq_url,
                self.settings.events_exchange,
                app_id=self.settings.service_name,
                reconnect_interval=min(5.0, self.settings.relay_max_backoff_seconds),
            )
        try:
            await self.broker.connect()
        except BrokerUnavailable:
            await self.broker.close()
            return None
        return self.broker

    async def _publish(self, broker: EventBroker, rows: Sequence[asyncpg.Record], outcome: BatchOutcome) -> None:
        # One chain per customer keeps its events in order; chains run concurrently, so the
        # confirms of a whole batch are awaited together instead of one round trip per event.
        chains: dict[Any, list[asyncpg.Record]] = {}
        for row in rows:
            chains.setdefault(row["customer_id"] or row["id"], []).append(row)

        async def publish_chain(chain: list[asyncpg.Record]) -> None:
            for row in chain:
                try:
                    await broker.publish(_outgoing(row))
                except PublishRejected as exc:
                    outcome.rejected.append((row["id"], str(exc)))
                    return
                except BrokerUnavailable as exc:
                    outcome.unavailable.append((row["id"], str(exc)))
                    return
                outcome.published.append(row["id"])
                EVENTS_PUBLISHED.labels(event=row["event_name"]).inc()

        timeout = self.settings.relay_publish_timeout_seconds
        try:
            async with asyncio.timeout(timeout):  # one timer for the whole batch of confirms
                if len(chains) == 1:  # one customer (or one event): no tasks needed
                    await publish_chain(next(iter(chains.values())))
                else:
                    await asyncio.gather(*(publish_chain(chain) for chain in chains.values()))
        except TimeoutError:
            error = f"no confirm from the broker within {timeout:g} s"
            broker.mark_unavailable(error)
            settled = set(outcome.published) | {row_id for row_id, _ in outcome.rejected + outcome.unavailable}
            outcome.unavailable.extend((row["id"], error) for row in rows if row["id"] not in settled)

    async def _mark_published(
        self, connection: asyncpg.Connection, ids: list[int], *, then_claim: int = 0
    ) -> list[asyncpg.Record]:
        """Set `published_at` on confirmed rows; with `then_claim`, also claim the next batch."""
        if then_claim:
            return await connection.fetch(MARK_AND_CLAIM_SQL, then_claim, ids)
        await connection.execute(MARK_PUBLISHED_SQL, ids)
        return []

    async def _record_failures(
        self, connection: asyncpg.Connection, failures: list[tuple[int, str]], *, reschedule: bool
    ) -> None:
        ids = [row_id for row_id, _ in failures]
        errors = [error[:1000] for _, error in failures]
        await connection.execute(
            RECORD_FAILURE_SQL,
            ids,
            errors,
            reschedule,
            BASE_BACKOFF_SECONDS,
            self.settings.relay_max_backoff_seconds,
        )

    async def _purge(self, connection: asyncpg.Connection) -> None:
        retention = self.settings.outbox_retention_hours * 3600
        total = 0
        while not self._stopping.is_set():
            status = await connection.execute(PURGE_SQL, retention, PURGE_CHUNK)
            deleted = int(status.rsplit(" ", 1)[-1])
            total += deleted
            if deleted < PURGE_CHUNK:
                break
        if total:
            log.info("outbox_purged", rows=total, retention_hours=self.settings.outbox_retention_hours)

    # --- waiting ----------------------------------------------------------------------------

    async def _wait_for_work(self, seconds: float) -> None:
        """Until a NOTIFY, a stop request, or the poll interval."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)

    async def _sleep(self, seconds: float) -> None:
        """A backoff pause that only a stop request cuts short."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    # --- readiness --------------------------------------------------------------------------

    def broker_report(self) -> dict[str, Any]:
        if self.role == "disabled":
            return {"status": "not_configured"}
        if self.role == "standby":
            return {"status": "standby", "detail": "another replica's relay is publishing"}
        if self.broker is None:
            return {"status": "not_connected", "error": self.last_error}
        return {"status": self.broker.state, "error": self.broker.last_error}


def _outgoing(row: asyncpg.Record) -> OutgoingEvent:
    return OutgoingEvent(
        event_id=row["event_id"],
        name=row["event_name"],
        body=row["body"].encode(),
        trace_id=row["trace_id"],
        request_id=row["request_id"],
        occurred_at=row["created_at"],
    )


# --- readiness and wiring into the app / the CLI ---------------------------------------------


async def outbox_backlog(engine: AsyncEngine) -> dict[str, Any]:
    """Pending events: how many, how many failed at least once, and the age of the oldest."""
    try:
        async with asyncio.timeout(READINESS_TIMEOUT_SECONDS), engine.connect() as connection:
            row = (await connection.execute(text(BACKLOG_SQL))).one()
    except Exception as exc:  # the database check reports the outage; this must not crash the probe
        return {"error": type(exc).__name__}
    return {
        "pending": row.pending,
        "failing": row.failing,
        "oldest_pending_age_seconds": round(row.oldest_age, 3) if row.oldest_age is not None else None,
    }


@asynccontextmanager
async def events_readiness(app: Any) -> AsyncIterator[None]:
    """Register the `events` entry of /readyz: broker state and outbox backlog (never fails it)."""
    settings: Settings = app.state.settings

    async def report() -> dict[str, Any]:
        relay: OutboxRelay | None = getattr(app.state, "outbox_relay", None)
        if not settings.rabbitmq_url:
            broker: dict[str, Any] = {"status": "not_configured"}
        elif relay is None:
            broker = {"status": "not_running_here", "detail": "the relay is disabled in this process"}
        else:
            broker = relay.broker_report()
        return {
            "status": broker["status"],
            "exchange": settings.events_exchange,
            "relay": relay.role if relay is not None else "not_running",
            "broker": broker,
            "outbox": await outbox_backlog(app.state.database.engine),
        }

    async def refresh_gauges() -> None:
        backlog = await outbox_backlog(app.state.database.engine)
        if "error" not in backlog:
            OUTBOX_PENDING.set(backlog["pending"])
            OUTBOX_OLDEST_PENDING.set(backlog["oldest_pending_age_seconds"] or 0)

    app.state.readiness_reporters["events"] = report
    app.state.metrics_refreshers.append(refresh_gauges)
    try:
        yield
    finally:
        app.state.readiness_reporters.pop("events", None)
        app.state.metrics_refreshers.remove(refresh_gauges)


@asynccontextmanager
async def relay_component(app: Any) -> AsyncIterator[OutboxRelay]:
    """The relay beside the API in `bee-customers serve`."""
    relay = OutboxRelay(app.state.settings, app.state.database.url)
    app.state.outbox_relay = relay
    relay.start()
    try:
        yield relay
    finally:
        await relay.stop()
        app.state.outbox_relay = None


async def run_standalone(settings: Settings, database_url: str) -> None:
    """`bee-customers relay`: run until SIGTERM/SIGINT, then finish the batch in flight."""
    relay = OutboxRelay(settings, database_url)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, relay.request_stop)
    await relay.run()
