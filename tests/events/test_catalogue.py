"""The catalogue of published events: bodies as before, round trips, audit whitelist, generated docs."""

import dataclasses
import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from bee_customers_service.core import metrics
from bee_customers_service.core.context import client_ip_var, request_id_var, trace_id_var, user_agent_var
from bee_customers_service.events import catalogue, committed, outbox
from bee_customers_service.events.catalogue import CATALOGUE, NOT_SENT

DOC = Path(__file__).resolve().parents[2] / "docs" / "events.md"

CUSTOMER, BUSINESS, USER, ADMIN = (uuid.uuid4() for _ in range(4))
TAG, NOTE, GDPR = (uuid.uuid4() for _ in range(3))
WHEN = datetime(2026, 3, 1, 9, 30, 15, 123456, tzinfo=UTC)
IDS = {"customer_id": CUSTOMER, "business_id": BUSINESS}


# Each event as the catalogue builds it, and the fields the service's dict literal gave before the
# catalogue (customer_id first, as `enqueue_for_customer` put it). The bodies must be identical.
SAMPLES: list[tuple[catalogue.CustomerEvent, dict[str, Any]]] = [
    (
        catalogue.CustomerCreated(**IDS, user_id=USER, full_name="Ana Pop", email="ana@example.com", created_at=WHEN),
        {"user_id": USER, "full_name": "Ana Pop", "email": "ana@example.com", "created_at": WHEN},
    ),
    (
        catalogue.CustomerUpdated(
            **IDS, user_id=USER, fields_changed=["gender", "notes"], updated_by=ADMIN, updated_at=WHEN
        ),
        {"user_id": USER, "fields_changed": ["gender", "notes"], "updated_by": ADMIN, "updated_at": WHEN},
    ),
    (
        catalogue.CustomerUpdated(
            **IDS,
            user_id=USER,
            fields_changed=["email", "phone"],
            updated_by=ADMIN,
            updated_at=WHEN,
            email="new@example.com",
            phone="+40712345678",
        ),
        {
            "user_id": USER,
            "fields_changed": ["email", "phone"],
            "updated_by": ADMIN,
            "updated_at": WHEN,
            "email": "new@example.com",
            "phone": "+40712345678",
        },
    ),
    (  # the phone removed: sent as null, unlike an unchanged phone (not sent at all)
        catalogue.CustomerUpdated(
            **IDS, user_id=USER, fields_changed=["phone"], updated_by=ADMIN, updated_at=WHEN, phone=None
        ),
        {"user_id": USER, "fields_changed": ["phone"], "updated_by": ADMIN, "updated_at": WHEN, "phone": None},
    ),
    (
        catalogue.CustomerAvatarUpdated(
            **IDS, old_avatar_url=None, new_avatar_url="https://cdn.example/a.png", updated_by=USER, updated_at=WHEN
        ),
        {"old_avatar_url": None, "new_avatar_url": "https://cdn.example/a.png", "updated_by": USER, "updated_at": WHEN},
    ),
    (
        catalogue.CustomerTagged(**IDS, tag="VIP", tag_id=TAG, color=None, created_by=ADMIN, created_at=WHEN),
        {"tag": "VIP", "tag_id": TAG, "color": None, "created_by": ADMIN, "created_at": WHEN},
    ),
    (
        catalogue.CustomerTagged(**IDS, tag="VIP", tag_id=TAG, color="#FF8800", created_by=ADMIN, created_at=WHEN),
        {"tag": "VIP", "tag_id": TAG, "color": "#FF8800", "created_by": ADMIN, "created_at": WHEN},
    ),
    (
        catalogue.CustomerUntagged(**IDS, tag="VIP", tag_id=TAG, removed_by=ADMIN),
        {"tag": "VIP", "tag_id": TAG, "removed_by": ADMIN},
    ),
    (
        catalogue.CustomerNoteAdded(**IDS, note_id=NOTE, created_by=ADMIN, note="Prefers mornings", created_at=WHEN),
        {"note_id": NOTE, "created_by": ADMIN, "note": "Prefers mornings", "created_at": WHEN},
    ),
    (
        catalogue.CustomerDeleted(**IDS, user_id=USER, gdpr_request_id=GDPR, deleted_at=WHEN),
        {"user_id": USER, "gdpr_request_id": GDPR, "deleted_at": WHEN},
    ),
]

