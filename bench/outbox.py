"""Outbox relay benchmark: relay throughput vs a bare aio-pika loop, and commit-to-delivery latency.

    .venv/bin/python bench/outbox.py [--events 100000] [--rate 200] [--latency-seconds 15]

1. Throughput. `--events` outbox rows (v1.customer.updated over 10,000 customers, bodies built as
   `enqueue` builds them) are inserted, then:
   - bare: one aio-pika channel with publisher confirms publishes the same messages (same body,
     properties, routing key, mandatory), `--batch-size` at a time with their confirms gathered;
   - relay: an `OutboxRelay` drains the outbox (claim, publish with confirms, mark published).
   Both publish to a length-limited sink queue with no consumer, so only publishing is measured.
2. Latency. With the relay running and a consumer on the exchange, changes are committed at
   `--rate` per second (a transaction with `enqueue` + commit each, as the service does) for
   `--latency-seconds`; latency = time the consumer receives the event - time COMMIT was sent.

Everything runs in a fresh database (created and dropped here) and a fresh exchange (deleted at
the end), so it never touches other data. Needs PostgreSQL (`BEE_BENCH_DATABASE_URL`, default
`postgresql://postgres@127.0.0.1:5432/test` as the server to create the database on) and RabbitMQ
(`BEE_BENCH_RABBITMQ_URL`, default `amqp://guest:guest@127.0.0.1:5672/`).
"""

import argparse
import asyncio
import contextlib
import logging
import multiprocessing
import os
import platform
import random
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aio_pika
import asyncpg
import orjson
import structlog

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bee_customers_service.cli import run_migrations  # noqa: E402
from bee_customers_service.core.config import Settings  # noqa: E402
from bee_customers_service.core.db import to_async_url  # noqa: E402
from bee_customers_service.events import outbox  # noqa: E402
from bee_customers_service.events.broker import OutgoingEvent, build_message  # noqa: E402
from bee_customers_service.events.relay import OutboxRelay  # noqa: E402

