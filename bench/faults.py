"""Fault runs for the outbox relay: broker outage, database outage, relay kills. Prints a table.

    .venv/bin/python bench/faults.py [--writes 1500] [--rate 100] [--outages 3 10] [--kills 5]

1. Broker outage: an `OutboxRelay` (production settings: 5 s poll, 30 s max backoff) publishes
   through a TCP proxy to RabbitMQ while `--writes` outbox events are committed at `--rate`/s (one
   transaction with `enqueue` each, as the service does). The proxy is cut for each `--outages`
   length (seconds) 2 s into the writes, then restored. Recovery = restore -> the outbox is
   caught up (pending <= 5 while the writes go on, or 0 once they are done).
2. Database outage: the relay's own PostgreSQL connection goes through a proxy that is cut for
   3 s while events keep being committed (not through the proxy). Noticed = cut -> the relay
   reports `reconnecting`; recovery = restore -> the outbox is caught up.
3. API under a database outage: the app (uvicorn, in this process) reaches PostgreSQL through a proxy
   cut for `--api-outage` seconds while one kept-alive client reads a profile at `--api-rate`/s.
   Status counts of every answer (a request with no HTTP answer counts as `no answer`); noticed =
   cut -> the first 503; recovered = restore -> the first 200 again.
4. Relay kills: two `bee-customers relay` processes over a 50,000-event backlog; the leader (found
   through pg_locks, its application_name carries its pid) is SIGKILLed `--kills` times, a new
   standby started after each. Takeover = kill -> the next event marked published. Duplicates per
   kill = copies received beyond the first, counted once the takeover has republished.

Lost = events committed but never received; duplicates = copies received beyond the first. Runs in
a fresh database and exchange (dropped at the end). Same environment variables as bench/outbox.py.
"""

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import aio_pika
import asyncpg
import structlog

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine  # noqa: E402

from bee_customers_service.cli import run_migrations  # noqa: E402
from bee_customers_service.core.config import Settings  # noqa: E402
from bee_customers_service.core.db import to_async_url  # noqa: E402
from bee_customers_service.events import outbox  # noqa: E402
from bee_customers_service.events.relay import RELAY_LOCK_KEY, OutboxRelay  # noqa: E402
from bench.outbox import (  # noqa: E402
    RABBITMQ_URL,
    build_rows,
    create_database,
    delete_exchange,
    drop_database,
    insert_rows,
)
from tests.events.tools import TcpProxy, through  # noqa: E402

KILL_BACKLOG = 100_000
GONE_SQL = "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1"
HOLDER_PID_SQL = """
SELECT a.application_name FROM pg_locks AS l JOIN pg_stat_activity AS a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted AND l.objid = $1::bigint::oid AND l.objsubid = 1
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
"""


class Sink:
    """A queue on the exchange counting every message id it receives."""

    def __init__(self, exchange_name: str) -> None:
        self.exchange_name = exchange_name
        self.counts: dict[str, int] = {}

    async def __aenter__(self) -> "Sink":
        self.connection = await aio_pika.connect(RABBITMQ_URL)
        channel = await self.connection.channel()
        exchange = await channel.declare_exchange(self.exchange_name, aio_pika.ExchangeType.TOPIC, durable=True)
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        await queue.bind(exchange, routing_key="#")
        await queue.consume(self._on_message, no_ack=True)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.connection.close()

    async def _on_message(self, message: Any) -> None:
        self.counts[message.message_id] = self.counts.get(message.message_id, 0) + 1

    @property
    def duplicates(self) -> int:
        return sum(self.counts.values()) - len(self.counts)


def settings_for(db_url: str, exchange: str, rabbitmq_url: str) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=db_url,
        rabbitmq_url=rabbitmq_url,
        events_exchange=exchange,
        relay_enabled=True,
        environment="test",
        jwt_secret="bench-secret-bench-secret-bench-secret",  # noqa: S106 (no token is issued here)
    )


async def pending(plain_url: str) -> int:
    connection = await asyncpg.connect(plain_url)
    try:
        return await connection.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL")
    finally:
        await connection.close()


async def event_ids(plain_url: str) -> set[str]:
    connection = await asyncpg.connect(plain_url)
    try:
        return {row[0] for row in await connection.fetch("SELECT event_id::text FROM outbox")}
    finally:
        await connection.close()


