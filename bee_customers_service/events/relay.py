"""The outbox relay: publishes committed outbox rows to RabbitMQ, at least once, in order.

How it works
- Leadership: every relay (one per `serve` process, plus any `bee-customers relay`) opens one
  dedicated PostgreSQL connection (application_name `<service>.relay:<host>:<pid>`) and tries
  `pg_try_advisory_lock(RELAY_LOCK_KEY)` on it. The holder is the only active relay; the others
  retry every `relay_poll_seconds`. A leader that dies loses its connection and with it the lock,
  so a standby takes over. Claims and marks run on that same connection, so a relay can only mark
  rows while it still holds the lock. A lost connection is noticed at once (asyncpg's termination
  listener wakes the relay), the relay reconnects after a short pause and retries the lock every
  `FAST_RELOCK_SECONDS` for a while (the server may need a moment to drop the dead session).
- Wake-ups: the leader LISTENs on `OUTBOX_CHANNEL` (enqueue NOTIFYs at commit) and works at once;
  a poll every `relay_poll_seconds` catches anything a lost notification would miss.
- Order: pending rows are claimed in id order (`relay_batch_size` at a time). Rows of one customer
  are published one after another, each after the previous one's confirm; different customers'
  rows are published concurrently and their confirms awaited together. A customer whose row
  failed is held back (later rows are neither claimed nor published) until that row goes out.
- Delivery: a row is marked `published_at` only after the broker confirmed it, as its confirm
  arrives: one task writes the marks on the leader's connection, each UPDATE taking every id
  confirmed since the previous one. A crash publishes again only the rows whose confirm was in
  flight or whose mark was not written yet: delivery is at least once, and consumers dedupe on
  `event_id` (= AMQP `message_id`).
- Failures: a message the broker refuses (unroutable, nacked) is retried with exponential backoff
  per row (`available_at`); a broker that cannot be reached pauses the whole relay with exponential
  backoff, cut short as soon as the broker is back (the robust connection's reconnect, or a fresh
  connection probed every `BROKER_PROBE_SECONDS`). Both record `attempts` and `last_error` on the rows, capped at
  `relay_max_backoff_seconds`.
- Retention: published rows older than `outbox_retention_hours` are deleted by the leader.
- No broker configured: logged once; events stay in the outbox until a broker is configured.
- Readiness (`events` in /readyz): relay `leader` | `standby` (with the lock holder's
  application_name and pid) | `reconnecting` (its database session was lost, retrying) | `down`
  (reconnecting for `DOWN_AFTER_SECONDS`, or the relay task died); broker `up` | `reconnecting` |
  `down`; the backlog and the seconds since the last publish.
"""

import asyncio
import contextlib
import os
import signal
import socket
import time
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
# The database session's reconnect pause is capped lower than the broker's: an attempt against a
# database that is away costs one refused connection.
DB_RECONNECT_MAX_SECONDS = 2.0
# After losing a leading session, the lock is retried this often (not every poll) for a while.
FAST_RELOCK_SECONDS = 0.2
FAST_RELOCK_WINDOW_SECONDS = 10.0
# During the broker backoff: how often a fresh connection is tried (when there is none to wait on).
BROKER_PROBE_SECONDS = 0.25
# The robust broker connection's retry interval once an established connection is lost.
BROKER_RECONNECT_SECONDS = 1.0
# Messages awaiting their confirm at any time (one per customer chain in flight).
PUBLISH_WINDOW = 8
# Confirmed rows are marked published in groups of up to about this many (see ConfirmedMarks).
MARK_GROUP_SIZE = 5
MARK_LINGER_SECONDS = 0.005
# `reconnecting` (relay or broker) turns into `down` after this long.
DOWN_AFTER_SECONDS = 30.0

Role = Literal["starting", "standby", "leader", "reconnecting", "down", "disabled", "stopped"]

# Who holds the relay lock (one bigint key: classid = high 32 bits, objid = low 32 bits, objsubid 1).
LOCK_HOLDER_SQL = """
SELECT a.pid, a.application_name
FROM pg_locks AS l JOIN pg_stat_activity AS a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
  AND l.classid = ($1::bigint >> 32)::oid AND l.objid = ($1::bigint & 4294967295)::oid
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
LIMIT 1
"""


class DatabaseConnectionLost(ConnectionError):
    """The relay's own PostgreSQL connection closed under it (the lock went with it)."""


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
       EXTRACT(EPOCH FROM now() - min(created_at))::float8 AS oldest_age,
       (SELECT EXTRACT(EPOCH FROM now() - max(published_at))::float8
        FROM outbox WHERE published_at IS NOT NULL) AS since_last_publish
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


