"""GDPR export and erasure: complete, isolated, idempotent, and without personal data left behind."""

import uuid

import pytest
from sqlalchemy import text

from bee_customers_service.activity import service as activity_service
from bee_customers_service.gdpr import service as gdpr_service
from tests.conftest import make_settings

PERSONAL = ("Ana Popescu", "ana.popescu@email.com", "+40712345678", "Late three times")


@pytest.fixture
def write(engine):
    """Write rows straight into a table (for data other endpoints would have created)."""

    async def run(sql: str, **params):
        async with engine.begin() as connection:
            await connection.execute(text(sql), params)

    return run


async def _customer_with_everything(client, world, write, **overrides):
    customer = await world.create_customer(client, **overrides)
    cid = uuid.UUID(customer["id"])
    tagged = await client.post(f"/customers/{cid}/tags", json={"label": "VIP"}, headers=world.admin.headers)
    noted = await client.post(
        f"/customers/{cid}/notes", json={"content": "Late three times"}, headers=world.admin.headers
    )
    assert (tagged.status_code, noted.status_code) == (201, 201)
    await write(
        "INSERT INTO customer_history (id, customer_id, business_id, returned_orders) VALUES (:id, :c, :b, 2)",
        id=uuid.uuid4(),
        c=cid,
        b=uuid.UUID(customer["business_id"]),
    )
    return customer


async def test_export_holds_every_table_and_nothing_of_others(client, world, write):
    mine = await _customer_with_everything(client, world, write)
    same_user_elsewhere = await world.create_customer(
        client, user_id=mine["user_id"], business_id=str(world.other_business_id)
    )
    neighbour = await _customer_with_everything(client, world, write, full_name="Ion Ionescu")

    response = await client.get(f"/customers/{mine['id']}/export", headers=world.admin.headers)

    assert response.status_code == 200
    assert response.headers["Content-Disposition"] == f'attachment; filename="customer-{mine["id"]}.json"'
    document = response.json()
    assert document["profile"]["id"] == mine["id"]
    assert document["profile"]["email"] == "ana.popescu@email.com"
    assert [t["label"] for t in document["tables"]["customer_tags"]] == ["VIP"]
    assert [n["content"] for n in document["tables"]["customer_notes"]] == ["Late three times"]
    assert document["tables"]["customer_history"][0]["returned_orders"] == 2
    assert [e["event"]["event"] for e in document["events"]] == [
        "v1.customer.created",
        "v1.customer.tagged",
        "v1.customer.note_added",
    ]
    assert document["statistics"]["total_orders"] == 0
    raw = response.text
    assert neighbour["id"] not in raw and "Ion Ionescu" not in raw
    assert same_user_elsewhere["id"] not in raw


async def test_customer_own_export_includes_notes_unless_turned_off(client, world, write, database_url, app):
    mine = await _customer_with_everything(client, world, write)
    me = world.customer(uuid.UUID(mine["user_id"]))
    own = (await client.get(f"/customers/{mine['id']}/export", headers=me.headers)).json()
    assert [n["content"] for n in own["tables"]["customer_notes"]] == ["Late three times"]

    app.state.settings = make_settings(database_url, gdpr_export_notes=False)
    try:
        without = (await client.get(f"/customers/{mine['id']}/export", headers=me.headers)).json()
        as_admin = (await client.get(f"/customers/{mine['id']}/export", headers=world.admin.headers)).json()
    finally:
        app.state.settings = make_settings(database_url)
    assert "customer_notes" not in without["tables"]
    assert "Late three times" not in str(without)
    assert [n["content"] for n in as_admin["tables"]["customer_notes"]] == ["Late three times"]


async def test_user_export_has_every_business_profile(client, world):
    first = await world.create_customer(client)
    second = await world.create_customer(client, user_id=first["user_id"], business_id=str(world.other_business_id))
    me = world.customer(uuid.UUID(first["user_id"]))
    document = (await client.get(f"/users/{first['user_id']}/export", headers=me.headers)).json()
    assert sorted(p["profile"]["id"] for p in document["profiles"]) == sorted([first["id"], second["id"]])


