"""GET /customers?business_id=...: query, filters, sorting, keyset pages, isolation, totals."""

import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from bee_customers_service.avatars.service import generated_path

T0 = datetime(2025, 1, 1, tzinfo=UTC)


async def _customer(client, world, execute, *, name, email, phone=None, gender=None, day=0, stats=None, tags=()):
    created = await world.create_customer(client, full_name=name, email=email, phone=phone, gender=gender)
    orders, value, last = stats or (0, "0", None)
    await execute(
        "UPDATE customers SET created_at = :c, total_orders = :o, lifetime_value = :v, last_order_date = :l,"
        " lifetime_value_currency = CASE WHEN CAST(:o AS int) > 0 THEN 'RON' END WHERE id = :id",
        c=T0 + timedelta(days=day),
        o=orders,
        v=Decimal(value),
        l=last,
        id=uuid.UUID(created["id"]),
    )
    if tags:
        response = await client.post(
            f"/customers/{created['id']}/tags", json={"labels": list(tags)}, headers=world.admin.headers
        )
        assert response.status_code == 201, response.text
    return created


@pytest.fixture
async def people(client, world, execute):
    """A small business with names, emails, phones, tags and statistics worth searching."""
    c = {}
    c["stefan"] = await _customer(
        client,
        world,
        execute,
        name="Ștefan Popescu",
        email="stefan.popescu@example.com",
        phone="+40712345678",
        gender="male",
        day=0,
        stats=(12, "2750.00", date(2025, 7, 15)),
        tags=("VIP", "Frequent"),
    )
    c["ana"] = await _customer(
        client,
        world,
        execute,
        name="Ana Ionescu",
        email="ana.i@mail.ro",
        phone="+40798765432",
        gender="female",
        day=1,
        stats=(3, "120.50", date(2025, 3, 1)),
        tags=("VIP",),
    )
    c["maria"] = await _customer(
        client,
        world,
        execute,
        name="Maria Ștefănescu",
        email="maria@firma.ro",
        phone=None,
        gender="female",
        day=2,
        stats=(0, "0", None),
        tags=("Frequent",),
    )
    c["john"] = await _customer(
        client,
        world,
        execute,
        name="John Smith",
        email="john.smith@example.co.uk",
        phone="+447700900123",
        gender="other",
        day=3,
        stats=(7, "990.00", date(2025, 6, 30)),
    )
    return c


async def _search(client, world, caller=None, **params):
    response = await client.get(
        "/customers", params={"business_id": str(world.business_id), **params}, headers=(caller or world.admin).headers
    )
    assert response.status_code == 200, response.text
    return response.json()


def _names(body):
    return [item["full_name"] for item in body["items"]]


async def test_listing_defaults_to_newest_first_with_list_view_fields(client, world, people):
    body = await _search(client, world)
    assert _names(body) == ["John Smith", "Maria Ștefănescu", "Ana Ionescu", "Ștefan Popescu"]
    assert body["next_cursor"] is None
    assert (body["total"], body["total_is_estimate"], body["facets"]) == (None, False, None)  # only on request
    stefan = body["items"][3]
    stefan["tags"].sort()  # added in one request: same created_at, no order between them
    assert stefan == {
        "id": people["stefan"]["id"],
        "full_name": "Ștefan Popescu",
        "email": "stefan.popescu@example.com",
        "phone": "+40712345678",
        # No upload: the generated avatar's public URL, which an <img> loads (issue 19).
        "avatar_url": generated_path(world.settings, uuid.UUID(people["stefan"]["id"]), "Ștefan Popescu"),
        "tags": ["Frequent", "VIP"],
        "total_orders": 12,
        "lifetime_value": 2750.0,
        "lifetime_value_currency": "RON",
        "last_order_date": "2025-07-15",
        "matched_on": [],
    }


@pytest.mark.parametrize("query", ["stefan", "STEFAN", "Ștefan", "ştefan", "ștef"])
async def test_name_is_case_and_accent_insensitive(client, world, people, query):
    body = await _search(client, world, query=query)
    # Both Ștefan Popescu (name starts with it) and Maria Ștefănescu (a word starts with it) match;
    # the name that starts with the query ranks first.
    assert _names(body) == ["Ștefan Popescu", "Maria Ștefănescu"]


