"""After an erasure, no value of the erased customer is left anywhere in the database (issue 17).

The customer is built through the API with values nobody else has (random name words, emails,
phones, a note, an avatar URL), renamed and re-addressed once, then erased. Every text-like and
JSON column of every table of the `public` schema, found in `information_schema.columns` (a table
added later is scanned without touching this test), is then searched for each value.

Variants: events still pending at the erasure (the test app runs no relay, so nothing publishes),
events published first (marked as the relay marks them), and a real relay publishing to RabbitMQ
before and after the erasure (the redacted events arrive, `v1.customer.deleted` after them).
"""

import json
import random
import string
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aio_pika
import pytest
from sqlalchemy import text

from bee_customers_service.app import create_app
from bee_customers_service.events.catalogue import CATALOGUE
from tests.conftest import client_for, make_settings, running_app
from tests.events.tools import EventConsumer, eventually, running_relay
from tests.services import RABBITMQ_URL, require_service

# Column types a value can be written into as text (arrays of them too), by `udt_name`.
TEXT_LIKE = ("text", "varchar", "bpchar", "json", "jsonb", "citext", "name")
# bytea too (stored answers of Idempotency-Key), read as escaped text: ASCII values show as written.
SCANNED_TYPES = (*TEXT_LIKE, *(f"_{t}" for t in TEXT_LIKE), "bytea")


def _word(length: int = 10) -> str:
    return "".join(random.choices(string.ascii_lowercase, k=length)).capitalize()


def _phone() -> str:
    # A Romanian mobile number: +40 7xx xxx xxx.
    return "+407" + "".join(random.choices(string.digits, k=8))


@dataclass
class Person:
    """Everything personal the test writes about one customer, to look for afterwards."""

    names: list[str]
    emails: list[str]
    phones: list[str]
    note: str
    avatar_url: str

    def needles(self) -> list[str]:
        words = {word.lower() for name in self.names for word in name.split()}
        digits = {phone.lstrip("+") for phone in self.phones} | {"0" + phone[3:] for phone in self.phones}
        values = words | {e.lower() for e in self.emails} | set(self.phones) | digits
        return [*sorted(values), self.note, self.avatar_url]


def _person() -> Person:
    host = _word(8).lower()
    return Person(
        names=[f"{_word()} {_word()}", f"{_word()} {_word()} {_word()}"],
        emails=[f"{_word(9)}.{_word(7)}@{host}.ro".lower(), f"{_word(9)}@{host}-mail.ro".lower()],
        phones=[_phone(), _phone()],
        note=f"Note {_word(12)} {uuid.uuid4().hex}",
        avatar_url=f"https://cdn.{host}.ro/{uuid.uuid4().hex}/{_word(6).lower()}.png",
    )


async def _build(client, world, person: Person, *, business_id: uuid.UUID | None = None, user_id=None) -> dict:
    """Create, tag, note, PATCH (rename, new email, new phone) and set an avatar URL, through the API."""
    business = business_id or world.business_id
    admin = world.caller(["admin_business"], business_ids=[business])
    customer = await world.create_customer(
        client,
        full_name=person.names[0],
        email=person.emails[0].upper(),  # stored lower-case: searched case-insensitively anyway
        phone=person.phones[0],
        business_id=str(business),
        **({"user_id": str(user_id)} if user_id else {}),
    )
    cid = customer["id"]
    # With Idempotency-Key: the stored answers hold the note and the new name, email and phone.
    keyed = {**admin.headers, "Idempotency-Key": uuid.uuid4().hex}
    tagged = await client.post(f"/customers/{cid}/tags", json={"label": "Regular"}, headers=admin.headers)
    noted = await client.post(f"/customers/{cid}/notes", json={"content": person.note}, headers=keyed)
    patched = await client.patch(
        f"/customers/{cid}",
        json={"full_name": person.names[1], "email": person.emails[1], "phone": person.phones[1]},
        headers={**admin.headers, "Idempotency-Key": uuid.uuid4().hex},
    )
    avatar = await client.patch(f"/customers/{cid}", json={"avatar_url": person.avatar_url}, headers=admin.headers)
    assert [r.status_code for r in (tagged, noted, patched, avatar)] == [201, 201, 200, 200], [
        r.text for r in (tagged, noted, patched, avatar)
    ]
    return customer