async def write(engine: Any, count: int, rate: float, statuses: dict[str, int]) -> None:
    """Commit `count` events at `rate` per second, one transaction each; count the outcomes."""
    business_id = uuid.uuid4()
    customers = [uuid.uuid4() for _ in range(50)]
    start = time.monotonic()
    for n in range(count):
        await asyncio.sleep(max(0.0, start + n / rate - time.monotonic()))
        try:
            async with AsyncSession(engine) as session:
                customer_id = customers[n % len(customers)]
                await outbox.enqueue(
                    session, "v1.customer.updated", business_id=business_id, customer_id=customer_id, fields={}
                )
                await session.commit()
            statuses["ok"] = statuses.get("ok", 0) + 1
        except Exception as exc:
            statuses[type(exc).__name__] = statuses.get(type(exc).__name__, 0) + 1


async def sample_states(relay: OutboxRelay, seen: list[str], stop: asyncio.Event) -> None:
    while not stop.is_set():
        state = f"{relay.state}/{relay.broker_report()['status']}"
        if not seen or seen[-1] != state:
            seen.append(state)
        await asyncio.sleep(0.05)


async def caught_up(plain_url: str, writer: asyncio.Task[None]) -> float:
    """Seconds until the outbox is caught up (<= 5 pending while writing, 0 after)."""
    start = time.monotonic()
    while True:
        left = await pending(plain_url)
        if left == 0 or (left <= 5 and not writer.done()):
            return time.monotonic() - start
        await asyncio.sleep(0.05)


async def drained_row(
    plain_url: str,
    writer: asyncio.Task[None],
    sink: Sink,
    sampler: asyncio.Task[None],
    stop: asyncio.Event,
    before: set[str],
    **row: Any,
) -> dict[str, Any]:
    """Once every write is done and published: the table row with the events lost and duplicated."""
    await writer
    while await pending(plain_url):  # noqa: ASYNC110 (polling the database)
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)  # the last confirmed messages reach the queue
    stop.set()
    await sampler
    ids = await event_ids(plain_url) - before
    return {**row, "lost": len(ids - sink.counts.keys()), "duplicates": sink.duplicates}


async def broker_outage(plain_url: str, db_url: str, outage: float, writes: int, rate: float) -> dict[str, Any]:
    exchange = f"bee.bench.faults.{uuid.uuid4().hex[:10]}"
    broker = aio_pika.connection.make_url(RABBITMQ_URL)
    proxy = TcpProxy(broker.host or "127.0.0.1", broker.port or 5672)
    await proxy.start()
    engine = create_async_engine(db_url, pool_size=2)
    statuses: dict[str, int] = {}
    seen: list[str] = []
    stop = asyncio.Event()
    before = await event_ids(plain_url)
    relay = OutboxRelay(settings_for(db_url, exchange, through(RABBITMQ_URL, proxy)), db_url)
    try:
        async with Sink(exchange) as sink:
            relay.start()
            sampler = asyncio.create_task(sample_states(relay, seen, stop))
            writer = asyncio.create_task(write(engine, writes, rate, statuses))
            await asyncio.sleep(2)
            await proxy.stop()
            await asyncio.sleep(outage)
            backlog = await pending(plain_url)
            await proxy.start()
            recover = await caught_up(plain_url, writer)
            return await drained_row(
                plain_url,
                writer,
                sink,
                sampler,
                stop,
                before,
                run=f"broker cut {outage:g} s during {writes} writes",
                statuses=statuses,
                states=seen,
                backlog=backlog,
                notice="-",
                recover=recover,
            )
    finally:
        await relay.stop()
        await proxy.stop()
        await engine.dispose()
        await delete_exchange(exchange)


async def database_outage(plain_url: str, db_url: str, outage: float, rate: float) -> dict[str, Any]:
    exchange = f"bee.bench.faults.{uuid.uuid4().hex[:10]}"
    database = asyncpg_target(plain_url)
    proxy = TcpProxy(*database)
    await proxy.start()
    engine = create_async_engine(db_url, pool_size=2)
    statuses: dict[str, int] = {}
    seen: list[str] = []
    stop = asyncio.Event()
    before = await event_ids(plain_url)
    relay = OutboxRelay(settings_for(db_url, exchange, RABBITMQ_URL), through(db_url, proxy))
    writes = int(rate * (outage + 6))
    try:
        async with Sink(exchange) as sink:
            relay.start()
            while relay.state != "leader":  # noqa: ASYNC110
                await asyncio.sleep(0.02)
            sampler = asyncio.create_task(sample_states(relay, seen, stop))
            writer = asyncio.create_task(write(engine, writes, rate, statuses))
            await asyncio.sleep(2)
            cut = time.monotonic()
            await proxy.stop()
            while relay.state == "leader":  # noqa: ASYNC110
                await asyncio.sleep(0.005)
            notice = time.monotonic() - cut
            await asyncio.sleep(max(0.0, outage - notice))
            backlog = await pending(plain_url)
            await proxy.start()
            recover = await caught_up(plain_url, writer)
            return await drained_row(
                plain_url,
                writer,
                sink,
                sampler,
                stop,
                before,
                run=f"relay's PostgreSQL cut {outage:g} s",
                statuses=statuses,
                states=seen,
                backlog=backlog,
                notice=notice,
                recover=recover,
            )
    finally:
        await relay.stop()
        await proxy.stop()
        await engine.dispose()
        await delete_exchange(exchange)


