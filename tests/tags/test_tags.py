"""Tags: add one or several, unique per customer ignoring case and spaces, at most 50, events."""

import asyncio
import uuid

import pytest


def _tags_url(customer):
    return f"/customers/{customer['id']}/tags"


async def test_add_tag_keeps_label_as_written_and_records_author(client, world, fetch):
    customer = await world.create_customer(client)
    admin = world.admin

    response = await client.post(
        _tags_url(customer), json={"label": "  VIP  ", "color": "#ff8800"}, headers=admin.headers
    )

    assert response.status_code == 201, response.text
    tag = response.json()
    assert tag["label"] == "VIP"  # trimmed, case kept
    assert tag["color"] == "#FF8800"
    assert tag["created_by"] == str(admin.user_id)
    assert response.headers["Location"] == f"/customers/{customer['id']}/tags/{tag['id']}"

    listed = await client.get(_tags_url(customer), headers=world.manager.headers)
    assert [t["label"] for t in listed.json()["items"]] == ["VIP"]
    profile = await client.get(f"/customers/{customer['id']}", headers=admin.headers)
    assert [t["label"] for t in profile.json()["tags"]] == ["VIP"]

    [event] = await fetch(
        "SELECT payload FROM outbox WHERE customer_id = :c AND event_name = 'v1.customer.tagged'",
        c=uuid.UUID(customer["id"]),
    )
    payload = event["payload"]
    assert payload["tag"] == "VIP"
    assert payload["tag_id"] == tag["id"]
    assert payload["created_by"] == str(admin.user_id)
    assert payload["business_id"] == str(world.business_id)
    assert payload["customer_id"] == customer["id"]


@pytest.mark.parametrize("variant", ["VIP", "vip", " vip ", "Vip", "\tVIP\n"])
async def test_duplicate_label_in_any_case_or_spacing_is_409(client, world, variant):
    customer = await world.create_customer(client)
    first = await client.post(_tags_url(customer), json={"label": "VIP"}, headers=world.admin.headers)
    assert first.status_code == 201

    again = await client.post(_tags_url(customer), json={"label": variant}, headers=world.admin.headers)

    assert again.status_code == 409, again.text
    assert again.headers["content-type"] == "application/problem+json"
    assert again.json()["labels"] == ["VIP"]
    listed = await client.get(_tags_url(customer), headers=world.admin.headers)
    assert [t["label"] for t in listed.json()["items"]] == ["VIP"]


async def test_same_label_on_two_customers_is_fine(client, world):
    first = await world.create_customer(client)
    second = await world.create_customer(client)
    for customer in (first, second):
        response = await client.post(_tags_url(customer), json={"label": "VIP"}, headers=world.admin.headers)
        assert response.status_code == 201


async def test_racing_adds_of_the_same_tag_give_one_201_and_409s(client, world, fetch):
    customer = await world.create_customer(client)
    variants = ["VIP", "vip", " Vip", "VIP ", "vIP", "VIP"]

    responses = await asyncio.gather(
        *(client.post(_tags_url(customer), json={"label": v}, headers=world.admin.headers) for v in variants)
    )

    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] + [409] * (len(variants) - 1)
    rows = await fetch("SELECT label FROM customer_tags WHERE customer_id = :c", c=uuid.UUID(customer["id"]))
    assert len(rows) == 1
    events = await fetch(
        "SELECT 1 FROM outbox WHERE customer_id = :c AND event_name = 'v1.customer.tagged'", c=uuid.UUID(customer["id"])
    )
    assert len(events) == 1


async def test_labels_adds_several_atomically(client, world):
    customer = await world.create_customer(client)
    response = await client.post(
        _tags_url(customer), json={"labels": ["VIP", "Prefers Monday mornings"]}, headers=world.admin.headers
    )
    assert response.status_code == 201, response.text
    assert [t["label"] for t in response.json()["items"]] == ["VIP", "Prefers Monday mornings"]

    # One of them exists already: nothing is added.
    clash = await client.post(_tags_url(customer), json={"labels": ["New", "vip"]}, headers=world.admin.headers)
    assert clash.status_code == 409
    listed = await client.get(_tags_url(customer), headers=world.admin.headers)
    assert [t["label"] for t in listed.json()["items"]] == ["VIP", "Prefers Monday mornings"]