class ConfirmedMarks:
    """Marks rows published as their confirms arrive, in small groups, one query at a time.

    The leader's connection runs one query at a time, so a single task writes the marks: each
    UPDATE takes the ids confirmed since the previous one, once `MARK_GROUP_SIZE` have come or
    `MARK_LINGER_SECONDS` after the first (so a trickle is marked at once and a flood in groups,
    not one statement per row). A relay killed mid-batch thus republishes only the rows whose
    confirm was in flight plus at most about one group. A failed mark (the connection is gone) is
    kept and raised by `flush`; publishing checks `failed` and stops early.
    """

    def __init__(self, relay: "OutboxRelay", connection: asyncpg.Connection) -> None:
        self._relay = relay
        self._connection = connection
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
                await self._relay._mark(self._connection, ids)
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


class OutboxRelay:
    """Moves committed outbox rows to the broker; see the module docstring for the guarantees."""

    def __init__(self, settings: Settings, database_url: str) -> None:
        self.settings = settings
        self.dsn = asyncpg_dsn(database_url)
        self.application_name = f"{settings.service_name}.relay:{socket.gethostname()}:{os.getpid()}"[:63]
        self.role: Role = "starting"
        self.broker: EventBroker | None = None
        self.published_count = 0
        self.last_error: str | None = None
        self.lock_holder: dict[str, Any] | None = None  # who leads, while this relay stands by
        self.last_confirm_at: float | None = None  # time.monotonic() of the last broker confirm
        self._role_since = time.monotonic()
        self._trouble_since: float | None = None  # first failure of the current database outage
        self._relock_until = 0.0
        self._lost_backend_pids: set[int] = set()  # server pids of our sessions that died leading
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()
        self._db_lost = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._retries_scheduled = True  # rows may be waiting for a retry from an earlier leader

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Run the relay in a background task."""
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name="outbox-relay")

    def _set_role(self, role: Role) -> None:
        if role != self.role:
            self.role = role
            self._role_since = time.monotonic()

    @property
    def state(self) -> str:
        """The role as readiness reports it: `reconnecting` turns `down` after DOWN_AFTER_SECONDS."""
        if self._task is not None and self._task.done() and not self._stopping.is_set():
            return "down"  # the relay task ended by itself (a bug): nothing publishes here
        trouble_since = self._trouble_since
        if (
            self.role == "reconnecting"
            and trouble_since is not None
            and time.monotonic() - trouble_since >= DOWN_AFTER_SECONDS
        ):
            return "down"
        return self.role

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
            self._set_role("disabled")
            log.warning(
                "events_publishing_off",
                reason="BEE_RABBITMQ_URL is not set",
                detail="events are kept in the outbox and published once a broker is configured",
            )
            await self._stopping.wait()
            self._set_role("stopped")
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
                    if self._trouble_since is None:
                        self._trouble_since = time.monotonic()
                    self._set_role("reconnecting")
                    expected = isinstance(exc, OSError | TimeoutError | asyncpg.PostgresError | asyncpg.InterfaceError)
                    cap = self.settings.relay_max_backoff_seconds
                    delay = backoff_seconds(failures, min(cap, DB_RECONNECT_MAX_SECONDS) if expected else cap)
                    log.warning(
                        "outbox_relay_error",
                        error=self.last_error,
                        retry_in_seconds=delay,
                        exc_info=not expected,
                    )
                    await self._sleep(delay)
        finally:
            self._set_role("stopped")
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
                "application_name": self.application_name,
                # This connection only writes bookkeeping (published_at, attempts, purges). If the
                # database crashes before such a write reaches the disk, the row is published once
                # more: a duplicate, never a loss. So it need not wait for the WAL flush.
                "synchronous_commit": "off",
            },
        )
        lost = self._db_lost = asyncio.Event()

        def on_terminated(_connection: object) -> None:  # the socket closed: wake whatever waits
            lost.set()
            self._wake.set()

        connection.add_termination_listener(on_terminated)
        try:
            if not await self._acquire_leadership(connection):
                return
            log.info("outbox_relay_leader", lock_key=RELAY_LOCK_KEY, application_name=self.application_name)
            await connection.add_listener(OUTBOX_CHANNEL, self._on_notify)
            try:
                await self._lead(connection)
            except BaseException:
                # Try to take the lock back quickly (or let a standby have it) once reconnected.
                self._relock_until = time.monotonic() + FAST_RELOCK_WINDOW_SECONDS
                self._lost_backend_pids = {connection.get_server_pid()}
                raise
            finally:
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
            self._check_connection(connection)
            if await connection.fetchval("SELECT pg_try_advisory_lock($1::bigint)", RELAY_LOCK_KEY):
                self.lock_holder = None
                self.last_error = None
                self._trouble_since = None
                self._set_role("leader")
                return True
            holder = await connection.fetchrow(LOCK_HOLDER_SQL, RELAY_LOCK_KEY)
            self.lock_holder = None if holder is None else {"application_name": holder[1], "pid": holder[0]}
            if holder is not None and holder["pid"] in self._lost_backend_pids:
                # Our own lost session, which the server has not dropped yet: not a standby.
                self._set_role("reconnecting")
            else:
                if self.role != "standby":
                    log.info("outbox_relay_standby", reason="another relay holds the lock", holder=self.lock_holder)
                self._trouble_since = None
                self.last_error = None
                self._set_role("standby")
            fast = time.monotonic() < self._relock_until
            await self._sleep_unless_lost(FAST_RELOCK_SECONDS if fast else self.settings.relay_poll_seconds)
        return False

    def _check_connection(self, connection: asyncpg.Connection) -> None:
        if self._db_lost.is_set() or connection.is_closed():
            raise DatabaseConnectionLost("the relay's database connection was lost")

    def _on_notify(self, *_args: object) -> None:
        self._wake.set()

    async def _lead(self, connection: asyncpg.Connection) -> None:
        loop = asyncio.get_running_loop()
        await self._purge(connection)
        await self._connected_broker()  # connect now, so /readyz tells the truth before any event
        next_purge = loop.time() + self.settings.relay_purge_interval_seconds
        broker_failures = 0
        batch_size = self.settings.relay_batch_size
        no_ids: list[int] = []
        while not self._stopping.is_set():
            # Cleared before the claim: a NOTIFY for a commit after this point wakes the next wait.
            self._wake.clear()
            self._check_connection(connection)
            rows = await connection.fetch(CLAIM_SQL, batch_size, no_ids)
            if rows:
                reconnects = self.broker.reconnects if self.broker is not None else 0
                outcome = await self._relay(connection, rows)
                if outcome.unavailable:
                    broker_failures += 1
                    delay = backoff_seconds(broker_failures, self.settings.relay_max_backoff_seconds)
                    log.warning(
                        "events_broker_unavailable",
                        error=outcome.unavailable[0][1],
                        pending_in_batch=len(rows) - len(outcome.published),
                        retry_in_seconds=delay,
                    )
                    await self._broker_backoff(delay, reconnects)
                    continue
                if broker_failures:
                    log.info("events_broker_recovered", after_failures=broker_failures)
                broker_failures = 0
            if loop.time() >= next_purge:
                await self._purge(connection)
                next_purge = loop.time() + self.settings.relay_purge_interval_seconds
            if len(rows) < batch_size:
                if self.broker is None or not self.broker.is_open:  # idle: try to reconnect meanwhile
                    await self._connected_broker()
                await self._wait_for_work(await self._idle_seconds(connection))

    async def _broker_backoff(self, delay: float, reconnects: int) -> None:
        """The pause after the broker failed, cut short when it is back (or on stop / database loss)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + delay
        while not self._stopping.is_set() and not self._db_lost.is_set():
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
                await self._sleep_unless_lost(step)
                if await self._connected_broker() is not None:  # a fresh connection: try again now
                    return

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

    async def _relay(self, connection: asyncpg.Connection, rows: Sequence[asyncpg.Record]) -> BatchOutcome:
        """Publish a claimed batch, marking each row as its confirm arrives, then record the failures."""
        outcome = BatchOutcome()
        broker = await self._connected_broker()
        if broker is None:
            error = self.broker.last_error if self.broker else "broker not connected"
            outcome.unavailable = [(row["id"], error or "broker not connected") for row in rows]
        else:
            marks = ConfirmedMarks(self, connection)
            try:
                await self._publish(broker, connection, rows, outcome, marks)
            except BaseException:
                await marks.abandon()
                raise
            await marks.flush()
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
                reconnect_interval=min(BROKER_RECONNECT_SECONDS, self.settings.relay_max_backoff_seconds),
                down_after_seconds=DOWN_AFTER_SECONDS,
            )
        try:
            await self.broker.connect()
        except BrokerUnavailable:
            await self.broker.close()
            return None
        return self.broker

    async def _publish(
        self,
        broker: EventBroker,
        connection: asyncpg.Connection,
        rows: Sequence[asyncpg.Record],
        outcome: BatchOutcome,
        marks: ConfirmedMarks,
    ) -> None:
        # One chain per customer keeps its events in order; chains run concurrently, so the
        # confirms of a whole batch are awaited together instead of one round trip per event.
        chains: dict[Any, list[asyncpg.Record]] = {}
        for row in rows:
            chains.setdefault(row["customer_id"] or row["id"], []).append(row)

        async def publish_chain(chain: list[asyncpg.Record]) -> None:
            for row in chain:
                if marks.failed or self._db_lost.is_set():  # the marks cannot be written: stop here
                    return
                try:
                    await broker.publish(_outgoing(row))
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

        timeout = self.settings.relay_publish_timeout_seconds
        try:
            async with asyncio.timeout(timeout):  # one timer for the whole batch of confirms
                if len(chains) == 1:  # one customer (or one event): no tasks needed
                    await publish_chain(next(iter(chains.values())))
                else:
                    # At most PUBLISH_WINDOW chains in flight: few unconfirmed messages at any time,
                    # so few are published twice when the relay dies.
                    queue = iter(chains.values())

                    async def publish_chains() -> None:
                        for chain in queue:
                            await publish_chain(chain)

                    await asyncio.gather(*(publish_chains() for _ in range(min(PUBLISH_WINDOW, len(chains)))))
        except TimeoutError:
            error = f"no confirm from the broker within {timeout:g} s"
            broker.mark_unavailable(error)
            settled = set(outcome.published) | {row_id for row_id, _ in outcome.rejected + outcome.unavailable}
            outcome.unavailable.extend((row["id"], error) for row in rows if row["id"] not in settled)

    async def _mark_published(self, connection: asyncpg.Connection, ids: list[int]) -> None:
        """Set `published_at` on confirmed rows."""
        await connection.execute(MARK_PUBLISHED_SQL, ids)

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

    async def _sleep_unless_lost(self, seconds: float) -> None:
        """A pause that a stop request or the loss of the database connection cuts short."""
        if self._stopping.is_set() or self._db_lost.is_set():
            return
        waits = [asyncio.ensure_future(self._stopping.wait()), asyncio.ensure_future(self._db_lost.wait())]
        try:
            await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waits:
                waiter.cancel()

    # --- readiness --------------------------------------------------------------------------

    def broker_report(self) -> dict[str, Any]:
        """The broker connection as seen by this relay: `up` | `reconnecting` | `down` (or why there is none)."""
        state = self.state
        if state == "disabled":
            return {"status": "not_configured"}
        if state == "standby":
            return {"status": "standby", "detail": "the leading relay holds the broker connection"}
        if self.broker is None:
            if state in ("reconnecting", "down"):
                return {"status": "not_connected", "detail": "the relay is reconnecting to the database"}
            return {"status": "not_connected", "error": self.last_error}
        report: dict[str, Any] = {"status": self.broker.state, "error": self.broker.last_error}
        trouble = self.broker.trouble_seconds
        if trouble is not None:
            report["since_seconds"] = trouble
        return report

    def relay_report(self) -> dict[str, Any]:
        """The relay's own state for /readyz (see the module docstring for the states)."""
        state = self.state
        report: dict[str, Any] = {
            "status": state,
            "since_seconds": round(time.monotonic() - self._role_since, 3),
            "application_name": self.application_name,
            "published": self.published_count,
            "last_confirm_seconds_ago": (
                round(time.monotonic() - self.last_confirm_at, 3) if self.last_confirm_at is not None else None
            ),
        }
        if state == "standby":
            report["lock_holder"] = self.lock_holder
        if state in ("reconnecting", "down") and self.last_error:
            report["error"] = self.last_error
        return report


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
        # Any relay's last publish (the newest `published_at`), so a standby replica reports it too.
        "last_publish_seconds_ago": (
            round(max(row.since_last_publish, 0.0), 3) if row.since_last_publish is not None else None
        ),
    }


@asynccontextmanager
async def events_readiness(app: Any) -> AsyncIterator[None]:
    """Register the `events` entry of /readyz: relay, broker and outbox backlog (never fails it).

    `status` is the relay's state when it is not leading (`standby`, `reconnecting`, `down`, ...)
    and the broker's (`up`, `reconnecting`, `down`) when it is.
    """
    settings: Settings = app.state.settings

    async def report() -> dict[str, Any]:
        relay: OutboxRelay | None = getattr(app.state, "outbox_relay", None)
        if not settings.rabbitmq_url:
            broker: dict[str, Any] = {"status": "not_configured"}
        elif relay is None:
            broker = {"status": "not_running_here", "detail": "the relay is disabled in this process"}
        else:
            broker = relay.broker_report()
        relay_state = relay.state if relay is not None else "not_running"
        status = broker["status"]
        if relay_state in ("standby", "reconnecting", "down", "starting", "stopped"):
            status = relay_state
        report: dict[str, Any] = {
            "status": status,
            "exchange": settings.events_exchange,
            "relay": relay_state,
            "broker": broker,
            "outbox": await outbox_backlog(app.state.database.engine),
        }
        if relay is not None:
            report["relay_detail"] = relay.relay_report()
        return report

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
