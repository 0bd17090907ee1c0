"""Typo queries through each business's distinct name words (customer_name_words, migration 0010)."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest

T0 = datetime(2025, 1, 1, tzinfo=UTC)


async def _customer(client, world, execute, *, name, email, day=0):
    created = await world.create_customer(client, full_name=name, email=email, phone=None)
    await execute(
        "UPDATE customers SET created_at = :c WHERE id = :id", c=T0 + timedelta(days=day), id=uuid.UUID(created["id"])
    )
    return created


async def _search(client, world, **params):
    response = await client.get(
        "/customers", params={"business_id": str(world.business_id), **params}, headers=world.admin.headers
    )
    assert response.status_code == 200, response.text
    return response.json()


def _names(body):
    return [item["full_name"] for item in body["items"]]


async def _words(fetch, business_id):
    rows = await fetch("SELECT word FROM customer_name_words WHERE business_id = :b ORDER BY word", b=business_id)
    return [row["word"] for row in rows]


async def test_a_typo_finds_the_intended_customer_after_the_exact_matches(client, world, execute):
    await _customer(client, world, execute, name="Ana Popescu", email="a1@x.ro", day=3)
    await _customer(client, world, execute, name="Popscu Ion", email="p1@x.ro", day=1)  # holds the query itself
    await _customer(client, world, execute, name="Maria Ioana Popescu", email="m1@x.ro", day=2)  # surname third
    await _customer(client, world, execute, name="Radu Ionescu", email="r1@x.ro", day=4)  # not similar

    body = await _search(client, world, query="popscu")
    # the exact (prefix) match first, then the almost-matches newest first
    assert _names(body) == ["Popscu Ion", "Ana Popescu", "Maria Ioana Popescu"]
    assert (await _search(client, world, query="popscu", include_total="true"))["total"] == 3


async def test_the_more_similar_word_ranks_first_and_a_customer_appears_once(client, world, execute):
    await _customer(client, world, execute, name="Ana Ionescu", email="a@x.ro", day=1)
    await _customer(client, world, execute, name="Ionel Ionescu", email="b@x.ro", day=2)  # two similar words
    await _customer(client, world, execute, name="Dan Ionel", email="c@x.ro", day=3)

    body = await _search(client, world, query="ionesku")
    names = _names(body)
    # "ionescu" is more similar to "ionesku" than "ionel" is: both holders of "ionescu" first (newest
    # first), and "Ionel Ionescu" only once, under its better word
    assert names == ["Ionel Ionescu", "Ana Ionescu", "Dan Ionel"]

    # pages of one row follow the same order, each customer once
    paged: list[str] = []
    cursor = None
    while True:
        page = await _search(client, world, query="ionesku", limit=1, **({"cursor": cursor} if cursor else {}))
        paged += _names(page)
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert paged == names


async def test_a_typo_in_a_query_of_two_words(client, world, execute):
    await _customer(client, world, execute, name="Ioana Popescu", email="a@x.ro", day=1)
    await _customer(client, world, execute, name="Ioan Popescu", email="b@x.ro", day=2)
    await _customer(client, world, execute, name="Maria Popescu", email="c@x.ro", day=3)  # first word not similar
    await _customer(client, world, execute, name="Ioana Pop Marin", email="d@x.ro", day=4)  # second word not similar
    # both words similar, in either order; the closer name first (similarity with the whole query)
    assert _names(await _search(client, world, query="ioana popscu")) == ["Ioana Popescu", "Ioan Popescu"]
    assert _names(await _search(client, world, query="popscu ioana")) == ["Ioana Popescu", "Ioan Popescu"]
    assert (await _search(client, world, query="ioana popscu", include_total="true"))["total"] == 2
    page = await _search(client, world, query="ioana popscu", limit=1)
    assert _names(page) == ["Ioana Popescu"]
    rest = await _search(client, world, query="ioana popscu", limit=1, cursor=page["next_cursor"])
    assert _names(rest) == ["Ioan Popescu"] and rest["next_cursor"] is None


async def test_typo_tier_respects_other_sorts_and_filters(client, world, execute):
    await _customer(client, world, execute, name="Bianca Popescu", email="b@x.ro", day=1)
    await _customer(client, world, execute, name="Ana Popescu", email="a@x.ro", day=2)
    body = await _search(client, world, query="popscu", sort="full_name")
    assert _names(body) == ["Ana Popescu", "Bianca Popescu"]
    body = await _search(client, world, query="popscu", created_after=(T0 + timedelta(days=2)).isoformat())
    assert _names(body) == ["Ana Popescu"]


async def test_the_word_table_follows_inserts_renames_and_erasure(client, world, execute, fetch):
    ana = await _customer(client, world, execute, name="Ana Maria Popescu", email="a@x.ro")
    await _customer(client, world, execute, name="Ana Vlad", email="v@x.ro")
    other = await world.create_customer(
        client, business_id=str(world.other_business_id), full_name="Xenia Zamfir", email="x@x.ro"
    )
    assert await _words(fetch, world.business_id) == ["ana", "maria", "popescu", "vlad"]
    assert await _words(fetch, world.other_business_id) == ["xenia", "zamfir"]

    response = await client.patch(
        f"/customers/{ana['id']}", json={"full_name": "Ana Ștefănescu"}, headers=world.admin.headers
    )
    assert response.status_code == 200, response.text
    assert await _words(fetch, world.business_id) == ["ana", "stefanescu", "vlad"]  # "ana" is still held
    assert _names(await _search(client, world, query="stefnescu")) == ["Ana Ștefănescu"]
    assert _names(await _search(client, world, query="popscu")) == []

    # GDPR erasure: the erased customer's words go with it (the other "ana" stays)
    assert (await client.delete(f"/customers/{ana['id']}", headers=world.admin.headers)).status_code == 204
    assert await _words(fetch, world.business_id) == ["ana", "vlad"]
    erased = await client.delete(f"/users/{other['user_id']}", headers=world.service.headers)
    assert erased.status_code in (200, 202, 204), erased.text
    assert await _words(fetch, world.other_business_id) == []


async def test_bulk_inserts_and_deletes_keep_the_word_table(world, execute, fetch):
    # one statement of many rows, as the seed (and a batch of the activity consumer) writes them
    await execute(
        "INSERT INTO customers (id, user_id, business_id, full_name, email)"
        " SELECT gen_random_uuid(), gen_random_uuid(), :b, n, 'e' || g || '@x.ro'"
        " FROM unnest(ARRAY['Ion Pop', 'Ion Popa', 'Ioana Maria Pop', 'Solo']) WITH ORDINALITY AS t(n, g)",
        b=world.business_id,
    )
    assert await _words(fetch, world.business_id) == ["ioana", "ion", "maria", "pop", "popa", "solo"]
    await execute("DELETE FROM customers WHERE business_id = :b AND full_name LIKE 'Io%'", b=world.business_id)
    assert await _words(fetch, world.business_id) == ["solo"]


async def test_a_middle_word_is_kept_found_and_forgotten(client, world, execute, fetch):
    long = await _customer(client, world, execute, name="Ana Maria Xenofonta Pop", email="a@x.ro", day=1)
    await _customer(client, world, execute, name="Ion Pop", email="i@x.ro", day=2)
    assert await _words(fetch, world.business_id) == ["ana", "ion", "maria", "pop", "xenofonta"]
    # the word table says a name holds "nofon", so the substring phase runs and finds the middle word
    assert _names(await _search(client, world, query="nofon")) == ["Ana Maria Xenofonta Pop"]
    assert _names(await _search(client, world, query="ofonta pop")) == ["Ana Maria Xenofonta Pop"]
    assert _names(await _search(client, world, query="zzz")) == []  # no word holds it: no name scan
    assert (await client.delete(f"/customers/{long['id']}", headers=world.admin.headers)).status_code == 204
    assert await _words(fetch, world.business_id) == ["ion", "pop"]


async def test_prefixes_are_literal(client, world, execute):
    await _customer(client, world, execute, name="Ana_Maria Pop", email="ana_m@x.ro", day=1)
    await _customer(client, world, execute, name="Anabela Pop", email="anab@x.ro", day=2)
    assert _names(await _search(client, world, query="ana_")) == ["Ana_Maria Pop"]
    assert _names(await _search(client, world, query="Ana_m")) == ["Ana_Maria Pop"]
    assert _names(await _search(client, world, query="ana%")) == []


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("ioana.ma", ["Ioana Marin", "Ioana Matei"]),  # email prefix
        ("na.mari", ["Ioana Marin", "Diana Marinescu"]),  # inside the email
        ("marin12", ["Ioana Marin"]),  # digits: email only
        ("ioana.marinx", []),
    ],
)
async def test_email_fragments(client, world, execute, query, expected):
    await _customer(client, world, execute, name="Ioana Marin", email="ioana.marin12@x.ro", day=3)
    await _customer(client, world, execute, name="Ioana Matei", email="ioana.matei@x.ro", day=2)
    await _customer(client, world, execute, name="Diana Marinescu", email="diana.marinescu7@x.ro", day=1)
    assert _names(await _search(client, world, query=query)) == expected


async def test_cached_statements_run_with_each_requests_values(client, world, execute):
    """The phase statements are built once per shape: a second business, query, filter value and
    cursor of the same shape must get their own rows, never the first request's."""
    await _customer(client, world, execute, name="Ana Popescu", email="a@x.ro", day=1)
    other = await world.create_customer(
        client, business_id=str(world.other_business_id), full_name="Ion Popescu", email="i@x.ro", phone=None
    )

    async def search(business_id, caller, **params):
        response = await client.get(
            "/customers", params={"business_id": str(business_id), **params}, headers=caller.headers
        )
        assert response.status_code == 200, response.text
        return _names(response.json())

    for query in ("popscu", "popesc", "popescu", "pop"):
        assert await search(world.business_id, world.admin, query=query) == ["Ana Popescu"], query
        assert await search(world.other_business_id, world.other_admin, query=query) == ["Ion Popescu"], query
    assert await search(world.business_id, world.admin, query="popscu", min_orders=1) == []
    assert await search(world.business_id, world.admin, query="popscu", min_orders=0) == ["Ana Popescu"]
    assert other["full_name"] == "Ion Popescu"


