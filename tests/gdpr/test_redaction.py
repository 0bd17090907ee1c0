"""The redaction of a pending event, from the catalogue alone: every event it lists, and any other."""

import pytest

from bee_customers_service.events.catalogue import CATALOGUE
from bee_customers_service.gdpr.redaction import ID_KEYS, redacted_body


@pytest.mark.parametrize("name", sorted(CATALOGUE))
def test_every_personal_field_of_every_catalogued_event_is_nulled_and_nothing_else(name):
    event = CATALOGUE[name]
    body = {key: f"value of {key}" for key in event.field_names()} | {"event": name}
    redacted = redacted_body(body)
    assert redacted["redacted"] is True
    assert set(redacted) == {*body, "redacted"}
    for key in body:
        assert redacted[key] == (None if key in event.personal_fields() else body[key]), key


def test_avatar_urls_are_personal():
    body = {"event": "v1.customer.avatar_updated", "old_avatar_url": "https://a/x.png", "new_avatar_url": None}
    assert redacted_body(body) == {**body, "old_avatar_url": None, "redacted": True}


def test_an_absent_optional_field_stays_absent():
    # `phone` absent means "unchanged"; null would mean "removed".
    body = {"event": "v1.customer.updated", "email": "a@b.ro", "fields_changed": ["email"]}
    assert redacted_body(body) == {
        "event": "v1.customer.updated",
        "email": None,
        "fields_changed": ["email"],
        "redacted": True,
    }


def test_an_event_the_catalogue_does_not_know_keeps_its_ids_only():
    body = {key: f"id {key}" for key in ID_KEYS} | {"event": "v9.something.new", "whatever": "Ana Popescu"}
    assert redacted_body(body) == {**{key: body[key] for key in ID_KEYS}, "redacted": True}
