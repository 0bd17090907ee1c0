"""One boundary rule: a value PostgreSQL cannot hold is a 422 naming the field, never a 500.

The types live in core/types.py; these tests check them directly and through every kind of input
that reaches SQL (body, query, path, the headers we store), sending the hostile bytes raw where a
client library would refuse to.
"""

import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from pydantic import TypeAdapter, ValidationError

from bee_customers_service.activity.contract import Change, Rejected, parse
from bee_customers_service.core.types import (
    INT4_MAX,
    Int4,
    MoneyInput,
    NonNegativeInt4,
    SafeDatetime,
    SafeStr,
    VisibleStr,
    sanitize_header_text,
)

PROBLEM = "application/problem+json"


def refused(adapter, value):
    with pytest.raises(ValidationError):
        adapter.validate_python(value)


# --- the types themselves ---------------------------------------------------------------------


@pytest.mark.parametrize("value", ["a\x00b", "\x00", "Ana\ud800", "\udfff", "x\udc80y"])
def test_safe_str_refuses_nul_and_lone_surrogates(value):
    refused(TypeAdapter(SafeStr), value)


@pytest.mark.parametrize("value", ["Ana", "Ștefan Ñoño", "\U0010ffff", "emoji \U0001f41d", ""])
def test_safe_str_keeps_every_unicode_scalar_value(value):
    assert TypeAdapter(SafeStr).validate_python(value) == value


@pytest.mark.parametrize("value", ["\u200b\u200b", " \t ", "\u2028", "\ufeff"])
def test_visible_str_refuses_text_that_draws_nothing(value):
    refused(TypeAdapter(VisibleStr), value)


def test_int4_is_postgresql_integer():
    assert TypeAdapter(Int4).validate_python(INT4_MAX) == INT4_MAX
    assert TypeAdapter(Int4).validate_python(-(2**31)) == -(2**31)
    refused(TypeAdapter(Int4), 2**31)
    refused(TypeAdapter(Int4), -(2**31) - 1)
    refused(TypeAdapter(NonNegativeInt4), -1)


