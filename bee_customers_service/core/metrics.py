"""Prometheus metrics: the spec's business counters plus the event pipeline's health.

Business counters move only for committed changes: they are driven by the outbox events of a
transaction once it commits (see events/committed.py), never by a request that was rolled back.
"""

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, generate_latest

CUSTOMERS_CREATED = Counter("customers_created_total", "Customer profiles created (committed).")
NOTES_CREATED = Counter("notes_created_total", "Internal notes added (committed).")
TAGGED_CUSTOMERS = Counter("tagged_customers_total", "Tags added to customers (committed).")
EVENTS_PUBLISHED = Counter("events_published_total", "Outbox events confirmed by the broker.", ["event"])
EVENTS_CONSUMED = Counter("events_consumed_total", "Upstream events consumed, by outcome.", ["result"])
# Every outcome starts at 0: a series born at 1 shows no increase() to an alert, so the first
# dead letter of a process would be missed (deploy/prometheus/alerts.yaml).
for _result in ("applied", "duplicate", "retried", "dead_lettered"):
    EVENTS_CONSUMED.labels(result=_result)
RATE_LIMITED = Counter("rate_limited_total", "Requests refused by a rate limit.", ["limit"])
OUTBOX_PENDING = Gauge("outbox_pending_events", "Outbox events not yet published.")
OUTBOX_OLDEST_PENDING = Gauge("outbox_oldest_pending_seconds", "Age of the oldest unpublished outbox event.")
# Refreshed at each scrape (app.state.metrics_refreshers), like the outbox gauges.
OUTBOX_RELAY_ROLE = Gauge(
    "outbox_relay_role",
    "1 for the state of this process's outbox relay (leader, standby, ...), 0 for the others.",
    ["role"],
)
DATABASE_POOL_CONNECTIONS = Gauge(
    "database_pool_connections", "Connections of this process's database pool, in use or idle.", ["state"]
)
DATABASE_POOL_MAX_CONNECTIONS = Gauge(
    "database_pool_max_connections", "The most connections the pool opens (pool size plus overflow)."
)
SERVICE_READY = Gauge("service_ready", "1 when GET /readyz answers 200 (the database answers), 0 when it answers 503.")
SEGMENTS_CHANGED = Counter("rfm_segments_changed_total", "Stored RFM segments rewritten by a periodic refresh.")
SEGMENT_REFRESHES = Counter("rfm_segment_refreshes_total", "Periodic refreshes of the stored RFM segments.", ["result"])
SEGMENT_REFRESH_LAST = Gauge(
    "rfm_segment_refresh_last_success_timestamp_seconds", "When the last periodic RFM segment refresh finished."
)

# Which committed event moves which business counter is said by the event's class in
# events/catalogue.py (its `counter`); core knows no events.


def render(*registries: CollectorRegistry) -> bytes:
    """The text exposition of the process-wide registry and any per-app registries."""
    return b"".join(generate_latest(registry) for registry in (REGISTRY, *registries))
