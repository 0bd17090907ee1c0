"""Rate limits: PATCH per customer and per caller, a global per-IP guard, shared through Redis."""

import asyncio
import re
import uuid
from contextlib import asynccontextmanager

from bee_customers_service.app import create_app
from tests.conftest import client_for, make_settings, running_app
from tests.services import REDIS_URL


@asynccontextmanager
async def _client(database_url, **overrides):
    app = create_app(make_settings(database_url, **overrides))
    async with running_app(app), client_for(app) as client:
        yield client


def _patch(client, customer, caller, n):
    return client.patch(f"/customers/{customer['id']}", json={"full_name": f"Flood {n}"}, headers=caller.headers)


def _assert_429(response):
    assert response.status_code == 429, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert int(response.headers["Retry-After"]) >= 1
    assert response.json()["status"] == 429


async def test_patch_flood_on_one_customer_is_refused_after_the_limit(database_url, world):
    async with _client(database_url, patch_rate_limit="3/minute") as client:
        customer = await world.create_customer(client)
        me = world.customer(uuid.UUID(customer["user_id"]))
        for n in range(2):
            assert (await _patch(client, customer, me, n)).status_code == 200
        assert (await _patch(client, customer, world.admin, 2)).status_code == 200  # anyone editing counts
        _assert_429(await _patch(client, customer, world.manager, 3))
        stored = (await client.get(f"/customers/{customer['id']}", headers=world.admin.headers)).json()
        assert stored["full_name"] == "Flood 2"  # the refused edit changed nothing

        other = await world.create_customer(client)  # another customer is not affected
        assert (await _patch(client, other, world.manager, 0)).status_code == 200


async def test_one_caller_flooding_many_customers_is_refused(database_url, world):
    async with _client(database_url, patch_rate_limit="3/minute") as client:
        customers = [await world.create_customer(client) for _ in range(4)]
        statuses = [(await _patch(client, customer, world.admin, 0)).status_code for customer in customers]
        assert statuses == [200, 200, 200, 429]


async def test_the_limit_resets_after_its_window(database_url, world):
    async with _client(database_url, patch_rate_limit="2/second") as client:
        customer = await world.create_customer(client)
        assert [(await _patch(client, customer, world.admin, n)).status_code for n in range(3)] == [200, 200, 429]
        await asyncio.sleep(1.2)  # a short window, so the test can wait it out
        assert (await _patch(client, customer, world.admin, 9)).status_code == 200


async def test_replicas_share_the_patch_limit_through_redis(database_url, world, redis_prefix):
    overrides = {"patch_rate_limit": "2/minute", "redis_url": REDIS_URL, "ratelimit_key_prefix": redis_prefix}
    async with _client(database_url, **overrides) as first, _client(database_url, **overrides) as second:
        customer = await world.create_customer(first)
        assert (await _patch(first, customer, world.admin, 0)).status_code == 200
        assert (await _patch(second, customer, world.admin, 1)).status_code == 200
        _assert_429(await _patch(first, customer, world.admin, 2))


async def test_global_per_ip_guard_spares_the_probes(database_url, world):
    async with _client(database_url, ip_rate_limit="5/minute") as client:
        statuses = [
            (await client.get(f"/customers/{uuid.uuid4()}", headers=world.admin.headers)).status_code for _ in range(6)
        ]
        assert statuses == [404] * 5 + [429]
        refused = await client.get("/customers/anything")
        _assert_429(refused)
        assert (await client.get("/healthcheck")).status_code == 200
        assert (await client.get("/readyz")).status_code == 200
        metrics = (await client.get("/metrics")).text
    assert re.search(r"^rate_limited_total\{limit=\"ip\"\} [1-9]", metrics, re.MULTILINE)
