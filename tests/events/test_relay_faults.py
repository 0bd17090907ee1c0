"""Faults for real, as the relay sees them: the broker or the database cut by a TCP proxy, a relay killed.

What is asserted is what an operator and a consumer see: publishing resumes by itself once the
server is back (within a generous recovery deadline: a functional bound, not a benchmark), /readyz
says what is going on meanwhile, no event is lost, each customer's events arrive in order, and a
relay killed mid-batch publishes again only a handful of events.
"""

import asyncio
import signal
import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from bee_customers_service.app import create_app
from bee_customers_service.events import outbox
from bee_customers_service.events.broker import describe
from tests.activity.conftest import activity_settings_for, broker_names, remove_topology
from tests.conftest import client_for, running_app
from tests.events.tools import eventually, proxied, running_relay, spawn_relay

RECOVERY_SECONDS = 5.0  # the target for publishing to resume once the server is back


async def _pending(fetch, business_id=None):
    if business_id is None:
        [row] = await fetch("SELECT count(*) AS n FROM outbox WHERE published_at IS NULL")
    else:
        sql = "SELECT count(*) AS n FROM outbox WHERE published_at IS NULL AND business_id = :b"
        [row] = await fetch(sql, b=business_id)
    return row["n"]


async def _drain(relay_settings, database_url, fetch):
    """Publish whatever other tests left pending, so this test's rows are the first in line."""
    async with running_relay(relay_settings(relay_batch_size=1000), database_url):
        await eventually(lambda: _pending_is(fetch, 0), what="the shared test outbox to drain", seconds=60)


async def _pending_is(fetch, expected, business_id=None):
    return await _pending(fetch, business_id) == expected


async def _enqueue(engine, business_id, customer_ids, per_customer):
    """Commit `per_customer` events for each customer, interleaved (c1, c2, ..., c1, c2, ...)."""
    async with AsyncSession(engine) as session:
        for round_ in range(per_customer):
            for customer_id in customer_ids:
                await outbox.enqueue(
                    session,
                    "v1.customer.updated",
                    business_id=business_id,
                    customer_id=customer_id,
                    fields={"customer_id": customer_id, "round": round_},
                )
        await session.commit()


async def _assert_all_delivered_in_order(consumer, fetch, business_id, *, max_duplicates=0):
    """Every row published and received, at most `max_duplicates` extra copies, per-customer order kept."""
    await consumer.flush()
    rows = await fetch(
        "SELECT event_id::text AS event_id, customer_id::text AS customer_id, published_at"
        " FROM outbox WHERE business_id = :b ORDER BY id",
        b=business_id,
    )
    assert rows and all(row["published_at"] is not None for row in rows)
    received = consumer.bodies(business_id)
    received_ids = [body["event_id"] for body in received]
    assert set(received_ids) == {row["event_id"] for row in rows}  # 0 lost
    duplicates = len(received_ids) - len(set(received_ids))
    assert duplicates <= max_duplicates
    by_customer: dict[str, list[str]] = {}
    for row in rows:
        by_customer.setdefault(row["customer_id"], []).append(row["event_id"])
    for customer_id, in_outbox in by_customer.items():
        arrived: list[str] = []
        for body in received:  # first arrival of each event: a republished copy may come later
            if body["customer_id"] == customer_id and body["event_id"] not in arrived:
                arrived.append(body["event_id"])
        assert arrived == in_outbox, f"order of customer {customer_id}"
    return duplicates


def test_describe_keeps_errors_short_and_stable():
    error = RuntimeError("Channel <aio_pika.robust_channel.RobustChannel object at 0x7f2c1a2b3c4d> closed")
    assert describe(error) == "RuntimeError: Channel RobustChannel closed"
    assert describe(ConnectionResetError()) == "ConnectionResetError"


async def test_broker_outage_publishing_resumes_at_once_and_readiness_tells(
    relay_settings, consumer, rabbitmq, world, engine, fetch, database_url
):
    await _drain(relay_settings, database_url, fetch)
    customers = [uuid.uuid4() for _ in range(20)]
    async with proxied(rabbitmq, 5672) as (proxy, broker_url):
        # Without the reconnect cutting the backoff short, the relay would sit out up to 30 s
        # after the broker is back.
        # Production-like backoff and poll; the activity consumer runs in the app too (on its
        # own test topology), behind the same proxy.
        settings = activity_settings_for(
            database_url,
            **broker_names("faults"),
            rabbitmq_url=broker_url,
            events_exchange=relay_settings().events_exchange,
            audit_exchange=relay_settings().audit_exchange,
            relay_enabled=True,
            relay_poll_seconds=5.0,
            relay_max_backoff_seconds=30.0,
            relay_publish_timeout_seconds=5.0,
        )
        app = create_app(settings)
        async with running_app(app), client_for(app) as http:
            await _enqueue(engine, world.business_id, customers[:1], 1)
            await consumer.wait_for_count(world.business_id, 1)
            await eventually(
                lambda: _ready_states(http, want=("up", "leader", "up")), what="readiness up before the outage"
            )

            await proxy.stop()  # the broker goes away under established connections
            await _enqueue(engine, world.business_id, customers, 10)  # 200 events while it is away
            await eventually(lambda: _failed(fetch, world.business_id), what="the relay to record the outage")
            await asyncio.sleep(4)  # long enough for the backoff to grow past the recovery target
            response = await http.get("/readyz")
            assert response.status_code == 200  # a broker outage never takes the API out of rotation
            checks = response.json()["checks"]
            events = checks["events"]
            assert events["relay"] == "leader"
            assert events["status"] in ("reconnecting", "down")
            assert events["broker"]["status"] in ("reconnecting", "down")
            assert events["broker"]["since_seconds"] > 0
            assert " at 0x" not in str(events)
            assert events["outbox"]["pending"] >= 200
            assert checks["activity_consumer"]["status"] in ("reconnecting", "down")  # never `up` meanwhile
            assert await _pending(fetch, world.business_id) == 200

            await proxy.start()
            await eventually(
                lambda: _pending_is(fetch, 0, world.business_id),
                what="publishing to resume after the broker's return",
                seconds=RECOVERY_SECONDS,
            )
            await eventually(lambda: _ready_states(http, want=("up", "leader", "up")), what="readiness up again")
            events = (await http.get("/readyz")).json()["checks"]["events"]
            assert events["outbox"]["last_publish_seconds_ago"] is not None
            assert events["relay_detail"]["last_confirm_seconds_ago"] is not None
        await remove_topology(settings)

    await _assert_all_delivered_in_order(consumer, fetch, world.business_id, max_duplicates=0)