# The audit records: the envelope, customer_id, then actor, client_ip, user_agent, then their own.
ACTOR = catalogue.Actor(user_id=ADMIN, roles=("admin",))
WHO = {"actor": ACTOR, "client_ip": "203.0.113.7", "user_agent": "agent/1.0"}
AUDIT_SAMPLES: list[tuple[catalogue.CustomerEvent, dict[str, Any]]] = [
    (catalogue.AuditCustomerCreated(**IDS, **WHO, user_id=USER), {**WHO, "user_id": USER}),
    (
        catalogue.AuditCustomerUpdated(
            **IDS, **WHO, fields_changed=["email"], changes={"email": catalogue.Change(old="a@x.ro", new="b@x.ro")}
        ),
        {**WHO, "fields_changed": ["email"], "changes": {"email": {"old": "a@x.ro", "new": "b@x.ro"}}},
    ),
    (
        catalogue.AuditCustomerTagged(**IDS, **WHO, tag_id=TAG, tag="VIP", color=None),
        {**WHO, "tag_id": TAG, "tag": "VIP", "color": None},
    ),
    (catalogue.AuditCustomerUntagged(**IDS, **WHO, tag_id=TAG, tag="VIP"), {**WHO, "tag_id": TAG, "tag": "VIP"}),
    (catalogue.AuditNoteAdded(**IDS, **WHO, note_id=NOTE, content="Hi"), {**WHO, "note_id": NOTE, "content": "Hi"}),
    (catalogue.AuditNoteDeleted(**IDS, **WHO, note_id=NOTE), {**WHO, "note_id": NOTE}),
    (
        catalogue.AuditAvatarUpdated(**IDS, **WHO, old_avatar_url=None, new_avatar_url="https://cdn.example/a.png"),
        {**WHO, "old_avatar_url": None, "new_avatar_url": "https://cdn.example/a.png"},
    ),
    (
        catalogue.AuditAvatarRemoved(**IDS, **WHO, old_avatar_url="https://cdn.example/a.png"),
        {**WHO, "old_avatar_url": "https://cdn.example/a.png"},
    ),
    (catalogue.AuditStatsRecomputed(**IDS, **WHO), WHO),
    (catalogue.AuditCustomerExported(**IDS, **WHO, notes_included=True), {**WHO, "notes_included": True}),
    (
        catalogue.AuditCustomerErased(
            **IDS, actor=None, client_ip=None, user_agent=None, user_id=USER, gdpr_request_id=GDPR
        ),
        {"actor": None, "client_ip": None, "user_agent": None, "user_id": USER, "gdpr_request_id": GDPR},
    ),
]
SAMPLES += AUDIT_SAMPLES
SAMPLE_IDS = [f"{event.name}-{i}" for i, (event, _) in enumerate(SAMPLES)]


@pytest.fixture
def fixed_ids():
    trace, request = trace_id_var.set("trace-1"), request_id_var.set("req-1")
    yield
    trace_id_var.reset(trace)
    request_id_var.reset(request)


def _body(event: catalogue.CustomerEvent) -> dict[str, Any]:
    """What `outbox.enqueue_event` writes, with a fixed occurred_at."""
    return outbox.build_event(event.name, business_id=event.business_id, fields=event.fields(), occurred_at=WHEN)


def _json_without_event_id(body: dict[str, Any]) -> str:
    return json.dumps({key: value for key, value in body.items() if key != "event_id"})


def test_every_catalogue_event_has_a_sample():
    assert {event.name for event, _ in SAMPLES} == set(CATALOGUE)


