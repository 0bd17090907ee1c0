"""bee_auth_service's user events through the real broker: mirrored into every profile of the user,
idempotent, out-of-order safe, clashing emails and malformed messages dead-lettered, deletion as
`DELETE /users/{user_id}`."""

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from bee_customers_service.identity.service import AUTH_SERVICE_USER_ID

NOW = datetime.now(UTC).replace(microsecond=0)


def _updated(user_id: str, *, at: datetime = NOW, event_id: uuid.UUID | None = None, **fields: Any):
    body = {"event_id": str(event_id or uuid.uuid4()), "user_id": user_id, "occurred_at": at.isoformat(), **fields}
    return "v1.user.updated", body


def _unique_email(tag: str) -> str:
    return f"{tag}.{uuid.uuid4().hex[:8]}@example.com"


async def _two_profiles(client, world, **overrides: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """One user with a profile in each of the world's two businesses."""
    email = overrides.pop("email", _unique_email("ana"))
    first = await world.create_customer(client, email=email, **overrides)
    second = await world.create_customer(
        client, user_id=first["user_id"], business_id=str(world.other_business_id), email=email, **overrides
    )
    return first, second


async def _profile(fetch, customer: dict[str, Any]) -> dict[str, Any]:
    [row] = await fetch(
        "SELECT full_name, email, phone, version, name_source, auth_synced_at FROM customers WHERE id = :c",
        c=uuid.UUID(customer["id"]),
    )
    return row


async def _updates_of(fetch, customer: dict[str, Any]) -> list[dict[str, Any]]:
    rows = await fetch(
        "SELECT event_name, payload FROM outbox WHERE customer_id = :c"
        " AND event_name IN ('v1.customer.updated', 'v1.audit.customer.updated') ORDER BY id",
        c=uuid.UUID(customer["id"]),
    )
    return rows


async def test_an_auth_update_changes_every_profile_of_the_user_and_says_it_came_from_auth(
    client, world, auth_feed, fetch
):
    first, second = await _two_profiles(client, world)
    new_email = _unique_email("new")
    await auth_feed.send(_updated(first["user_id"], email=new_email.upper(), phone="0722 000 111"))

    for customer in (first, second):
        row = await _profile(fetch, customer)
        assert (row["email"], row["phone"]) == (new_email, "+40722000111")
        assert row["auth_synced_at"] == NOW
        assert row["version"] == 2
        rows = await _updates_of(fetch, customer)
        [event] = [r["payload"] for r in rows if r["event_name"] == "v1.customer.updated"]
        assert event["source"] == "auth"
        assert event["fields_changed"] == ["email", "phone"]
        assert (event["email"], event["phone"]) == (new_email, "+40722000111")
        assert event["updated_by"] == str(AUTH_SERVICE_USER_ID)
        [audit] = [r["payload"] for r in rows if r["event_name"] == "v1.audit.customer.updated"]
        assert audit["fields_changed"] == ["email", "phone"]
        assert audit["actor"]["user_id"] == str(AUTH_SERVICE_USER_ID)
        assert audit["actor"]["roles"] == ["service"]


async def test_a_patch_by_http_sends_no_source(client, world, fetch):
    customer = await world.create_customer(client, email=_unique_email("patch"))
    response = await client.patch(f"/customers/{customer['id']}", json={"gender": "other"}, headers=world.admin.headers)
    assert response.status_code == 200, response.text
    [event] = [r["payload"] for r in await _updates_of(fetch, customer) if r["event_name"] == "v1.customer.updated"]
    assert "source" not in event


async def test_the_name_is_applied_only_where_it_was_never_edited_here(client, world, auth_feed, fetch):
    first, second = await _two_profiles(client, world)
    response = await client.patch(
        f"/customers/{first['id']}", json={"full_name": "Ana (VIP)"}, headers=world.admin.headers
    )
    assert response.status_code == 200, response.text
    assert (await _profile(fetch, first))["name_source"] == "local"
    assert (await _profile(fetch, second))["name_source"] == "auth"

    await auth_feed.send(_updated(first["user_id"], full_name="Ana Maria Popescu"))

    assert (await _profile(fetch, first))["full_name"] == "Ana (VIP)"
    assert (await _profile(fetch, second))["full_name"] == "Ana Maria Popescu"
    [event] = [r["payload"] for r in await _updates_of(fetch, second) if r["event_name"] == "v1.customer.updated"]
    assert (event["fields_changed"], event["source"]) == (["full_name"], "auth")
    # The locally edited profile got no event from it (only its own PATCH's).
    assert [
        r["payload"].get("source") for r in await _updates_of(fetch, first) if r["event_name"] == "v1.customer.updated"
    ] == [None]


async def test_a_duplicate_and_an_older_event_change_nothing(client, world, auth_feed, fetch):
    first, second = await _two_profiles(client, world)
    newest = _unique_email("newest")
    event_id = uuid.uuid4()
    await auth_feed.send(_updated(first["user_id"], event_id=event_id, email=newest))
    before = [await _profile(fetch, c) for c in (first, second)]
    events_before = [len(await _updates_of(fetch, c)) for c in (first, second)]

    duplicates = auth_feed.consumer.counters.duplicates
    await auth_feed.send(_updated(first["user_id"], event_id=event_id, email=_unique_email("again")))
    assert auth_feed.consumer.counters.duplicates == duplicates + 1
    await auth_feed.send(_updated(first["user_id"], at=NOW - timedelta(minutes=5), email=_unique_email("older")))

    assert [await _profile(fetch, c) for c in (first, second)] == before
    assert before[0]["email"] == newest
    assert [len(await _updates_of(fetch, c)) for c in (first, second)] == events_before


async def test_a_clashing_email_is_dead_lettered_and_the_profiles_keep_theirs(client, world, auth_feed, fetch):
    await auth_feed.dead_letters()  # whatever an earlier test left
    first, second = await _two_profiles(client, world)
    taken = _unique_email("taken")
    await world.create_customer(client, business_id=str(world.other_business_id), email=taken)
    before = [await _profile(fetch, c) for c in (first, second)]

    await auth_feed.send(_updated(first["user_id"], email=f"  {taken.upper()}", full_name="Ana Nouă"))

    [dead] = await auth_feed.dead_letters(expect=1)
    assert dead.routing_key == "v1.user.updated"
    assert dead.reason == (
        f"email clash: another customer of business {world.other_business_id} already uses the new email"
    )
    # The whole event is refused: no profile changed, not even the one where the email is free.
    assert [await _profile(fetch, c) for c in (first, second)] == before
    assert [len(await _updates_of(fetch, c)) for c in (first, second)] == [0, 0]


async def test_malformed_messages_are_dead_lettered_with_the_reason(auth_feed):
    await auth_feed.dead_letters()
    user_id = str(uuid.uuid4())
    await auth_feed.send(
        ("v1.user.updated", b"{not json"),
        ("v1.user.updated", {"event_id": str(uuid.uuid4()), "user_id": user_id}),
        _updated(user_id, email=None),
        ("v1.user.deleted", {"event_id": "nope", "user_id": user_id, "occurred_at": NOW.isoformat()}),
    )
    reasons = sorted(d.reason for d in await auth_feed.dead_letters(expect=4))
    assert reasons == [
        "invalid payload: email: cannot be null",
        "invalid payload: event_id: Input should be a valid UUID, invalid character: found `n` at 0",
        "invalid payload: missing field occurred_at",
        "malformed JSON",
    ]


async def test_a_user_deleted_event_erases_like_the_http_call(client, world, auth_feed, fetch):
    by_http = await _two_profiles(client, world)
    by_event = await _two_profiles(client, world)

    response = await client.delete(f"/users/{by_http[0]['user_id']}", headers=world.service.headers)
    assert response.status_code == 204
    body = {"event_id": str(uuid.uuid4()), "user_id": by_event[0]["user_id"], "occurred_at": NOW.isoformat()}
    await auth_feed.send(("v1.user.deleted", body))
    await auth_feed.send(("v1.user.deleted", body))  # a redelivery: a duplicate, no second record

    records = {}
    for profiles in (by_http, by_event):
        user_id = uuid.UUID(profiles[0]["user_id"])
        assert await fetch("SELECT id FROM customers WHERE user_id = :u", u=user_id) == []
        [record] = await fetch(
            "SELECT kind, scope, customer_ids, business_ids, erased, status, requested_by, requested_by_roles"
            " FROM gdpr_requests WHERE subject_user_id = :u",
            u=user_id,
        )
        assert sorted(record["customer_ids"]) == sorted(uuid.UUID(p["id"]) for p in profiles)
        deleted = await fetch(
            "SELECT customer_id FROM outbox WHERE event_name = 'v1.customer.deleted' AND customer_id = ANY(:c)",
            c=[uuid.UUID(p["id"]) for p in profiles],
        )
        assert len(deleted) == 2
        records[user_id == uuid.UUID(by_http[0]["user_id"])] = record
    http, event = records[True], records[False]
    for key in ("kind", "scope", "status", "erased"):
        assert event[key] == http[key], key
    assert sorted(event["business_ids"]) == sorted(http["business_ids"])
    assert (event["requested_by"], event["requested_by_roles"]) == (AUTH_SERVICE_USER_ID, ["service"])
    assert json.dumps(sorted(event["erased"])) == json.dumps(sorted(http["erased"]))
