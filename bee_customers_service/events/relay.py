"""The outbox relay: publishes committed outbox rows to RabbitMQ, at least once, in order.

- Leadership: every relay (one per `serve` process, plus any `bee-customers relay`) holds one
  PostgreSQL connection (application_name `<service>.relay:<host>:<pid>`) and tries
  `pg_try_advisory_lock(RELAY_LOCK_KEY)` on it; the holder leads, the others retry every
  `relay_poll_seconds`. The lock dies with the connection, so a standby takes over from a dead
  leader, and claims and marks run on that connection, so only the lock holder marks rows. A lost
  connection wakes the relay at once; it reconnects and retries the lock every
  `FAST_RELOCK_SECONDS` for a while (the server may need a moment to drop the dead session).
- Wake-ups: the leader LISTENs on `OUTBOX_CHANNEL` (enqueue NOTIFYs at commit); a poll every
  `relay_poll_seconds` catches a lost notification.
- Order and delivery: see events/publishing.py. A row is marked published only after its
  confirm, so a crash republishes only unmarked rows (consumers dedupe on `event_id`).
- Exchanges: a row goes where its catalogue class says (`exchange_setting`): events to
  `events_exchange`, audit records (`v1.audit.*`) to `audit_exchange`. Order is kept per customer
  on each exchange; a refused row holds back only that customer's later rows on its exchange.
- Failures: a refused message (unroutable, nacked) is retried with a per-row backoff
  (`available_at`); an unreachable broker pauses the whole relay with backoff, cut short as soon
  as the broker is back. Both record `attempts` and `last_error`, capped at
  `relay_max_backoff_seconds`.
- Retention: the leader deletes rows published more than `outbox_retention_hours` ago.
- No broker configured: logged once; events wait in the outbox.
"""

import asyncio
import contextlib
import os
import signal
import socket
import time
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Literal

import asyncpg
import structlog
from sqlalchemy.engine import make_url

from bee_customers_service.core.config import Settings
from bee_customers_service.events import outbox, readiness
from bee_customers_service.events.broker import EventBroker, describe
from bee_customers_service.events.outbox import OUTBOX_CHANNEL
from bee_customers_service.events.publishing import BASE_BACKOFF_SECONDS, RelayPublisher
from bee_customers_service.events.readiness import DOWN_AFTER_SECONDS

log = structlog.get_logger(__name__)

# One lock per database, whatever the number of replicas (a stable 32-bit key from the name).
RELAY_LOCK_KEY = zlib.crc32(b"bee_customers_service.outbox_relay")
PURGE_CHUNK = 5000
# The database reconnect pause is capped lower than the broker's: an attempt costs one refused connection.
DB_RECONNECT_MAX_SECONDS = 2.0
# After losing a leading session, the lock is retried this often (not every poll) for a while.
FAST_RELOCK_SECONDS = 0.2
FAST_RELOCK_WINDOW_SECONDS = 10.0

Role = Literal["starting", "standby", "leader", "reconnecting", "down", "disabled", "stopped"]


class DatabaseConnectionLost(ConnectionError):
    """The relay's own PostgreSQL connection closed under it (the lock went with it)."""


def asyncpg_dsn(database_url: str) -> str:
    """The SQLAlchemy URL (`postgresql+asyncpg://`) as a plain libpq-style DSN for asyncpg."""
    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


def backoff_seconds(failures: int, cap: float) -> float:
    return min(cap, BASE_BACKOFF_SECONDS * 2 ** max(failures - 1, 0))


async def _wait_any(*events: asyncio.Event, seconds: float) -> None:
    """Until one of `events` is set, or `seconds` have passed."""
    if any(event.is_set() for event in events):
        return
    waits = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waits:
            waiter.cancel()


