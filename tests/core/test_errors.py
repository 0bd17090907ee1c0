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
