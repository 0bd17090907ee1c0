"""Internal notes: author from the token, length in characters, content filter, newest-first pages."""

import asyncio
import uuid

import pytest

from bee_customers_service.app import create_app
from tests.conftest import client_for, make_settings, running_app


def _notes_url(customer):
    return f"/customers/{customer['id']}/notes"


async def test_add_note_author_comes_from_token(client, world, fetch):
    customer = await world.create_customer(client)
    admin = world.admin

    response = await client.post(_notes_url(customer), json={"content": "Prefers morning slots"}, headers=admin.headers)

    assert response.status_code == 201, response.text
    note = response.json()
    assert note["content"] == "Prefers morning slots"
    assert note["created_by"] == str(admin.user_id)
    [event] = await fetch(
        "SELECT payload FROM outbox WHERE customer_id = :c AND event_name = 'v1.customer.note_added'",
        c=uuid.UUID(customer["id"]),
    )
    payload = event["payload"]
    assert payload["note"] == "Prefers morning slots"  # spec 4.4: for the audit log
    assert payload["created_by"] == str(admin.user_id)
    assert payload["customer_id"] == customer["id"]
    assert payload["created_at"].startswith(note["created_at"][:19])
    profile = await client.get(f"/customers/{customer['id']}", headers=admin.headers)
    assert profile.json()["notes_count"] == 1


async def test_body_created_by_must_be_the_caller(client, world):
    customer = await world.create_customer(client)
    admin = world.admin

    same = await client.post(
        _notes_url(customer), json={"content": "ok", "created_by": str(admin.user_id)}, headers=admin.headers
    )
    assert same.status_code == 201
    other = await client.post(
        _notes_url(customer), json={"content": "spoofed", "created_by": str(uuid.uuid4())}, headers=admin.headers
    )
    assert other.status_code == 403
    assert other.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(
    ("content", "status"),
    [
        ("😀" * 500, 201),  # 500 characters, 2000 bytes
        ("ș" * 500, 201),
        ("s\u0326" * 500, 201),  # s + combining comma below: composed to "ș", one character each
        ("😀" * 501, 422),
        ("a" * 501, 422),
        ("", 422),
        ("   ", 422),
    ],
    ids=["500-emoji", "500-diacritics", "500-decomposed", "501-emoji", "501-ascii", "empty", "blank"],
)
async def test_note_length_counts_characters_not_bytes(client, world, content, status):
    customer = await world.create_customer(client)
    response = await client.post(_notes_url(customer), json={"content": content}, headers=world.admin.headers)
    assert response.status_code == status, response.text
    if status == 201:
        assert len(response.json()["content"]) == 500


async def test_notes_page_newest_first_with_cursor(client, world):
    customer = await world.create_customer(client)
    for i in range(5):
        created = await client.post(_notes_url(customer), json={"content": f"note {i}"}, headers=world.admin.headers)
        assert created.status_code == 201

    first = await client.get(_notes_url(customer), params={"limit": 2}, headers=world.admin.headers)
    assert first.status_code == 200
    body = first.json()
    assert [n["content"] for n in body["items"]] == ["note 4", "note 3"]

    # A note written between pages appears on no later page and shifts nothing.
    await client.post(_notes_url(customer), json={"content": "note 5"}, headers=world.admin.headers)
    second = await client.get(
        _notes_url(customer), params={"limit": 2, "cursor": body["next_cursor"]}, headers=world.admin.headers
    )
    third = await client.get(
        _notes_url(customer), params={"limit": 2, "cursor": second.json()["next_cursor"]}, headers=world.admin.headers
    )
    assert [n["content"] for n in second.json()["items"]] == ["note 2", "note 1"]
    assert [n["content"] for n in third.json()["items"]] == ["note 0"]
    assert third.json()["next_cursor"] is None


@pytest.mark.parametrize("cursor", ["garbage", "eyJzIjoibm90ZXM6djEiLCJrIjpbMV19", "%%%", "e30"])
async def test_invalid_notes_cursor_is_422(client, world, cursor):
    customer = await world.create_customer(client)
    response = await client.get(_notes_url(customer), params={"cursor": cursor}, headers=world.admin.headers)
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["query", "cursor"]


