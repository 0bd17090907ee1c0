"""The periodic refresh of the stored RFM segments inside `serve` (app._background_components).

Recency drifts every day and monetary ranks move as other customers buy, so a customer with no new
activity needs refreshing too. Every replica runs this loop; one does the work: the holder of an
advisory lock, and only when the last refresh (`rfm_segment_refreshes`, shared by the replicas)
finished at least `BEE_SEGMENT_REFRESH_SECONDS` ago, so restarts and replicas do not repeat it.
"""

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import structlog
from sqlalchemy import text

from bee_customers_service.activity.segments import refresh_segments
from bee_customers_service.core.config import Settings
from bee_customers_service.core.db import Database
from bee_customers_service.core.metrics import SEGMENT_REFRESH_LAST, SEGMENT_REFRESHES, SEGMENTS_CHANGED

log = structlog.get_logger(__name__)

# How often a replica looks whether a refresh is due (at most; less when the interval is shorter).
CHECK_SECONDS = 300.0
_LOCK = text("SELECT pg_try_advisory_lock(hashtextextended('bee_customers_service.rfm_segment_refresh', 0))")
_UNLOCK = text("SELECT pg_advisory_unlock(hashtextextended('bee_customers_service.rfm_segment_refresh', 0))")
_DUE = text(
    "SELECT coalesce((SELECT finished_at FROM rfm_segment_refreshes WHERE id = 1)"
    " <= now() - make_interval(secs => :interval), true)"
)
_FINISHED = text(
    "INSERT INTO rfm_segment_refreshes (id, finished_at) VALUES (1, now())"
    " ON CONFLICT (id) DO UPDATE SET finished_at = excluded.finished_at"
)


async def refresh_if_due(database: Database, settings: Settings) -> bool:
    """Refresh every business's segments if no replica did within the interval; whether this one did."""
    # An autocommit connection holds the (session) lock while the refresh runs on its own sessions.
    async with database.read_engine.connect() as connection:
        if not await connection.scalar(_LOCK):
            return False
        try:
            due = await connection.scalar(_DUE, {"interval": settings.segment_refresh_seconds})
            if due:
                started = time.monotonic()
                done = await refresh_segments(database.sessionmaker, window_months=settings.stats_window_months)
                await connection.execute(_FINISHED)
        except BaseException:
            await connection.invalidate()  # closing the session releases the lock, whatever happened
            raise
        # Unlocked before the connection goes back to the pool: a pooled session keeps its locks.
        await connection.scalar(_UNLOCK)
    if not due:
        return False
    SEGMENTS_CHANGED.inc(done.changed)
    SEGMENT_REFRESH_LAST.set(datetime.now(UTC).timestamp())
    log.info(
        "rfm_segments_refreshed",
        businesses=done.businesses,
        customers=done.customers,
        changed=done.changed,
        seconds=round(time.monotonic() - started, 3),
    )
    return True


def segment_refresh(app: Any) -> contextlib.AbstractAsyncContextManager[None]:
    """Background component: the refresh loop, when `BEE_SEGMENT_REFRESH_SECONDS` is not 0."""

    @contextlib.asynccontextmanager
    async def component() -> AsyncIterator[None]:
        settings: Settings = app.state.settings
        if not settings.segment_refresh_seconds:
            yield
            return

        async def loop() -> None:
            while True:
                try:
                    if await refresh_if_due(app.state.database, settings):
                        SEGMENT_REFRESHES.labels(result="ok").inc()
                except Exception as exc:  # the database may be away: the next check tries again
                    SEGMENT_REFRESHES.labels(result="failed").inc()
                    log.warning("rfm_segment_refresh_failed", error=type(exc).__name__)
                await asyncio.sleep(min(CHECK_SECONDS, settings.segment_refresh_seconds))

        task = asyncio.create_task(loop())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    return component()
