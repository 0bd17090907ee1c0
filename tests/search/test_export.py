"""GET /customers/export: a whole business as CSV or NDJSON, the search's rows in (created_at, id) order."""

import csv
import io
import uuid

import asyncpg
import orjson
import pytest

from bee_customers_service.search import export
from bee_customers_service.seed import seed_business

SEEDED = 2500  # more than two export pages


@pytest.fixture
async def seeded(world, database_url):
    connection = await asyncpg.connect(database_url.replace("postgresql+asyncpg://", "postgresql://", 1))
    try:
        await seed_business(connection, world.business_id, SEEDED)
    finally:
        await connection.close()
    return world.business_id


async def _search_all(client, world, **filters):
    """Every search item for the filters, in the export's order (created_at, id ascending)."""
    items, cursor = [], None
    while True:
        params = {"business_id": str(world.business_id), "sort": "created_at", "order": "asc", "limit": 100, **filters}
        if cursor:
            params["cursor"] = cursor
        response = await client.get("/customers", params=params, headers=world.admin.headers)
        assert response.status_code == 200, response.text
        page = response.json()
        items += page["items"]
        cursor = page.get("next_cursor")
        if not cursor:
            return items


def _safe(cell):
    """A spreadsheet-safe cell: a quote before a formula start (phones in E.164 start with "+")."""
    return f"'{cell}" if cell[:1] in ("=", "+", "-", "@", "\t", "\r") else cell


def _as_csv_row(item):
    return {
        "id": item["id"],
        "full_name": _safe(item["full_name"]),
        "email": _safe(item["email"]),
        "phone": _safe(item["phone"] or ""),
        "total_orders": str(item["total_orders"]),
        "last_order_date": item["last_order_date"] or "",
        "lifetime_value": item["lifetime_value"],
        "lifetime_value_currency": item["lifetime_value_currency"] or "",
        "tags": _safe(";".join(item["tags"])),
    }


async def _export(client, world, fmt, **filters):
    params = {"business_id": str(world.business_id), "format": fmt, **filters}
    response = await client.get("/customers/export", params=params, headers=world.admin.headers)
    assert response.status_code == 200, response.text
    return response


def _parsed_csv(response):
    assert response.headers["content-type"].startswith("text/csv")
    assert "\r\n" in response.text
    rows = list(csv.DictReader(io.StringIO(response.text, newline="")))
    for row in rows:
        row.pop("created_at")
        row["lifetime_value"] = float(row["lifetime_value"]) if row["lifetime_value"] else None
    return rows


@pytest.mark.parametrize(
    "filters",
    [{}, {"tag": "VIP"}, {"min_orders": 5, "gender": "female"}, {"query": "maria"}],
    ids=["all", "tag", "orders-gender", "query"],
)
async def test_csv_export_is_the_search(client, world, seeded, filters):
    response = await _export(client, world, "csv", **filters)
    expected = [_as_csv_row(item) for item in await _search_all(client, world, **filters)]
    assert expected, "the filters should match some seeded customers"
    if not filters:
        assert len(expected) == SEEDED
    assert _parsed_csv(response) == expected
    assert response.text.split("\r\n", 1)[0] == ",".join(export.COLUMNS)


async def test_ndjson_export_lines_parse(client, world, seeded, fetch):
    response = await _export(client, world, "ndjson")
    assert response.headers["content-type"] == "application/x-ndjson"
    lines = response.content.splitlines()
    assert len(lines) == SEEDED
    records = [orjson.loads(line) for line in lines]
    assert [r["id"] for r in records] == [item["id"] for item in await _search_all(client, world)]
    assert set(records[0]) == set(export.COLUMNS)
    first = (await fetch("SELECT created_at FROM customers WHERE id = :id", id=uuid.UUID(records[0]["id"])))[0]
    assert records[0]["created_at"] == first["created_at"].isoformat()


async def test_formula_cells_are_neutralised(client, world, execute):
    names = ["=cmd|' /C calc'!A0", "+1", "-2", "@x", "\tTab", "Plain"]
    for name in names:
        created = await world.create_customer(client, full_name="Placeholder")
        await execute("UPDATE customers SET full_name = :n WHERE id = :id", n=name, id=uuid.UUID(created["id"]))
    response = await _export(client, world, "csv")
    exported = [row["full_name"] for row in csv.DictReader(io.StringIO(response.text, newline=""))]
    assert exported == ["'=cmd|' /C calc'!A0", "'+1", "'-2", "'@x", "'\tTab", "Plain"]


async def test_content_disposition_names_the_business(client, world):
    await world.create_customer(client)
    for fmt in ("csv", "ndjson"):
        response = await _export(client, world, fmt)
        disposition = response.headers["content-disposition"]
        assert disposition.startswith(f'attachment; filename="customers-{world.business_id}-')
        assert disposition.endswith(f'.{fmt}"')


async def test_another_business_admin_is_refused(client, world):
    await world.create_customer(client)
    response = await client.get(
        "/customers/export", params={"business_id": str(world.business_id)}, headers=world.other_admin.headers
    )
    assert response.status_code == 403
    assert response.headers["content-type"] == "application/problem+json"


async def test_export_is_not_taken_for_a_customer_id(client, world):
    # /customers/export is registered before /customers/{customer_id}: no 422 for "export"
    response = await client.get("/customers/export", params={"business_id": str(world.business_id)})
    assert response.status_code == 401
    response = await _export(client, world, "csv")
    assert response.text == ",".join(export.COLUMNS) + "\r\n"


async def test_unknown_parameters_are_refused(client, world):
    for params in ({"cursor": "x"}, {"format": "xlsx"}):
        response = await client.get(
            "/customers/export",
            params={"business_id": str(world.business_id), **params},
            headers=world.admin.headers,
        )
        assert response.status_code == 422, response.text


@pytest.mark.parametrize("filters", [{"query": "maria"}, {"query": "popscu"}, {"tag": "VIP"}], ids=str)
async def test_small_pages_give_the_same_rows(client, world, seeded, monkeypatch, filters):
    # many page boundaries, with the relevance rank in the cursor for a query
    monkeypatch.setattr(export, "PAGE_SIZE", 7)
    response = await _export(client, world, "csv", **filters)
    expected = [_as_csv_row(item) for item in await _search_all(client, world, **filters)]
    assert len(expected) > 7
    assert _parsed_csv(response) == expected
