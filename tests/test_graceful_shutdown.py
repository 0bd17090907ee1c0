"""SIGTERM during a burst of writes: in-flight requests finish, nothing is lost or half-written."""

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import httpx

from tests.conftest import JWT_SECRET, token_headers
from tests.services import free_port

ROOT = Path(__file__).resolve().parent.parent


async def _wait_ready(base_url: str, process: asyncio.subprocess.Process) -> None:
    async with httpx.AsyncClient() as http:
        for _ in range(200):
            assert process.returncode is None, "the server exited during start-up"
            try:
                if (await http.get(f"{base_url}/readyz", timeout=1)).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError("the server did not become ready")


async def test_sigterm_during_a_burst_loses_nothing(settings, database_url, fetch):
    port = free_port()
    env = {
        **os.environ,
        "BEE_DATABASE_URL": database_url,
        "BEE_JWT_SECRET": JWT_SECRET,
        "BEE_RELAY_ENABLED": "false",
        "BEE_LOG_LEVEL": "WARNING",
    }
    process = await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "bee_customers_service.cli", "serve", "--port", str(port), "--graceful-timeout", "20"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base_url = f"http://127.0.0.1:{port}"
    business_id = uuid.uuid4()
    headers = token_headers(settings, roles=["service"])
    try:
        await _wait_ready(base_url, process)
        limits = httpx.Limits(max_connections=40)
        async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=30) as http:

            async def create(n: int) -> tuple[str, int | None]:
                user_id = str(uuid.uuid4())
                body = {
                    "user_id": user_id,
                    "business_id": str(business_id),
                    "full_name": f"Burst {n}",
                    "email": f"burst{n}@example.com",
                }
                try:
                    response = await http.post("/customers", json=body, headers=headers)
                except httpx.HTTPError:
                    return user_id, None  # refused once shutdown began: must leave no trace
                answered.append(response.status_code)
                if len(answered) == 20:
                    burst_running.set()
                return user_id, response.status_code

            answered: list[int] = []
            burst_running = asyncio.Event()
            tasks = [asyncio.create_task(create(n)) for n in range(300)]
            await burst_running.wait()  # requests are flowing and dozens are in flight
            process.send_signal(signal.SIGTERM)
            results = await asyncio.gather(*tasks)
        assert await asyncio.wait_for(process.wait(), timeout=30) in (0, 128 + signal.SIGTERM)
    finally:
        if process.returncode is None:
            process.kill()

    created = {user_id for user_id, status in results if status == 201}
    refused = {user_id for user_id, status in results if status is None}
    assert created, "some requests must have completed before the shutdown"
    assert {status for _, status in results} <= {201, None, 503}
    rows = await fetch(
        "SELECT c.user_id, array_agg(o.event_name ORDER BY o.event_name) AS events FROM customers c "
        "LEFT JOIN outbox o ON o.customer_id = c.id WHERE c.business_id = :b GROUP BY c.user_id",
        b=business_id,
    )
    stored = {str(row["user_id"]): row["events"] for row in rows}
    assert set(stored) >= created  # every answered create is stored ...
    # ... with exactly its event and its audit record, never half-written
    assert all(events == ["v1.audit.customer.created", "v1.customer.created"] for events in stored.values())
    assert set(stored) - created <= refused  # nothing stored that the client was not told about, but refused
