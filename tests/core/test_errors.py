"""Every error is RFC 9457 problem+json; bad input is never a 500."""

import uuid

import pytest

PROBLEM = "application/problem+json"


def assert_problem(response, status):
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["status"] == status
    for key in ("type", "title", "detail", "instance", "trace_id"):
        assert key in body
    return body


async def test_unknown_customer_is_404_problem(client, world):
    assert_problem(await client.get(f"/customers/{uuid.uuid4()}", headers=world.admin.headers), 404)


async def test_unknown_route_is_404_problem(client):
    assert_problem(await client.get("/nowhere"), 404)


async def test_wrong_method_is_405_problem(client):
    assert_problem(await client.put("/healthcheck"), 405)


async def test_malformed_json_is_400(client, world):
    response = await client.post(
        "/customers", content=b'{"user_id": ', headers={**world.service.headers, "Content-Type": "application/json"}
    )
    assert_problem(response, 400)


async def test_wrong_types_are_422(client, world):
    response = await client.post("/customers", json=["not", "an", "object"], headers=world.service.headers)
    assert_problem(response, 422)


async def test_non_json_body_is_415(client, world):
    response = await client.post(
        "/customers",
        content=b"user_id=1",
        headers={**world.service.headers, "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert_problem(response, 415)


@pytest.mark.parametrize("path", ["/customers/not-a-uuid", "/customers/1", "/customers/%00"])
async def test_bad_uuid_in_path_is_422(client, world, path):
    assert_problem(await client.get(path, headers=world.admin.headers), 422)


async def test_huge_declared_body_is_413_before_reading(client, world):
    body = b"{" + b" " * (3 * 1024 * 1024) + b"}"
    response = await client.post(
        "/customers", content=body, headers={**world.service.headers, "Content-Type": "application/json"}
    )
    assert_problem(response, 413)


async def test_huge_streamed_body_is_413(client, world):
    async def chunks():
        for _ in range(64):
            yield b" " * 65536

    response = await client.post(
        "/customers", content=chunks(), headers={**world.service.headers, "Content-Type": "application/json"}
    )
    assert_problem(response, 413)


async def test_correlation_ids_are_echoed_or_generated(client):
    echoed = await client.get("/healthcheck", headers={"X-Trace-Id": "trace-123", "X-Request-Id": "req-9"})
    assert echoed.headers["X-Trace-Id"] == "trace-123"
    assert echoed.headers["X-Request-Id"] == "req-9"
    generated = await client.get("/healthcheck", headers={"X-Trace-Id": "bad id\nwith newline"})
    assert generated.headers["X-Trace-Id"] != "bad id\nwith newline"
    assert len(generated.headers["X-Request-Id"]) == 32


async def test_problem_carries_the_request_trace_id(client):
    response = await client.get("/nowhere", headers={"X-Trace-Id": "trace-abc"})
    assert response.json()["trace_id"] == "trace-abc"


# The last line of defence: unexpected failures and a database that does not answer.

SECRET = "ana.secret@example.com"


def _app_with_test_routes(settings):
    """The real app plus test-only routes that fail (added to this instance, never to the package)."""
    import asyncpg
    from fastapi import Request
    from sqlalchemy import exc as sa_exc
    from sqlalchemy import text

    from bee_customers_service.app import create_app

    application = create_app(settings)

    @application.get("/boom/{thing_id}")
    async def boom(thing_id: str, request: Request) -> None:
        # A DBAPI error whose messages carry the bound value (asyncpg names it in its own message).
        async with request.app.state.database.sessionmaker() as session:
            await session.execute(text("SELECT CAST(:value AS integer)"), {"value": SECRET})

    failures = {
        "refused": ConnectionRefusedError(111, "Connection refused"),
        "cannot-connect-now": asyncpg.exceptions.CannotConnectNowError("the database system is starting up"),
        "pool-timeout": sa_exc.TimeoutError("QueuePool limit reached"),
    }

    @application.get("/db-away/{kind}")
    async def db_away(kind: str) -> None:
        raise failures[kind]

    return application


@pytest.fixture
async def failing_client(settings):
    from tests.conftest import client_for, running_app

    async with running_app(_app_with_test_routes(settings)) as application, client_for(application) as http:
        yield http


async def test_unexpected_error_is_500_with_ids_and_a_safe_log_line(failing_client, capsys):
    capsys.readouterr()
    response = await failing_client.get("/boom/x1", headers={"X-Trace-Id": "trace-500", "X-Request-Id": "req-500"})
    body = assert_problem(response, 500)
    assert body["trace_id"] == "trace-500" and body["request_id"] == "req-500"
    assert response.headers["X-Trace-Id"] == "trace-500"
    assert response.headers["X-Request-Id"] == "req-500"
    assert SECRET not in response.text
    out = capsys.readouterr().out
    assert SECRET not in out
    assert "[parameters:" not in out
    import json

    lines = [json.loads(line) for line in out.splitlines() if '"unhandled_error"' in line]
    assert len(lines) == 1
    line = lines[0]
    assert line["trace_id"] == "trace-500" and line["request_id"] == "req-500"
    assert line["route"] == "/boom/{thing_id}"
    assert line["error_type"] == "DBAPIError" or line["error_type"].endswith("Error")
    assert "exception" not in line


@pytest.mark.parametrize("kind", ["refused", "cannot-connect-now", "pool-timeout"])
async def test_database_failures_are_503_with_retry_after(failing_client, capsys, kind):
    capsys.readouterr()
    response = await failing_client.get(f"/db-away/{kind}", headers={"X-Trace-Id": "trace-503"})
    body = assert_problem(response, 503)
    assert body["type"].endswith("/database-unavailable")
    assert body["trace_id"] == "trace-503" and body["request_id"]
    assert response.headers["Retry-After"] == "1"
    assert response.headers["X-Trace-Id"] == "trace-503"
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if "database_unavailable" in line]
    assert len(lines) == 1
    assert "Traceback" not in out and "unhandled_error" not in out


async def test_database_that_does_not_answer_is_503_on_a_customer_read(capsys):
    from tests.conftest import JWT_SECRET, client_for, make_settings, running_app, token_headers

    assert JWT_SECRET
    settings = make_settings("postgresql+asyncpg://bee:bee@127.0.0.1:1/bee")
    from bee_customers_service.app import create_app

    headers = token_headers(settings, roles=["admin_business"], business_ids=[uuid.uuid4()])
    async with running_app(create_app(settings)) as application, client_for(application) as http:
        capsys.readouterr()
        response = await http.get(f"/customers/{uuid.uuid4()}", headers={**headers, "X-Request-Id": "req-down"})
    body = assert_problem(response, 503)
    assert body["type"].endswith("/database-unavailable")
    assert body["request_id"] == "req-down"
    assert response.headers["Retry-After"] == "1"
    assert response.headers["X-Request-Id"] == "req-down"
    out = capsys.readouterr().out
    assert "database_unavailable" in out
    assert "Traceback" not in out


async def test_dropped_connections_answer_503_once_then_the_pool_recovers(database_url, fetch):
    """The server drops the pooled connections (restart, failover): no pre-ping, so the request
    that meets a dead one answers 503 with Retry-After, and the connection is not handed out again."""
    from tests.conftest import client_for, make_settings, running_app, token_headers

    name = f"bee-drop-{uuid.uuid4().hex[:8]}"
    settings = make_settings(database_url, service_name=name, database_pool_size=1, database_max_overflow=0)
    from bee_customers_service.app import create_app

    headers = token_headers(settings, roles=["admin_business"], business_ids=[uuid.uuid4()])
    path = f"/customers/{uuid.uuid4()}"
    async with running_app(create_app(settings)) as application, client_for(application) as http:
        assert_problem(await http.get(path, headers=headers), 404)  # the pool holds one live connection
        await fetch("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = :name", name=name)
        statuses = [(await http.get(path, headers=headers)).status_code for _ in range(3)]
    # The dead connection met the first request; it was invalidated, not pooled again.
    assert statuses == [503, 404, 404]
