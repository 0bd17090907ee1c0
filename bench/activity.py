"""Benchmark: the activity consumer applying upstream events into a fresh database.

    .venv/bin/python bench/activity.py [--mode backlog|live] [--events 100000] [--customers 10000]
                                       [--prefetch N] [--concurrency N] [--batch-size N]

Consumer settings left out take the service's defaults (core/config.py: prefetch 1000,
concurrency 1, batches of 500, linger 50 ms).

What it does:
1. creates a fresh database on BEE_BENCH_DATABASE_URL's server (default
   postgresql://postgres@127.0.0.1:5432/postgres), migrates it, seeds N customers in one business;
2. declares a topology with names unique to this run (bench.<random>.*) on BEE_BENCH_RABBITMQ_URL
   (default amqp://guest:guest@127.0.0.1:5672/) and starts `bee-customers consume` as a separate
   process with the given prefetch / concurrency / batch size;
3. publishes the events (completed / returned / cancelled orders, booked / completed / cancelled /
   no-show appointments, ~1% redeliveries of an earlier event, in random order, so returns often
   arrive before their completions) as fast as the broker confirms them;
4. waits until every distinct event is in processed_events, then prints events/s applied, the lag
   (publish -> commit, from processed_events.processed_at) and checks every customer's totals
   against what was published: zero lost, zero double-counted, nothing dead-lettered;
5. drops the database and deletes the topology.
"""

import argparse
import asyncio
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import aio_pika
import asyncpg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bee_customers_service.activity.consumer import declare_topology, delete_topology  # noqa: E402
from bee_customers_service.cli import run_migrations  # noqa: E402
from bee_customers_service.core.config import Settings  # noqa: E402

