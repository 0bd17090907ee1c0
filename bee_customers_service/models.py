"""Every table's model, imported in one place so Alembic and tests see the whole schema."""

from bee_customers_service.activity.models import CustomerActivity, CustomerHistory, ProcessedEvent
from bee_customers_service.core.db import Base
from bee_customers_service.core.idempotency import IdempotencyRecord
from bee_customers_service.customers.models import Customer
from bee_customers_service.events.outbox import OutboxEvent
from bee_customers_service.gdpr.models import GdprRequest
from bee_customers_service.notes.models import CustomerNote
from bee_customers_service.search.models import CustomerNameWord
from bee_customers_service.tags.models import CustomerTag

__all__ = [
    "Base",
    "Customer",
    "CustomerActivity",
    "CustomerHistory",
    "CustomerNameWord",
    "CustomerNote",
    "CustomerTag",
    "GdprRequest",
    "IdempotencyRecord",
    "OutboxEvent",
    "ProcessedEvent",
]
