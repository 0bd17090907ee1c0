"""API throughput and latency next to PostgreSQL's own ceiling for the same statements.

    .venv/bin/python bench/api.py [--customers 100000] [--duration 10] [--concurrency 16 64]

Seeds one business in a fresh database, starts `bee-customers serve` with production settings
(uvloop + httptools, one worker per core, no access log), drives it with wrk (a compiled load
generator, Debian package `wrk`) from a separate process, and runs pgbench with scripts holding
the SQL each endpoint runs. Prints requests/s, p50, p99, errors, the pgbench ceiling, the ratio,
and the server's peak RSS per worker. See bench/README.md.
"""

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import floor  # noqa: E402  (bench/floor.py, next to this file)
import layers  # noqa: E402

from bee_customers_service import seed  # noqa: E402
from bee_customers_service.cli import run_migrations  # noqa: E402
from bee_customers_service.core.config import Settings  # noqa: E402
from bee_customers_service.core.db import to_async_url  # noqa: E402
from bee_customers_service.core.security import mint_token  # noqa: E402
from bee_customers_service.customers import repository as customers_repository  # noqa: E402
from tests.services import create_database, drop_database, free_port, postgres_server_url  # noqa: E402

BENCH_SECRET = "bench-secret-0123456789abcdef0123456789abcdef"

# The SQL each endpoint runs, as the service sends it (checked with log_statement=all); `:n` picks a
# seeded customer (ids from `seed.seeded_customer_id`). The ceiling is pgbench running exactly this.
# GET runs in autocommit (no BEGIN/ROLLBACK): the customer with the admin view's tags and note
# count, in one statement. PATCH: the same read, the versioned UPDATE ... RETURNING, the outbox INSERT.
CUSTOMER = "md5(:business::text || ':' || :n::text)::uuid"
# The GET statement itself, taken from the service (the ORM read at the start of a PATCH has the
# same shape: the customer's columns with the same two subqueries).
ADMIN_READ = (
    customers_repository._READ_ADMIN_PROFILE.replace("$1::UUID", CUSTOMER)
    .replace("$2::UUID[]", "ARRAY[:business::uuid]")  # the admin's businesses
    .replace("$3::UUID", "NULL::uuid")  # an admin is not the customer
    + ";"
)
# PATCH renames the customer to a real name drawn from the seeder's lists, in pgbench and in wrk
# (main() writes them for the wrk script): a made-up word in every name would make each rename
# prove, through the name-words trigger, that no other customer still holds the old one.
FIRST_NAMES = seed.FIRST_NAMES_FEMALE + seed.FIRST_NAMES_MALE
LAST_NAMES = seed.LAST_NAMES


def _sql_array(names: list[str]) -> str:
    return "ARRAY[" + ", ".join("'" + name.replace("'", "''") + "'" for name in names) + "]"


CEILING_SCRIPTS = {
    "get": f"""\\set n random(1, :scale)
{ADMIN_READ}
""",
    "patch": f"""\\set n random(1, :scale)
\\set f random(1, {len(FIRST_NAMES)})
\\set l random(1, {len(LAST_NAMES)})
BEGIN;
{ADMIN_READ}
UPDATE customers SET full_name = ({_sql_array(FIRST_NAMES)})[:f] || ' ' || ({_sql_array(LAST_NAMES)})[:l],
                     version = version + 1, updated_at = now()
  WHERE id = {CUSTOMER} AND version = version RETURNING *;
INSERT INTO outbox (event_id, event_name, business_id, customer_id, payload)
  VALUES (gen_random_uuid(), 'v1.customer.updated', :business::uuid, {CUSTOMER},
          '{{"event": "v1.customer.updated", "fields_changed": ["full_name"]}}'::jsonb);
COMMIT;
""",
}


