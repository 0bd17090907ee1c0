"""What happens once a transaction that wrote outbox events has committed: audit lines and metrics.

`outbox.enqueue` remembers each event on the session; these SQLAlchemy session hooks act on them
after COMMIT (and forget them on rollback). So the audit trail and the business counters follow
exactly the committed changes, and no service has to remember to log or count.
"""

from typing import Any

import structlog
from prometheus_client import Counter
from sqlalchemy import event
from sqlalchemy.orm import Session

from bee_customers_service.events.catalogue import AUDIT_PREFIX, CATALOGUE, EVENTS

PENDING_EVENTS_KEY = "bee_pending_events"

audit_log = structlog.get_logger("bee_customers_service.audit")

# The fields of each event that may go into the audit log (spec 5.3): those the catalogue marks
# AUDIT. A whitelist, so emails, phones, names and note contents never reach the logs, whatever an
# event carries. An event outside the catalogue is recorded by its ids only. The client's IP and
# User-Agent are personal data: they travel in the audit records (`v1.audit.customer.*`, published
# for bee_log_service), which print no line here, so an action logs one line, that of its event.
_COMMON = ("event_id", "customer_id", "business_id")
AUDIT_FIELDS: dict[str, tuple[str, ...]] = {cls.name: cls.audit_fields() for cls in EVENTS}
# Which committed event moves which business counter.
COUNTER_BY_EVENT: dict[str, Counter] = {name: cls.counter for name, cls in CATALOGUE.items() if cls.counter is not None}


def remember(session: Session, body: dict[str, Any]) -> None:
    """Called by `outbox.enqueue` for every event written in the session's transaction."""
    session.info.setdefault(PENDING_EVENTS_KEY, []).append(body)


def audit_fields(body: dict[str, Any]) -> dict[str, Any]:
    allowed = AUDIT_FIELDS.get(body["event"], _COMMON)
    return {name: body[name] for name in allowed if name in body}


@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    for body in session.info.pop(PENDING_EVENTS_KEY, ()):
        counter = COUNTER_BY_EVENT.get(body["event"])
        if counter is not None:
            counter.inc()
        if not body["event"].startswith(AUDIT_PREFIX):
            audit_log.info("audit", audit_event=body["event"], **audit_fields(body))


@event.listens_for(Session, "after_rollback")
@event.listens_for(Session, "after_soft_rollback")
def _after_rollback(session: Session, *_: Any) -> None:
    session.info.pop(PENDING_EVENTS_KEY, None)
