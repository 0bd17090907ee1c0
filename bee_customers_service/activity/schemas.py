"""Response shapes of the statistics and the history."""

import uuid
from datetime import date, datetime
from typing import Literal

from bee_customers_service.core.schemas import Money, OutputModel

Segment = Literal["prospect", "new", "champion", "loyal", "promising", "at_risk", "hibernating", "lost"]


class Rfm(OutputModel):
    """Recency, frequency and monetary scores (1-5) and the segment they put the customer in."""

    recency: int | None
    frequency: int | None
    monetary: int | None
    score: str | None  # e.g. "545"
    segment: Segment


class CurrencyValue(OutputModel):
    """The customer's spending in one currency ('XXX': orders sent without a currency)."""

    currency: str
    orders: int
    lifetime_value: Money
    average_order_value: Money | None  # lifetime_value / orders, ROUND_HALF_UP to 0.01


class CustomerStats(OutputModel):
    customer_id: uuid.UUID
    # The spec's fields (3.6) ...
    total_orders: int
    total_appointments: int
    # Money is never summed across currencies: null when the customer paid in several (then
    # `lifetime_value_unavailable` says so and `lifetime_value_by_currency` lists each).
    lifetime_value: Money | None
    last_order_date: date | None
    # ... and what the admin needs to read the customer at a glance.
    last_appointment_date: date | None
    first_order_date: date | None
    first_appointment_date: date | None
    returned_orders: int
    returned_amount: Money
    cancelled_orders: int
    cancelled_appointments: int
    no_shows: int
    upcoming_appointments: int
    average_order_value: Money | None  # null with no order, or with several currencies
    lifetime_value_currency: str | None  # the one currency of lifetime_value (null: none or several)
    lifetime_value_unavailable: Literal["multiple_currencies"] | None  # why lifetime_value is null
    lifetime_value_by_currency: list[CurrencyValue]  # sorted by currency
    window_months: int
    visits_in_window: int
    visits_per_month: float
    cancellation_rate: float | None
    no_show_rate: float | None
    return_rate: float | None
    last_visit_date: date | None
    days_since_last_visit: int | None
    rfm: Rfm
    computed_at: datetime


class HistoryItem(OutputModel):
    id: uuid.UUID
    kind: Literal["order", "appointment"]
    external_id: str
    status: str
    amount: Money | None
    returned_amount: Money
    currency: str | None
    occurred_at: datetime
    completed_at: datetime | None
    returned_at: datetime | None
    cancelled_at: datetime | None
    updated_at: datetime


class HistoryPage(OutputModel):
    items: list[HistoryItem]
    next_cursor: str | None
