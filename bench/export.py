"""Whole-business export through the HTTP API: rows per second and the server's memory over time.

    .venv/bin/python bench/export.py                          # 10k, 100k, 1M customers; csv and ndjson
    .venv/bin/python bench/export.py --sizes 10000 --formats csv   # a quick run

For each size: a fresh database on BEE_BENCH_POSTGRES_URL (default: the tests' server), migrated and
seeded with `bee_customers_service.seed` (one business), a real `bee-customers serve` on a free port,
then GET /customers/export streamed to the end by httpx. While the body streams, the server's RSS is
read from /proc every 50 ms; the table shows it before the request, its peak, and its value at 10%,
50% and 90% of the rows: an export that holds one page at a time stays flat as the size grows.
"""

import argparse
import asyncio
import os
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# bench/search.py's server: one worker, no relay, no periodic RFM refresh (it would run mid-export).
from search import SECRET, start_server  # noqa: E402

from bee_customers_service import seed  # noqa: E402
from bee_customers_service.cli import run_migrations  # noqa: E402
from bee_customers_service.core.config import Settings  # noqa: E402
from bee_customers_service.core.db import to_async_url  # noqa: E402
from bee_customers_service.core.security import mint_token  # noqa: E402
from tests.services import create_database, drop_database, free_port, postgres_server_url  # noqa: E402


def rss_mib(pid: int) -> float:
    """Resident set size of one process (VmRSS), MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


@dataclass
class MemoryWatch:
    """Samples a process's RSS on a thread; `mark(name)` notes the latest sample under a name."""

    pid: int
    samples: list[float] = field(default_factory=list)
    marks: dict[str, float] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> "MemoryWatch":
        self.samples.append(rss_mib(self.pid))
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.samples.append(rss_mib(self.pid))

    def mark(self, name: str) -> None:
        self.marks[name] = rss_mib(self.pid)

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append(rss_mib(self.pid))


@dataclass
class Run:
    size: int
    fmt: str
    rows: int
    seconds: float
    megabytes: float
    rss_before: float
    rss_peak: float
    rss_marks: dict[str, float]


def export_once(base_url: str, token: str, business_id: uuid.UUID, fmt: str, size: int, pid: int) -> Run:
    marks = {int(size * share): name for share, name in ((0.1, "10%"), (0.5, "50%"), (0.9, "90%"))}
    rows = received = 0
    headers = {"Authorization": f"Bearer {token}"}
    params = {"business_id": str(business_id), "format": fmt}
    with MemoryWatch(pid) as memory:
        began = time.perf_counter()
        with httpx.stream("GET", f"{base_url}/customers/export", params=params, headers=headers, timeout=600) as r:
            r.raise_for_status()
            for line in r.iter_lines():
                rows += 1
                received += len(line) + 1
                if rows in marks:
                    memory.mark(marks[rows])
        seconds = time.perf_counter() - began
    data_rows = rows - 1 if fmt == "csv" else rows  # the csv header row
    if data_rows != size:
        raise RuntimeError(f"exported {data_rows} rows of {size}")
    return Run(size, fmt, data_rows, seconds, received / 1e6, memory.samples[0], max(memory.samples), memory.marks)


async def prepare(server_url: str, size: int) -> tuple[str, str, uuid.UUID]:
    name, url = await create_database(server_url, prefix="bee_bench_export")
    database_url = to_async_url(url)
    await asyncio.to_thread(run_migrations, database_url)
    business_id = uuid.uuid4()
    await seed.seed(database_url, businesses=[(business_id, size)], rebuild_indexes=True)
    return name, database_url, business_id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--formats", nargs="+", choices=["csv", "ndjson"], default=["csv", "ndjson"])
    args = parser.parse_args()

    server_url = os.environ.get("BEE_BENCH_POSTGRES_URL") or asyncio.run(postgres_server_url())
    settings = Settings(_env_file=None, jwt_secret=SECRET)  # type: ignore[call-arg]
    runs: list[Run] = []
    for size in args.sizes:
        began = time.perf_counter()
        name, database_url, business_id = asyncio.run(prepare(server_url, size))
        print(f"seeded {size:,} customers in {time.perf_counter() - began:.0f}s", flush=True)
        token = mint_token(settings, sub=uuid.uuid4(), roles=["admin_business"], business_ids=[business_id])
        port = free_port()
        server = start_server(database_url, port)
        try:
            for fmt in args.formats:
                run = export_once(f"http://127.0.0.1:{port}", token, business_id, fmt, size, server.pid)
                runs.append(run)
                print(f"  {fmt}: {run.rows:,} rows in {run.seconds:.1f}s, peak RSS {run.rss_peak:.0f} MiB", flush=True)
        finally:
            server.terminate()
            server.wait(timeout=30)
            asyncio.run(drop_database(server_url, name))

    print(f"\nload average at the end: {os.getloadavg()[0]:.2f} (1 min), {os.cpu_count()} cores\n")
    print("| customers | format | rows/s | MB/s | seconds | RSS before MiB | at 10% | at 50% | at 90% | peak |")
    print("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for run in runs:
        marks = " | ".join(f"{run.rss_marks.get(name, float('nan')):.0f}" for name in ("10%", "50%", "90%"))
        print(
            f"| {run.size:,} | {run.fmt} | {run.rows / run.seconds:,.0f} | {run.megabytes / run.seconds:.1f} | "
            f"{run.seconds:.1f} | {run.rss_before:.0f} | {marks} | {run.rss_peak:.0f} |"
        )


if __name__ == "__main__":
    main()
