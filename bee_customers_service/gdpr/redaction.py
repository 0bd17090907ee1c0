"""What an erasure leaves of an event that has not been published yet: its ids, no personal data.

The outbox row stays (consumers keep a coherent stream, and `v1.customer.deleted` follows it), but
its body is rewritten from the catalogue, whatever the event: every field the catalogue marks
PERSONAL that the body carries is set to null, and `"redacted": true` is added. A key the body does
not carry stays absent (an absent `phone` of `v1.customer.updated` means "unchanged", a null one
"removed": adding it would tell a consumer something that did not happen). An event name the
catalogue does not know is cut down to the envelope's ids: nothing says which of its fields are
personal, so none of them is kept.
"""

from typing import Any

from bee_customers_service.events.catalogue import CATALOGUE

REDACTED = "redacted"
# The keys an unknown event keeps: the envelope (`outbox.build_event`) and the customer, ids only.
ID_KEYS = ("event", "event_id", "occurred_at", "business_id", "customer_id", "trace_id", "request_id")


def redacted_body(body: dict[str, Any]) -> dict[str, Any]:
    """The body without its personal values, marked `"redacted": true`."""
    event = CATALOGUE.get(str(body.get("event")))
    if event is None:
        kept = {key: body[key] for key in ID_KEYS if key in body}
    else:
        kept = dict(body)
        for name in event.personal_fields():
            if name in kept:
                kept[name] = None
    kept[REDACTED] = True
    return kept
