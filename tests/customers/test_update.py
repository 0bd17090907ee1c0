"""PATCH /customers/{id}: partial updates, preference merging, immutability, ETag / If-Match."""

import asyncio
import uuid

import pytest


async def test_patch_changes_only_what_was_sent(client, world, fetch):
    created = await world.create_customer(client)
    me = world.customer(uuid.UUID(created["user_id"]))

    response = await client.patch(f"/customers/{created['id']}", json={"phone": "0798 765 432"}, headers=me.headers)

    assert response.status_code == 200, response.text
    updated = response.json()
    assert updated["phone"] == "+40798765432"
    assert updated["full_name"] == created["full_name"]
    assert updated["email"] == created["email"]
    assert updated["gender"] == created["gender"]
    assert updated["version"] == 2
    assert response.headers["ETag"] == '"2"'
    [row] = await fetch("SELECT phone, email, version FROM customers WHERE id = :id", id=uuid.UUID(created["id"]))
    assert row == {"phone": "+40798765432", "email": created["email"], "version": 2}


async def test_patch_emits_updated_event_with_fields_changed(client, world, fetch):
    created = await world.create_customer(client)
    await client.patch(
        f"/customers/{created['id']}", json={"email": "NEW@Example.com", "gender": "other"}, headers=world.admin.headers
    )

    events = await fetch(
        "SELECT payload FROM outbox WHERE customer_id = :c AND event_name = 'v1.customer.updated'",
        c=uuid.UUID(created["id"]),
    )
    [event] = [e["payload"] for e in events]
    assert event["fields_changed"] == ["email", "gender"]
    assert event["email"] == "new@example.com"  # synced to bee_auth_service (spec 5.5)
    assert "gender" not in event  # other fields are named, not copied
    assert event["business_id"] == str(world.business_id)


async def test_patch_with_no_real_change_keeps_version_and_emits_nothing(client, world, fetch):
    created = await world.create_customer(client)
    response = await client.patch(
        f"/customers/{created['id']}", json={"full_name": "Ana Popescu"}, headers=world.admin.headers
    )
    assert response.status_code == 200
    assert response.json()["version"] == 1
    events = await fetch("SELECT event_name FROM outbox WHERE customer_id = :c ORDER BY id", c=uuid.UUID(created["id"]))
    assert [e["event_name"] for e in events] == ["v1.customer.created", "v1.audit.customer.created"]


async def test_patch_null_clears_optional_field(client, world):
    created = await world.create_customer(client)
    response = await client.patch(
        f"/customers/{created['id']}", json={"phone": None, "gender": None}, headers=world.admin.headers
    )
    assert response.status_code == 200
    assert response.json()["phone"] is None and response.json()["gender"] is None


async def test_preferences_merge_key_by_key(client, world):
    created = await world.create_customer(client, preferences={"language": "ro", "contact_channel": "sms"})
    url = f"/customers/{created['id']}"

    first = await client.patch(
        url, json={"preferences": {"contact_channel": "email", "marketing_opt_in": False}}, headers=world.admin.headers
    )
    assert first.json()["preferences"] == {"language": "ro", "contact_channel": "email", "marketing_opt_in": False}

    second = await client.patch(url, json={"preferences": {"language": None}}, headers=world.admin.headers)
    assert second.json()["preferences"] == {"contact_channel": "email", "marketing_opt_in": False}


@pytest.mark.parametrize(
    "body",
    [
        {"user_id": str(uuid.uuid4())},
        {"business_id": str(uuid.uuid4())},
        {"id": str(uuid.uuid4())},
        {"preferences": {"shoe_size": 42}},
        {"full_name": None},
        {"email": None},
        {"email": "nope"},
        {"phone": "123"},
        {"gender": "robot"},
        {"avatar_url": "ftp://x/y.png"},
        {"total_orders": 99},
        {"lifetime_value": 1000},
        {"version": 7},
    ],
)
async def test_invalid_or_immutable_patch_is_422_and_changes_nothing(client, world, fetch, body):
    created = await world.create_customer(client)
    response = await client.patch(f"/customers/{created['id']}", json=body, headers=world.admin.headers)

    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    [row] = await fetch(
        "SELECT version, user_id, business_id FROM customers WHERE id = :id", id=uuid.UUID(created["id"])
    )
    assert row["version"] == 1
    assert str(row["business_id"]) == created["business_id"]


async def test_get_returns_etag_and_patch_honours_if_match(client, world):
    created = await world.create_customer(client)
    url = f"/customers/{created['id']}"
    read = await client.get(url, headers=world.admin.headers)
    assert read.headers["ETag"] == '"1"'

    ok = await client.patch(
        url, json={"full_name": "Ana Maria Popescu"}, headers={**world.admin.headers, "If-Match": read.headers["ETag"]}
    )
    assert ok.status_code == 200
    assert ok.headers["ETag"] == '"2"'

    stale = await client.patch(
        url, json={"full_name": "Lost Update"}, headers={**world.admin.headers, "If-Match": read.headers["ETag"]}
    )
    assert stale.status_code == 412
    assert stale.headers["content-type"] == "application/problem+json"
    assert (await client.get(url, headers=world.admin.headers)).json()["full_name"] == "Ana Maria Popescu"

    weak = await client.patch(url, json={"gender": "other"}, headers={**world.admin.headers, "If-Match": 'W/"2"'})
    assert weak.status_code == 200
    garbage = await client.patch(url, json={"gender": "male"}, headers={**world.admin.headers, "If-Match": '"abc"'})
    assert garbage.status_code == 412


async def test_concurrent_patches_lose_no_preference_key(client, world):
    created = await world.create_customer(client)
    url = f"/customers/{created['id']}"
    keys = [
        {"language": "ro"},
        {"contact_channel": "sms"},
        {"preferred_time_of_day": "evening"},
        {"marketing_opt_in": True},
        {"preferred_days": ["sunday"]},
    ]
    responses = await asyncio.gather(
        *(client.patch(url, json={"preferences": k}, headers=world.admin.headers) for k in keys)
    )
    assert all(r.status_code == 200 for r in responses)
    final = (await client.get(url, headers=world.admin.headers)).json()
    assert final["preferences"] == {k: v for item in keys for k, v in item.items()}
    assert final["version"] == 1 + len(keys)
