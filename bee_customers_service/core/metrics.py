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
RATE_LIMITED = Counter("rate_limited_total", "Requests refused by a rate limit.", ["limit"])
OUTBOX_PENDING = Gauge("outbox_pending_events", "Outbox events not yet published.")
OUTBOX_OLDEST_PENDING = Gauge("outbox_oldest_pending_seconds", "Age of the oldest unpublished outbox event.")
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
