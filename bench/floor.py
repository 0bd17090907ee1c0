"""The framework's floor: CPU per request of a bare FastAPI route, served as the service is served.

    .venv/bin/python bench/floor.py [--duration 10] [--concurrency 16] [--workers 2]

The app below has one route shaped like `GET /customers/{customer_id}` with one async dependency
(it reads the Authorization header) and answers a constant JSON body: no database, no token
check, no log line, no metrics. It runs under uvicorn with the service's production settings
(uvloop, httptools, no access log, one worker per core) and is driven by the same wrk script as
bench/api.py. Everything the service does per request comes on top of this figure, so it tells
what a throughput target asks of the service on this machine (bench/README.md).
"""

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
from fastapi import Depends, FastAPI, Request
from starlette.responses import Response

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))

app = FastAPI()


async def caller(request: Request) -> str:
    return request.headers.get("authorization", "")


@app.get("/customers/{customer_id}")
async def read(customer_id: uuid.UUID, _caller: str = Depends(caller)) -> Response:
    return Response(b'{"id": "%s"}' % str(customer_id).encode(), media_type="application/json")


def main() -> None:
    from bench.api import RssSampler, cpu_ticks, run_wrk  # here: the app above imports nothing of ours
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
    command = [sys.executable, "-m", "uvicorn", "floor:app", "--app-dir", str(BENCH), "--port", str(port)]
    command += ["--workers", str(args.workers), "--loop", "uvloop", "--http", "httptools", "--no-access-log"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{base_url}/customers/{uuid.uuid4()}", timeout=1).raise_for_status()
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise SystemExit("the floor app did not start") from None
                time.sleep(0.2)
        sampler = RssSampler(process.pid)
        print(f"{'conc':>4} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'errors':>6} {'server CPU ms/req':>17}")
        for concurrency in args.concurrency:
            run_wrk(base_url, "get", concurrency, 2, bench_dir)  # warm-up
            pids = sampler.pids()
            before = cpu_ticks(pids)
            f = run_wrk(base_url, "get", concurrency, args.duration, bench_dir)
            cpu_ms = (cpu_ticks(pids) - before) * 1000 / os.sysconf("SC_CLK_TCK") / max(f["requests"], 1)
            print(
                f"{concurrency:>4} {f['rps']:>8.0f} {f['p50_us'] / 1000:>7.2f} {f['p99_us'] / 1000:>7.2f} "
                f"{f['errors']:>6} {cpu_ms:>17.3f}"
            )
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


if __name__ == "__main__":
    main()