@pytest.mark.parametrize(("event", "legacy_fields"), SAMPLES, ids=SAMPLE_IDS)
def test_body_is_exactly_what_the_dict_literal_gave(event, legacy_fields, fixed_ids):
    before = outbox.build_event(
        event.name,
        business_id=BUSINESS,
        fields={"customer_id": CUSTOMER, **legacy_fields},
        occurred_at=WHEN,
    )
    # same keys, same values, same order: the same JSON text
    assert _json_without_event_id(_body(event)) == _json_without_event_id(before)


@pytest.mark.parametrize(("event", "legacy_fields"), SAMPLES, ids=SAMPLE_IDS)
def test_every_event_round_trips_its_body(event, legacy_fields):
    body = _body(event)
    assert type(event).from_body(body) == event
    # and through the JSON on the wire
    assert type(event).from_body(json.loads(json.dumps(body))) == event
    assert set(body) <= set(event.field_names())


def test_update_sends_email_and_phone_only_when_changed():
    unchanged = catalogue.CustomerUpdated(
        **IDS, user_id=USER, fields_changed=["gender"], updated_by=ADMIN, updated_at=WHEN
    )
    removed = dataclasses.replace(unchanged, fields_changed=["phone"], phone=None)
    assert unchanged.email is NOT_SENT and "email" not in _body(unchanged) and "phone" not in _body(unchanged)
    assert _body(removed)["phone"] is None and "email" not in _body(removed)
    assert catalogue.CustomerUpdated.from_body(_body(unchanged)).phone is NOT_SENT


@pytest.mark.parametrize("event", CATALOGUE.values(), ids=list(CATALOGUE))
def test_audit_fields_are_fields_and_never_personal(event):
    audit, personal = set(event.audit_fields()), set(event.personal_fields())
    assert not audit & personal
    assert audit <= set(event.field_names())
    assert len(event.audit_fields()) == len(audit)
    assert event.audit_fields()[:3] == ("event_id", "customer_id", "business_id")


def test_personal_data_is_marked():
    assert catalogue.CustomerCreated.personal_fields() == ("full_name", "email")
    assert catalogue.CustomerUpdated.personal_fields() == ("email", "phone")
    assert catalogue.CustomerNoteAdded.personal_fields() == ("note",)
    # Avatar URLs are personal data (issue 17): scrubbed by an erasure, never in the audit line.
    assert catalogue.CustomerAvatarUpdated.personal_fields() == ("old_avatar_url", "new_avatar_url")
    # Tag labels are free text about a person (issue 17).
    assert catalogue.CustomerTagged.personal_fields() == ("tag",)
    assert catalogue.CustomerUntagged.personal_fields() == ("tag",)
    assert catalogue.CustomerDeleted.personal_fields() == ()


def test_audit_records_mark_who_and_what_as_personal():
    common = ("client_ip", "user_agent")
    personal = {cls.name: cls.personal_fields() for cls in catalogue.AUDIT_RECORDS}
    assert personal == {
        "v1.audit.customer.created": common,
        "v1.audit.customer.updated": (*common, "changes"),
        "v1.audit.customer.tagged": (*common, "tag"),
        "v1.audit.customer.untagged": (*common, "tag"),
        "v1.audit.customer.note_added": (*common, "content"),
        "v1.audit.customer.note_deleted": common,
        "v1.audit.customer.avatar_updated": (*common, "old_avatar_url", "new_avatar_url"),
        "v1.audit.customer.avatar_removed": (*common, "old_avatar_url"),
        "v1.audit.customer.stats_recomputed": common,
        "v1.audit.customer.exported": common,
        "v1.audit.customer.erased": common,
    }
    assert all(name in CATALOGUE for name in personal)  # what an erasure redacts generically


def test_each_record_names_its_exchange_and_events_keep_theirs():
    for cls in CATALOGUE.values():
        audit_record = issubclass(cls, catalogue.AuditRecord)
        assert cls.name.startswith(catalogue.AUDIT_PREFIX) == audit_record
        assert catalogue.exchange_setting_of(cls.name) == ("audit_exchange" if audit_record else "events_exchange")
    assert catalogue.exchange_setting_of("v1.audit.customer.future_action") == "audit_exchange"
    assert catalogue.exchange_setting_of("v1.customer.future_event") == "events_exchange"