async def _ready_states(http, *, want):
    checks = (await http.get("/readyz")).json()["checks"]
    events, activity = checks["events"], checks.get("activity_consumer", {"status": "up"})
    return (events["broker"]["status"], events["relay"], activity["status"]) == want


async def _failed(fetch, business_id):
    [row] = await fetch(
        "SELECT count(*) AS n FROM outbox WHERE business_id = :b AND published_at IS NULL AND last_error IS NOT NULL",
        b=business_id,
    )
    return row["n"] > 0


async def test_database_outage_is_noticed_at_once_then_the_relay_resumes(
    relay_settings, consumer, world, engine, fetch, database_url
):
    await _drain(relay_settings, database_url, fetch)
    customers = [uuid.uuid4() for _ in range(5)]
    async with proxied(database_url, 5432) as (proxy, relay_database_url):
        # A 30 s poll: noticing the lost connection "at the next poll" would miss every deadline here.
        settings = relay_settings(relay_poll_seconds=30.0)
        async with running_relay(settings, relay_database_url) as relay:
            await eventually(lambda: relay.state == "leader", what="the relay to lead")
            await _enqueue(engine, world.business_id, customers, 2)
            await consumer.wait_for_count(world.business_id, 10)

            await proxy.stop()  # the relay's database connection is cut
            await eventually(lambda: relay.state == "reconnecting", what="the relay to notice", seconds=3)
            report = relay.relay_report()
            assert report["error"]
            assert " at 0x" not in report["error"]
            assert relay.broker_report()["status"] == "not_connected"
            await _enqueue(engine, world.business_id, customers, 2)  # the API keeps writing meanwhile
            await asyncio.sleep(1)
            assert relay.state == "reconnecting"  # not `standby`: nobody else holds the lock

            await proxy.start()
            await eventually(lambda: relay.state == "leader", what="the relay to lead again", seconds=RECOVERY_SECONDS)
            await eventually(
                lambda: _pending_is(fetch, 0, world.business_id),
                what="publishing to resume after the database's return",
                seconds=RECOVERY_SECONDS,
            )

    await _assert_all_delivered_in_order(consumer, fetch, world.business_id, max_duplicates=0)


async def test_standby_names_the_lock_holder(relay_settings, database_url):
    settings = relay_settings()
    async with running_relay(settings, database_url) as first:
        await eventually(lambda: first.state == "leader", what="the first relay to lead")
        async with running_relay(settings, database_url) as second:
            await eventually(lambda: second.state == "standby", what="the second relay to stand by")
            report = second.relay_report()
            assert report["lock_holder"]["application_name"] == first.application_name
            assert report["lock_holder"]["pid"] > 0
            assert second.broker_report()["status"] == "standby"


MAX_DUPLICATES_PER_KILL = 10
KILLS = 3


async def test_relay_killed_mid_batch_republishes_only_a_few(
    relay_settings, consumer, rabbitmq, exchange_name, world, engine, fetch, database_url
):
    await _drain(relay_settings, database_url, fetch)
    customers = [uuid.uuid4() for _ in range(1000)]
    total = len(customers) * 4
    await _enqueue(engine, world.business_id, customers, 4)
    for kill in range(KILLS):
        before = total - await _pending(fetch, world.business_id)
        process = await spawn_relay(database_url, rabbitmq, exchange_name)
        try:
            # Saturated: thousands pending, the relay is in the middle of a batch when it dies.
            await eventually(
                lambda before=before: _published_at_least(fetch, world.business_id, total, before + 300),
                what=f"kill {kill}: the relay to be publishing",
                seconds=60,
            )
        finally:
            process.send_signal(signal.SIGKILL)
            await process.wait()
        assert await _pending(fetch, world.business_id) > 0, "killed too late: nothing left mid-batch"

    async with running_relay(relay_settings(), database_url):
        await eventually(lambda: _pending_is(fetch, 0, world.business_id), what="the rest to go out", seconds=60)
    duplicates = await _assert_all_delivered_in_order(
        consumer, fetch, world.business_id, max_duplicates=MAX_DUPLICATES_PER_KILL * KILLS
    )
    print(f"{KILLS} kills mid-batch: {duplicates} duplicates")  # shown with -s


async def _published_at_least(fetch, business_id, total, count):
    return total - await _pending(fetch, business_id) >= count