async def test_erasure_removes_every_row_and_emits_an_id_only_event(client, world, write, fetch):
    mine = await _customer_with_everything(client, world, write)
    neighbour = await _customer_with_everything(client, world, write)
    cid = uuid.UUID(mine["id"])
    await write("UPDATE outbox SET published_at = now() WHERE customer_id = :c", c=cid)

    response = await client.delete(f"/customers/{mine['id']}", headers=world.admin.headers)

    assert response.status_code == 204
    for table in ("customer_tags", "customer_notes", "customer_history", "customer_spend", "customer_activity"):
        assert await fetch(f"SELECT 1 FROM {table} WHERE customer_id = :c", c=cid) == [], table  # noqa: S608
    assert await fetch("SELECT 1 FROM customers WHERE id = :c", c=cid) == []
    remaining = await fetch("SELECT event_name, payload FROM outbox WHERE customer_id = :c ORDER BY id", c=cid)
    # the published created event is gone; the deletion and the erasure's audit record remain
    assert [row["event_name"] for row in remaining] == ["v1.customer.deleted", "v1.audit.customer.erased"]
    event = remaining[0]["payload"]
    assert set(event) == {
        "event",
        "event_id",
        "occurred_at",
        "business_id",
        "trace_id",
        "request_id",
        "customer_id",
        "user_id",
        "gdpr_request_id",
        "deleted_at",
    }
    assert not any(value in str(event) for value in PERSONAL)
    # the neighbour is untouched
    assert len(await fetch("SELECT 1 FROM customer_notes WHERE customer_id = :c", c=uuid.UUID(neighbour["id"]))) == 1
    assert (await client.get(f"/customers/{mine['id']}", headers=world.admin.headers)).status_code == 404


async def test_erasure_record_holds_counts_and_fingerprint_only(client, world, write, fetch):
    mine = await _customer_with_everything(client, world, write)
    # No relay here: every event about the customer (created, tagged, note_added, and their audit
    # records) is still pending, so the erasure redacts each of them.
    pending = await fetch(
        "SELECT 1 FROM outbox WHERE customer_id = :c AND published_at IS NULL", c=uuid.UUID(mine["id"])
    )
    assert len(pending) >= 3
    erased = await client.delete(f"/customers/{mine['id']}", headers=world.admin.headers)
    record_url = erased.headers["Location"]

    record = (await client.get(record_url, headers=world.admin.headers)).json()
    assert record["kind"] == "erasure" and record["scope"] == "customer" and record["status"] == "completed"
    assert record["customer_ids"] == [mine["id"]]
    assert record["requested_by"] == str(world.admin.user_id)
    assert record["erased"] == {
        "customer_tags": 1,
        "customer_notes": 1,
        "customer_history": 1,
        "customer_spend": 0,
        "customer_activity": 0,
        "outbox": 0,
        "outbox_redacted": len(pending),
        "customers": 1,
    }
    assert record["email_fingerprints"] == [gdpr_service.email_fingerprint("ana.popescu@email.com", world.settings)]
    assert not any(value in str(record) for value in PERSONAL)
    assert (await client.get(record_url, headers=world.service.headers)).status_code == 200
    assert (await client.get(record_url, headers=world.other_admin.headers)).status_code == 404


async def test_erasure_is_idempotent(client, world, fetch):
    mine = await world.create_customer(client)
    assert (await client.delete(f"/customers/{mine['id']}", headers=world.admin.headers)).status_code == 204
    records_before = await fetch(
        "SELECT id FROM gdpr_requests WHERE subject_user_id = :u", u=uuid.UUID(mine["user_id"])
    )
    again = await client.delete(f"/customers/{mine['id']}", headers=world.admin.headers)
    assert again.status_code == 404
    user_level = await client.delete(f"/users/{mine['user_id']}", headers=world.service.headers)
    assert user_level.status_code == 204
    assert (
        await fetch("SELECT id FROM gdpr_requests WHERE subject_user_id = :u", u=uuid.UUID(mine["user_id"]))
        == records_before
    )


