"""PUT /businesses/{business_id}/customers/{user_id}: get-or-create for internal services (issue 18.4)."""

import asyncio
import uuid

BODY = {"full_name": "Ioana Marin", "email": "Ioana.Marin@Example.com", "phone": "0722 000 111"}


def _url(world, user_id):
    return f"/businesses/{world.business_id}/customers/{user_id}"


async def test_first_put_creates_the_next_returns_it_unchanged(client, world, fetch):
    user_id = uuid.uuid4()

    first = await client.put(_url(world, user_id), json=BODY, headers=world.service.headers)
    assert first.status_code == 201, first.text
    created = first.json()
    assert first.headers["Location"] == f"/customers/{created['id']}"
    assert first.headers["ETag"] == '"1"'
    assert (created["user_id"], created["business_id"]) == (str(user_id), str(world.business_id))
    assert (created["email"], created["phone"]) == ("ioana.marin@example.com", "+40722000111")

    second = await client.put(
        _url(world, user_id), json={**BODY, "full_name": "Not Applied"}, headers=world.service.headers
    )
    assert second.status_code == 200, second.text
    assert second.json()["id"] == created["id"]
    assert second.json()["full_name"] == "Ioana Marin"  # get-or-create: never an overwrite
    assert second.headers["ETag"] == '"1"'
    events = await fetch("SELECT event_name FROM outbox WHERE customer_id = :c ORDER BY id", c=uuid.UUID(created["id"]))
    assert [e["event_name"] for e in events] == ["v1.customer.created", "v1.audit.customer.created"]


async def test_racing_puts_make_one_profile_and_one_created_event(client, world, fetch):
    user_id = uuid.uuid4()
    responses = await asyncio.gather(
        *(client.put(_url(world, user_id), json=BODY, headers=world.service.headers) for _ in range(20))
    )

    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * 19 + [201], [r.text for r in responses if r.status_code not in (200, 201)]
    assert len({r.json()["id"] for r in responses}) == 1
    rows = await fetch("SELECT id FROM customers WHERE user_id = :u", u=user_id)
    assert len(rows) == 1
    events = await fetch("SELECT event_name FROM outbox WHERE customer_id = :c ORDER BY id", c=rows[0]["id"])
    assert [e["event_name"] for e in events] == ["v1.customer.created", "v1.audit.customer.created"]


async def test_a_new_profile_with_a_taken_email_is_409(client, world):
    await world.create_customer(client, email="ioana.marin@example.com")
    response = await client.put(_url(world, uuid.uuid4()), json=BODY, headers=world.service.headers)
    assert response.status_code == 409, response.text
    assert response.json()["field"] == "email"


async def test_the_body_carries_no_keys(client, world):
    response = await client.put(
        _url(world, uuid.uuid4()), json={**BODY, "user_id": str(uuid.uuid4())}, headers=world.service.headers
    )
    assert response.status_code == 422, response.text