def cpu_ticks(pids: list[int]) -> int:
    """User + system CPU time of these processes, in clock ticks (/proc/<pid>/stat)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total


class RssSampler(threading.Thread):
    """Peak resident memory of the server and each of its worker processes."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak: dict[int, int] = {}
        self.stopped = threading.Event()

    def pids(self) -> list[int]:
        pids = [self.pid]
        for task in Path(f"/proc/{self.pid}/task").glob("*"):
            children = (task / "children").read_text().split() if (task / "children").exists() else []
            pids += [int(c) for c in children]
        return pids

    def run(self) -> None:
        while not self.stopped.wait(0.5):
            for pid in self.pids():
                try:
                    status = Path(f"/proc/{pid}/status").read_text()
                except OSError:
                    continue
                match = re.search(r"VmRSS:\s+(\d+) kB", status)
                if match:
                    self.peak[pid] = max(self.peak.get(pid, 0), int(match.group(1)) * 1024)


def run_wrk(base_url: str, endpoint: str, concurrency: int, duration: int, bench_dir: Path) -> dict:
    env = {
        **os.environ,
        "BENCH_DIR": str(bench_dir),
        "BENCH_LUA_DIR": str(ROOT / "bench" / "wrk"),
        "ENDPOINT": endpoint,
    }
    threads = min(2, concurrency)
    output = subprocess.run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{concurrency}",
            f"-d{duration}s",
            "--timeout",
            "5s",
            "-s",
            str(ROOT / "bench" / "wrk" / "endpoint.lua"),
            base_url,
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    figures = json.loads(output.split("BENCH ", 1)[1].splitlines()[0])
    figures["rps"] = figures["requests"] / (figures["duration_us"] / 1e6)
    return figures


def measure(
    base_url: str, endpoint: str, concurrency: int, duration: int, bench_dir: Path, sampler: "RssSampler"
) -> dict:
    """A warm-up, then one wrk run; adds the server's CPU per request (`cpu_ms`): unlike req/s, it
    hardly moves with whatever else the machine runs."""
    run_wrk(base_url, endpoint, concurrency, 2, bench_dir)
    pids = sampler.pids()
    before = cpu_ticks(pids)
    figures = run_wrk(base_url, endpoint, concurrency, duration, bench_dir)
    ticks = cpu_ticks(pids) - before
    figures["cpu_ms"] = ticks * 1000 / os.sysconf("SC_CLK_TCK") / max(figures["requests"], 1)
    return figures


