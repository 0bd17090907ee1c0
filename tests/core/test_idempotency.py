"""Idempotency-Key on POST and PATCH (core/idempotency.py): replay, reuse, callers, races, expiry."""

import asyncio
import uuid

import pytest
from fastapi.routing import APIRoute
from sqlalchemy import text

from bee_customers_service.core.idempotency import IdempotentRoute, purge_expired
from tests.avatars import crafted

KEY = {"Idempotency-Key": "order-7f3a"}


def _with_key(caller, key=None):
    return {**caller.headers, "Idempotency-Key": key or f"k-{uuid.uuid4()}"}


async def _records(fetch, caller):
    return await fetch("SELECT key, status FROM idempotency_keys WHERE caller = :c", c=caller.user_id)


async def test_post_customer_twice_is_one_customer_and_one_event(client, world, fetch):
    body = world.profile()
    headers = _with_key(world.service)

    first = await client.post("/customers", json=body, headers=headers)
    second = await client.post("/customers", json=body, headers=headers)

    assert first.status_code == second.status_code == 201, second.text
    assert second.content == first.content
    assert second.headers["location"] == first.headers["location"]
    assert second.headers["etag"] == first.headers["etag"]
    assert second.headers["content-type"] == first.headers["content-type"] == "application/json"
    assert second.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    customers = await fetch("SELECT id FROM customers WHERE business_id = :b", b=world.business_id)
    assert len(customers) == 1
    events = await fetch(
        "SELECT 1 FROM outbox WHERE customer_id = :c AND event_name = 'v1.customer.created'", c=customers[0]["id"]
    )
    assert len(events) == 1
    assert [r["key"] for r in await _records(fetch, world.service)] == [headers["Idempotency-Key"]]


async def test_post_note_twice_is_one_note(client, world, fetch):
    customer = await world.create_customer(client)
    headers = _with_key(world.admin)
    url = f"/customers/{customer['id']}/notes"

    first = await client.post(url, json={"content": "Prefers mornings"}, headers=headers)
    second = await client.post(url, json={"content": "Prefers mornings"}, headers=headers)

    assert first.status_code == second.status_code == 201
    assert second.json() == first.json() and second.headers["location"] == first.headers["location"]
    assert second.headers["idempotent-replayed"] == "true"
    notes = await fetch("SELECT 1 FROM customer_notes WHERE customer_id = :c", c=uuid.UUID(customer["id"]))
    assert len(notes) == 1


async def test_patch_replay_does_not_bump_the_version_again(client, world):
    customer = await world.create_customer(client)
    headers = _with_key(world.admin)
    url = f"/customers/{customer['id']}"

    first = await client.patch(url, json={"full_name": "Ana Maria"}, headers=headers)
    second = await client.patch(url, json={"full_name": "Ana Maria"}, headers=headers)

    assert first.status_code == second.status_code == 200
    assert second.headers["etag"] == first.headers["etag"] and second.json() == first.json()
    current = await client.get(url, headers=world.admin.headers)
    assert current.headers["etag"] == first.headers["etag"]


async def test_the_same_key_with_another_request_is_422(client, world):
    headers = _with_key(world.service)
    assert (await client.post("/customers", json=world.profile(), headers=headers)).status_code == 201

    other = await client.post("/customers", json=world.profile(), headers=headers)

    assert other.status_code == 422
    assert other.headers["content-type"] == "application/problem+json"
    problem = other.json()
    assert problem["type"].endswith("/idempotency-key-reused")
    assert problem["errors"][0]["loc"] == ["header", "Idempotency-Key"]


async def test_keys_belong_to_their_caller(client, world, fetch):
    one, two = world.caller(["service"]), world.caller(["service"])

    first = await client.post("/customers", json=world.profile(), headers={**one.headers, **KEY})
    second = await client.post("/customers", json=world.profile(), headers={**two.headers, **KEY})

    assert first.status_code == second.status_code == 201
    assert "idempotent-replayed" not in second.headers
    assert first.json()["id"] != second.json()["id"]


async def test_concurrent_requests_with_one_key_change_once(client, world, fetch):
    body = world.profile()
    headers = _with_key(world.service)

    answers = await asyncio.gather(*(client.post("/customers", json=body, headers=headers) for _ in range(6)))

    statuses = sorted(a.status_code for a in answers)
    assert set(statuses) <= {201, 409} and 201 in statuses, statuses
    for answer in answers:
        if answer.status_code == 409:
            assert answer.json()["type"].endswith("/idempotency-key-in-progress")
            assert answer.headers["retry-after"] == "1"
    assert len(await fetch("SELECT 1 FROM customers WHERE business_id = :b", b=world.business_id)) == 1
    # Once the first has committed, a retry is a replay.
    retry = await client.post("/customers", json=body, headers=headers)
    assert retry.status_code == 201 and retry.headers["idempotent-replayed"] == "true"