async def test_name_query_is_typo_tolerant(client, world, people):
    assert _names(await _search(client, world, query="popscu")) == ["Ștefan Popescu"]
    assert _names(await _search(client, world, query="ionesku")) == ["Ana Ionescu"]


async def test_exact_name_ranks_before_partial_matches(client, world, execute, people):
    await _customer(client, world, execute, name="Anabela Ana", email="ab@x.ro", day=9)
    body = await _search(client, world, query="ana ionescu")
    assert _names(body)[0] == "Ana Ionescu"
    body = await _search(client, world, query="ana")
    assert _names(body)[:2] == ["Anabela Ana", "Ana Ionescu"] or _names(body)[:2] == ["Ana Ionescu", "Anabela Ana"]
    assert set(_names(body)) == {"Anabela Ana", "Ana Ionescu"}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("popescu@ex", ["Ștefan Popescu"]),
        ("MAIL.RO", ["Ana Ionescu"]),
        ("example", ["John Smith", "Ștefan Popescu"]),
        ("co.uk", ["John Smith"]),
    ],
)
async def test_email_substring(client, world, people, query, expected):
    assert sorted(_names(await _search(client, world, query=query))) == sorted(expected)


@pytest.mark.parametrize("query", ["0712 345", "712345678", "+40712345678", "0040712345678", "0712-345-678", "345 678"])
async def test_phone_in_any_spelling(client, world, people, query):
    assert _names(await _search(client, world, query=query)) == ["Ștefan Popescu"]


async def test_phone_fragment_of_a_foreign_number(client, world, people):
    assert _names(await _search(client, world, query="+44 7700")) == ["John Smith"]
    assert _names(await _search(client, world, query="07700 900")) == ["John Smith"]


async def test_like_wildcards_in_the_query_are_literal(client, world, people):
    assert _names(await _search(client, world, query="%")) == []
    assert _names(await _search(client, world, query="_na")) == []


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"tag": "VIP"}, {"Ștefan Popescu", "Ana Ionescu"}),
        ({"tag": "vip "}, {"Ștefan Popescu", "Ana Ionescu"}),
        ({"tag": ["VIP", "Frequent"]}, {"Ștefan Popescu"}),
        ({"tag": ["VIP", "Frequent"], "tag_mode": "all"}, {"Ștefan Popescu"}),
        ({"tag": ["VIP", "Frequent"], "tag_mode": "any"}, {"Ștefan Popescu", "Ana Ionescu", "Maria Ștefănescu"}),
        ({"tag": "Nobody"}, set()),
        ({"gender": "female"}, {"Ana Ionescu", "Maria Ștefănescu"}),
        ({"created_after": "2025-01-03T00:00:00Z"}, {"Maria Ștefănescu", "John Smith"}),
        ({"created_before": "2025-01-03T00:00:00Z"}, {"Ștefan Popescu", "Ana Ionescu"}),
        (
            {"created_after": "2025-01-02T00:00:00", "created_before": "2025-01-04T00:00:00Z"},
            {"Ana Ionescu", "Maria Ștefănescu"},
        ),
        ({"last_order_after": "2025-06-30"}, {"Ștefan Popescu", "John Smith"}),
        ({"last_order_before": "2025-06-30"}, {"Ana Ionescu"}),
        ({"min_orders": 7}, {"Ștefan Popescu", "John Smith"}),
        ({"min_lifetime_value": "990"}, {"Ștefan Popescu", "John Smith"}),
        ({"min_lifetime_value": "990.01"}, {"Ștefan Popescu"}),
        ({"query": "stefan", "tag": "Frequent", "gender": "female"}, {"Maria Ștefănescu"}),
    ],
)
async def test_filters(client, world, people, params, expected):
    assert set(_names(await _search(client, world, **params))) == expected


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"sort": "full_name"}, ["Ana Ionescu", "John Smith", "Maria Ștefănescu", "Ștefan Popescu"]),
        ({"sort": "full_name", "order": "desc"}, ["Ștefan Popescu", "Maria Ștefănescu", "John Smith", "Ana Ionescu"]),
        ({"sort": "lifetime_value"}, ["Ștefan Popescu", "John Smith", "Ana Ionescu", "Maria Ștefănescu"]),
        (
            {"sort": "lifetime_value", "order": "asc"},
            ["Maria Ștefănescu", "Ana Ionescu", "John Smith", "Ștefan Popescu"],
        ),
        ({"sort": "last_order_date"}, ["Ștefan Popescu", "John Smith", "Ana Ionescu", "Maria Ștefănescu"]),
        ({"sort": "created_at", "order": "asc"}, ["Ștefan Popescu", "Ana Ionescu", "Maria Ștefănescu", "John Smith"]),
    ],
)
async def test_sorting(client, world, people, params, expected):
    assert _names(await _search(client, world, **params)) == expected