def run_pgbench(url: str, endpoint: str, concurrency: int, duration: int, scale: int, business: uuid.UUID) -> float:
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as script:
        script.write(CEILING_SCRIPTS[endpoint])
    dsn = url.replace("postgresql+asyncpg://", "postgresql://")
    output = subprocess.run(
        [
            "pgbench",
            "-n",
            "-M",
            "prepared",
            f"-c{concurrency}",
            f"-j{min(2, concurrency)}",
            f"-T{duration}",
            "-D",
            f"scale={scale}",
            "-f",
            script.name,
            dsn,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    os.unlink(script.name)
    return float(re.search(r"tps = ([0-9.]+) \(without initial connection time\)", output).group(1))


def profile(
    base_url: str,
    endpoint: str,
    args: argparse.Namespace,
    bench_dir: Path,
    sampler: "RssSampler",
    server: int,
    cpu_ms: float,
) -> None:
    """py-spy on one worker while wrk drives `endpoint`; the samples and their layers go to args.profile."""
    py_spy = os.environ.get("PY_SPY") or shutil.which("py-spy")
    if py_spy is None:
        raise SystemExit("--profile needs py-spy (pip install py-spy, or PY_SPY=/path/to/py-spy)")
    args.profile.mkdir(parents=True, exist_ok=True)
    # The busiest child: uvicorn's supervisor also has an idle helper process among its children.
    worker = max((pid for pid in sampler.pids() if pid != server), key=lambda pid: cpu_ticks([pid]))
    out = args.profile / f"{endpoint}.txt"
    command = [py_spy, "record", "--format", "raw", "--nonblocking", "-r", "250", "-o", str(out)]
    command += ["--pid", str(worker), "-d", str(args.duration)]
    spy = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    run_wrk(base_url, endpoint, args.concurrency[0], args.duration, bench_dir)
    _, errors = spy.communicate(timeout=args.duration + 30)
    if spy.returncode != 0 or not out.exists():
        raise SystemExit(f"py-spy failed on pid {worker}: {errors.strip()}")
    print(f"\n### {endpoint} (one worker, c={args.concurrency[0]})\n\n{layers.report(out, cpu_ms)}", flush=True)


def print_floor_ratios(rows: list[tuple[str, int, dict, float | None]]) -> None:
    """The service next to its floor, per endpoint: the ratios issue 21 sets targets for."""
    figures = {(endpoint, concurrency): f for endpoint, concurrency, f, _ in rows}
    header = "endpoint | conc | server CPU ms/req | floor CPU ms/req | CPU ratio | p99 ms | floor p99 ms | p99 ratio"
    print(f"\n| {header} |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for (endpoint, concurrency), f in figures.items():
        bare = figures.get((f"floor {endpoint}", concurrency))
        if endpoint.startswith("floor ") or bare is None:
            continue
        p99, bare_p99 = f["p99_us"] / 1000, bare["p99_us"] / 1000
        print(
            f"| {endpoint} | {concurrency} | {f['cpu_ms']:.2f} | {bare['cpu_ms']:.2f} "
            f"| {f['cpu_ms'] / bare['cpu_ms']:.2f}x "
            f"| {p99:.1f} | {bare_p99:.1f} | {p99 / bare_p99:.2f}x |"
        )


def wait_healthy(base_url: str, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit("the server exited during start-up")
        try:
            if httpx.get(f"{base_url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise SystemExit("the server did not become ready")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--duration", type=int, default=10, help="seconds per measurement")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--endpoints", nargs="+", default=["get", "patch", "post", "tag", "search"])
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--pool-size", type=int, default=10)
    parser.add_argument(
        "--floor",
        action="store_true",
        help="also measure bench/floor.py's bare routes (GET, PATCH, POST, tag add) on the same data",
    )
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("BEE_BENCH_REDIS_URL", "redis://127.0.0.1:6379/15"),
        help="rate limit counters in this Redis ('' switches the limiter off)",
    )
    parser.add_argument(
        "--profile", type=Path, help="py-spy one worker per endpoint into this folder (bench/layers.py)"
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None or shutil.which("pgbench") is None:
        raise SystemExit("needs wrk and pgbench: apt-get install -y wrk postgresql-client")

    server_url = asyncio.run(postgres_server_url())
    name, url = asyncio.run(create_database(server_url, prefix="bee_bench_api"))
    url = to_async_url(url)
    business_id = uuid.uuid4()
    process = None
    try:
        run_migrations(url)
        started = time.perf_counter()
        asyncio.run(seed.seed(url, businesses=[(business_id, args.customers)], rebuild_indexes=True))
        print(f"seeded {args.customers} customers in {time.perf_counter() - started:.1f}s", flush=True)

        settings = Settings(_env_file=None, jwt_secret=BENCH_SECRET)  # type: ignore[call-arg]
        bench_dir = Path(tempfile.mkdtemp(prefix="bee-bench-api-"))
        ids = [str(seed.seeded_customer_id(business_id, n)) for n in range(1, min(args.customers, 20_000) + 1)]
        (bench_dir / "ids.txt").write_text("\n".join(ids))
        admin = mint_token(
            settings, sub=uuid.uuid4(), roles=["admin_business"], business_ids=[business_id], ttl_seconds=24 * 3600
        )
        service = mint_token(settings, sub=uuid.uuid4(), roles=["service"], ttl_seconds=24 * 3600)
        (bench_dir / "token.txt").write_text(admin)
        (bench_dir / "service_token.txt").write_text(service)
        (bench_dir / "business.txt").write_text(str(business_id))
        (bench_dir / "first_names.txt").write_text("\n".join(FIRST_NAMES))
        (bench_dir / "last_names.txt").write_text("\n".join(LAST_NAMES))

        port = free_port()
        env = {
            **os.environ,
            "BEE_DATABASE_URL": url,
            "BEE_JWT_SECRET": BENCH_SECRET,
            "BEE_CURSOR_SECRET": BENCH_SECRET,  # production refuses the development cursor key
            "BEE_GDPR_FINGERPRINT_KEY": BENCH_SECRET,  # ... and the development fingerprint key
            "BEE_ENVIRONMENT": "production",
            "BEE_DATABASE_POOL_SIZE": str(args.pool_size),
            "BEE_DATABASE_MAX_OVERFLOW": "0",
        }
        if args.redis_url:
            # Every feature on (issue 21): the limiter counts every request in Redis, with limits high
            # enough that one token from one address is never throttled.
            env.update(
                BEE_REDIS_URL=args.redis_url,
                BEE_RATELIMIT_KEY_PREFIX=f"bench-{business_id.hex[:8]}",
                BEE_PATCH_RATE_LIMIT="1000000000/minute",
                BEE_IP_RATE_LIMIT="1000000000/minute",
            )
        else:
            env["BEE_RATELIMIT_ENABLED"] = "false"
        env.pop("BEE_RABBITMQ_URL", None)
        process = subprocess.Popen(
            [
                str(ROOT / ".venv" / "bin" / "bee-customers"),
                "serve",
                "--port",
                str(port),
                "--workers",
                str(args.workers),
                "--no-access-log",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        base_url = f"http://127.0.0.1:{port}"
        wait_healthy(base_url, process)
        probe = httpx.get(f"{base_url}/customers/{ids[0]}", headers={"Authorization": f"Bearer {admin}"}, timeout=5)
        if probe.status_code != 200:
            raise SystemExit(f"sanity check failed: GET /customers/{ids[0]} -> {probe.status_code} {probe.text}")
        sampler = RssSampler(process.pid)
        sampler.start()

        rows = []
        for endpoint in args.endpoints:
            for concurrency in args.concurrency:
                figures = measure(base_url, endpoint, concurrency, args.duration, bench_dir, sampler)
                ceiling = None
                if endpoint in CEILING_SCRIPTS:
                    ceiling = run_pgbench(url, endpoint, concurrency, args.duration, args.customers, business_id)
                rows.append((endpoint, concurrency, figures, ceiling))
                print(f"  {endpoint} c={concurrency}: {figures['rps']:.0f} req/s", flush=True)
        if args.profile:
            cpu = {endpoint: f["cpu_ms"] for endpoint, n, f, _ in rows if n == args.concurrency[0]}
            for endpoint in args.endpoints:
                profile(base_url, endpoint, args, bench_dir, sampler, process.pid, cpu[endpoint])
        sampler.stopped.set()
        workers = {pid: rss for pid, rss in sampler.peak.items() if pid != process.pid}
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
        process = None

        if args.floor:
            # The same requests with nothing of ours but the SQL (bench/floor.py), on the same data.
            process = floor.start(port, args.workers, url.replace("postgresql+asyncpg://", "postgresql://"))
            floor.wait_answering(base_url, f"/customers/{ids[0]}")
            floor_sampler = RssSampler(process.pid)
            for endpoint in [e for e in args.endpoints if e in floor.ROUTES]:
                for concurrency in args.concurrency:
                    figures = measure(base_url, endpoint, concurrency, args.duration, bench_dir, floor_sampler)
                    ceiling = next((c for e, n, _, c in rows if (e, n) == (endpoint, concurrency)), None)
                    rows.append((f"floor {endpoint}", concurrency, figures, ceiling))
                    print(f"  floor {endpoint} c={concurrency}: {figures['rps']:.0f} req/s", flush=True)

        print()
        print(f"customers={args.customers} workers={args.workers} duration={args.duration}s per cell")
        print(
            f"{'endpoint':<11} {'conc':>4} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'errors':>6} "
            f"{'pgbench tps':>11} {'ratio':>6} {'server CPU ms/req':>17}"
        )
        for endpoint, concurrency, f, ceiling in rows:
            ratio = f"{f['rps'] / ceiling:.0%}" if ceiling else "-"
            ceiling_text = f"{ceiling:.0f}" if ceiling else "-"
            print(
                f"{endpoint:<11} {concurrency:>4} {f['rps']:>8.0f} {f['p50_us'] / 1000:>7.2f} "
                f"{f['p99_us'] / 1000:>7.2f} {f['errors']:>6} {ceiling_text:>11} {ratio:>6} {f['cpu_ms']:>17.2f}"
            )
        print("peak RSS per worker (MB): " + ", ".join(f"{rss / 2**20:.0f}" for rss in workers.values()))
        if args.floor:
            print_floor_ratios(rows)
    finally:
        if process is not None:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=30)
        asyncio.run(drop_database(server_url, name))


if __name__ == "__main__":
    main()
