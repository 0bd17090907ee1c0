"""The floor under the service: the same requests with nothing of ours but the SQL.

    .venv/bin/python bench/floor.py [--duration 10] [--concurrency 16] [--workers 2]   # the framework alone
    .venv/bin/python bench/api.py --floor ...                                           # next to the service

The app below has the routes `GET /customers/{customer_id}`, `PATCH /customers/{customer_id}`,
`POST /customers` and `POST /customers/{customer_id}/tags`, each with one async dependency (it
reads the Authorization header), served by uvicorn with the
service's production settings (uvloop, httptools, no access log, one worker per core) and driven
by the same wrk script as bench/api.py. No token check, no access rules, no validation beyond
FastAPI's path parameter, no log line, no metrics, no SQLAlchemy:

- without `BEE_FLOOR_DATABASE_URL`, GET answers a constant body: the framework's own cost;
- with it (bench/api.py --floor), each route runs the statements the service's endpoint sends
  (captured from the service with a cursor-execute listener), through a plain asyncpg pool, and
  answers the row as JSON: GET the admin read; PATCH the read, the versioned UPDATE ... RETURNING
  and two outbox INSERTs (the event and the audit record); POST /customers the INSERT ... ON
  CONFLICT DO NOTHING RETURNING and the two outbox INSERTs; a tag add the customer read, its row
  lock, the tag count, the tag INSERT ... ON CONFLICT DO NOTHING RETURNING and the two outbox INSERTs.

Everything the service does per request comes on top of these figures, so they tell what a
throughput target asks of the service on this machine (bench/README.md).
"""

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import httpx
import orjson
from fastapi import Depends, FastAPI, Request
from starlette.responses import Response

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))

from bee_customers_service.customers.repository import _READ_ADMIN_PROFILE  # noqa: E402

# The service scopes the read by the caller's reach: $2 the businesses it administers, $3 its own user.
# The floor reaches every customer the same way, through each row's own business.
READ = _READ_ADMIN_PROFILE.replace("$2::UUID[]", "ARRAY[customers.business_id]").replace("$3::UUID", "NULL::uuid")

DATABASE_URL = os.environ.get("BEE_FLOOR_DATABASE_URL")
UPDATE = (
    "UPDATE customers SET full_name = $2, version = version + 1, updated_at = now()"
    " WHERE id = $1 AND version = $3 RETURNING *"
)
LOCKED_READ = "SELECT version FROM customers WHERE id = $1 FOR UPDATE"
INSERT_EVENT = (
    "INSERT INTO outbox (event_id, event_name, business_id, customer_id, payload)"
    " VALUES ($1, $2, $3, $4, $5::jsonb) RETURNING id"
)
INSERT_CUSTOMER = (
    "INSERT INTO customers (id, user_id, business_id, full_name, email, phone) VALUES ($1, $2, $3, $4, $5, $6)"
    " ON CONFLICT DO NOTHING RETURNING *"
)
CUSTOMER_ROW = "SELECT * FROM customers WHERE id = $1"
LOCK_CUSTOMER = "SELECT * FROM customers WHERE id = $1 FOR UPDATE"
COUNT_TAGS = "SELECT count(*) FROM customer_tags WHERE customer_id = $1"
INSERT_TAG = (
    "INSERT INTO customer_tags (id, customer_id, business_id, label, created_at)"
    " VALUES ($1, $2, $3, $4, clock_timestamp())"
    " ON CONFLICT (customer_id, label_key) DO NOTHING RETURNING *"
)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    app.state.pool = await asyncpg.create_pool(DATABASE_URL, min_size=10, max_size=10) if DATABASE_URL else None
    yield
    if app.state.pool is not None:
        await app.state.pool.close()


app = FastAPI(lifespan=lifespan)
# The bench/api.py endpoints (bench/wrk/endpoint.lua) this app has a route for.
ROUTES = ("get", "patch", "post", "tag")


async def caller(request: Request) -> str:
    return request.headers.get("authorization", "")


def _json(row: asyncpg.Record, status_code: int = 200) -> Response:
    return Response(orjson.dumps(dict(row), default=str), status_code=status_code, media_type="application/json")


@app.get("/customers/{customer_id}")
async def read(customer_id: uuid.UUID, request: Request, _caller: str = Depends(caller)) -> Response:
    pool = request.app.state.pool
    if pool is None:
        return Response(b'{"id": "%s"}' % str(customer_id).encode(), media_type="application/json")
    async with pool.acquire() as connection:
        return _json(await connection.fetchrow(READ, customer_id))


