"""The statistics of GET /customers/{id}/stats: figures, rates and the RFM scores (docs/events.md).

Money is never summed across currencies: `lifetime_value_by_currency` lists each currency the
customer paid in; the single `lifetime_value` and `average_order_value` exist only with one.
"""

import math
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from bee_customers_service.activity import repository
from bee_customers_service.activity.schemas import CurrencyValue, CustomerStats, Rfm, Segment
from bee_customers_service.core.config import Settings
from bee_customers_service.customers.models import Customer

CENT = Decimal("0.01")


def months_before(moment: datetime, months: int) -> datetime:
    """The same instant `months` calendar months earlier (the day clamped to the month's length)."""
    month_index = moment.year * 12 + (moment.month - 1) - months
    year, month = divmod(month_index, 12)
    month += 1
    next_month = date(year + (month == 12), month % 12 + 1, 1)
    last_day = (next_month - date(year, month, 1)).days
    return moment.replace(year=year, month=month, day=min(moment.day, last_day))


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def recency_score(days: int | None) -> int | None:
    if days is None:
        return None
    for limit, score in ((30, 5), (60, 4), (90, 3), (180, 2)):
        if days <= limit:
            return score
    return 1


def frequency_score(visits_per_month: float, *, ever_visited: bool) -> int | None:
    if not ever_visited:
        return None
    for limit, score in ((4, 5), (2, 4), (1, 3), (1 / 3, 2)):
        if visits_per_month >= limit:
            return score
    return 1


def monetary_score(lifetime_value: Decimal, at_or_below: int, spenders: int) -> int:
    if lifetime_value <= 0 or spenders == 0:
        return 1
    return max(1, min(5, math.ceil(5 * at_or_below / spenders)))


def segment_for(
    recency: int | None,
    frequency: int | None,
    monetary: int,
    *,
    first_visit_days_ago: int | None,
    visits: int,
) -> Segment:
    """The rule in docs/events.md ("RFM segments"), evaluated top-down."""
    if recency is None or frequency is None:
        return "prospect"
    if first_visit_days_ago is not None and first_visit_days_ago <= 30 and visits <= 2:
        return "new"
    if recency >= 4 and frequency >= 4 and monetary >= 4:
        return "champion"
    if recency >= 3 and frequency >= 3:
        return "loyal"
    if recency >= 3:
        return "promising"
    if recency == 2 and (frequency >= 3 or monetary >= 4):
        return "at_risk"
    if recency == 2:
        return "hibernating"
    return "lost"


def _latest(*days: date | None) -> date | None:
    known = [d for d in days if d is not None]
    return max(known) if known else None


def _earliest(*days: date | None) -> date | None:
    known = [d for d in days if d is not None]
    return min(known) if known else None


def _average(value: Decimal, orders: int) -> Decimal | None:
    return (value / orders).quantize(CENT, rounding=ROUND_HALF_UP) if orders else None


def _currency_value(row: dict[str, Any]) -> CurrencyValue:
    return CurrencyValue(
        currency=row["currency"],
        orders=row["orders"],
        lifetime_value=row["lifetime_value"],
        average_order_value=_average(row["lifetime_value"], row["orders"]),
    )


async def stats(
    session: AsyncSession, customer: Customer, *, settings: Settings, now: datetime | None = None
) -> CustomerStats:
    """The customer's statistics at `now` (default: the current time)."""
    now = now or datetime.now(UTC)
    today = now.date()
    window = settings.stats_window_months
    history = await repository.history_row(session, customer.id) or {}
    figures = await repository.window_figures(session, customer.id, now=now, window_start=months_before(now, window))
    spend = await repository.spend_ranks(session, customer.business_id, customer.id)

    last_visit = _latest(customer.last_order_date, customer.last_appointment_date)
    first_visit = _earliest(history.get("first_order_date"), history.get("first_appointment_date"))
    days_since = max(0, (today - last_visit).days) if last_visit else None
    visits_per_month = round(figures["visits_in_window"] / window, 2)
    no_shows = history.get("no_shows", 0)
    visits = customer.total_orders + customer.total_appointments

    recency = recency_score(days_since)
    frequency = frequency_score(visits_per_month, ever_visited=last_visit is not None)
    # Ranked within each currency among the business's spenders in it; the best currency counts.
    monetary = max(
        (monetary_score(row["lifetime_value"], row["at_or_below"], row["spenders"]) for row in spend), default=1
    )
    segment = segment_for(
        recency,
        frequency,
        monetary,
        first_visit_days_ago=(today - first_visit).days if first_visit else None,
        visits=visits,
    )
    lifetime_value = customer.lifetime_value  # NULL when several currencies (activity/repository.py)
    return CustomerStats(
        customer_id=customer.id,
        total_orders=customer.total_orders,
        total_appointments=customer.total_appointments,
        lifetime_value=lifetime_value,
        lifetime_value_currency=customer.lifetime_value_currency,
        lifetime_value_unavailable="multiple_currencies" if lifetime_value is None else None,
        lifetime_value_by_currency=[_currency_value(row) for row in spend],
        last_order_date=customer.last_order_date,
        last_appointment_date=customer.last_appointment_date,
        first_order_date=history.get("first_order_date"),
        first_appointment_date=history.get("first_appointment_date"),
        returned_orders=history.get("returned_orders", 0),
        returned_amount=history.get("returned_amount", Decimal("0")),
        cancelled_orders=history.get("cancelled_orders", 0),
        cancelled_appointments=history.get("cancelled_appointments", 0),
        no_shows=no_shows,
        upcoming_appointments=figures["upcoming_appointments"],
        average_order_value=_average(lifetime_value, customer.total_orders) if lifetime_value is not None else None,
        window_months=window,
        visits_in_window=figures["visits_in_window"],
        visits_per_month=visits_per_month,
        cancellation_rate=_rate(history.get("cancelled_appointments", 0), figures["appointments_recorded"]),
        no_show_rate=_rate(no_shows, customer.total_appointments + no_shows),
        return_rate=_rate(history.get("returned_orders", 0), customer.total_orders),
        last_visit_date=last_visit,
        days_since_last_visit=days_since,
        rfm=Rfm(
            recency=recency,
            frequency=frequency,
            monetary=monetary if recency is not None else None,
            score=f"{recency}{frequency}{monetary}" if recency is not None and frequency is not None else None,
            segment=segment,
        ),
        computed_at=now,
    )