def test_audit_record_takes_ip_and_sanitised_user_agent_from_the_request():
    ip, agent = client_ip_var.set("198.51.100.4"), user_agent_var.set("curl/8\x00\x1b[31m")
    try:
        record = catalogue.AuditStatsRecomputed(**IDS, actor=catalogue.Actor.of(None))
    finally:
        client_ip_var.reset(ip)
        user_agent_var.reset(agent)
    assert (record.client_ip, record.user_agent, record.actor) == ("198.51.100.4", "curl/8[31m", None)
    assert catalogue.AuditStatsRecomputed(**IDS, actor=None).client_ip is None  # outside a request


def test_audit_whitelist_is_the_catalogue_and_names_who_removed_a_tag():
    common = ("event_id", "customer_id", "business_id")
    before_the_catalogue = {
        "v1.customer.created": (*common, "user_id"),
        "v1.customer.updated": (*common, "fields_changed", "updated_by"),
        "v1.customer.tagged": (*common, "tag_id", "created_by"),  # the label is personal (issue 17)
        "v1.customer.untagged": (*common, "tag_id", "removed_by"),  # was "deleted_by": never in the body
        "v1.customer.note_added": (*common, "note_id", "created_by"),
        "v1.customer.avatar_updated": (*common, "updated_by"),  # the URLs are personal data (issue 17)
        "v1.customer.deleted": (*common, "user_id", "gdpr_request_id"),
    }
    assert before_the_catalogue == committed.AUDIT_FIELDS


def test_business_counters_are_said_by_the_catalogue():
    assert committed.COUNTER_BY_EVENT == {
        "v1.customer.created": metrics.CUSTOMERS_CREATED,
        "v1.customer.note_added": metrics.NOTES_CREATED,
        "v1.customer.tagged": metrics.TAGGED_CUSTOMERS,
    }


def test_events_are_frozen_slotted_and_keyword_only():
    event, _ = SAMPLES[0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.email = "other@example.com"
    assert not hasattr(event, "__dict__")
    with pytest.raises(TypeError):
        catalogue.CustomerUntagged(CUSTOMER, BUSINESS, "VIP", TAG, ADMIN)


def test_field_types_are_introspectable():
    specs = {spec.name: spec for spec in catalogue.CustomerUpdated.field_specs()}
    assert specs["phone"].type == str | None and specs["phone"].optional and specs["phone"].personal
    assert specs["updated_by"].type is uuid.UUID and specs["updated_by"].audit
    assert "business_id" not in specs  # an envelope field, first in the body


def test_docs_published_tables_are_the_catalogue():
    document = DOC.read_text(encoding="utf-8")
    assert catalogue.generated_section(document) == catalogue.render_markdown(), (
        f"docs/events.md differs from the event catalogue: run `{catalogue.REGENERATE}`"
    )
    # the generated tables live in section 5, after the hand-written consumer table
    assert document.index("## 5. Published") < document.index(catalogue.BEGIN_MARKER)


async def test_enqueue_event_writes_the_row_and_the_body(engine, fetch):
    customer, business = uuid.uuid4(), uuid.uuid4()
    event = catalogue.CustomerUntagged(
        customer_id=customer, business_id=business, tag="VIP", tag_id=TAG, removed_by=ADMIN
    )
    async with AsyncSession(engine) as session:
        body = await outbox.enqueue_event(session, event)
        await session.commit()

    [row] = await fetch(
        "SELECT event_name, business_id, customer_id, payload FROM outbox WHERE customer_id = :c", c=customer
    )
    assert (row["event_name"], row["business_id"], row["customer_id"]) == ("v1.customer.untagged", business, customer)
    assert row["payload"] == body and body["event_id"]
    assert catalogue.CustomerUntagged.from_body(row["payload"]) == event
