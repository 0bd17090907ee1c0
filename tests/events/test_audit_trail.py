"""The audit trail (spec 5.3) against a real RabbitMQ: one record per action, on the audit exchange.

Every action goes through the API of an app whose relay publishes to the session's own exchanges;
`audit_consumer` is bound with `#` to the audit exchange. Each test looks at its own business only.
"""

import io
import json
import uuid

import aio_pika
from PIL import Image
from sqlalchemy.ext.asyncio import AsyncSession

from bee_customers_service.app import create_app
from bee_customers_service.events import audit, catalogue, outbox
from tests.conftest import client_for, running_app
from tests.events.tools import EventConsumer, eventually, running_relay


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 120, 40)).save(buffer, format="PNG")
    return buffer.getvalue()


def _records(consumer: EventConsumer, business_id: uuid.UUID) -> list[tuple[str, dict]]:
    return [(m.routing_key or "", json.loads(m.body)) for m in consumer.of(business_id)]


def _actor(caller, roles: list[str]) -> dict:
    return {"user_id": str(caller.user_id), "roles": roles}


async def test_every_action_publishes_one_audit_record_with_who_and_what(
    relay_settings, audit_consumer, audit_exchange_name, world
):
    admin, service = world.admin, world.service
    app = create_app(relay_settings())
    async with running_app(app), client_for(app) as http:
        created = await http.post(
            "/customers",
            json=world.profile(full_name="Ana Popescu", phone="+40712345678"),
            headers={**service.headers, "X-Request-Id": "req-audit-1", "User-Agent": "audit-agent/2.0\x00\x07"},
        )
        assert created.status_code == 201, created.text
        customer = created.json()
        base = f"/customers/{customer['id']}"
        patched = await http.patch(
            base, json={"full_name": "Ana Ionescu", "phone": None}, headers={**admin.headers, "User-Agent": "ui/1"}
        )
        assert patched.status_code == 200, patched.text
        tag = (await http.post(f"{base}/tags", json={"label": "VIP"}, headers=admin.headers)).json()
        assert (await http.delete(f"{base}/tags/{tag['id']}", headers=admin.headers)).status_code == 204
        text = "Prefers morning appointments 5c1e"
        note = await http.post(f"{base}/notes", json={"content": text}, headers=admin.headers)
        assert note.status_code == 201, note.text
        assert (await http.delete(f"{base}/notes/{note.json()['id']}", headers=admin.headers)).status_code == 204
        avatar = await http.post(
            f"{base}/avatar", files={"file": ("a.png", _png(), "image/png")}, headers=admin.headers
        )
        assert avatar.status_code == 200, avatar.text
        assert (await http.delete(f"{base}/avatar", headers=admin.headers)).status_code == 204
        assert (await http.post(f"{base}/stats/recompute", headers=admin.headers)).status_code == 200
        assert (await http.get(f"{base}/export", headers=admin.headers)).status_code == 200
        assert (await http.get(f"/users/{customer['user_id']}/export", headers=service.headers)).status_code == 200
        # Everything so far is out before the erasure (which redacts what is still pending).
        await audit_consumer.wait_for_count(world.business_id, 11)
        erased = await http.delete(base, headers=admin.headers)
        assert erased.status_code == 204
        await audit_consumer.wait_for_count(world.business_id, 12)
        await audit_consumer.flush()

    records = _records(audit_consumer, world.business_id)
    assert [key for key, _ in records] == [
        "v1.audit.customer.created",
        "v1.audit.customer.updated",
        "v1.audit.customer.tagged",
        "v1.audit.customer.untagged",
        "v1.audit.customer.note_added",
        "v1.audit.customer.note_deleted",
        "v1.audit.customer.avatar_updated",
        "v1.audit.customer.avatar_removed",
        "v1.audit.customer.stats_recomputed",
        "v1.audit.customer.exported",
        "v1.audit.customer.exported",
        "v1.audit.customer.erased",
    ]  # one per action, in commit order (one customer)
    bodies = [body for _, body in records]
    assert all(body["event"] == key for key, body in records)
    assert all(body["customer_id"] == customer["id"] for body in bodies)
    assert len({body["event_id"] for body in bodies}) == len(bodies)
    messages = audit_consumer.of(world.business_id)
    assert {m.exchange for m in messages} == {audit_exchange_name}
    assert all(m.message_id == json.loads(m.body)["event_id"] for m in messages)

    made, updated, tagged, untagged, added, deleted, uploaded, removed, recomputed, *exports, gone = bodies
    # creation: who (the calling service), from where, with the gateway's request id
    assert made["actor"] == _actor(service, ["service"])
    assert made["client_ip"] and made["user_agent"] == "audit-agent/2.0"  # sanitised
    assert made["request_id"] == "req-audit-1" and made["user_id"] == customer["user_id"]
    # update: the changed fields with their old and new values
    assert updated["fields_changed"] == ["full_name", "phone"]
    assert updated["changes"] == {
        "full_name": {"old": "Ana Popescu", "new": "Ana Ionescu"},
        "phone": {"old": "+40712345678", "new": None},
    }
    assert updated["actor"] == _actor(admin, ["admin_business"]) and updated["user_agent"] == "ui/1"
    # tags and notes: label, content and the admin who acted
    assert (tagged["tag"], tagged["tag_id"], tagged["actor"]) == ("VIP", tag["id"], _actor(admin, ["admin_business"]))
    assert (untagged["tag"], untagged["tag_id"]) == ("VIP", tag["id"])
    assert untagged["actor"] == _actor(admin, ["admin_business"])
    assert (added["content"], added["note_id"]) == (text, note.json()["id"])
    assert added["actor"] == _actor(admin, ["admin_business"])
    assert deleted["note_id"] == note.json()["id"] and deleted["actor"] == _actor(admin, ["admin_business"])
    # avatars: old and new URL
    assert (uploaded["old_avatar_url"], uploaded["new_avatar_url"]) == (None, avatar.json()["avatar_url"])
    assert removed["old_avatar_url"] == avatar.json()["avatar_url"]
    assert recomputed["actor"] == _actor(admin, ["admin_business"])
    assert [(e["actor"], e["notes_included"]) for e in exports] == [
        (_actor(admin, ["admin_business"]), True),
        (_actor(service, ["service"]), relay_settings().gdpr_export_notes),  # not an admin: the setting says
    ]
    assert gone["actor"] == _actor(admin, ["admin_business"]) and gone["user_id"] == customer["user_id"]
    assert uuid.UUID(gone["gdpr_request_id"])