@pytest.mark.parametrize(
    "body",
    [
        {"label": ""},
        {"label": "   "},
        {"label": "x" * 51},
        {"label": "VIP", "color": "red"},
        {"label": "VIP", "color": "#12345"},
        {"labels": []},
        {"labels": ["VIP", "vip"]},
        {"label": "VIP", "labels": ["Other"]},
        {},
        {"label": "VIP", "unknown": 1},
    ],
)
async def test_invalid_tag_bodies_are_422(client, world, body):
    customer = await world.create_customer(client)
    response = await client.post(_tags_url(customer), json=body, headers=world.admin.headers)
    assert response.status_code == 422, response.text


async def test_label_of_exactly_50_characters_is_accepted(client, world):
    customer = await world.create_customer(client)
    response = await client.post(_tags_url(customer), json={"label": "ș" * 50}, headers=world.admin.headers)
    assert response.status_code == 201


async def test_fifty_tags_at_most(client, world, fetch):
    customer = await world.create_customer(client)
    labels = [f"tag {i}" for i in range(49)]
    assert (
        await client.post(_tags_url(customer), json={"labels": labels}, headers=world.admin.headers)
    ).status_code == 201

    # Two racing adds for the 50th slot: exactly one wins, the other is 422.
    racing = await asyncio.gather(
        client.post(_tags_url(customer), json={"label": "fiftieth A"}, headers=world.admin.headers),
        client.post(_tags_url(customer), json={"label": "fiftieth B"}, headers=world.admin.headers),
    )
    assert sorted(r.status_code for r in racing) == [201, 422]
    refused = next(r for r in racing if r.status_code == 422)
    assert "at most 50" in refused.json()["errors"][0]["msg"]

    [row] = await fetch("SELECT count(*) AS n FROM customer_tags WHERE customer_id = :c", c=uuid.UUID(customer["id"]))
    assert row["n"] == 50


async def test_delete_tag_emits_untagged_and_frees_the_label(client, world, fetch):
    customer = await world.create_customer(client)
    tag = (await client.post(_tags_url(customer), json={"label": "VIP"}, headers=world.admin.headers)).json()

    deleted = await client.delete(f"{_tags_url(customer)}/{tag['id']}", headers=world.admin.headers)
    assert deleted.status_code == 204
    again = await client.delete(f"{_tags_url(customer)}/{tag['id']}", headers=world.admin.headers)
    assert again.status_code == 404

    [event] = await fetch(
        "SELECT payload FROM outbox WHERE customer_id = :c AND event_name = 'v1.customer.untagged'",
        c=uuid.UUID(customer["id"]),
    )
    assert event["payload"]["tag_id"] == tag["id"] and event["payload"]["tag"] == "VIP"
    readded = await client.post(_tags_url(customer), json={"label": "vip"}, headers=world.admin.headers)
    assert readded.status_code == 201


async def test_tag_of_another_customer_cannot_be_deleted_through_this_one(client, world):
    owner = await world.create_customer(client)
    other = await world.create_customer(client)
    tag = (await client.post(_tags_url(owner), json={"label": "VIP"}, headers=world.admin.headers)).json()

    response = await client.delete(f"{_tags_url(other)}/{tag['id']}", headers=world.admin.headers)

    assert response.status_code == 404
    assert len((await client.get(_tags_url(owner), headers=world.admin.headers)).json()["items"]) == 1


async def test_customer_never_sees_tags_in_own_view(client, world):
    customer = await world.create_customer(client)
    await client.post(_tags_url(customer), json={"label": "Difficult"}, headers=world.admin.headers)

    own = await client.get(
        f"/customers/{customer['id']}", headers=world.customer(uuid.UUID(customer["user_id"])).headers
    )

    assert own.status_code == 200
    assert "tags" not in own.json() and "Difficult" not in own.text
