"""GET /customers as a dashboard's source (issue 19): `total` (exact, then estimated), `facets`, `matched_on`."""

import uuid
from collections import Counter

import pytest

SEGMENTS = ["prospect", "new", "champion", "loyal", "promising", "at_risk", "hibernating", "lost"]
# 25 labels, so the top 20 leaves some out; label n is carried by the customers whose number is a multiple of it.
LABELS = [f"Label {n:02d}" for n in range(1, 26)]


def _rows(count: int) -> list[dict]:
    """The customers of a test business, decided here (what the facets are checked against)."""
    rows = []
    for n in range(1, count + 1):
        rows.append(
            {
                "name": f"{'Zeta' if n % 3 == 0 else 'Omega'} Person{n}",
                "email": f"person{n}@dash.example",
                "segment": SEGMENTS[n % 7],  # 'lost' never occurs
                "gender": "female" if n % 2 else "male",
                "tags": [label for k, label in enumerate(LABELS, start=1) if n % k == 0 and k > 1][:6],
            }
        )
    return rows


async def _insert(execute, business_id: uuid.UUID, rows: list[dict]) -> None:
    """The rows in two statements (customers, their tags), straight into the tables."""
    await execute(
        "INSERT INTO customers (id, user_id, business_id, full_name, email, gender, rfm_segment)"
        " SELECT gen_random_uuid(), gen_random_uuid(), :b, r.name, r.email, r.gender::gender_enum, r.segment"
        " FROM unnest(CAST(:names AS text[]), CAST(:emails AS text[]), CAST(:genders AS text[]),"
        " CAST(:segments AS text[])) AS r(name, email, gender, segment)",
        b=business_id,
        names=[r["name"] for r in rows],
        emails=[r["email"] for r in rows],
        genders=[r["gender"] for r in rows],
        segments=[r["segment"] for r in rows],
    )
    pairs = [(r["email"], tag) for r in rows for tag in r["tags"]]
    await execute(
        "INSERT INTO customer_tags (id, customer_id, business_id, label)"
        " SELECT gen_random_uuid(), c.id, :b, p.label"
        " FROM unnest(CAST(:emails AS text[]), CAST(:labels AS text[])) AS p(email, label)"
        " JOIN customers c ON c.business_id = :b AND c.email = p.email",
        b=business_id,
        emails=[email for email, _ in pairs],
        labels=[label for _, label in pairs],
    )


def _top(counter: Counter) -> list[dict]:
    ranked = sorted(counter.items(), key=lambda item: (-item[1], item[0]))[:20]
    return [{"value": value, "count": count} for value, count in ranked]


def _expected_facets(rows: list[dict]) -> dict:
    return {
        "tags": _top(Counter(tag for r in rows for tag in r["tags"])),
        "segment": _top(Counter(r["segment"] for r in rows)),
    }


async def _search(client, world, **params):
    params.setdefault("include_total", "true")  # the dashboard's first page asks for the total
    response = await client.get(
        "/customers", params={"business_id": str(world.business_id), **params}, headers=world.admin.headers
    )
    assert response.status_code == 200, response.text
    return response.json()


async def test_total_is_exact_on_every_page(client, world, execute):
    rows = _rows(60)
    await _insert(execute, world.business_id, rows)
    body = await _search(client, world, limit=7)
    assert (body["total"], body["total_is_estimate"], len(body["items"])) == (60, False, 7)
    second = await _search(client, world, limit=7, cursor=body["next_cursor"])
    assert second["total"] == 60
    zetas = [r for r in rows if r["name"].startswith("Zeta")]
    assert (await _search(client, world, query="zeta", limit=3))["total"] == len(zetas)
    tagged = [r for r in rows if "Label 04" in r["tags"] and r["gender"] == "male"]
    assert (await _search(client, world, tag="label 04", gender="male"))["total"] == len(tagged)
    skipped = await _search(client, world, include_total="false")
    assert (skipped["total"], skipped["total_is_estimate"]) == (None, False)
    response = await client.get(
        "/customers", params={"business_id": str(world.business_id)}, headers=world.admin.headers
    )
    assert response.json()["total"] is None  # not counted unless asked


async def test_facets_are_the_counts_of_the_whole_match_set(client, world, execute):
    rows = _rows(90)
    await _insert(execute, world.business_id, rows)
    body = await _search(client, world, facets="tags,segment", limit=5)
    assert body["facets"] == _expected_facets(rows)
    assert body["facets_are_estimates"] is False
    assert len(body["facets"]["tags"]) == 20  # 24 labels occur: the 20 commonest, ties by label

    # ... for the query and the filters of the page, not for the page itself
    zetas = [r for r in rows if r["name"].startswith("Zeta")]
    body = await _search(client, world, query="zeta", facets="segment,tags", limit=2)
    assert body["facets"] == _expected_facets(zetas)
    filtered = [r for r in rows if {"Label 02", "Label 05"} <= set(r["tags"]) and r["gender"] == "male"]
    body = await _search(client, world, tag=["Label 02", "label 05"], gender="male", facets="segment")
    assert body["facets"] == {"tags": None, "segment": _expected_facets(filtered)["segment"]}
    assert body["total"] == len(filtered)
    # nothing matches: empty lists, not missing ones
    body = await _search(client, world, query="nobody-here", facets="tags,segment")
    assert body["facets"] == {"tags": [], "segment": []}
    assert (await _search(client, world))["facets"] is None


