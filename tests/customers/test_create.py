"""POST /customers: complete data saved, validation per spec 5.2, duplicates (also racing)."""

import asyncio
import uuid

import pytest


async def test_create_saves_complete_profile(client, world, fetch):
    body = world.profile(
        preferences={
            "language": "ro",
            "contact_channel": "sms",
            "preferred_days": ["monday", "friday"],
            "preferred_time_of_day": "morning",
            "marketing_opt_in": True,
        }
    )
    response = await client.post("/customers", json=body, headers=world.service.headers)

    assert response.status_code == 201, response.text
    created = response.json()
    assert response.headers["Location"] == f"/customers/{created['id']}"
    assert response.headers["ETag"] == '"1"'
    assert created["user_id"] == body["user_id"]
    assert created["business_id"] == body["business_id"]
    assert created["full_name"] == "Ana Popescu"
    assert created["email"] == "ana.popescu@email.com"  # normalised to lower case
    assert created["phone"] == "+40712345678"
    assert created["gender"] == "female"
    assert created["preferences"]["preferred_days"] == ["monday", "friday"]
    assert created["total_orders"] == 0 and created["lifetime_value"] == 0
    assert created["created_at"].endswith("Z")
    assert "tags" not in created and "notes_count" not in created

    [row] = await fetch("SELECT * FROM customers WHERE id = :id", id=uuid.UUID(created["id"]))
    assert row["email"] == "ana.popescu@email.com"
    assert row["phone"] == "+40712345678"
    assert row["preferences"]["language"] == "ro"
    assert row["version"] == 1
    assert row["created_at"].tzinfo is not None


@pytest.mark.parametrize(
    "raw",
    ["+40712345678", "0712 345 678", "0040712345678", "0712-345-678", "+40 (712) 345 678"],
)
async def test_phone_spellings_are_normalised_to_e164(client, world, raw):
    created = await world.create_customer(client, phone=raw)
    assert created["phone"] == "+40712345678"


async def test_phone_is_optional(client, world):
    created = await world.create_customer(client, phone=None)
    assert created["phone"] is None


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("email", "not-an-email"),
        ("email", "a@b"),
        ("email", ("x" * 95) + "@example.com"),
        ("phone", "12"),
        ("phone", "0712 34"),
        ("phone", "call me maybe"),
        ("phone", "+999 123"),
        ("gender", "robot"),
        ("full_name", ""),
        ("full_name", "   "),
        ("full_name", "x" * 101),
        ("full_name", "Ana\x00Popescu"),
        ("user_id", "not-a-uuid"),
        ("business_id", 42),
        ("avatar_url", "http://cdn.example.com/a.jpg"),
        ("avatar_url", "https://cdn.example.com/a.gif"),
        ("avatar_url", "https://cdn.example.com/" + "a" * 250 + ".jpg"),
        ("preferences", {"favourite_colour": "blue"}),
        ("preferences", {"language": "not a language"}),
        ("preferences", {"contact_channel": "pigeon"}),
        ("preferences", {"preferred_days": ["funday"]}),
        ("preferences", {"preferred_days": ["monday", "monday"]}),
        ("preferences", {"preferred_time_of_day": "midnight"}),
        ("preferences", {"marketing_opt_in": "perhaps"}),
        ("preferences", "free text"),
        ("nickname", "Ana"),
    ],
)
async def test_invalid_values_are_422_problems(client, world, field, value):
    response = await client.post("/customers", json=world.profile(**{field: value}), headers=world.service.headers)

    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == 422
    assert problem["errors"], problem
    assert any(field in [str(part) for part in error["loc"]] for error in problem["errors"]) or field == "phone"


async def test_missing_required_fields_are_named(client, world):
    response = await client.post("/customers", json={"full_name": "Ana"}, headers=world.service.headers)
    assert response.status_code == 422
    missing = {error["loc"][-1] for error in response.json()["errors"] if error["type"] == "missing"}
    assert missing == {"user_id", "business_id", "email"}


async def test_duplicate_user_in_business_is_409_naming_existing(client, world, fetch):
    created = await world.create_customer(client)
    again = world.profile(user_id=created["user_id"], full_name="Someone Else")

    response = await client.post("/customers", json=again, headers=world.service.headers)

    assert response.status_code == 409
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["existing_customer_id"] == created["id"]
    rows = await fetch("SELECT full_name FROM customers WHERE user_id = :u", u=uuid.UUID(created["user_id"]))
    assert [r["full_name"] for r in rows] == ["Ana Popescu"]


async def test_same_user_in_two_businesses_has_two_profiles(client, world):
    first = await world.create_customer(client)
    second = await world.create_customer(client, user_id=first["user_id"], business_id=str(world.other_business_id))
    assert first["id"] != second["id"]


async def test_racing_duplicate_creates_make_one_profile(client, world, fetch):
    body = world.profile()
    responses = await asyncio.gather(
        *(client.post("/customers", json=body, headers=world.service.headers) for _ in range(8))
    )

    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] + [409] * 7
    winner = next(r.json() for r in responses if r.status_code == 201)
    assert all(r.json()["existing_customer_id"] == winner["id"] for r in responses if r.status_code == 409)
    rows = await fetch("SELECT id FROM customers WHERE user_id = :u", u=uuid.UUID(body["user_id"]))
    assert len(rows) == 1
    events = await fetch("SELECT event_name FROM outbox WHERE customer_id = :c ORDER BY id", c=uuid.UUID(winner["id"]))
    assert [e["event_name"] for e in events] == ["v1.customer.created", "v1.audit.customer.created"]