@pytest.mark.parametrize("sort", ["created_at", "full_name", "last_order_date", "lifetime_value"])
async def test_pages_stay_consistent_while_the_set_changes(client, world, execute, sort):
    made = []
    for i in range(7):
        made.append(
            await _customer(
                client,
                world,
                execute,
                name=f"Pager {i}",
                email=f"p{i}@x.ro",
                day=i,
                stats=(i % 3, str(i % 3 * 10), date(2025, 1, 1 + i % 3) if i % 2 else None),
            )
        )
    seen: list[str] = []
    body = await _search(client, world, sort=sort, limit=3)
    seen += [item["id"] for item in body["items"]]
    # Between pages: a customer is added (it sorts first or last, never into a later page twice),
    # and one already seen is deleted; paging neither repeats nor skips the others.
    added = await _customer(
        client, world, execute, name="Pager new", email="new@x.ro", day=100, stats=(9, "99", date(2026, 1, 1))
    )
    await execute("DELETE FROM customers WHERE id = :id", id=uuid.UUID(seen[0]))
    while body["next_cursor"]:
        body = await _search(client, world, sort=sort, limit=3, cursor=body["next_cursor"])
        seen += [item["id"] for item in body["items"]]
    original = {c["id"] for c in made}
    assert len(seen) == len(set(seen))  # nothing twice
    assert original <= set(seen)  # nothing that existed throughout was skipped
    assert set(seen) <= original | {added["id"]}  # the newcomer may appear once, where it sorts