async def test_a_cursor_stays_valid_when_facets_or_the_total_are_toggled(client, world, execute):
    await _insert(execute, world.business_id, _rows(12))
    first = await _search(client, world, limit=5, facets="tags")
    second = await _search(client, world, limit=5, cursor=first["next_cursor"], include_total="false")
    assert len(second["items"]) == 5
    assert not {item["id"] for item in first["items"]} & {item["id"] for item in second["items"]}


@pytest.mark.parametrize("facets", ["colour", "tags,tags", "", "tags,", "tags;segment", "TAGS"])
async def test_bad_facets_are_422(client, world, facets):
    response = await client.get(
        "/customers", params={"business_id": str(world.business_id), "facets": facets}, headers=world.admin.headers
    )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["errors"][0]["loc"] == ["query", "facets"]


async def test_beyond_10000_matches_total_and_facets_are_estimates(client, world, execute):
    # 12,001 customers in SQL: every one tagged 'Everyone', every other one 'Half'; 'loyal' but 101.
    b = world.business_id
    await execute(
        "INSERT INTO customers (id, user_id, business_id, full_name, email, rfm_segment)"
        " SELECT gen_random_uuid(), gen_random_uuid(), :b, 'Bulk Person' || g, 'bulk' || g || '@dash.example',"
        " CASE WHEN g <= 100 THEN 'new' ELSE 'loyal' END"
        " FROM generate_series(1, 12000) AS g",
        b=b,
    )
    await execute(
        "INSERT INTO customers (id, user_id, business_id, full_name, email)"
        " VALUES (gen_random_uuid(), gen_random_uuid(), :b, 'Rare Quixote', 'rq@dash.example')",
        b=b,
    )
    await execute(
        "INSERT INTO customer_tags (id, customer_id, business_id, label)"
        " SELECT gen_random_uuid(), c.id, :b, t.label FROM customers c"
        " CROSS JOIN LATERAL (VALUES ('Everyone', true), ('Half', right(c.email, 14) ~ '[02468]@')) AS t(label, wanted)"
        " WHERE c.business_id = :b AND t.wanted",
        b=b,
    )
    await execute("ANALYZE customers")
    await execute("ANALYZE customer_tags")

    body = await _search(client, world, facets="tags,segment", limit=3)
    assert body["total_is_estimate"] is True and body["facets_are_estimates"] is True
    # the planner's estimate for the business: never below what was counted, near the 12,001 stored
    assert 10_001 <= body["total"] <= 24_000
    assert len(body["items"]) == 3 and body["next_cursor"] is not None
    tags = body["facets"]["tags"]
    # every sampled match carries 'Everyone': its scaled count is the total; 'Half' about half of it
    assert tags[0] == {"value": "Everyone", "count": body["total"]}
    assert [t["value"] for t in tags] == ["Everyone", "Half"]
    assert 0.3 * body["total"] <= tags[1]["count"] <= 0.7 * body["total"]
    assert body["facets"]["segment"][0]["value"] == "loyal"

    # a selective search in the same business is counted exactly
    body = await _search(client, world, query="quixote", facets="tags,segment")
    assert (body["total"], body["total_is_estimate"], body["facets_are_estimates"]) == (1, False, False)
    assert body["facets"] == {
        "tags": [{"value": "Everyone", "count": 1}],
        "segment": [{"value": "prospect", "count": 1}],
    }
    body = await _search(client, world, tag="half", query="person1")  # the numbers starting with 1, even ones
    assert body["total_is_estimate"] is False
    assert body["total"] == len([n for n in range(1, 12001) if str(n).startswith("1") and n % 2 == 0])


async def _customer(client, world, **profile):
    return await world.create_customer(client, **profile)


async def test_matched_on_names_each_field_the_query_matched(client, world):
    stefan = await _customer(
        client, world, full_name="Ștefan Popescu", email="stefan.popescu@example.com", phone="+40712345678"
    )
    maria = await _customer(client, world, full_name="Maria Ionescu", email="maria@firma.ro", phone="+40798765432")
    fidela = await _customer(client, world, full_name="Ioana Fidela", email="ioana@x.ro", phone=None)
    other = await _customer(client, world, full_name="Dan Rusu", email="fidela.dan@x.ro", phone=None)
    for customer, label in ((fidela, "Fidelă "), (other, "FIDELA"), (maria, "Fidelity")):
        response = await client.post(
            f"/customers/{customer['id']}/tags", json={"labels": [label]}, headers=world.admin.headers
        )
        assert response.status_code == 201, response.text

    def matched(body):
        return {item["id"]: item["matched_on"] for item in body["items"]}

    assert matched(await _search(client, world, query="stefan")) == {stefan["id"]: ["name", "email"]}
    assert matched(await _search(client, world, query="popscu")) == {stefan["id"]: ["name"]}  # a typo
    assert matched(await _search(client, world, query="firma")) == {maria["id"]: ["email"]}
    assert matched(await _search(client, world, query="maria@firma.ro")) == {maria["id"]: ["email"]}
    assert matched(await _search(client, world, query="0712 345")) == {stefan["id"]: ["phone"]}
    # the whole query is one of the row's tags, accents, case and spaces aside ("Fidelity" is not)
    assert matched(await _search(client, world, query="fidela")) == {
        fidela["id"]: ["name", "tag"],
        other["id"]: ["email", "tag"],
    }
    assert all(item["matched_on"] == [] for item in (await _search(client, world))["items"])
