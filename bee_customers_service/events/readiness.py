"""The `events` entry of /readyz and the outbox gauges: relay, broker and outbox backlog.

Relay `leader` | `standby` (with the lock holder's application_name and pid) | `reconnecting`
(its database session was lost, retrying) | `down` (reconnecting for `DOWN_AFTER_SECONDS`, or the
relay task died); broker `up` | `reconnecting` | `down`; the backlog and the seconds since the
last publish. The entry never makes the service unready.
"""

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Protocol

from bee_customers_service.core.config import Settings
from bee_customers_service.core.metrics import OUTBOX_OLDEST_PENDING, OUTBOX_PENDING, OUTBOX_RELAY_ROLE
from bee_customers_service.events.broker import EventBroker
from bee_customers_service.events.outbox import outbox_backlog

READINESS_TIMEOUT_SECONDS = 2.0
# `reconnecting` (relay or broker) turns into `down` after this long.
DOWN_AFTER_SECONDS = 30.0
# Relay states that, when not leading, stand for the whole entry's status.
_RELAY_STATUSES = ("standby", "reconnecting", "down", "starting", "stopped")
# Every value of `outbox_relay_role{role}`: one series each, 1 for the current state, so a
# dashboard sees a role change as one series dropping to 0 rather than a series vanishing.
RELAY_ROLES = ("leader", *_RELAY_STATUSES, "disabled", "not_running")


class OutboxRelay(Protocol):
    """What the reports read from the relay (events/relay.py, which imports this module)."""

    application_name: str
    last_error: str | None
    lock_holder: dict[str, Any] | None
    role_since: float

    @property
    def state(self) -> str: ...
    @property
    def broker(self) -> EventBroker | None: ...
    @property
    def published_count(self) -> int: ...
    @property
    def last_confirm_at(self) -> float | None: ...
    def broker_report(self) -> dict[str, Any]: ...
    def relay_report(self) -> dict[str, Any]: ...


@asynccontextmanager
async def events_readiness(app: Any) -> AsyncIterator[None]:
    """Register the `events` entry of /readyz and the outbox gauges' refresher.

    `status` is the relay's state when it is not leading (`standby`, `reconnecting`, `down`, ...)
    and the broker's (`up`, `reconnecting`, `down`) when it is.
    """
    settings: Settings = app.state.settings

    async def backlog() -> dict[str, Any]:
        return await outbox_backlog(app.state.database.engine, within_seconds=READINESS_TIMEOUT_SECONDS)

    async def report() -> dict[str, Any]:
        relay: OutboxRelay | None = getattr(app.state, "outbox_relay", None)
        if not settings.rabbitmq_url:
            broker: dict[str, Any] = {"status": "not_configured"}
        elif relay is None:
            broker = {"status": "not_running_here", "detail": "the relay is disabled in this process"}
        else:
            broker = relay.broker_report()
        relay_state = relay.state if relay is not None else "not_running"
        status = relay_state if relay_state in _RELAY_STATUSES else broker["status"]
        report: dict[str, Any] = {
            "status": status,
            "exchange": settings.events_exchange,
            "relay": relay_state,
            "broker": broker,
            "outbox": await backlog(),
        }
        if relay is not None:
            report["relay_detail"] = relay.relay_report()
        return report

    async def refresh_gauges() -> None:
        relay: OutboxRelay | None = getattr(app.state, "outbox_relay", None)
        role = relay.state if relay is not None else "not_running"
        for each in RELAY_ROLES:
            OUTBOX_RELAY_ROLE.labels(role=each).set(1 if each == role else 0)
        pending = await backlog()
        if "error" not in pending:
            OUTBOX_PENDING.set(pending["pending"])
            OUTBOX_OLDEST_PENDING.set(pending["oldest_pending_age_seconds"] or 0)

    app.state.readiness_reporters["events"] = report
    app.state.metrics_refreshers.append(refresh_gauges)
    try:
        yield
    finally:
        app.state.readiness_reporters.pop("events", None)
        app.state.metrics_refreshers.remove(refresh_gauges)


def broker_report(relay: OutboxRelay) -> dict[str, Any]:
    """The broker as this relay sees it: `up` | `reconnecting` | `down` (or why there is none)."""
    state = relay.state
    if state == "disabled":
        return {"status": "not_configured"}
    if state == "standby":
        return {"status": "standby", "detail": "the leading relay holds the broker connection"}
    if relay.broker is None:
        if state in ("reconnecting", "down"):
            return {"status": "not_connected", "detail": "the relay is reconnecting to the database"}
        return {"status": "not_connected", "error": relay.last_error}
    report: dict[str, Any] = {"status": relay.broker.state, "error": relay.broker.last_error}
    trouble = relay.broker.trouble_seconds
    if trouble is not None:
        report["since_seconds"] = trouble
    return report


def relay_report(relay: OutboxRelay) -> dict[str, Any]:
    """The relay's own state (see the module docstring for the states)."""
    state = relay.state
    now = time.monotonic()
    report: dict[str, Any] = {
        "status": state,
        "since_seconds": round(now - relay.role_since, 3),
        "application_name": relay.application_name,
        "published": relay.published_count,
        "last_confirm_seconds_ago": round(now - relay.last_confirm_at, 3)
        if relay.last_confirm_at is not None
        else None,
    }
    if state == "standby":
        report["lock_holder"] = relay.lock_holder
    if state in ("reconnecting", "down") and relay.last_error:
        report["error"] = relay.last_error
    return report