async def _text_columns(engine) -> list[tuple[str, str, str]]:
    async with engine.connect() as connection:
        rows = await connection.execute(
            text(
                "SELECT c.table_name, c.column_name, c.udt_name FROM information_schema.columns c"
                " JOIN information_schema.tables t USING (table_schema, table_name)"
                " WHERE c.table_schema = 'public' AND t.table_type = 'BASE TABLE' AND c.udt_name = ANY(:types)"
                " ORDER BY 1, 2"
            ),
            {"types": list(SCANNED_TYPES)},
        )
        return [(row.table_name, row.column_name, row.udt_name) for row in rows]


def _like(value: str) -> str:
    return "%" + value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


async def _scan(engine, needles: list[str]) -> list[tuple[str, str, str]]:
    """(table, column, value) for every value found in any text-like column of the public schema."""
    columns = await _text_columns(engine)
    found: list[tuple[str, str, str]] = []
    async with engine.connect() as connection:
        for table, column, udt in columns:
            value = f"encode(\"{column}\", 'escape')" if udt == "bytea" else f'"{column}"::text'
            for needle in needles:
                hit = await connection.scalar(
                    text(f'SELECT EXISTS (SELECT 1 FROM public."{table}" WHERE {value} ILIKE :p)'),  # noqa: S608
                    {"p": _like(needle)},
                )
                if hit:
                    found.append((table, column, needle))
    return found


async def _scan_finds_nothing(engine, person: Person) -> None:
    columns = {(table, column) for table, column, _udt in await _text_columns(engine)}
    # The scan reaches the tables that held the values (a sanity check of the discovery itself).
    assert {("customers", "full_name"), ("outbox", "payload"), ("customer_notes", "content")} <= set(columns)
    assert ("customer_name_words", "word") in columns and ("gdpr_requests", "email_fingerprints") in columns
    assert ("idempotency_keys", "body") in columns
    assert await _scan(engine, person.needles()) == []


async def _outbox_of(fetch, customer_ids: list[str]) -> list[dict[str, Any]]:
    return await fetch(
        "SELECT event_name, payload, published_at FROM outbox WHERE customer_id = ANY(:c) ORDER BY id",
        c=[uuid.UUID(c) for c in customer_ids],
    )


def _assert_redacted(body: dict[str, Any]) -> None:
    assert body["redacted"] is True, body
    for name in CATALOGUE[body["event"]].personal_fields():
        assert body.get(name) is None, (body["event"], name)


async def test_the_scan_finds_the_values_before_the_erasure(client, world, engine):
    """The scan itself works: before the erasure, every kind of value is found where it was written."""
    person = _person()
    await _build(client, world, person)
    found = await _scan(engine, person.needles())
    where = {(table, needle) for table, _, needle in found}
    assert ("customers", person.names[1].split()[0].lower()) in where
    assert ("customer_name_words", person.names[1].split()[2].lower()) in where
    assert ("customers", person.emails[1]) in where and ("outbox", person.emails[0]) in where
    assert ("outbox", person.phones[0]) in where and ("customers", person.phones[1].lstrip("+")) in where
    assert ("customer_notes", person.note) in where and ("outbox", person.note) in where
    assert ("customers", person.avatar_url) in where and ("outbox", person.avatar_url) in where