@pytest.mark.parametrize(
    "value",
    ["0001-01-01T00:00:00+14:00", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59-14:00", "9999-12-31T00:00:00Z"],
)
def test_safe_datetime_refuses_what_overflows_under_an_offset(value):
    refused(TypeAdapter(SafeDatetime), value)


def test_safe_datetime_is_utc_and_reads_naive_as_utc():
    adapter = TypeAdapter(SafeDatetime)
    assert adapter.validate_python("2031-01-10T14:00:00+02:00") == datetime(2031, 1, 10, 12, tzinfo=UTC)
    naive = adapter.validate_python("2031-01-10T12:00:00")
    assert naive == datetime(2031, 1, 10, 12, tzinfo=UTC) and naive.tzinfo is UTC
    assert adapter.validate_python("0001-01-02T00:00:00Z").year == 1


@pytest.mark.parametrize("value", ["NaN", "Infinity", "1e400", "0.001", "12345678901.00"])
def test_money_input_is_what_numeric_12_2_holds(value):
    refused(TypeAdapter(MoneyInput), value)


def test_money_input_keeps_exact_values():
    assert TypeAdapter(MoneyInput).validate_python("9999999999.99") == Decimal("9999999999.99")


def test_sanitize_header_text_never_raises_and_drops_what_cannot_be_stored():
    assert sanitize_header_text("curl/8.0\x00\x01\x7f\ud800 ok") == "curl/8.0 ok"
    assert sanitize_header_text("\x00\x01") is None
    assert sanitize_header_text(None) is None
    assert sanitize_header_text("x" * 1000) == "x" * 256


# --- the search's query string ----------------------------------------------------------------


def assert_field_problem(response, loc):
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["trace_id"] and response.headers["X-Trace-Id"] == body["trace_id"]
    assert loc in [error["loc"] for error in body["errors"]], body["errors"]
    return body


async def search(client, world, raw_query):
    # The query string is sent as raw bytes so no client-side encoding cleans it first.
    url = f"/customers?business_id={world.business_id}&{raw_query}"
    return await client.get(url, headers=world.admin.headers)


@pytest.mark.parametrize(
    ("raw_query", "field"),
    [
        ("query=ab%00c", "query"),
        ("email=a%00b", "email"),
        ("phone=07%0012", "phone"),
        ("tag=vip%00", ("tag", 0)),
        ("cursor=abc%00", "cursor"),
        ("min_orders=2147483648", "min_orders"),
        ("min_orders=-1", "min_orders"),
        ("min_lifetime_value=1e400", "min_lifetime_value"),
        ("min_lifetime_value=NaN", "min_lifetime_value"),
        ("created_after=0001-01-01T00:00:00%2B14:00", "created_after"),
        ("created_before=9999-12-31T23:59:59-14:00", "created_before"),
    ],
)
async def test_unstorable_search_parameters_are_422_naming_the_field(client, world, raw_query, field):
    loc = ["query", *field] if isinstance(field, tuple) else ["query", field]
    assert_field_problem(await search(client, world, raw_query), loc)


async def test_search_parameters_at_the_edge_of_the_range_are_answered(client, world):
    await world.create_customer(client)
    for raw_query in (
        "min_orders=2147483647",
        "created_after=0001-01-02T00:00:00Z",
        "created_before=9999-12-30T00:00:00Z",
        "last_order_after=0001-01-01",
        "min_lifetime_value=9999999999.99",
    ):
        response = await search(client, world, raw_query)
        assert response.status_code == 200, (raw_query, response.text)


async def test_a_query_ending_in_the_last_code_point_searches(client, world):
    created = await world.create_customer(client, full_name="Ana \U0010ffff")
    for query in ("\U0010ffff", "ana\U0010ffff", "\U0010ffff\U0010ffff", "Ana \U0010ffff"):
        response = await client.get(
            "/customers", params={"business_id": str(world.business_id), "query": query}, headers=world.admin.headers
        )
        assert response.status_code == 200, (query, response.text)
    found = await client.get(
        "/customers", params={"business_id": str(world.business_id), "query": "Ana"}, headers=world.admin.headers
    )
    assert [item["id"] for item in found.json()["items"]] == [created["id"]]


async def test_invalid_utf8_in_the_query_string_is_not_a_500(client, world):
    # %ED%A0%80 is U+D800 encoded as if it were UTF-8: Starlette decodes it with replacement characters.
    response = await search(client, world, "query=%ED%A0%80")
    assert response.status_code == 200, response.text
    assert response.json()["items"] == []


async def test_prefix_upper_bound_never_leaves_unicode(fetch):
    [row] = await fetch(
        "SELECT bee_prefix_upper('ab') AS ab, bee_prefix_upper('a' || chr(1114111)) AS a_last,"
        " bee_prefix_upper(chr(1114111) || chr(1114111)) AS only_last,"
        " bee_prefix_upper('a' || chr(55295)) AS before_surrogates"
    )
    assert row == {"ab": "ac", "a_last": "b", "only_last": None, "before_surrogates": "a" + chr(57344)}


# --- bodies -----------------------------------------------------------------------------------


def raw_json_post(client, url, body_text, headers):
    # A lone surrogate cannot be encoded by a client library; its JSON escape reaches the server intact.
    return client.post(url, content=body_text.encode(), headers={**headers, "Content-Type": "application/json"})


@pytest.mark.parametrize(
    ("field", "json_value"),
    [
        ("full_name", '"Ana\\u0000Pop"'),
        ("full_name", '"Ana\\ud800"'),
        ("full_name", '"\\u200b\\u200b"'),
        ("email", '"a\\u0000b@example.com"'),
        ("email", '"a\\udc00b@example.com"'),
        ("phone", '"++40712345678"'),
        ("phone", '"07\\u000012345"'),
        ("avatar_url", '"https://cdn.example.com/a\\u0000.png"'),
    ],
)
async def test_unstorable_profile_fields_are_422_and_nothing_is_stored(client, world, fetch, field, json_value):
    user_id = uuid.uuid4()
    # `field` comes last: where it repeats a key, the last value is the one JSON keeps.
    body = (
        f'{{"user_id": "{user_id}", "business_id": "{world.business_id}", "full_name": "Ana",'
        f' "email": "ana@example.com", "phone": "+40712345678", "{field}": {json_value}}}'
    )
    response = await raw_json_post(client, "/customers", body, world.service.headers)
    assert_field_problem(response, ["body", field])
    assert await fetch("SELECT id FROM customers WHERE user_id = :user_id", user_id=user_id) == []


async def test_unstorable_preference_is_422_naming_the_nested_field(client, world):
    body = (
        f'{{"user_id": "{uuid.uuid4()}", "business_id": "{world.business_id}", "full_name": "Ana",'
        ' "preferences": {"language": "ro\\u0000"}}'
    )
    response = await raw_json_post(client, "/customers", body, world.service.headers)
    assert_field_problem(response, ["body", "preferences", "language"])


async def test_a_patch_with_a_lone_surrogate_changes_nothing(client, world, fetch):
    created = await world.create_customer(client)
    response = await client.patch(
        f"/customers/{created['id']}",
        content=b'{"full_name": "Eve\\udbff"}',
        headers={**world.admin.headers, "Content-Type": "application/json"},
    )
    assert_field_problem(response, ["body", "full_name"])
    [row] = await fetch("SELECT full_name FROM customers WHERE id = :id", id=uuid.UUID(created["id"]))
    assert row["full_name"] == "Ana Popescu"


@pytest.mark.parametrize(
    ("body_text", "loc"),
    [
        ('{"label": "vip\\u0000"}', ["body", "label"]),
        ('{"label": "\\ud83d"}', ["body", "label"]),
        ('{"label": "\\u200b"}', ["body", "label"]),
        ('{"labels": ["ok", "bad\\u0000"]}', ["body", "labels", 1]),
    ],
)
async def test_unstorable_tags_are_422(client, world, fetch, body_text, loc):
    created = await world.create_customer(client)
    response = await raw_json_post(client, f"/customers/{created['id']}/tags", body_text, world.admin.headers)
    assert_field_problem(response, loc)
    assert await fetch("SELECT id FROM customer_tags WHERE customer_id = :id", id=uuid.UUID(created["id"])) == []


@pytest.mark.parametrize("content", ['"call\\u0000back"', '"\\udead"', '"\\u200b\\u200c"'])
async def test_unstorable_notes_are_422(client, world, content):
    created = await world.create_customer(client)
    response = await raw_json_post(
        client, f"/customers/{created['id']}/notes", f'{{"content": {content}}}', world.admin.headers
    )
    assert_field_problem(response, ["body", "content"])


# --- path, history cursor and headers ---------------------------------------------------------


@pytest.mark.parametrize("path", ["/customers/%00", "/customers/%ED%A0%80", "/customers/a%00b/stats"])
async def test_unstorable_path_parameters_are_422(client, world, path):
    response = await client.get(path, headers=world.admin.headers)
    assert_field_problem(response, ["path", "customer_id"])


async def test_a_history_cursor_with_nul_is_422(client, world):
    created = await world.create_customer(client)
    response = await client.get(f"/customers/{created['id']}/history?cursor=a%00b", headers=world.admin.headers)
    assert_field_problem(response, ["query", "cursor"])


async def test_a_stored_user_agent_is_cleaned_not_refused(client, world, capsys, fetch):
    import json

    capsys.readouterr()
    body = world.profile()
    response = await client.post(
        "/customers", json=body, headers={**world.service.headers, "User-Agent": "agent\x00/1\x01.0"}
    )
    assert response.status_code == 201, response.text
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    [audit] = [line for line in lines if line.get("audit_event") == "v1.customer.created"]
    assert "user_agent" not in audit  # personal data: stored in the audit record, not printed
    [record] = await fetch(
        "SELECT payload FROM outbox WHERE customer_id = :c AND event_name = 'v1.audit.customer.created'",
        c=uuid.UUID(response.json()["id"]),
    )
    assert record["payload"]["user_agent"] == "agent/1.0"


# --- upstream messages ------------------------------------------------------------------------


def order_body(**fields):
    import json

    body = {
        "event_id": str(uuid.uuid4()),
        "user_id": str(uuid.uuid4()),
        "business_id": str(uuid.uuid4()),
        "order_id": "A-1",
        "total": "10.00",
        "currency": "EUR",
        "completed_at": "2031-01-10T12:00:00Z",
    }
    body.update(fields)
    return json.dumps(body).encode()


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"order_id": "A\x00-1"}, "order_id"),
        ({"order_id": "A\ud800"}, "malformed JSON"),  # orjson refuses a lone surrogate while parsing
        ({"completed_at": "0001-01-01T00:00:00+14:00"}, "completed_at"),
        ({"total": "1e400"}, "total"),
    ],
)
def test_unstorable_upstream_messages_are_rejected_saying_why(fields, named):
    result = parse("v1.order.completed", order_body(**fields))
    assert isinstance(result, Rejected), result
    assert named in result.reason


def test_a_storable_upstream_message_is_a_change():
    assert isinstance(parse("v1.order.completed", order_body()), Change)