async def api_database_outage(plain_url: str, db_url: str, outage: float, rate: float) -> dict[str, Any]:
    import httpx
    import uvicorn

    from bee_customers_service.app import create_app
    from bee_customers_service.core.security import mint_token
    from tests.services import free_port

    proxy = TcpProxy(*asyncpg_target(plain_url))
    await proxy.start()
    settings = Settings(
        database_url=through(db_url, proxy),
        environment="test",
        jwt_secret=uuid.uuid4().hex * 2,  # a throwaway key for this run
        rabbitmq_url=None,
        relay_enabled=False,
        activity_consumer_enabled=False,
        ip_rate_limit=None,
    )
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings), port=port, log_level="critical", lifespan="on"))
    serving = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110
        await asyncio.sleep(0.02)
    business_id = uuid.uuid4()
    service = {"Authorization": "Bearer " + mint_token(settings, sub=uuid.uuid4(), roles=["service"])}
    admin_token = mint_token(settings, sub=uuid.uuid4(), roles=["admin_business"], business_ids=[business_id])
    statuses: dict[str, int] = {}
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            body = {"user_id": str(uuid.uuid4()), "business_id": str(business_id), "full_name": "A", "email": "a@x.ro"}
            created = await http.post("/customers", json=body, headers=service)
            path = f"/customers/{created.json()['id']}"
            headers = {"Authorization": f"Bearer {admin_token}"}
            first_503: float | None = None
            first_200_after: float | None = None
            cut = restored = 0.0
            started = time.monotonic()
            for n in range(int(rate * (outage + 6))):
                now = time.monotonic()
                if not cut and now - started >= 2:
                    await proxy.stop()
                    cut = time.monotonic()
                if cut and not restored and now - cut >= outage:
                    await proxy.start()
                    restored = time.monotonic()
                try:
                    status = str((await http.get(path, headers=headers)).status_code)
                except httpx.HTTPError:
                    status = "no answer"
                statuses[status] = statuses.get(status, 0) + 1
                if cut and first_503 is None and status == "503":
                    first_503 = time.monotonic() - cut
                if restored and first_200_after is None and status == "200":
                    first_200_after = time.monotonic() - restored
                await asyncio.sleep(max(0.0, started + (n + 1) / rate - time.monotonic()))
    finally:
        server.should_exit = True
        await serving
        await proxy.stop()
    return {
        "run": f"API reads at {rate:g}/s, PostgreSQL cut {outage:g} s",
        "statuses": statuses,
        "states": [],
        "backlog": "-",
        "notice": first_503 if first_503 is not None else "-",
        "recover": first_200_after if first_200_after is not None else "never",
        "lost": "-",
        "duplicates": "-",
    }


def asyncpg_target(plain_url: str) -> tuple[str, int]:
    from sqlalchemy.engine import make_url

    url = make_url(plain_url)
    return url.host or "127.0.0.1", url.port or 5432


async def start_relay_process(db_url: str, exchange: str) -> asyncio.subprocess.Process:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BEE_")}
    env.update(BEE_DATABASE_URL=db_url, BEE_RABBITMQ_URL=RABBITMQ_URL, BEE_EVENTS_EXCHANGE=exchange)
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bee_customers_service.cli",
        "relay",
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )


