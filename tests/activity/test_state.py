"""Folding events into an order's or appointment's state gives the same result in any arrival order."""

import itertools
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from bee_customers_service.activity.contract import Change, Rejected, parse
from bee_customers_service.activity.state import apply

BUSINESS, USER, CUSTOMER = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
T0 = datetime(2031, 1, 10, 12, tzinfo=UTC)


def change(kind, action, *, at, amount=None, currency=None, starts_at=None):
    return Change(
        event_id=uuid.uuid4(),
        business_id=BUSINESS,
        user_id=USER,
        kind=kind,
        external_id="ref-1",
        action=action,
        at=at,
        amount=amount,
        currency=currency,
        starts_at=starts_at,
    )


def fold(changes):
    state = None
    for item in changes:
        state = apply(state, item, customer_id=CUSTOMER)
    return state


ORDER_EVENTS = [
    change("order", "completed", at=T0, amount=Decimal("100.00"), currency="EUR"),
    change("order", "returned", at=T0 + timedelta(days=2), amount=Decimal("30.00")),
    change("order", "returned", at=T0 + timedelta(days=5), amount=Decimal("20.00")),
]


@pytest.mark.parametrize("order", list(itertools.permutations(ORDER_EVENTS)))
def test_an_order_ends_the_same_in_every_arrival_order(order):
    state = fold(order)
    assert (state.status, state.amount, state.returned_amount, state.currency) == (
        "returned",
        Decimal("100.00"),
        Decimal("50.00"),
        "EUR",
    )
    assert state.occurred_at == T0
    assert state.returned_at == T0 + timedelta(days=5)


def test_a_cancellation_wins_over_a_completion_whenever_it_arrives():
    completed = change("order", "completed", at=T0, amount=Decimal("10.00"), currency="EUR")
    cancelled = change("order", "cancelled", at=T0 + timedelta(hours=1))
    assert fold([completed, cancelled]).status == fold([cancelled, completed]).status == "cancelled"


APPOINTMENT_EVENTS = [
    change("appointment", "booked", at=T0 - timedelta(days=7), starts_at=T0),
    change("appointment", "cancelled", at=T0 - timedelta(days=1), starts_at=T0),
    change("appointment", "completed", at=T0 + timedelta(hours=1), starts_at=T0),
]


@pytest.mark.parametrize("order", list(itertools.permutations(APPOINTMENT_EVENTS)))
def test_an_appointment_takes_the_latest_final_state_in_every_arrival_order(order):
    state = fold(order)
    assert (state.status, state.occurred_at, state.completed_at, state.cancelled_at) == (
        "completed",
        T0,
        T0 + timedelta(hours=1),
        None,
    )


def test_parse_reads_naive_times_as_utc_and_refuses_what_it_cannot_read():
    body = (
        b'{"event_id": "%s", "user_id": "%s", "business_id": "%s", "order_id": " A-1 ", "total": 12.5,'
        b' "currency": "ron", "completed_at": "2031-01-10T12:00:00", "extra_payload": {"x": 1}}'
    ) % (str(uuid.uuid4()).encode(), str(USER).encode(), str(BUSINESS).encode())
    parsed = parse("v1.order.completed", body)
    assert isinstance(parsed, Change)
    assert (parsed.external_id, parsed.amount, parsed.currency, parsed.at) == ("A-1", Decimal("12.5"), "RON", T0)
    assert parsed.at.tzinfo is UTC
    # an aware time in another zone is the same instant, kept in UTC
    shifted = parse("v1.order.completed", body.replace(b"2031-01-10T12:00:00", b"2031-01-10T14:00:00+02:00"))
    assert isinstance(shifted, Change) and shifted.at == T0 and shifted.at.tzinfo is UTC

    assert parse("v1.order.shipped", body) == Rejected("unsupported routing key 'v1.order.shipped'")
    assert parse("v1.order.completed", b"\xff\xfe") == Rejected("malformed JSON")
    refused = parse("v1.order.completed", body.replace(b"12.5", b"-3"))
    assert isinstance(refused, Rejected)
    assert refused.reason.startswith("invalid payload: total:")


class _Delivery:
    def __init__(self, tag):
        self.delivery_tag = tag


def test_the_ack_window_acknowledges_only_a_fully_settled_prefix():
    from bee_customers_service.events.acks import AckWindow

    window = AckWindow(channel=None)
    deliveries = [_Delivery(tag) for tag in range(1, 7)]
    for delivery in deliveries:
        window.add(delivery)
    window.settle(deliveries[2], ack=True)  # tag 3 settled, but 1 and 2 are still being applied
    assert window.take_ready() is None
    window.settle(deliveries[0], ack=True)
    window.settle(deliveries[1], ack=False)  # rejected on its own: needs no ack
    assert window.take_ready() is deliveries[2]  # one multiple-ack up to tag 3
    window.settle(deliveries[4], ack=True)
    assert window.take_ready() is None  # tag 4 still open
    window.settle(deliveries[3], ack=False)
    assert window.take_ready() is deliveries[4]
    window.settle(_Delivery(6), ack=True)  # another message object with the same tag (a new channel)
    assert window.take_ready() is None
