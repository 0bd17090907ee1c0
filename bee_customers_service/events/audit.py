"""The audit trail (spec 5.3): one record per action on a customer, for bee_log_service.

    await audit.record(session, catalogue.AuditNoteDeleted(customer_id=..., business_id=...,
                                                          actor=catalogue.Actor.of(actor), note_id=...))

A record is an outbox row in the caller's transaction, like any event: it is published (to
`BEE_AUDIT_EXCHANGE`, routing key `v1.audit.customer.<action>`) only if the change commits, and
never when it rolls back. The records are typed in events/catalogue.py (`AuditRecord`), which marks
their personal fields for erasure; `client_ip` and `user_agent` come from the request's context.
"""

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from bee_customers_service.events import outbox
from bee_customers_service.events.catalogue import AuditRecord


async def record(session: AsyncSession, audit_record: AuditRecord) -> dict[str, Any]:
    """Write the record to the outbox in the caller's transaction; returns its body."""
    return await outbox.enqueue_event(session, audit_record)