def test_a_request_value_outside_a_named_parameter_is_refused():
    from sqlalchemy import select

    from bee_customers_service.customers.models import Customer
    from bee_customers_service.search.repository import _cached

    with pytest.raises(AssertionError, match="not a named parameter"):
        _cached(("test", uuid.uuid4()), lambda: select(Customer.id).where(Customer.full_name == "Ana"))


async def test_a_rename_keeps_words_under_three_characters_an_erasure_does_not(client, world, execute, fetch):
    """Proving a short word gone scans every name of the business (no trigram to look it up by):
    a rename leaves it (a stale word only costs the typo phase a lookup that finds no one), an
    erasure pays for it (nothing of an erased customer may stay behind)."""
    renamed = await _customer(client, world, execute, name="Ana Zq Xenofonta Pop", email="z@x.ro")
    response = await client.patch(
        f"/customers/{renamed['id']}", json={"full_name": "Ana Pop"}, headers=world.admin.headers
    )
    assert response.status_code == 200, response.text
    assert await _words(fetch, world.business_id) == ["ana", "pop", "zq"]  # "xenofonta" is gone
    assert _names(await _search(client, world, query="zq")) == []

    erased = await _customer(client, world, execute, name="Li Wu Tanaka", email="l@x.ro")
    assert await _words(fetch, world.business_id) == ["ana", "li", "pop", "tanaka", "wu", "zq"]
    assert (await client.delete(f"/customers/{erased['id']}", headers=world.admin.headers)).status_code == 204
    # The erasure forgets every short word of the business that no customer holds: "li" and "wu",
    # and "zq" too (stale since the rename; it may have been an erased customer's former name).
    assert await _words(fetch, world.business_id) == ["ana", "pop"]