SERVER_URL = os.environ.get("BEE_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
RABBITMQ_URL = os.environ.get("BEE_BENCH_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")
CUSTOMERS = 10_000


def database_url(name: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(SERVER_URL).set(database=name).render_as_string(hide_password=False)


async def create_database() -> tuple[str, str]:
    name = f"bee_bench_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(SERVER_URL)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return name, database_url(name)


async def drop_database(name: str) -> None:
    admin = await asyncpg.connect(SERVER_URL)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


def build_rows(count: int) -> list[tuple]:
    """Outbox rows shaped like the service's v1.customer.updated events."""
    business_id = uuid.uuid4()
    customers = [uuid.uuid4() for _ in range(CUSTOMERS)]
    rows = []
    for _ in range(count):
        customer_id = random.choice(customers)
        body = outbox.build_event(
            "v1.customer.updated",
            business_id=business_id,
            fields={
                "customer_id": customer_id,
                "user_id": uuid.uuid4(),
                "fields_changed": ["phone"],
                "phone": "+40712345678",
                "updated_by": uuid.uuid4(),
                "updated_at": "2026-11-30T10:00:00Z",
            },
        )
        rows.append((uuid.UUID(body["event_id"]), "v1.customer.updated", business_id, customer_id, body))
    return rows


async def insert_rows(dsn: str, rows: list[tuple]) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        await connection.copy_records_to_table(
            "outbox",
            records=[(*row[:4], orjson.dumps(row[4]).decode()) for row in rows],
            columns=["event_id", "event_name", "business_id", "customer_id", "payload"],
        )
        await connection.execute("ANALYZE outbox")
    finally:
        await connection.close()


async def bare_loop(exchange_name: str, rows: list[tuple], batch_size: int) -> tuple[float, float]:
    """Publish the same messages with confirms, `batch_size` confirms gathered at a time.

    Returns events/s and this process's CPU milliseconds per event.
    """
    events = [
        OutgoingEvent(
            event_id=str(event_id),
            name=name,
            body=orjson.dumps(body),
            trace_id=body["trace_id"],
            request_id=body["request_id"],
            occurred_at=datetime.now(UTC),
        )
        for event_id, name, _business, _customer, body in rows
    ]
    connection = await aio_pika.connect_robust(RABBITMQ_URL)
    async with connection:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        exchange = await channel.declare_exchange(exchange_name, aio_pika.ExchangeType.TOPIC, durable=True)

        async def publish(event: OutgoingEvent) -> None:
            message = build_message(event, app_id="bee_customers_service")
            await exchange.publish(message, routing_key=event.name, mandatory=True)

        started, cpu = time.perf_counter(), time.process_time()
        for start in range(0, len(events), batch_size):
            await asyncio.gather(*(publish(event) for event in events[start : start + batch_size]))
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    return len(events) / elapsed, cpu * 1000 / len(events)


def relay_settings(db_url: str, exchange_name: str, batch_size: int) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=db_url,
        environment="test",
        rabbitmq_url=RABBITMQ_URL,
        events_exchange=exchange_name,
        relay_batch_size=batch_size,
        database_pool_size=5,
    )


async def relay_throughput(settings: Settings, db_url: str, count: int) -> tuple[float, float]:
    """Drain `count` pending rows with a fresh relay; events/s and CPU milliseconds per event."""
    relay = OutboxRelay(settings, db_url)
    started, cpu = time.perf_counter(), time.process_time()
    relay.start()
    while relay.published_count < count:  # noqa: ASYNC110 (polling is the measurement)
        await asyncio.sleep(0.005)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    await relay.stop()
    return count / elapsed, cpu * 1000 / count


async def reset_outbox(plain_url: str) -> None:
    """Make every row pending again for the next round (not timed)."""
    connection = await asyncpg.connect(plain_url)
    try:
        await connection.execute("UPDATE outbox SET published_at = NULL, attempts = 0")
        await connection.execute("VACUUM ANALYZE outbox")
    finally:
        await connection.close()


# The outbox row and its NOTIFY in one transaction (what `enqueue` + commit does), in one round trip.
CHANGE_SQL = """
WITH row AS (
    INSERT INTO outbox (event_id, event_name, business_id, customer_id, payload)
    VALUES ($1, $2, $3, $4, $5::jsonb) RETURNING id
)
SELECT pg_notify($6, '') FROM row
"""


async def produce(plain_url: str, rate: float, seconds: float) -> tuple[dict[str, float], dict[str, float], float]:
    """Commit changes at `rate`/s; when each COMMIT was sent, when it returned, and the achieved rate."""
    sent: dict[str, float] = {}
    committed: dict[str, float] = {}
    pool = await asyncpg.create_pool(plain_url, min_size=4, max_size=8)
    business_id = uuid.uuid4()
    customers = [uuid.uuid4() for _ in range(1000)]

    async def change() -> None:
        customer_id = random.choice(customers)
        body = outbox.build_event(
            "v1.customer.updated",
            business_id=business_id,
            fields={"customer_id": customer_id, "fields_changed": ["phone"], "phone": "+40712345678"},
        )
        payload = orjson.dumps(body).decode()
        async with pool.acquire() as db:
            sent[body["event_id"]] = time.perf_counter()
            await db.execute(
                CHANGE_SQL,
                uuid.UUID(body["event_id"]),
                "v1.customer.updated",
                business_id,
                customer_id,
                payload,
                outbox.OUTBOX_CHANNEL,
            )
            committed[body["event_id"]] = time.perf_counter()

    total = int(rate * seconds)
    tasks = []
    started = time.perf_counter()
    for i in range(total):
        delay = started + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(change()))
    await asyncio.gather(*tasks)
    achieved = total / (time.perf_counter() - started)
    await pool.close()
    return sent, committed, achieved