@pytest.mark.parametrize("limit", [0, 101, -1])
async def test_notes_limit_bounds(client, world, limit):
    customer = await world.create_customer(client)
    response = await client.get(_notes_url(customer), params={"limit": limit}, headers=world.admin.headers)
    assert response.status_code == 422


async def test_delete_note(client, world):
    customer = await world.create_customer(client)
    note = (await client.post(_notes_url(customer), json={"content": "temp"}, headers=world.admin.headers)).json()

    assert (await client.delete(f"{_notes_url(customer)}/{note['id']}", headers=world.admin.headers)).status_code == 204
    assert (await client.delete(f"{_notes_url(customer)}/{note['id']}", headers=world.admin.headers)).status_code == 404
    listed = await client.get(_notes_url(customer), headers=world.admin.headers)
    assert listed.json()["items"] == []


async def test_note_of_another_customer_is_404(client, world):
    owner = await world.create_customer(client)
    other = await world.create_customer(client)
    note = (await client.post(_notes_url(owner), json={"content": "mine"}, headers=world.admin.headers)).json()
    response = await client.delete(f"{_notes_url(other)}/{note['id']}", headers=world.admin.headers)
    assert response.status_code == 404


async def test_notes_are_never_visible_to_the_customer(client, world, capsys):
    customer = await world.create_customer(client)
    me = world.customer(uuid.UUID(customer["user_id"]))
    secret = "Has been late 3 times zqxj"
    await client.post(_notes_url(customer), json={"content": secret}, headers=world.admin.headers)

    own = await client.get(f"/customers/{customer['id']}", headers=me.headers)
    assert own.status_code == 200
    assert secret not in own.text and "notes_count" not in own.json()
    assert (await client.get(_notes_url(customer), headers=me.headers)).status_code == 403
    patched = await client.patch(f"/customers/{customer['id']}", json={"gender": "other"}, headers=me.headers)
    assert secret not in patched.text
    assert secret not in capsys.readouterr().out  # nor in the logs


@pytest.fixture(scope="module")
async def filtered_client(database_url):
    app = create_app(make_settings(database_url, notes_blocklist="idiot, prost , hoț"))
    async with running_app(app), client_for(app) as http:
        yield http


@pytest.mark.parametrize(
    ("content", "status"),
    [
        ("Total IDIOT at the desk", 422),
        ("e un PROST", 422),
        ("Hot la casa", 422),  # accent-insensitive: "hoț"
        ("idiot.", 422),
        ("idiotic remark overheard", 201),  # whole words only
        ("Prostate exam booked", 201),
        ("Polite and punctual", 201),
    ],
)
async def test_blocklist_refuses_whole_words_case_and_accent_insensitively(filtered_client, world, content, status):
    customer = await world.create_customer(filtered_client)
    response = await filtered_client.post(_notes_url(customer), json={"content": content}, headers=world.admin.headers)
    assert response.status_code == status, response.text
    if status == 422:
        problem = response.json()
        assert "content filter" in problem["errors"][0]["msg"]
        for word in ("idiot", "prost", "hoț"):
            assert word not in response.text.lower()  # names the rule, never the list


async def test_concurrent_notes_all_land(client, world):
    customer = await world.create_customer(client)
    responses = await asyncio.gather(
        *(client.post(_notes_url(customer), json={"content": f"n{i}"}, headers=world.admin.headers) for i in range(5))
    )
    assert all(r.status_code == 201 for r in responses)
    listed = await client.get(_notes_url(customer), params={"limit": 100}, headers=world.admin.headers)
    assert len(listed.json()["items"]) == 5


async def test_a_forged_cursor_with_a_naive_time_is_refused(client, world, settings):
    from bee_customers_service.core.pagination import CursorCodec

    customer = await world.create_customer(client)
    # Signed with the server's own key: the type check still refuses the naive time.
    forged = CursorCodec.from_settings(settings).encode(
        ["2026-01-01T00:00:00", "00000000-0000-0000-0000-000000000000"], scope="notes:v1"
    )
    response = await client.get(
        f"/customers/{customer['id']}/notes", params={"cursor": forged}, headers=world.admin.headers
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["query", "cursor"]