async def test_admin_erasure_with_events_pending_leaves_nothing(client, world, engine, fetch):
    person = _person()
    customer = await _build(client, world, person)
    before = await _outbox_of(fetch, [customer["id"]])
    assert before and all(row["published_at"] is None for row in before)  # no relay in the test app

    response = await client.delete(f"/customers/{customer['id']}", headers=world.admin.headers)

    assert response.status_code == 204
    await _scan_finds_nothing(engine, person)
    after = await _outbox_of(fetch, [customer["id"]])
    # Every pending event is still there, in order, redacted; the erasure's own rows (the deletion,
    # and whatever else it writes, such as an audit record) follow them, untouched.
    pending = [row["payload"]["event_id"] for row in before]
    kept, written = after[: len(pending)], after[len(pending) :]
    assert [row["payload"]["event_id"] for row in kept] == pending
    assert [row["event_name"] for row in kept] == [row["event_name"] for row in before]
    for row in kept:
        _assert_redacted(row["payload"])
    assert "v1.customer.deleted" in [row["event_name"] for row in written]
    assert not any("redacted" in row["payload"] for row in written)
    record = (await client.get(response.headers["Location"], headers=world.admin.headers)).json()
    assert record["erased"]["outbox_redacted"] == len(before) and record["erased"]["outbox"] == 0


async def test_user_erasure_by_a_service_leaves_nothing_in_any_business(client, world, engine, fetch):
    person = _person()
    first = await _build(client, world, person)
    second = await _build(client, world, person, business_id=world.other_business_id, user_id=first["user_id"])
    pending = {row["payload"]["event_id"] for row in await _outbox_of(fetch, [first["id"], second["id"]])}

    response = await client.delete(f"/users/{first['user_id']}", headers=world.service.headers)

    assert response.status_code == 204
    await _scan_finds_nothing(engine, person)
    after = await _outbox_of(fetch, [first["id"], second["id"]])
    assert {row["payload"]["event_id"] for row in after} >= pending
    for row in after:
        if row["payload"]["event_id"] in pending:
            _assert_redacted(row["payload"])
    deleted = [row["payload"]["customer_id"] for row in after if row["event_name"] == "v1.customer.deleted"]
    assert sorted(deleted) == sorted([first["id"], second["id"]])


async def test_erasure_after_the_events_were_published_leaves_nothing(client, world, engine, fetch):
    person = _person()
    customer = await _build(client, world, person)
    published = {row["payload"]["event_id"] for row in await _outbox_of(fetch, [customer["id"]])}
    async with engine.begin() as connection:  # as the relay marks a confirmed row
        await connection.execute(
            text("UPDATE outbox SET published_at = now() WHERE customer_id = :c"), {"c": uuid.UUID(customer["id"])}
        )

    response = await client.delete(f"/customers/{customer['id']}", headers=world.admin.headers)

    assert response.status_code == 204
    await _scan_finds_nothing(engine, person)
    after = await _outbox_of(fetch, [customer["id"]])
    assert not {row["payload"]["event_id"] for row in after} & published  # the published rows are deleted
    assert "v1.customer.deleted" in [row["event_name"] for row in after]  # only the erasure's own rows are left


async def test_a_word_only_the_erased_customer_held_leaves_the_typo_table(client, world, fetch):
    person = _person()
    customer = await _build(client, world, person)
    neighbour = await world.create_customer(client, full_name=f"{person.names[1].split()[0]} Other")
    words = {
        row["word"]
        for row in await fetch("SELECT word FROM customer_name_words WHERE business_id = :b", b=world.business_id)
    }
    assert {w.lower() for w in person.names[1].split()} <= words

    assert (await client.delete(f"/customers/{customer['id']}", headers=world.admin.headers)).status_code == 204

    words = {
        row["word"]
        for row in await fetch("SELECT word FROM customer_name_words WHERE business_id = :b", b=world.business_id)
    }
    first, *rest = (w.lower() for w in person.names[1].split())
    assert first in words  # the neighbour holds it too
    assert not set(rest) & words
    assert neighbour["full_name"].split()[0].lower() == first