def producer_process(plain_url: str, rate: float, seconds: float, results: Any) -> None:
    import uvloop

    results.put(("producer", uvloop.run(produce(plain_url, rate, seconds))))


async def consume(exchange_name: str, expected: int, ready: Any) -> dict[str, float]:
    """Receive `expected` events; when each arrived."""
    received: dict[str, float] = {}
    done = asyncio.Event()
    connection = await aio_pika.connect_robust(RABBITMQ_URL)
    channel = await connection.channel()
    exchange = await channel.declare_exchange(exchange_name, aio_pika.ExchangeType.TOPIC, durable=True)
    queue = await channel.declare_queue(exclusive=True, auto_delete=True)
    await queue.bind(exchange, routing_key="v1.customer.#")

    def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        received[message.message_id or ""] = time.perf_counter()
        if len(received) >= expected:
            done.set()

    await queue.consume(on_message, no_ack=True)  # type: ignore[arg-type]
    ready.set()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(done.wait(), timeout=expected / 50 + 60)
    await connection.close()
    return received


def consumer_process(exchange_name: str, expected: int, ready: Any, results: Any) -> None:
    import uvloop

    results.put(("consumer", uvloop.run(consume(exchange_name, expected, ready))))


async def latency(
    settings: Settings, db_url: str, plain_url: str, exchange_name: str, rate: float, seconds: float
) -> dict[str, Any]:
    """The relay here; a producer and a consumer in processes of their own, as in production.

    Milliseconds from the commit's return (what the service sees as "committed") to delivery, the
    same from the moment COMMIT was sent (a pessimistic bound), the commit's own duration, and the
    achieved rate.
    """
    relay = OutboxRelay(settings, db_url)
    cpu = time.process_time()
    relay.start()
    while relay.role != "leader":  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    ready = context.Event()
    expected = int(rate * seconds)
    consumer = context.Process(target=consumer_process, args=(exchange_name, expected, ready, results))
    consumer.start()
    await asyncio.to_thread(ready.wait, 60)
    producer = context.Process(target=producer_process, args=(plain_url, rate, seconds, results))
    producer.start()
    outputs = dict([await asyncio.to_thread(results.get), await asyncio.to_thread(results.get)])
    await asyncio.to_thread(producer.join)
    await asyncio.to_thread(consumer.join)
    await relay.stop()
    cpu = time.process_time() - cpu
    sent, committed, achieved = outputs["producer"]
    received = outputs["consumer"]
    missing = len(committed.keys() - received.keys())
    if missing:
        raise SystemExit(f"{missing} events were not delivered")
    delivered = [(received[event_id] - done) * 1000 for event_id, done in committed.items()]
    from_sent = [(received[event_id] - start) * 1000 for event_id, start in sent.items()]
    commit_time = [(committed[event_id] - start) * 1000 for event_id, start in sent.items()]
    return {
        "delivered": delivered,
        "from_sent": from_sent,
        "commit": commit_time,
        "achieved": achieved,
        "relay_cpu_ms": cpu * 1000 / len(committed),
    }


async def delete_exchange(name: str) -> None:
    connection = await aio_pika.connect(RABBITMQ_URL)
    async with connection:
        channel = await connection.channel()
        await channel.exchange_delete(name)