async def test_user_erasure_covers_every_business(client, world, fetch):
    first = await world.create_customer(client)
    second = await world.create_customer(client, user_id=first["user_id"], business_id=str(world.other_business_id))
    me = world.customer(uuid.UUID(first["user_id"]))
    response = await client.delete(f"/users/{first['user_id']}", headers=me.headers)
    assert response.status_code == 204
    assert await fetch("SELECT id FROM customers WHERE user_id = :u", u=uuid.UUID(first["user_id"])) == []
    record = (await client.get(response.headers["Location"], headers=world.service.headers)).json()
    assert sorted(record["customer_ids"]) == sorted([first["id"], second["id"]])
    assert record["scope"] == "user"


async def test_late_events_do_not_resurrect_by_default(client, world, app, database_url):
    mine = await world.create_customer(client)
    await client.delete(f"/customers/{mine['id']}", headers=world.admin.headers)
    user_id, business_id = uuid.UUID(mine["user_id"]), world.business_id
    async with app.state.database.sessionmaker() as session:
        never = await activity_service.resurrection_allowed(
            session, user_id=user_id, business_id=business_id, settings=make_settings(database_url)
        )
        after_zero_days = await activity_service.resurrection_allowed(
            session,
            user_id=user_id,
            business_id=business_id,
            settings=make_settings(database_url, gdpr_resurrect_after_days=0),
        )
        other_business = await activity_service.resurrection_allowed(
            session, user_id=user_id, business_id=world.other_business_id, settings=make_settings(database_url)
        )
    assert never is False
    assert after_zero_days is True
    assert other_business is True


async def _upload_avatar(client, world, customer) -> str:
    from tests.avatars import crafted

    response = await client.post(
        f"/customers/{customer['id']}/avatar",
        headers=world.admin.headers,
        files={"file": ("me.png", crafted.png(), "image/png")},
    )
    assert response.status_code == 200, response.text
    return response.json()["avatar_url"]


async def test_erasure_deletes_the_stored_avatar_object(client, world, app):
    mine = await world.create_customer(client)
    url = await _upload_avatar(client, world, mine)
    storage = app.state.avatar_storage
    path = storage.path_for(storage.key_for(url))
    assert path.exists()

    erased = await client.delete(f"/customers/{mine['id']}", headers=world.admin.headers)

    assert erased.status_code == 204
    assert not path.exists()
    record = (await client.get(erased.headers["Location"], headers=world.admin.headers)).json()
    assert record["status"] == "completed" and record["pending_objects"] == []


async def test_storage_failure_leaves_a_retryable_record_not_a_half_erased_customer(client, world, app):
    mine = await world.create_customer(client)
    url = await _upload_avatar(client, world, mine)
    storage = app.state.avatar_storage
    key = storage.key_for(url)
    path = storage.path_for(key)
    # A real storage failure: the object's path is now a non-empty directory, which unlink refuses.
    path.unlink()
    path.mkdir()
    (path / "blocker").write_text("x")

    erased = await client.delete(f"/customers/{mine['id']}", headers=world.admin.headers)

    assert erased.status_code == 204  # the rows are gone in any case ...
    assert (await client.get(f"/customers/{mine['id']}", headers=world.admin.headers)).status_code == 404
    record = (await client.get(erased.headers["Location"], headers=world.admin.headers)).json()
    assert record["status"] == "pending_object_cleanup"  # ... and the record says what is left to do
    assert record["pending_objects"] == [key]

    (path / "blocker").unlink()
    path.rmdir()  # storage is back
    waiting = await gdpr_service.retry_pending_objects(app.state.database.sessionmaker, storage=storage)
    assert waiting == 0
    record = (await client.get(erased.headers["Location"], headers=world.admin.headers)).json()
    assert record["status"] == "completed" and record["pending_objects"] == []
    assert record["completed_at"] is not None