async def relay_kills(plain_url: str, db_url: str, kills: int) -> dict[str, Any]:
    exchange = f"bee.bench.faults.{uuid.uuid4().hex[:10]}"
    await reset(plain_url)
    rows = build_rows(KILL_BACKLOG)
    await insert_rows(plain_url, rows)
    processes: dict[int, asyncio.subprocess.Process] = {}
    takeovers: list[float] = []
    per_kill: list[int] = []
    connection = await asyncpg.connect(plain_url)
    try:
        async with Sink(exchange) as sink:
            for _ in range(2):
                process = await start_relay_process(db_url, exchange)
                processes[process.pid] = process
            for _ in range(kills):
                while True:  # the leader, once it is publishing
                    holder = await connection.fetchval(HOLDER_PID_SQL, RELAY_LOCK_KEY)
                    if holder and len(rows) - await pending(plain_url) > 0:
                        break
                    await asyncio.sleep(0.05)
                await asyncio.sleep(0.5)  # in the middle of the backlog
                pid = int(holder.rsplit(":", 1)[1])
                duplicates_before = sink.duplicates
                killed = time.monotonic()
                os.kill(pid, signal.SIGKILL)
                await processes.pop(pid).wait()
                # Its last mark may still commit: count once the server has dropped its session.
                while await connection.fetchval(GONE_SQL, holder):  # noqa: ASYNC110
                    await asyncio.sleep(0.005)
                published = await connection.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NOT NULL")
                while await connection.fetchval(  # noqa: ASYNC110
                    "SELECT count(*) FROM outbox WHERE published_at IS NOT NULL"
                ) <= published and await pending(plain_url):
                    await asyncio.sleep(0.01)
                takeovers.append(time.monotonic() - killed)
                await asyncio.sleep(1.5)  # the new leader republishes the unmarked rows first
                per_kill.append(sink.duplicates - duplicates_before)
                process = await start_relay_process(db_url, exchange)
                processes[process.pid] = process
            while await pending(plain_url):  # noqa: ASYNC110
                await asyncio.sleep(0.1)
            await asyncio.sleep(0.5)
            lost = len({str(row[0]) for row in rows} - sink.counts.keys())
            return {
                "run": f"kill -9 of the leading relay x{kills} ({KILL_BACKLOG:,} backlog)",
                "statuses": {},
                "states": [],
                "backlog": len(rows),
                "notice": "-",
                "recover": statistics.median(takeovers),
                "recover_range": (min(takeovers), max(takeovers)),
                "lost": lost,
                "duplicates": sink.duplicates,
                "per_kill": per_kill,
            }
    finally:
        for process in processes.values():
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        for process in processes.values():
            await process.wait()
        await connection.close()
        await delete_exchange(exchange)


async def reset(plain_url: str) -> None:
    connection = await asyncpg.connect(plain_url)
    try:
        await connection.execute("TRUNCATE outbox")
    finally:
        await connection.close()


def seconds(value: Any) -> str:
    return value if isinstance(value, str) else f"{value:.2f} s"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--writes", type=int, default=1500)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--outages", type=float, nargs="*", default=[3.0, 10.0])
    parser.add_argument("--db-outage", type=float, default=3.0)
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--api-outage", type=float, default=10.0)
    parser.add_argument("--api-rate", type=float, default=25.0)
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # aio-pika's reconnect warnings
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))

    name, plain_url = await create_database()
    db_url = to_async_url(plain_url)
    results = []
    try:
        await asyncio.to_thread(run_migrations, db_url)
        for outage in args.outages:
            results.append(await broker_outage(plain_url, db_url, outage, args.writes, args.rate))
        results.append(await database_outage(plain_url, db_url, args.db_outage, args.rate))
        results.append(await api_database_outage(plain_url, db_url, args.api_outage, args.api_rate))
        if args.kills:
            results.append(await relay_kills(plain_url, db_url, args.kills))
    finally:
        await drop_database(name)

    print("| run | writes (status counts) | relay/broker states seen | backlog | noticed | recovered | lost | dup. |")
    print("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for r in results:
        statuses = ", ".join(f"{k} {v}" for k, v in r["statuses"].items()) or "-"
        states = " -> ".join(r["states"]) or "-"
        recover = seconds(r["recover"])
        if "recover_range" in r:
            low, high = r["recover_range"]
            recover = f"takeover median {r['recover']:.2f} s ({low:.2f}-{high:.2f})"
        duplicates = str(r["duplicates"])
        if "per_kill" in r:
            duplicates += f" (per kill: {', '.join(map(str, r['per_kill']))})"
        print(
            f"| {r['run']} | {statuses} | {states} | {r['backlog']} | {seconds(r['notice'])} | {recover}"
            f" | {r['lost']} | {duplicates} |"
        )


if __name__ == "__main__":
    asyncio.run(main())