SERVER_URL = os.environ.get("BEE_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
RABBITMQ_URL = os.environ.get("BEE_BENCH_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")


@dataclass
class Expected:
    total_orders: int = 0
    lifetime_cents: int = 0
    returned_orders: int = 0
    cancelled_orders: int = 0
    total_appointments: int = 0
    cancelled_appointments: int = 0
    no_shows: int = 0
    open_orders: list[tuple[str, int]] = field(default_factory=list)  # completed, not yet returned


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def generate(
    business_id: uuid.UUID, users: list[uuid.UUID], count: int, rng: random.Random
) -> tuple[list[tuple[str, dict]], dict[uuid.UUID, Expected], int]:
    """`count` messages (routing key, body) and what each customer's totals must be afterwards."""
    expected: dict[uuid.UUID, Expected] = defaultdict(Expected)
    messages: list[tuple[str, dict]] = []
    now = datetime.now(UTC)
    duplicates = 0
    while len(messages) < count:
        user = rng.choice(users)
        mine = expected[user]
        base = {"event_id": str(uuid.uuid4()), "user_id": str(user), "business_id": str(business_id)}
        when = now - timedelta(minutes=rng.randrange(1, 300 * 24 * 60))
        roll = rng.random()
        if roll < 0.01 and messages:
            messages.append(rng.choice(messages))  # a redelivery: same event id, must change nothing
            duplicates += 1
            continue
        if roll < 0.11 and mine.open_orders:
            order_id, cents = mine.open_orders.pop(rng.randrange(len(mine.open_orders)))
            refund = cents // 2
            mine.returned_orders += 1
            mine.lifetime_cents -= refund
            body = {**base, "order_id": order_id, "amount": f"{refund / 100:.2f}", "returned_at": _iso(when)}
            messages.append(("v1.order.returned", body))
        elif roll < 0.56:
            cents = rng.randrange(500, 50_000)
            order_id = str(uuid.uuid4())
            mine.total_orders += 1
            mine.lifetime_cents += cents
            mine.open_orders.append((order_id, cents))
            body = {**base, "order_id": order_id, "total": f"{cents / 100:.2f}", "currency": "RON"}
            messages.append(("v1.order.completed", {**body, "completed_at": _iso(when)}))
        elif roll < 0.61:
            mine.cancelled_orders += 1
            body = {**base, "order_id": str(uuid.uuid4()), "cancelled_at": _iso(when)}
            messages.append(("v1.order.cancelled", body))
        else:
            status = rng.choices(["completed", "booked", "cancelled", "no_show"], weights=[25, 5, 5, 4])[0]
            starts = now + timedelta(days=rng.randrange(1, 30)) if status == "booked" else when
            mine.total_appointments += status == "completed"
            mine.cancelled_appointments += status == "cancelled"
            mine.no_shows += status == "no_show"
            body = {**base, "appointment_id": str(uuid.uuid4()), "starts_at": _iso(starts), f"{status}_at": _iso(when)}
            messages.append((f"v1.appointment.{status}", body))
    rng.shuffle(messages)  # out of order: a return often comes before its completion
    return messages, expected, duplicates


async def seed(url: str, business_id: uuid.UUID, users: list[uuid.UUID]) -> None:
    connection = await asyncpg.connect(url)
    try:
        await connection.copy_records_to_table(
            "customers",
            records=[
                (uuid.uuid4(), user, business_id, f"Bench {n}", f"bench{n}@example.com") for n, user in enumerate(users)
            ],
            columns=["id", "user_id", "business_id", "full_name", "email"],
        )
    finally:
        await connection.close()


async def publish_all(settings: Settings, messages: list[tuple[str, dict]]) -> tuple[float, dict[str, float]]:
    """Publish everything; returns (seconds, publish time of each event id).

    Without publisher confirms: with them the Python client, not the consumer, would be what is
    measured (~900 msg/s here). Nothing can be lost unnoticed: the totals are checked at the end.
    """
    published: dict[str, float] = {}
    connection = await aio_pika.connect(RABBITMQ_URL)
    async with connection:
        channel = await connection.channel(publisher_confirms=False)
        orders = await channel.get_exchange(settings.orders_exchange)
        scheduling = await channel.get_exchange(settings.scheduling_exchange)
        started = time.perf_counter()
        for key, body in messages:
            exchange = orders if key.startswith("v1.order.") else scheduling
            published.setdefault(body["event_id"], time.time())
            await exchange.publish(
                aio_pika.Message(
                    json.dumps(body).encode(),
                    content_type="application/json",
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    message_id=body["event_id"],
                ),
                routing_key=key,
                mandatory=False,
            )
        return time.perf_counter() - started, published


async def topology(settings: Settings, *, delete: bool = False) -> int:
    """Declare (or delete) the run's topology; returns the number of dead letters on delete."""
    connection = await aio_pika.connect(RABBITMQ_URL)
    async with connection:
        channel = await connection.channel()
        if not delete:
            await declare_topology(channel, settings)
            return 0
        dlq = await channel.declare_queue(settings.activity_dead_letter_queue, durable=True, passive=True)
        dead = dlq.declaration_result.message_count or 0
        await delete_topology(channel, settings)
        return dead


async def verify(url: str, business_id: uuid.UUID, expected: dict[uuid.UUID, Expected]) -> tuple[int, dict[str, tuple]]:
    connection = await asyncpg.connect(url)
    try:
        rows = await connection.fetch(
            """
            SELECT c.user_id, c.total_orders, c.lifetime_value, c.total_appointments,
                   coalesce(h.returned_orders, 0) AS returned_orders,
                   coalesce(h.cancelled_orders, 0) AS cancelled_orders,
                   coalesce(h.cancelled_appointments, 0) AS cancelled_appointments,
                   coalesce(h.no_shows, 0) AS no_shows
            FROM customers c LEFT JOIN customer_history h ON h.customer_id = c.id
            WHERE c.business_id = $1
            """,
            business_id,
        )
    finally:
        await connection.close()
    fields = (
        "total_orders",
        "returned_orders",
        "cancelled_orders",
        "total_appointments",
        "cancelled_appointments",
        "no_shows",
    )
    mismatched = 0
    totals: dict[str, list] = {name: [0, 0] for name in (*fields, "lifetime_value")}
    for row in rows:
        want = expected.get(row["user_id"], Expected())
        got_values = {name: row[name] for name in fields} | {"lifetime_value": row["lifetime_value"]}
        want_values = {name: getattr(want, name) for name in fields} | {
            "lifetime_value": Decimal(want.lifetime_cents) / 100
        }
        mismatched += got_values != want_values
        for name in totals:
            totals[name][0] += want_values[name]
            totals[name][1] += got_values[name]
    return mismatched, {name: tuple(pair) for name, pair in totals.items()}


async def count_processed(url: str) -> int:
    connection = await asyncpg.connect(url)
    try:
        return await connection.fetchval("SELECT count(*) FROM processed_events")
    finally:
        await connection.close()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process on this machine (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def backend_pids(url: str, name: str) -> list[int]:
    connection = await asyncpg.connect(url)
    try:
        rows = await connection.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()", name
        )
        return [row["pid"] for row in rows]
    finally:
        await connection.close()


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--customers", type=int, default=10_000)
    # The service's own defaults (core/config.py), so a bare run measures what `serve` runs.
    defaults = Settings.model_fields
    parser.add_argument("--prefetch", type=int, default=defaults["activity_prefetch"].default)
    parser.add_argument("--concurrency", type=int, default=defaults["activity_concurrency"].default)
    parser.add_argument("--batch-size", type=int, default=defaults["activity_batch_size"].default)
    parser.add_argument("--linger-ms", type=int, default=defaults["activity_batch_linger_ms"].default)
    parser.add_argument("--processes", type=int, default=1, help="consumer processes (replicas) on the same queue")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--mode",
        choices=["live", "backlog"],
        default="live",
        help="live: the consumer runs while events are published (lag); backlog: drain a full queue (capacity)",
    )
    parser.add_argument("--timeout", type=float, default=600.0, help="give up waiting after this many seconds")
    args = parser.parse_args()

    rng = random.Random(args.seed)
    name = f"bee_bench_activity_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(SERVER_URL)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    base = SERVER_URL.rsplit("/", 1)[0]
    url = f"{base}/{name}"
    suffix = uuid.uuid4().hex[:10]
    env = {
        "BEE_DATABASE_URL": url,
        "BEE_RABBITMQ_URL": RABBITMQ_URL,
        "BEE_ORDERS_EXCHANGE": f"bench.{suffix}.orders.events",
        "BEE_SCHEDULING_EXCHANGE": f"bench.{suffix}.scheduling.events",
        "BEE_ACTIVITY_QUEUE": f"bench.{suffix}.customers.activity",
        "BEE_ACTIVITY_DEAD_LETTER_EXCHANGE": f"bench.{suffix}.customers.activity.dlx",
        "BEE_ACTIVITY_DEAD_LETTER_QUEUE": f"bench.{suffix}.customers.activity.dlq",
        "BEE_ACTIVITY_PREFETCH": str(args.prefetch),
        "BEE_ACTIVITY_CONCURRENCY": str(args.concurrency),
        "BEE_ACTIVITY_BATCH_SIZE": str(args.batch_size),
        "BEE_ACTIVITY_BATCH_LINGER_MS": str(args.linger_ms),
        "BEE_DATABASE_POOL_SIZE": str(args.concurrency + 2),
    }
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=url,
        rabbitmq_url=RABBITMQ_URL,
        orders_exchange=env["BEE_ORDERS_EXCHANGE"],
        scheduling_exchange=env["BEE_SCHEDULING_EXCHANGE"],
        activity_queue=env["BEE_ACTIVITY_QUEUE"],
        activity_dead_letter_exchange=env["BEE_ACTIVITY_DEAD_LETTER_EXCHANGE"],
        activity_dead_letter_queue=env["BEE_ACTIVITY_DEAD_LETTER_QUEUE"],
    )
    consumers: list[subprocess.Popen] = []
    log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"{name}.consumer.log"  # noqa: S108
    try:
        await asyncio.to_thread(run_migrations, url.replace("postgresql://", "postgresql+asyncpg://", 1))
        business_id = uuid.uuid4()
        users = [uuid.uuid4() for _ in range(args.customers)]
        await seed(url, business_id, users)
        messages, expected, duplicates = generate(business_id, users, args.events, rng)
        distinct = len(messages) - duplicates
        await topology(settings)

        def start_consumer() -> subprocess.Popen:
            with log_path.open("a") as log_file:
                return subprocess.Popen(
                    [sys.executable, "-m", "bee_customers_service.cli", "consume"],
                    env={**os.environ, **env},
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    cwd=ROOT,
                )

        if args.mode == "live":
            consumers = [start_consumer() for _ in range(args.processes)]
            await asyncio.sleep(3.0)  # connected and idle before the first event
            started = time.perf_counter()
            publish_seconds, published_at = await publish_all(settings, messages)
        else:  # backlog: everything is queued first, then the consumers drain it
            publish_seconds, published_at = await publish_all(settings, messages)
            consumers = [start_consumer() for _ in range(args.processes)]
            started = time.perf_counter()
        done = 0
        while done < distinct:
            if time.perf_counter() - started > args.timeout:
                print(f"gave up: {done} of {distinct} events applied after {args.timeout}s", file=sys.stderr)
                return 1
            await asyncio.sleep(0.25)
            done = await count_processed(url)
        elapsed = time.perf_counter() - started
        # CPU time is what a busy, shared machine disturbs least: the consumer processes' own (from
        # their start, imports included) and their PostgreSQL backends'.
        consumer_cpu = sum(cpu_seconds(consumer.pid) for consumer in consumers)
        database_cpu = sum(cpu_seconds(pid) for pid in await backend_pids(url, name))
        await asyncio.sleep(1.0)  # the redeliveries settle (they change nothing; the check below proves it)

        connection = await asyncpg.connect(url)
        rows = await connection.fetch(
            "SELECT event_id::text AS id, extract(epoch FROM processed_at) AS at FROM processed_events"
        )
        await connection.close()
        lags = sorted(max(0.0, float(r["at"]) - published_at[r["id"]]) for r in rows)
        mismatched, totals = await verify(url, business_id, expected)
    finally:
        for consumer in consumers:
            consumer.send_signal(signal.SIGTERM)
        for consumer in consumers:
            try:
                consumer.wait(timeout=30)
            except subprocess.TimeoutExpired:
                consumer.kill()
        dead = await topology(settings, delete=True)
        admin = await asyncpg.connect(SERVER_URL)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()

    def pct(q: float) -> float:
        return lags[min(len(lags) - 1, int(q * len(lags)))]

    print()
    print("| setting | value |\n| --- | --- |")
    print(f"| mode | {args.mode} |")
    print(f"| events published (of which redeliveries) | {len(messages):,} ({duplicates:,}) |")
    print(f"| customers | {args.customers:,} |")
    knobs = f"{args.processes} / {args.prefetch} / {args.concurrency} / {args.batch_size} / {args.linger_ms} ms"
    print(f"| consumer processes / prefetch / concurrency / batch size / linger | {knobs} |")
    print()
    print("| measure | value |\n| --- | --- |")
    print(f"| publish rate | {len(messages) / publish_seconds:,.0f} msg/s |")
    print(f"| applied (distinct events) | {done:,} in {elapsed:.1f} s |")
    print(f"| **events/s applied** | **{done / elapsed:,.0f}** |")
    print(
        f"| CPU per event: consumer process(es) / their database backends | {consumer_cpu / done * 1000:.3f} ms /"
        f" {database_cpu / done * 1000:.3f} ms |"
    )
    lag = f"{statistics.median(lags):.2f} s / {pct(0.95):.2f} s / {lags[-1]:.2f} s"
    print(f"| lag publish -> commit p50 / p95 / max | {lag} |")
    print(f"| customers whose totals differ from what was published | {mismatched} |")
    print(f"| dead-lettered | {dead} |")
    print()
    print("| total over all customers | published | stored |\n| --- | --- | --- |")
    for metric, (want, got) in totals.items():
        print(f"| {metric} | {want} | {got} |")
    ok = mismatched == 0 and dead == 0 and all(want == got for want, got in totals.values())
    print()
    print("OK: zero lost, zero double-counted" if ok else "MISMATCH: see the table above")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