async def declare_sink(exchange_name: str) -> aio_pika.abc.AbstractConnection:
    """A queue that keeps only the newest 1,000 messages: routable, no consumer needed."""
    connection = await aio_pika.connect(RABBITMQ_URL)
    channel = await connection.channel()
    exchange = await channel.declare_exchange(exchange_name, aio_pika.ExchangeType.TOPIC, durable=True)
    queue = await channel.declare_queue(exclusive=True, arguments={"x-max-length": 1000})
    await queue.bind(exchange, routing_key="v1.customer.#")
    return connection


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=Settings.model_fields["relay_batch_size"].default)
    parser.add_argument("--rounds", type=int, default=1, help="bare/relay rounds, alternated; the best of each")
    parser.add_argument("--rate", type=float, default=200.0, help="changes per second for the latency run")
    parser.add_argument("--latency-seconds", type=float, default=15.0)
    args = parser.parse_args()

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    logging.getLogger("aio_pika").setLevel(logging.WARNING)
    exchange_name = f"bee.customers.events.bench.{uuid.uuid4().hex[:12]}"
    name, plain_url = await create_database()
    db_url = to_async_url(plain_url)
    load_before = os.getloadavg()[0]
    sink = None
    bare_runs: list[tuple[float, float]] = []
    relay_runs: list[tuple[float, float]] = []
    try:
        await asyncio.to_thread(run_migrations, db_url)
        settings = relay_settings(db_url, exchange_name, args.batch_size)
        sink = await declare_sink(exchange_name)

        rows = build_rows(args.events)
        await insert_rows(plain_url, rows)
        for round_number in range(args.rounds):
            if round_number:
                await reset_outbox(plain_url)
            bare_runs.append(await bare_loop(exchange_name, rows, args.batch_size))
            relay_runs.append(await relay_throughput(settings, db_url, args.events))

        measured = await latency(settings, db_url, plain_url, exchange_name, args.rate, args.latency_seconds)
    finally:
        if sink is not None:
            await sink.close()
        await delete_exchange(exchange_name)
        await drop_database(name)
    load_after = os.getloadavg()[0]

    bare, bare_cpu = max(bare_runs)
    relay, relay_cpu = max(relay_runs)
    ratio = relay / bare
    latencies, achieved = measured["delivered"], measured["achieved"]
    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
    print()
    print(
        f"outbox relay: {args.events:,} events, batch {args.batch_size}, best of {args.rounds} round(s); "
        f"python {platform.python_version()}, aio-pika {aio_pika.__version__}, {os.cpu_count()} cpus, "
        f"load average {load_before:.1f} -> {load_after:.1f}"
    )
    print()
    print("| measure | result | target |")
    print("| --- | ---: | --- |")
    print(f"| bare aio-pika loop, confirms ({args.batch_size} gathered) | {bare:,.0f} events/s | |")
    print(f"| relay: claim, publish with confirms, mark published | {relay:,.0f} events/s | |")
    print(f"| relay / bare | {ratio:.0%} | >= 70% {'ok' if ratio >= 0.7 else 'MISSED'} |")
    print(f"| CPU per event: bare / relay | {bare_cpu:.2f} / {relay_cpu:.2f} ms | |")
    print(f"| commit -> delivered p50 ({len(latencies):,} changes at {achieved:.0f}/s) | {p50:.1f} ms | |")
    verdict = "ok" if p99 < 100 else "MISSED"
    print(f"| commit -> delivered p99 (asked {args.rate:.0f}/s) | {p99:.1f} ms | < 100 ms {verdict} |")
    print(f"| commit -> delivered max | {max(latencies):.1f} ms | |")
    print(
        f"| COMMIT sent -> delivered p50 / p99 (includes the commit) | "
        f"{percentile(measured['from_sent'], 50):.1f} / {percentile(measured['from_sent'], 99):.1f} ms | |"
    )
    print(
        f"| the commit itself (WAL flush) p50 / p99 | "
        f"{percentile(measured['commit'], 50):.1f} / {percentile(measured['commit'], 99):.1f} ms | |"
    )
    print(f"| commit -> delivered mean | {statistics.fmean(latencies):.1f} ms | |")
    print(f"| relay CPU per event during the latency run | {measured['relay_cpu_ms']:.2f} ms | |")
    if args.rounds > 1:
        print()
        print(
            "rounds (events/s): bare "
            + ", ".join(f"{r:,.0f}" for r, _ in bare_runs)
            + "; relay "
            + ", ".join(f"{r:,.0f}" for r, _ in relay_runs)
        )


if __name__ == "__main__":
    import uvloop

    uvloop.run(main())