async def test_a_refusal_is_stored_and_replayed_and_what_the_endpoint_wrote_is_undone(client, world, fetch):
    # Stripe's semantics: once the endpoint has run, its answer (a 409 here) is the key's answer.
    customer = await world.create_customer(client)
    tags_url = f"/customers/{customer['id']}/tags"
    assert (await client.post(tags_url, json={"label": "VIP"}, headers=world.admin.headers)).status_code == 201
    headers = _with_key(world.admin)
    body = {"labels": ["Regular", "VIP"]}  # "Regular" is inserted first, then "VIP" clashes

    refused = await client.post(tags_url, json=body, headers=headers)
    replayed = await client.post(tags_url, json=body, headers=headers)

    assert refused.status_code == 409 and "idempotent-replayed" not in refused.headers
    assert (replayed.status_code, replayed.content) == (409, refused.content)
    assert replayed.headers["idempotent-replayed"] == "true"
    labels = await fetch("SELECT label FROM customer_tags WHERE customer_id = :c", c=uuid.UUID(customer["id"]))
    assert [row["label"] for row in labels] == ["VIP"]  # the refused request left nothing behind
    assert len(await _records(fetch, world.admin)) == 1


async def test_a_refusal_before_the_endpoint_runs_is_not_stored(client, world, fetch):
    headers = _with_key(world.admin)
    url = f"/customers/{uuid.uuid4()}"  # no such customer: its loader answers 404 before the endpoint

    assert (await client.patch(url, json={"full_name": "Ana Maria"}, headers=headers)).status_code == 404
    assert await _records(fetch, world.admin) == []


@pytest.mark.parametrize("key", ["", "x" * 256, "caf\u00e9".encode("latin-1"), "tab\there"])
async def test_an_invalid_key_is_422_naming_the_header(client, world, key):
    headers = {**world.service.headers, "Idempotency-Key": key}

    answer = await client.post("/customers", json=world.profile(), headers=headers)

    assert answer.status_code == 422
    assert answer.json()["errors"][0]["loc"] == ["header", "Idempotency-Key"]


async def test_the_longest_key_is_accepted(client, world):
    headers = {**world.service.headers, "Idempotency-Key": "~" * 255}
    assert (await client.post("/customers", json=world.profile(), headers=headers)).status_code == 201


async def test_expired_records_are_ignored_and_purged(app, client, world, fetch, engine):
    body = world.profile()
    headers = _with_key(world.service)
    assert (await client.post("/customers", json=body, headers=headers)).status_code == 201
    async with engine.begin() as connection:
        await connection.execute(
            text("UPDATE idempotency_keys SET created_at = now() - interval '25 hours' WHERE caller = :c"),
            {"c": world.service.user_id},
        )
    fresh = _with_key(world.service)
    assert (await client.post("/customers", json=world.profile(), headers=fresh)).status_code == 201

    # An expired record is no replay: the request runs again (here: the profile exists, 409), and
    # its answer replaces the expired one.
    again = await client.post("/customers", json=body, headers=headers)
    assert again.status_code == 409 and "idempotent-replayed" not in again.headers
    async with engine.begin() as connection:
        await connection.execute(
            text("UPDATE idempotency_keys SET created_at = now() - interval '25 hours' WHERE key = :k"),
            {"k": headers["Idempotency-Key"]},
        )

    purged = await purge_expired(app.state.database.engine, app.state.settings.idempotency_ttl_hours)
    assert purged >= 1
    assert [r["key"] for r in await _records(fetch, world.service)] == [fresh["Idempotency-Key"]]


def test_every_json_post_and_patch_route_is_idempotent():
    from bee_customers_service.activity.router import router as activity
    from bee_customers_service.avatars.router import router as avatars
    from bee_customers_service.customers.router import router as customers
    from bee_customers_service.notes.router import router as notes
    from bee_customers_service.tags.router import router as tags

    routes = [
        route
        for router in (customers, tags, notes, activity, avatars)
        for route in router.routes
        if isinstance(route, APIRoute) and route.methods & {"POST", "PATCH"}
    ]
    assert len(routes) >= 6
    for route in routes:
        assert isinstance(route, IdempotentRoute), route.path
        assert "Idempotency-Key" in [p.alias for d in route.dependant.dependencies for p in d.header_params]


async def test_openapi_declares_the_header_and_the_answers(app):
    document = app.openapi()
    for item in document["paths"].values():
        for method, operation in item.items():
            if method not in ("post", "patch"):
                continue
            [header] = [p for p in operation["parameters"] if p["name"] == "Idempotency-Key"]
            assert header["in"] == "header" and not header.get("required", False)
            assert "Retry-After" in operation["responses"]["409"]["headers"]
            assert "422" in operation["responses"]


def _multipart(data: bytes) -> tuple[bytes, str]:
    """One fixed multipart body: a retry sends the same bytes (the fingerprint is of the raw body)."""
    boundary = "idempotency-test-boundary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n'
            "Content-Type: image/png\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


async def test_avatar_upload_is_replayed_from_the_raw_body(client, world, fetch):
    customer = await world.create_customer(client)
    headers = _with_key(world.admin)
    url = f"/customers/{customer['id']}/avatar"
    body, content_type = _multipart(crafted.png(40, 30))

    first = await client.post(url, content=body, headers={**headers, "Content-Type": content_type})
    second = await client.post(url, content=body, headers={**headers, "Content-Type": content_type})

    assert first.status_code == second.status_code == 200, first.text
    assert second.content == first.content and second.headers["idempotent-replayed"] == "true"
    other, other_type = _multipart(crafted.png(41, 30))
    reused = await client.post(url, content=other, headers={**headers, "Content-Type": other_type})
    assert reused.status_code == 422 and reused.json()["type"].endswith("/idempotency-key-reused")
    events = await fetch(
        "SELECT 1 FROM outbox WHERE customer_id = :c AND event_name = 'v1.customer.avatar_updated'",
        c=uuid.UUID(customer["id"]),
    )
    assert len(events) == 1