class OutboxRelay:
    """Moves committed outbox rows to the broker; see the module docstring for the guarantees."""

    def __init__(self, settings: Settings, database_url: str) -> None:
        self.settings = settings
        self.dsn = asyncpg_dsn(database_url)
        self.application_name = f"{settings.service_name}.relay:{socket.gethostname()}:{os.getpid()}"[:63]
        self.role: Role = "starting"
        self.publisher = RelayPublisher(settings, self._mark_published)
        self.last_error: str | None = None
        self.lock_holder: dict[str, Any] | None = None  # who leads, while this relay stands by
        self.role_since = time.monotonic()  # when `role` last changed
        self._trouble_since: float | None = None  # first failure of the current database outage
        self._relock_until = 0.0
        self._lost_backend_pids: set[int] = set()  # server pids of our sessions that died leading
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()
        self._db_lost = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._retries_scheduled = True  # rows may be waiting for a retry from an earlier leader

    @property
    def broker(self) -> EventBroker | None:
        return self.publisher.broker

    @property
    def published_count(self) -> int:
        return self.publisher.published_count

    @property
    def last_confirm_at(self) -> float | None:
        """time.monotonic() of the last broker confirm."""
        return self.publisher.last_confirm_at

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Run the relay in a background task."""
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name="outbox-relay")

    def _set_role(self, role: Role) -> None:
        if role != self.role:
            self.role = role
            self.role_since = time.monotonic()

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
            await self.publisher.close()

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
                await self.publisher.close()
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
            holder = self.lock_holder = await outbox.relay_lock_holder(connection, RELAY_LOCK_KEY)
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
        await self.publisher.connected()  # connect now, so /readyz tells the truth before any event
        next_purge = loop.time() + self.settings.relay_purge_interval_seconds
        broker_failures = 0
        batch_size = self.settings.relay_batch_size
        while not self._stopping.is_set():
            # Cleared before the claim: a NOTIFY for a commit after this point wakes the next wait.
            self._wake.clear()
            self._check_connection(connection)
            rows = await outbox.claim_pending(connection, batch_size)
            if rows:
                reconnects = self.broker.reconnects if self.broker is not None else 0
                outcome = await self.publisher.relay(connection, rows, halted=self._db_lost.is_set)
                if outcome.rejected:
                    self._retries_scheduled = True
                if outcome.unavailable:
                    broker_failures += 1
                    delay = backoff_seconds(broker_failures, self.settings.relay_max_backoff_seconds)
                    log.warning(
                        "events_broker_unavailable",
                        error=outcome.unavailable[0][1],
                        pending_in_batch=len(rows) - len(outcome.published),
                        retry_in_seconds=delay,
                    )
                    await self.publisher.backoff(
                        delay,
                        reconnects,
                        interrupted=lambda: self._stopping.is_set() or self._db_lost.is_set(),
                        pause=self._sleep_unless_lost,
                    )
                    continue
                if broker_failures:
                    log.info("events_broker_recovered", after_failures=broker_failures)
                broker_failures = 0
            if loop.time() >= next_purge:
                await self._purge(connection)
                next_purge = loop.time() + self.settings.relay_purge_interval_seconds
            if len(rows) < batch_size:
                if self.broker is None or not self.broker.is_open:  # idle: try to reconnect meanwhile
                    await self.publisher.connected()
                await self._wait_for_work(await self._idle_seconds(connection))

    async def _idle_seconds(self, connection: asyncpg.Connection) -> float:
        """The poll interval, or less when a refused row is due for its retry sooner."""
        wait_seconds = self.settings.relay_poll_seconds
        if self._retries_scheduled:
            due_in = await outbox.seconds_to_next_retry(connection)
            if due_in is None:
                self._retries_scheduled = False
            else:
                wait_seconds = min(wait_seconds, max(due_in, 0.01))
        return wait_seconds

    async def _mark_published(self, connection: asyncpg.Connection, ids: list[int]) -> None:
        await outbox.mark_published(connection, ids)

    async def _purge(self, connection: asyncpg.Connection) -> None:
        retention = self.settings.outbox_retention_hours * 3600
        total = 0
        while not self._stopping.is_set():
            deleted = await outbox.purge_published(connection, retention, PURGE_CHUNK)
            total += deleted
            if deleted < PURGE_CHUNK:
                break
        if total:
            log.info("outbox_purged", rows=total, retention_hours=self.settings.outbox_retention_hours)

    # --- waiting ----------------------------------------------------------------------------

    async def _wait_for_work(self, seconds: float) -> None:
        """Until a NOTIFY, a stop request, or the poll interval."""
        await _wait_any(self._wake, seconds=seconds)

    async def _sleep(self, seconds: float) -> None:
        """A backoff pause that only a stop request cuts short."""
        await _wait_any(self._stopping, seconds=seconds)

    async def _sleep_unless_lost(self, seconds: float) -> None:
        """A pause that a stop request or the loss of the database connection cuts short."""
        await _wait_any(self._stopping, self._db_lost, seconds=seconds)

    # --- readiness (events/readiness.py) ----------------------------------------------------

    def broker_report(self) -> dict[str, Any]:
        return readiness.broker_report(self)

    def relay_report(self) -> dict[str, Any]:
        return readiness.relay_report(self)


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
