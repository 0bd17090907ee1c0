"""The database goes away for real, as the service sees it: a TCP proxy in front of PostgreSQL is cut
and restored under a running uvicorn server. Every request meanwhile is a 503 problem with
Retry-After and the request's ids (never a 500, never a dropped connection), one log line each and
no traceback; once the database is back the same process serves again, without a restart."""

import asyncio
import json
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
import uvicorn

from bee_customers_service.app import create_app
from tests.conftest import make_settings, token_headers
from tests.events.tools import eventually, proxied
from tests.services import free_port

PG_PORT = 5432


@pytest.fixture
async def outage(database_url) -> AsyncIterator[tuple[object, httpx.AsyncClient, object]]:
    async with proxied(database_url, PG_PORT) as (proxy, url):
        settings = make_settings(url, database_pool_size=2, database_max_overflow=0)
        port = free_port()
        server = uvicorn.Server(
            uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning", lifespan="on")
        )
        serving = asyncio.create_task(server.serve())
        await eventually(lambda: server.started, what="the server started")
        # One connection, kept alive across every answer: an error must not cost the client its socket.
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", limits=limits, timeout=10) as http:
            try:
                yield proxy, http, settings
            finally:
                server.should_exit = True
                await serving


def _log_lines(out: str, event: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if f'"{event}"' in line]


async def test_database_away_is_503_then_the_same_process_recovers(outage, capsys):
    proxy, http, settings = outage
    business_id = uuid.uuid4()
    service = token_headers(settings, roles=["service"])
    admin = token_headers(settings, roles=["admin_business"], business_ids=[business_id])
    created = await http.post(
        "/customers",
        json={"user_id": str(uuid.uuid4()), "business_id": str(business_id), "full_name": "Ana Pop", "email": "a@x.ro"},
        headers=service,
    )
    assert created.status_code == 201, created.text
    path = f"/customers/{created.json()['id']}"
    assert (await http.get(path, headers=admin)).status_code == 200

    await proxy.stop()
    capsys.readouterr()
    answers = [await http.get(path, headers={**admin, "X-Request-Id": f"down-{attempt}"}) for attempt in range(3)] + [
        await http.patch(path, json={"full_name": "Ana Lost"}, headers={**admin, "X-Request-Id": "down-patch"}),
        await http.post(
            "/customers",
            json={"user_id": str(uuid.uuid4()), "business_id": str(business_id), "full_name": "B", "email": "b@x.ro"},
            headers={**service, "X-Request-Id": "down-post"},
        ),
    ]
    for response in answers:
        assert response.status_code == 503, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers["Retry-After"] == "1"
        body = response.json()
        assert body["type"].endswith("/database-unavailable")
        assert body["request_id"] == response.headers["X-Request-Id"]
        assert body["trace_id"] == response.headers["X-Trace-Id"]
        assert response.headers.get("connection") != "close"  # the kept-alive socket stays usable
    assert [r.headers["X-Request-Id"] for r in answers] == ["down-0", "down-1", "down-2", "down-patch", "down-post"]
    out = capsys.readouterr().out
    unavailable = _log_lines(out, "database_unavailable")
    assert sorted(line["request_id"] for line in unavailable) == sorted(r.headers["X-Request-Id"] for r in answers)
    assert "Traceback" not in out and not _log_lines(out, "unhandled_error")
    assert "Ana Lost" not in out and "b@x.ro" not in out

    await proxy.start()

    async def serves_again() -> bool:
        return (await http.get(path, headers=admin)).status_code == 200

    await eventually(serves_again, what="reads served again after the database came back", seconds=10)
    profile = (await http.get(path, headers=admin)).json()
    assert profile["full_name"] == "Ana Pop"  # the PATCH during the outage changed nothing
    readiness = await http.get("/readyz")
    assert readiness.status_code == 200 and readiness.json()["checks"]["database"]["status"] == "up"
