"""Admin search latency through the HTTP API at 10k, 100k and 1M customers in one business.

    .venv/bin/python bench/search.py                      # 10k, 100k, 1M (+ 50 businesses of 10k)
    .venv/bin/python bench/search.py --sizes 10000 100000 --others 5 --samples 50   # a quick run

Creates a fresh database on BEE_BENCH_POSTGRES_URL (default postgresql://postgres@127.0.0.1:5432/postgres),
migrates it, seeds it with `bee_customers_service.seed` (SQL generate_series, not HTTP), starts a
real `bee-customers serve` on a free port, measures sequential requests with httpx, prints a table
and the indexes each query's plan uses, then stops the server and drops the database.
"""

import argparse
import asyncio
import os
import random
import re
import socket
import statistics
import subprocess
import sys
import time
import unicodedata
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from sqlalchemy.dialects.postgresql import asyncpg as pg_asyncpg

from bee_customers_service import seed
from bee_customers_service.cli import run_migrations
from bee_customers_service.core.config import Settings
from bee_customers_service.core.db import to_async_url
from bee_customers_service.core.security import mint_token
from bee_customers_service.search.repository import SearchFilters, explain_statement, interpret_query, summary
from bee_customers_service.search.repository.params import request_params

SERVER_URL = os.environ.get("BEE_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
SECRET = "bench-secret-0123456789abcdef0123456789abcdef"
PAGE = 20
DEEP_PAGE = 50
KINDS = ["name", "email", "phone", "tag", "deep", "total", "facets"]
# The seed leaves every customer 'prospect' (it writes no activity to derive segments from): the
# measured business gets a synthetic spread, so the segment facet has values to count.
SEGMENTS = ["prospect", "new", "champion", "loyal", "promising", "at_risk", "hibernating", "lost"]
_SPREAD_SEGMENTS = """
UPDATE customers SET rfm_segment = ($2::text[])[1 + abs(hashtext(id::text || ':segment')) % cardinality($2::text[])]
WHERE business_id = $1 AND rfm_segment = 'prospect'
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def with_database(url: str, name: str) -> str:
    return url.rsplit("/", 1)[0] + "/" + name


async def admin_execute(sql: str, database: str | None = None) -> None:
    connection = await asyncpg.connect(with_database(SERVER_URL, database) if database else SERVER_URL)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


async def database_exists(name: str) -> bool:
    connection = await asyncpg.connect(SERVER_URL)
    try:
        return bool(await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name))
    finally:
        await connection.close()


async def largest_business(database_url: str) -> tuple[uuid.UUID, int]:
    connection = await asyncpg.connect(database_url)
    try:
        row = await connection.fetchrow(
            "SELECT business_id, count(*) AS n FROM customers GROUP BY business_id ORDER BY n DESC LIMIT 1"
        )
    finally:
        await connection.close()
    return row["business_id"], row["n"]


def start_server(database_url: str, port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "BEE_DATABASE_URL": database_url,
        "BEE_JWT_SECRET": SECRET,
        "BEE_RELAY_ENABLED": "false",
        "BEE_DATABASE_POOL_SIZE": "5",
        # No periodic RFM refresh: it would load the machine mid-run and undo the synthetic segments.
        "BEE_SEGMENT_REFRESH_SECONDS": "0",
    }
    env.pop("BEE_RABBITMQ_URL", None)
    executable = Path(sys.executable).parent / "bee-customers"
    process = subprocess.Popen(
        [str(executable), "serve", "--host", "127.0.0.1", "--port", str(port), "--no-access-log"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    process.terminate()
    raise RuntimeError("the server did not become ready")


def fold(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c)).lower()


def typo(word: str, rng: random.Random) -> str:
    """Drop one letter from the middle: "popescu" -> "popscu"."""
    if len(word) < 5:
        return word
    at = rng.randrange(2, len(word) - 1)
    return word[:at] + word[at + 1 :]


def national(phone: str) -> str:
    """+40712345678 -> "0712 345" (what an admin types from a paper note)."""
    digits = phone.lstrip("+")
    local = digits[2:]
    return f"0{local[:3]} {local[3:6]}"


class Workload:
    """The query strings of each kind, drawn from customers really stored in the business."""

    def __init__(self, rows: list[asyncpg.Record], rng: random.Random) -> None:
        self.names: list[str] = []
        for row in rows:
            first, _, last = row["full_name"].partition(" ")
            self.names += [last, f"{first} {last}", fold(last), typo(fold(last), rng), fold(last)[:5]]
        self.full_names = [row["full_name"] for row in rows]  # few customers each: an exact total
        self.emails = [row["email"].split("@")[0][: rng.randrange(8, 13)] for row in rows]
        self.phones = [national(row["phone"]) for row in rows if row["phone"]]
        self.tags = list(seed.TAG_LABELS)


async def spread_segments(database_url: str, business_id: uuid.UUID) -> None:
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute(_SPREAD_SEGMENTS, business_id, SEGMENTS)
        await connection.execute("VACUUM ANALYZE customers")
    finally:
        await connection.close()


async def sample_customers(database_url: str, business_id: uuid.UUID, n: int) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(database_url)
    try:
        return await connection.fetch(
            "SELECT full_name, email, phone FROM customers TABLESAMPLE SYSTEM (5) WHERE business_id = $1 LIMIT $2",
            business_id,
            n,
        )
    finally:
        await connection.close()


def percentiles(samples: list[float]) -> tuple[float, float, float]:
    q = statistics.quantiles(samples, n=100, method="inclusive")
    return q[49], q[94], q[98]


async def timed(client: httpx.AsyncClient, params: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    began = time.perf_counter()
    response = await client.get("/customers", params=params)
    elapsed = (time.perf_counter() - began) * 1000
    response.raise_for_status()
    return elapsed, response.json()


async def deep_cursors(client: httpx.AsyncClient, business_id: uuid.UUID) -> list[dict[str, Any]]:
    """For each sort, the parameters of page 50 (walked to by following next_cursor)."""
    requests = []
    for sort in ("created_at", "full_name", "last_order_date", "lifetime_value"):
        params: dict[str, Any] = {"business_id": str(business_id), "sort": sort, "limit": PAGE}
        for _ in range(DEEP_PAGE - 1):
            _, body = await timed(client, params)
            params = {**params, "cursor": body["next_cursor"]}
        requests.append(params)
    return requests


async def measure(
    client: httpx.AsyncClient, make: Callable[[int], dict[str, Any]], samples: int, warmup: int = 10
) -> tuple[float, float, float, float, float]:
    for i in range(warmup):
        await timed(client, make(i))
    times, found, estimated = [], 0, 0
    for i in range(samples):
        elapsed, body = await timed(client, make(i))
        times.append(elapsed)
        found += len(body["items"])
        estimated += body["total_is_estimate"]
    return (*percentiles(times), found / samples, estimated / samples)


def used_indexes(plan: str) -> str:
    names = re.findall(r"(?:Index (?:Only )?Scan(?: Backward)? using|Bitmap Index Scan on) (\w+)", plan)
    return ", ".join(dict.fromkeys(names)) or "seq scan"


async def explain(database_url: str, filters: SearchFilters, sort: str = "created_at", after: Any = None) -> str:
    direction = {"full_name": "asc"}.get(sort, "desc")
    statement = explain_statement(filters, sort=sort, direction=direction, after=after, limit=PAGE + 1)
    return await explain_sql(database_url, statement)


async def explain_sql(database_url: str, statement: Any) -> str:
    """EXPLAIN ANALYZE of a statement with its values inlined, under the service's trigram threshold."""
    sql = str(statement.compile(dialect=pg_asyncpg.dialect(), compile_kwargs={"literal_binds": True}))
    connection = await asyncpg.connect(database_url, server_settings={"jit": "off"})
    try:
        await connection.execute("SET pg_trgm.word_similarity_threshold = 0.5")
        rows = await connection.fetch(f"EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) {sql}")
    finally:
        await connection.close()
    return "\n".join(r[0] for r in rows)


async def explain_summary(database_url: str, filters: SearchFilters, facets: tuple[str, ...]) -> str:
    """The plan of the summary's first statement (the capped count, and the grouping when exact)."""
    return await explain_sql(database_url, summary.exact_statement(filters, request_params(filters), facets))


async def run_stage(
    size: int,
    database_url: str,
    base_url: str,
    business_id: uuid.UUID,
    samples: int,
    show_plans: bool,
    only: list[str] = KINDS,
) -> list[tuple[Any, ...]]:
    rng = random.Random(size)
    workload = Workload(await sample_customers(database_url, business_id, 200), rng)
    token = mint_token(
        Settings(_env_file=None, jwt_secret=SECRET),  # type: ignore[call-arg]
        sub=uuid.uuid4(),
        roles=["admin_business"],
        business_ids=[business_id],
        ttl_seconds=7200,
    )
    b = str(business_id)
    counted = {"business_id": b, "include_total": "true"}
    rows: list[tuple[Any, ...]] = []
    async with httpx.AsyncClient(base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as client:
        deep = await deep_cursors(client, business_id) if "deep" in only else []
        kinds: dict[str, Callable[[int], dict[str, Any]]] = {
            "name query": lambda i: {"business_id": b, "query": rng.choice(workload.names)},
            "email fragment": lambda i: {"business_id": b, "query": rng.choice(workload.emails)},
            "phone fragment": lambda i: {"business_id": b, "query": rng.choice(workload.phones)},
            "tag filter": lambda i: {"business_id": b, "tag": rng.choice(workload.tags)},
            f"deep page ({DEEP_PAGE})": lambda i: deep[i % len(deep)],
            # The rows above are pages alone (include_total is off by default); these are the
            # dashboard's first page: the page with its total, and with facets.
            "total exact (full name)": lambda i: {**counted, "query": rng.choice(workload.full_names)},
            "total estimate (no filter)": lambda i: {**counted, "limit": PAGE},
            "total + name query": lambda i: {**counted, "query": rng.choice(workload.names)},
            "total + tag filter": lambda i: {**counted, "tag": rng.choice(workload.tags)},
            "facets (no query)": lambda i: {**counted, "facets": "tags,segment"},
            "facets + name query": lambda i: {**counted, "query": rng.choice(workload.names), "facets": "tags,segment"},
            "facets + tag filter": lambda i: {**counted, "tag": rng.choice(workload.tags), "facets": "tags,segment"},
        }
        kinds = {kind: make for kind, make in kinds.items() if kind.split()[0] in only}
        for kind, make in kinds.items():
            p50, p95, p99, found, estimated = await measure(client, make, samples)
            rows.append((size, kind, p50, p95, p99, found, estimated))

    plans = {
        "name query": SearchFilters(business_id=business_id, query=interpret_query(workload.names[0])),
        "email fragment": SearchFilters(business_id=business_id, query=interpret_query(workload.emails[0])),
        "phone fragment": SearchFilters(business_id=business_id, query=interpret_query(workload.phones[0])),
        "tag filter": SearchFilters(business_id=business_id, tags=["VIP"]),
        f"deep page ({DEEP_PAGE})": SearchFilters(business_id=business_id),
    }
    everyone = SearchFilters(business_id=business_id)
    summaries = {
        "total exact (full name)": (
            SearchFilters(business_id=business_id, query=interpret_query(workload.full_names[0])),
            (),
        ),
        "total estimate (no filter)": (everyone, ()),
        "total + name query": (SearchFilters(business_id=business_id, query=interpret_query(workload.names[0])), ()),
        "total + tag filter": (SearchFilters(business_id=business_id, tags=["VIP"]), ()),
        "facets (no query)": (everyone, ("tags", "segment")),
        "facets + name query": (
            SearchFilters(business_id=business_id, query=interpret_query(workload.names[0])),
            ("tags", "segment"),
        ),
        "facets + tag filter": (SearchFilters(business_id=business_id, tags=["VIP"]), ("tags", "segment")),
    }
    for index, (_size, kind, *_) in enumerate(rows):
        if kind in plans:
            plan = await explain(database_url, plans[kind])
        else:
            plan = await explain_summary(database_url, *summaries[kind])
        rows[index] = (*rows[index], used_indexes(plan))
        if show_plans:
            print(f"\n--- {kind} ({size:,} customers) ---\n{plan}", file=sys.stderr)
    return rows


def print_table(rows: list[tuple[Any, ...]]) -> None:
    print("\n| customers | query | p50 ms | p95 ms | p99 ms | items/page | total estimated | indexes in the plan |")
    print("| ---: | --- | ---: | ---: | ---: | ---: | ---: | --- |")
    for size, kind, p50, p95, p99, found, estimated, indexes in rows:
        print(f"| {size:,} | {kind} | {p50:.1f} | {p95:.1f} | {p99:.1f} | {found:.1f} | {estimated:.0%} | {indexes} |")


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--others", type=int, default=50, help="other businesses")
    parser.add_argument("--other-size", type=int, default=10_000)
    parser.add_argument("--samples", type=int, default=100, help="timed requests per query kind and size")
    parser.add_argument("--plans", action="store_true", help="print the full EXPLAIN ANALYZE of each query")
    parser.add_argument("--kinds", nargs="+", choices=KINDS, default=KINDS, help="only these query kinds")
    parser.add_argument(
        "--keep-database",
        metavar="NAME",
        help="seed into this database and keep it; when it exists already, migrate it to head and measure"
        " its largest business without seeding (one size only)",
    )
    args = parser.parse_args()

    name = args.keep_database or f"bee_bench_{uuid.uuid4().hex[:10]}"
    database_url = with_database(SERVER_URL, name)
    kept = args.keep_database is not None and await database_exists(name)
    if not kept:
        await admin_execute(f'CREATE DATABASE "{name}"')
    server: subprocess.Popen[bytes] | None = None
    try:
        await asyncio.to_thread(run_migrations, to_async_url(database_url))
        business_id = uuid.uuid4()
        rows: list[tuple[Any, ...]] = []
        have = 0
        if kept:
            business_id, have = await largest_business(database_url)
            await spread_segments(database_url, business_id)
            print(f"kept database {name}: business {business_id} with {have:,} customers", file=sys.stderr)
            port = free_port()
            server = start_server(database_url, port)
            rows += await run_stage(
                have, database_url, f"http://127.0.0.1:{port}", business_id, args.samples, args.plans, args.kinds
            )
        for stage, size in enumerate(sorted(args.sizes) if not kept else []):
            plan = [(business_id, size - have)]
            if stage == 0:
                plan += [(uuid.uuid4(), args.other_size) for _ in range(args.others)]
            began = time.perf_counter()
            await seed.seed(
                database_url, businesses=plan, rebuild_indexes=True, progress=lambda line: print(line, file=sys.stderr)
            )
            have = size
            await spread_segments(database_url, business_id)
            print(f"seeded to {size:,} (+others) in {time.perf_counter() - began:.0f}s", file=sys.stderr)
            if server is None:
                port = free_port()
                server = start_server(database_url, port)
            stage_rows = await run_stage(
                size, database_url, f"http://127.0.0.1:{port}", business_id, args.samples, args.plans, args.kinds
            )
            rows += stage_rows
            print_table(stage_rows)
        print(f"\n## search latency through the HTTP API ({args.samples} sequential requests per row)")
        print_table(rows)
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        if args.keep_database is None:
            await admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