async def test_paging_through_a_query(client, world, execute):
    for i in range(5):
        await _customer(client, world, execute, name=f"Ioana Pop{i}", email=f"ioana{i}@x.ro", day=i)
    ids: list[str] = []
    cursor = None
    while True:
        params = {"query": "ioana", "limit": 2} | ({"cursor": cursor} if cursor else {})
        body = await _search(client, world, **params)
        ids += [item["id"] for item in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert len(ids) == len(set(ids)) == 5


async def test_pages_follow_the_relevance_tiers_then_the_sort(client, world, execute):
    # One customer (or two) per tier for "ioan"; the page size makes every page boundary a different
    # place: inside a tier, between two tiers, between the btree tiers and the trigram ones.
    people = [
        ("Petre Ioab", "p@x.ro", 9),  # almost (typo tier)
        ("Mihai Rusu", "m.ioan@x.ro", 8),  # email contains it
        ("Elena Dobre", "ioanelena@x.ro", 7),  # email starts with it
        ("Radu Mioanescu", "radu@x.ro", 6),  # name contains it
        ("Dan Ioan", "dan@x.ro", 4),  # the surname starts with it
        ("Vlad Ioanid", "vlad@x.ro", 3),
        ("Ioana Marin", "im@x.ro", 2),  # the name starts with it
        ("Ioan Pop", "ip@x.ro", 1),
        ("Ioan", "i@x.ro", 0),  # the whole name
    ]
    for name, email, day in people:
        await _customer(client, world, execute, name=name, email=email, day=day)
    expected = [
        "Ioan",
        "Ioana Marin",
        "Ioan Pop",
        "Dan Ioan",
        "Vlad Ioanid",
        "Radu Mioanescu",
        "Elena Dobre",
        "Mihai Rusu",
        "Petre Ioab",
    ]
    oldest_first = ["Ioan", "Ioan Pop", "Ioana Marin", "Vlad Ioanid", "Dan Ioan", *expected[5:]]
    for order, wanted in (("desc", expected), ("asc", oldest_first)):
        for limit in (1, 2, 4, 20):
            names: list[str] = []
            cursor = None
            while True:
                params = {"query": "ioan", "limit": limit, "order": order} | ({"cursor": cursor} if cursor else {})
                body = await _search(client, world, **params)
                names += _names(body)
                cursor = body["next_cursor"]
                if cursor is None:
                    break
            assert names == wanted, (order, limit)
    # a query with a space takes the other btree path (full name prefix), with the same tiers
    assert _names(await _search(client, world, query="ioan p"))[0] == "Ioan Pop"
    assert (await _search(client, world, query="ioan", include_total="true"))["total"] == len(expected)


async def test_punctuation_in_the_query_still_finds_names_and_emails(client, world, execute):
    await _customer(client, world, execute, name="J.R. Ewing", email="jr@x.ro", day=1)
    await _customer(client, world, execute, name="Ioana Vlad", email="ioana.vlad@x.ro", day=2)
    await _customer(client, world, execute, name="Radu Ioana", email="r1@x.ro", day=3)
    assert _names(await _search(client, world, query="r. ew")) == ["J.R. Ewing"]
    assert _names(await _search(client, world, query="j.r")) == ["J.R. Ewing"]
    assert _names(await _search(client, world, query="ioana.vl")) == ["Ioana Vlad"]
    assert _names(await _search(client, world, query="r1")) == ["Radu Ioana"]


async def test_include_total_counts_all_matches(client, world, people):
    body = await _search(client, world, tag="VIP", limit=1, include_total="true")
    assert body["total"] == 2
    assert len(body["items"]) == 1 and body["next_cursor"] is not None
    assert (await _search(client, world, query="stefan", include_total="true"))["total"] == 2


async def test_business_isolation(client, world, people):
    # The same name in another business never shows up here.
    other = await client.post(
        "/customers",
        json=world.profile(business_id=str(world.other_business_id), full_name="Ștefan Popescu"),
        headers=world.service.headers,
    )
    assert other.status_code == 201
    names = _names(await _search(client, world, query="stefan popescu"))
    assert names[0] == "Ștefan Popescu" and names.count("Ștefan Popescu") == 1
    other_view = await client.get(
        "/customers", params={"business_id": str(world.other_business_id)}, headers=world.other_admin.headers
    )
    assert [i["id"] for i in other_view.json()["items"]] == [other.json()["id"]]
    refused = await client.get(
        "/customers", params={"business_id": str(world.business_id)}, headers=world.other_admin.headers
    )
    assert refused.status_code == 403


@pytest.mark.parametrize(
    "params",
    [
        {"cursor": "not-a-cursor"},
        {"cursor": "eyJzIjoieCIsImsiOltdfQ"},  # well-formed, from another list
        {"limit": 0},
        {"limit": 101},
        {"sort": "email"},
        {"tag_mode": "some"},
        {"gender": "robot"},
        {"min_orders": -1},
        {"unknown": "x"},
        {"query": ""},
    ],
)
async def test_bad_parameters_are_422(client, world, params):
    response = await client.get(
        "/customers", params={"business_id": str(world.business_id), **params}, headers=world.admin.headers
    )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"


async def test_cursor_from_another_sort_or_query_is_422(client, world, people):
    body = await _search(client, world, sort="full_name", limit=1)
    response = await client.get(
        "/customers",
        params={"business_id": str(world.business_id), "sort": "lifetime_value", "cursor": body["next_cursor"]},
        headers=world.admin.headers,
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["query", "cursor"]


async def test_business_id_is_required(client, world):
    response = await client.get("/customers", headers=world.admin.headers)
    assert response.status_code == 422
