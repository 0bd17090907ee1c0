"""One email per business (issue 18.2): case and spaces aside, enforced by a unique index."""

import asyncio
import uuid

import asyncpg
import pytest

from bee_customers_service.cli import run_migrations
from bee_customers_service.core.db import to_async_url
from tests.services import create_database, drop_database

EMAIL_TAKEN = "https://errors.beeconect.dev/customers/email-taken"


def _assert_email_taken(response, *, not_naming: str | None = None):
    assert response.status_code == 409, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["type"] == EMAIL_TAKEN
    assert problem["field"] == "email"
    assert "existing_customer_id" not in problem
    if not_naming is not None:
        assert not_naming not in response.text  # never the other customer's id


async def test_post_with_an_email_the_business_holds_is_409_naming_the_field(client, world, fetch):
    holder = await world.create_customer(client, email="ioana.marin@example.com")
    body = world.profile(email="  IOANA.Marin@Example.COM ")

    response = await client.post("/customers", json=body, headers=world.service.headers)

    _assert_email_taken(response, not_naming=holder["id"])
    assert await fetch("SELECT 1 FROM customers WHERE user_id = :u", u=uuid.UUID(body["user_id"])) == []


async def test_the_same_email_in_another_business_is_fine(client, world):
    await world.create_customer(client, email="shared@example.com")
    other = await world.create_customer(client, email="Shared@Example.com", business_id=str(world.other_business_id))
    assert other["email"] == "shared@example.com"


async def test_the_index_ignores_case_and_spaces(fetch, world, engine):
    """Rows written around the API (a seeder, a console) are held to the same rule."""
    from sqlalchemy import text
    from sqlalchemy.exc import IntegrityError

    insert = text(
        "INSERT INTO customers (id, user_id, business_id, full_name, email)"
        " VALUES (gen_random_uuid(), gen_random_uuid(), :b, 'X', :e)"
    )
    async with engine.begin() as connection:
        await connection.execute(insert, {"b": world.business_id, "e": "raw@example.com"})
    with pytest.raises(IntegrityError, match="uq_customers_business_email_key"):
        async with engine.begin() as connection:
            await connection.execute(insert, {"b": world.business_id, "e": " RAW@example.com "})


async def test_patch_to_a_taken_email_is_409_and_changes_nothing(client, world, fetch):
    holder = await world.create_customer(client, email="taken@example.com")
    customer = await world.create_customer(client, email="mine@example.com")

    response = await client.patch(
        f"/customers/{customer['id']}",
        json={"email": "Taken@Example.com", "full_name": "Renamed"},
        headers=world.admin.headers,
    )

    _assert_email_taken(response, not_naming=holder["id"])
    [row] = await fetch("SELECT email, full_name, version FROM customers WHERE id = :c", c=uuid.UUID(customer["id"]))
    assert (row["email"], row["full_name"], row["version"]) == ("mine@example.com", "Ana Popescu", 1)
    events = await fetch("SELECT event_name FROM outbox WHERE customer_id = :c", c=uuid.UUID(customer["id"]))
    assert "v1.customer.updated" not in {e["event_name"] for e in events}
    # The request's transaction stayed usable: the next PATCH goes through.
    again = await client.patch(
        f"/customers/{customer['id']}", json={"full_name": "Renamed"}, headers=world.admin.headers
    )
    assert again.status_code == 200, again.text
    assert again.json()["email"] == "mine@example.com"


async def test_patch_keeping_its_own_email_in_another_case_is_fine(client, world):
    customer = await world.create_customer(client, email="me@example.com")
    response = await client.patch(
        f"/customers/{customer['id']}", json={"email": "ME@example.com"}, headers=world.admin.headers
    )
    assert response.status_code == 200, response.text


async def test_racing_creates_of_different_users_with_one_email_make_one_profile(client, world, fetch):
    bodies = [world.profile(email="race@example.com") for _ in range(20)]
    responses = await asyncio.gather(
        *(client.post("/customers", json=body, headers=world.service.headers) for body in bodies)
    )

    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] + [409] * 19, [r.text for r in responses if r.status_code not in (201, 409)]
    for response in responses:
        if response.status_code == 409:
            _assert_email_taken(response)
    rows = await fetch("SELECT id FROM customers WHERE business_id = :b", b=world.business_id)
    assert len(rows) == 1


async def test_the_migration_refuses_existing_duplicates_naming_ids_only(postgres_server):
    name, url = await create_database(postgres_server, prefix="bee_migrations")
    try:
        await asyncio.to_thread(run_migrations, to_async_url(url), "0012_gdpr_email_fingerprints")
        business, other = uuid.uuid4(), uuid.uuid4()
        ids = [uuid.uuid4() for _ in range(4)]
        connection = await asyncpg.connect(url)
        try:
            await connection.executemany(
                "INSERT INTO customers (id, user_id, business_id, full_name, email) VALUES ($1, $2, $3, 'X', $4)",
                [
                    (ids[0], uuid.uuid4(), business, "dup@example.com"),
                    (ids[1], uuid.uuid4(), business, " DUP@example.com"),
                    (ids[2], uuid.uuid4(), other, "dup@example.com"),  # another business: no clash
                    (ids[3], uuid.uuid4(), business, "alone@example.com"),
                ],
            )
        finally:
            await connection.close()

        with pytest.raises(RuntimeError) as refused:
            await asyncio.to_thread(run_migrations, to_async_url(url))

        message = str(refused.value)
        assert str(business) in message and str(ids[0]) in message and str(ids[1]) in message
        assert str(other) not in message and str(ids[2]) not in message and str(ids[3]) not in message
        assert "dup@" not in message.lower()  # never an email
        connection = await asyncpg.connect(url)
        try:
            assert (
                await connection.fetchval("SELECT version_num FROM alembic_version") == "0012_gdpr_email_fingerprints"
            )
            await connection.execute("UPDATE customers SET email = 'fixed@example.com' WHERE id = $1", ids[1])
        finally:
            await connection.close()
        await asyncio.to_thread(run_migrations, to_async_url(url))  # fixed: it goes through
    finally:
        await drop_database(postgres_server, name)