async def test_a_short_word_of_a_name_before_a_rename_leaves_the_typo_table_at_erasure(client, world, fetch):
    # Renames keep words under three characters (migration 0010); the erasure must not.
    short, long_word = _word(2), _word()
    customer = await world.create_customer(client, full_name=f"{short} {long_word}")
    renamed = await client.patch(
        f"/customers/{customer['id']}", json={"full_name": f"Ana {long_word}"}, headers=world.admin.headers
    )
    assert renamed.status_code == 200

    def words():
        return fetch("SELECT word FROM customer_name_words WHERE business_id = :b", b=world.business_id)

    assert short.lower() in {row["word"] for row in await words()}  # kept by the rename
    assert (await client.delete(f"/customers/{customer['id']}", headers=world.admin.headers)).status_code == 204
    assert short.lower() not in {row["word"] for row in await words()}


# --- with a broker: a real relay publishing to RabbitMQ --------------------------------------------


@pytest.fixture
async def broker_exchange() -> AsyncIterator[str]:
    require_service("RabbitMQ", RABBITMQ_URL, 5672)
    name = f"bee.customers.events.test.gdpr.{uuid.uuid4().hex[:12]}"
    yield name
    connection = await aio_pika.connect(RABBITMQ_URL)
    async with connection:
        channel = await connection.channel()
        for exchange in (name, f"{name}.audit"):
            await channel.exchange_delete(exchange)


def _relay_settings(database_url: str, exchange: str):
    return make_settings(
        database_url,
        rabbitmq_url=RABBITMQ_URL,
        events_exchange=exchange,
        audit_exchange=f"{exchange}.audit",  # the audit records too stay off the shared exchanges
        relay_enabled=True,
        relay_poll_seconds=0.2,
        relay_max_backoff_seconds=0.4,
        relay_publish_timeout_seconds=5.0,
    )


async def test_pending_events_reach_the_broker_redacted_then_the_deletion(
    client, world, engine, database_url, broker_exchange
):
    """Erased while the broker was away: the relay then publishes the redacted events, then the deletion."""
    person = _person()
    customer = await _build(client, world, person)  # the test app: no relay, the events wait
    assert (await client.delete(f"/customers/{customer['id']}", headers=world.admin.headers)).status_code == 204

    async with EventConsumer(RABBITMQ_URL, broker_exchange, ("v1.#",)) as events:
        async with running_relay(_relay_settings(database_url, broker_exchange), database_url):
            await eventually(
                lambda: any(b["event"] == "v1.customer.deleted" for b in events.bodies(world.business_id)),
                what="the deletion to arrive",
            )
        bodies = events.bodies(world.business_id)

    assert bodies[-1]["event"] == "v1.customer.deleted" and bodies[-1]["customer_id"] == customer["id"]
    assert bodies[0]["event"] == "v1.customer.created"
    for body in bodies[:-1]:
        _assert_redacted(body)
    published = json.dumps(bodies).lower()
    assert [needle for needle in person.needles() if needle.lower() in published] == []
    await _scan_finds_nothing(engine, person)  # the published rows hold the redacted bodies


async def test_with_a_relay_running_the_erasure_leaves_nothing(world, engine, database_url, broker_exchange):
    """The API with its relay, as `serve` runs: events published as they are written, then erased."""
    person = _person()
    app = create_app(_relay_settings(database_url, broker_exchange))
    async with (
        EventConsumer(RABBITMQ_URL, broker_exchange, ("v1.#",)) as events,
        running_app(app),
        client_for(app) as http,
    ):
        customer = await _build(http, world, person)
        await eventually(lambda: len(events.bodies(world.business_id)) >= 5, what="the events to be published")
        response = await http.delete(f"/customers/{customer['id']}", headers=world.admin.headers)
        assert response.status_code == 204
        await eventually(
            lambda: any(b["event"] == "v1.customer.deleted" for b in events.bodies(world.business_id)),
            what="the deletion to arrive",
        )
    await _scan_finds_nothing(engine, person)