async def test_audit_record_of_a_rolled_back_transaction_is_never_published(
    relay_settings, audit_consumer, world, engine, database_url
):
    customer_id = uuid.uuid4()

    def record(note_id: uuid.UUID) -> catalogue.AuditNoteDeleted:
        return catalogue.AuditNoteDeleted(
            customer_id=customer_id, business_id=world.business_id, actor=None, note_id=note_id
        )

    async with AsyncSession(engine) as session:
        rolled_back = await audit.record(session, record(uuid.uuid4()))
        await session.rollback()
    async with AsyncSession(engine) as session:
        kept = await audit.record(session, record(uuid.uuid4()))
        await session.commit()

    async with running_relay(relay_settings(), database_url):
        [body] = await audit_consumer.wait_for_count(world.business_id, 1)
        await audit_consumer.flush()
    assert body["event_id"] == kept["event_id"] and body["event"] == "v1.audit.customer.note_deleted"
    assert rolled_back["event_id"] not in {m.message_id for m in audit_consumer.messages}


async def test_a_refused_audit_record_never_holds_back_the_customers_events(
    relay_settings, consumer, rabbitmq, world, engine, database_url, fetch
):
    """Nothing bound to the audit exchange yet: the record is retried, the event goes out meanwhile."""
    unbound = f"bee.audit.events.test.unbound.{uuid.uuid4().hex[:8]}"
    customer_id = uuid.uuid4()
    async with AsyncSession(engine) as session:
        first = catalogue.AuditStatsRecomputed(customer_id=customer_id, business_id=world.business_id, actor=None)
        refused = await outbox.enqueue_event(session, first)
        await outbox.enqueue(
            session,
            "v1.customer.updated",
            business_id=world.business_id,
            customer_id=customer_id,
            fields={"customer_id": customer_id},
        )
        await session.commit()

    late = EventConsumer(rabbitmq, unbound, ["v1.audit.#"])
    try:
        async with running_relay(relay_settings(audit_exchange=unbound), database_url):
            [event] = await consumer.wait_for_count(world.business_id, 1)
            assert event["event"] == "v1.customer.updated"
            await eventually(
                lambda: _failed_once(fetch, refused["event_id"]), what="the audit record to be refused and retried"
            )
            async with late:  # bee_log_service binds its queue: the retry goes out
                [record] = await late.wait_for_count(world.business_id, 1)
        assert record["event_id"] == refused["event_id"]
    finally:
        connection = await aio_pika.connect(rabbitmq)
        async with connection:
            await (await connection.channel()).exchange_delete(unbound)


async def _failed_once(fetch, event_id: str) -> bool:
    [row] = await fetch("SELECT attempts, last_error FROM outbox WHERE event_id = :e", e=uuid.UUID(event_id))
    return row["attempts"] >= 1 and "unroutable" in (row["last_error"] or "")
