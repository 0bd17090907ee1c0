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
from bee_customers_service.core.context import request_id_var, trace_id_var
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
    for name in ("v1.customer.avatar_updated", "v1.customer.tagged", "v1.customer.untagged", "v1.customer.deleted"):
        assert CATALOGUE[name].personal_fields() == ()


def test_audit_whitelist_is_the_catalogue_and_names_who_removed_a_tag():
    common = ("event_id", "customer_id", "business_id")
    before_the_catalogue = {
        "v1.customer.created": (*common, "user_id"),
        "v1.customer.updated": (*common, "fields_changed", "updated_by"),
        "v1.customer.tagged": (*common, "tag", "tag_id", "created_by"),
        "v1.customer.untagged": (*common, "tag", "tag_id", "removed_by"),  # was "deleted_by": never in the body
        "v1.customer.note_added": (*common, "note_id", "created_by"),
        "v1.customer.avatar_updated": (*common, "old_avatar_url", "new_avatar_url", "updated_by"),
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
