"""At most N avatar uploads per customer per period (10/hour by default): 429 with Retry-After."""

import uuid
from contextlib import asynccontextmanager

import redis.asyncio

from bee_customers_service.app import create_app
from tests.avatars import crafted
from tests.conftest import client_for, make_settings, running_app
from tests.services import REDIS_URL


@asynccontextmanager
async def _client(database_url, **overrides):
    app = create_app(make_settings(database_url, **overrides))
    async with running_app(app), client_for(app) as client:
        yield client


async def _upload(client, customer, caller, width=16):
    return await client.post(
        f"/customers/{customer['id']}/avatar",
        files={"file": ("a.png", crafted.png(width, 16), "image/png")},
        headers=caller.headers,
    )


async def test_the_third_upload_in_the_window_is_refused(database_url, world):
    async with _client(database_url, avatar_upload_rate_limit="2/hour") as client:
        customer = await world.create_customer(client)
        me = world.customer(uuid.UUID(customer["user_id"]))

        assert (await _upload(client, customer, me, 16)).status_code == 200
        assert (await _upload(client, customer, world.admin, 17)).status_code == 200  # admins count too
        refused = await _upload(client, customer, me, 18)

        assert refused.status_code == 429
        assert refused.headers["content-type"] == "application/problem+json"
        problem = refused.json()
        assert problem["status"] == 429
        assert problem["type"].endswith("/rate-limited")
        retry_after = int(refused.headers["retry-after"])
        assert 0 < retry_after <= 3600
        assert problem["retry_after"] == retry_after

        # The limit is per customer: another customer of the same business is not affected.
        other = await world.create_customer(client)
        assert (await _upload(client, other, world.admin)).status_code == 200
        # Reading and removing are not uploads.
        assert (await client.delete(f"/customers/{customer['id']}/avatar", headers=me.headers)).status_code == 204


async def test_rejected_files_count_as_attempts(database_url, world):
    async with _client(database_url, avatar_upload_rate_limit="1/hour") as client:
        customer = await world.create_customer(client)
        bad = await client.post(
            f"/customers/{customer['id']}/avatar",
            files={"file": ("a.txt", b"not an image", "text/plain")},
            headers=world.admin.headers,
        )
        assert bad.status_code == 415
        assert (await _upload(client, customer, world.admin)).status_code == 429


async def test_callers_without_access_do_not_use_up_the_limit(database_url, world):
    async with _client(database_url, avatar_upload_rate_limit="1/hour") as client:
        customer = await world.create_customer(client)
        for _ in range(3):
            assert (await _upload(client, customer, world.other_admin)).status_code == 404
        assert (await _upload(client, customer, world.admin)).status_code == 200


async def test_limits_can_be_switched_off(database_url, world):
    async with _client(database_url, avatar_upload_rate_limit="1/hour", ratelimit_enabled=False) as client:
        customer = await world.create_customer(client)
        for width in (16, 17, 18):
            assert (await _upload(client, customer, world.admin, width)).status_code == 200


async def test_replicas_share_the_count_through_redis(database_url, world, redis_prefix):
    overrides = {"avatar_upload_rate_limit": "2/hour", "redis_url": REDIS_URL, "ratelimit_key_prefix": redis_prefix}
    async with _client(database_url, **overrides) as first, _client(database_url, **overrides) as second:
        assert first._transport.app.state.rate_limiter.backend == "redis"
        customer = await world.create_customer(first)

        assert (await _upload(first, customer, world.admin, 16)).status_code == 200
        assert (await _upload(second, customer, world.admin, 17)).status_code == 200
        refused = await _upload(first, customer, world.admin, 18)

        assert refused.status_code == 429
        assert int(refused.headers["retry-after"]) > 0

    client = redis.asyncio.Redis.from_url(REDIS_URL)
    try:
        assert [key async for key in client.scan_iter(match=f"{redis_prefix}*")]  # the counts live in Redis
    finally:
        await client.aclose()


async def test_an_unreachable_redis_lets_uploads_through(database_url, world, capsys):
    """Fail open: an outage of the rate-limit store must not take uploads down with it."""
    overrides = {"avatar_upload_rate_limit": "1/hour", "redis_url": "redis://127.0.0.1:1/0"}
    async with _client(database_url, **overrides) as client:
        customer = await world.create_customer(client)
        assert (await _upload(client, customer, world.admin, 16)).status_code == 200
        assert (await _upload(client, customer, world.admin, 17)).status_code == 200
    assert "rate_limit_store_unavailable" in capsys.readouterr().out