@app.patch("/customers/{customer_id}")
async def update(customer_id: uuid.UUID, request: Request, _caller: str = Depends(caller)) -> Response:
    changes = orjson.loads(await request.body())
    async with request.app.state.pool.acquire() as connection, connection.transaction():
        current = await connection.fetchrow(READ, customer_id)
        updated = await connection.fetchrow(UPDATE, customer_id, changes["full_name"], current["version"])
        if updated is None:  # another PATCH got in between: as the service does, decide on the locked row
            current = await connection.fetchrow(LOCKED_READ, customer_id)
            updated = await connection.fetchrow(UPDATE, customer_id, changes["full_name"], current["version"])
        event = {"event": "v1.customer.updated", "customer_id": str(customer_id), "fields_changed": ["full_name"]}
        await _enqueue(connection, "v1.customer.updated", current["business_id"], customer_id, event)
    return _json(updated)


async def _enqueue(
    connection: asyncpg.Connection, name: str, business_id: uuid.UUID, customer_id: uuid.UUID, event: dict
) -> None:
    """The event and its audit record, as the service writes both to the outbox."""
    for event_name in (name, name.replace("v1.customer.", "v1.audit.customer.")):
        body = orjson.dumps({**event, "event": event_name}).decode()
        await connection.fetchval(INSERT_EVENT, uuid.uuid4(), event_name, business_id, customer_id, body)


@app.post("/customers", status_code=201)
async def create(request: Request, _caller: str = Depends(caller)) -> Response:
    body = orjson.loads(await request.body())
    values = (uuid.uuid4(), uuid.UUID(body["user_id"]), uuid.UUID(body["business_id"]), body["full_name"])
    async with request.app.state.pool.acquire() as connection, connection.transaction():
        created = await connection.fetchrow(INSERT_CUSTOMER, *values, body["email"], body.get("phone"))
        event = {"customer_id": str(created["id"]), "email": created["email"], "full_name": created["full_name"]}
        await _enqueue(connection, "v1.customer.created", created["business_id"], created["id"], event)
    return _json(created, status_code=201)


@app.post("/customers/{customer_id}/tags", status_code=201)
async def tag(customer_id: uuid.UUID, request: Request, _caller: str = Depends(caller)) -> Response:
    label = orjson.loads(await request.body())["label"]
    async with request.app.state.pool.acquire() as connection, connection.transaction():
        await connection.fetchrow(CUSTOMER_ROW, customer_id)  # the access rule's read
        customer = await connection.fetchrow(LOCK_CUSTOMER, customer_id)
        await connection.fetchval(COUNT_TAGS, customer_id)
        created = await connection.fetchrow(INSERT_TAG, uuid.uuid4(), customer_id, customer["business_id"], label)
        event = {"customer_id": str(customer_id), "tag": created["label"], "tag_id": str(created["id"])}
        await _enqueue(connection, "v1.customer.tagged", customer["business_id"], customer_id, event)
    return _json(created, status_code=201)


def start(port: int, workers: int, database_url: str | None = None) -> subprocess.Popen:
    """uvicorn serving the app above, as `bee-customers serve` serves the service."""
    command = [sys.executable, "-m", "uvicorn", "floor:app", "--app-dir", str(BENCH), "--port", str(port)]
    command += ["--workers", str(workers), "--loop", "uvloop", "--http", "httptools", "--no-access-log"]
    env = {**os.environ}
    if database_url:
        env["BEE_FLOOR_DATABASE_URL"] = database_url
    return subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )


def wait_answering(base_url: str, path: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            httpx.get(base_url + path, timeout=1).raise_for_status()
            return
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise SystemExit("the floor app did not start") from None
            time.sleep(0.2)


def main() -> None:
    from bench.api import RssSampler, measure  # here: uvicorn imports this module for the app alone
    from tests.services import free_port

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[16])
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args()

    bench_dir = Path(tempfile.mkdtemp(prefix="bee-bench-floor-"))
    (bench_dir / "ids.txt").write_text("\n".join(str(uuid.uuid4()) for _ in range(1000)))
    for name in ("token.txt", "service_token.txt", "business.txt"):
        (bench_dir / name).write_text("unused")
    port = free_port()
    process = start(port, args.workers)
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_answering(base_url, f"/customers/{uuid.uuid4()}")
        sampler = RssSampler(process.pid)
        print(f"{'conc':>4} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'errors':>6} {'server CPU ms/req':>17}")
        for concurrency in args.concurrency:
            f = measure(base_url, "get", concurrency, args.duration, bench_dir, sampler)
            print(
                f"{concurrency:>4} {f['rps']:>8.0f} {f['p50_us'] / 1000:>7.2f} {f['p99_us'] / 1000:>7.2f} "
                f"{f['errors']:>6} {f['cpu_ms']:>17.3f}"
            )
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


if __name__ == "__main__":
    main()
