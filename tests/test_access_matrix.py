"""Who may call what (spec 3 and 5.1): every route the app registers, with every kind of caller.

Add a row to ROUTES for every new endpoint; `test_every_route_has_a_row` fails until you do.
A row names its access rule; the rule says what each caller gets. Cells that must succeed run
against a fresh customer, so write endpoints (DELETE included) never disturb each other.
"""

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from bee_customers_service.app import create_app
from tests.avatars import crafted
from tests.conftest import make_settings, token_headers

CALLERS = ("anonymous", "garbled", "expired", "self", "other_customer", "admin", "manager", "other_admin", "service")
OK = "ok"  # the row's own success status

# What each caller gets, per access rule. 404 (not 403) where answering 403 would reveal that
# a customer exists in another business.
# fmt: off
_RULE_TABLE: dict[str, tuple[int | str, ...]] = {
    #                              self   other_customer  admin  manager  other_admin  service
    "self_or_admin":              (OK,    404,            OK,    OK,      404,         403),
    "admin_of_customer":          (403,   403,            OK,    OK,      404,         403),
    "admin_of_business":          (403,   403,            OK,    OK,      403,         403),
    "service":                    (403,   403,            403,   403,     403,         OK),
    "self_or_service":            (OK,    403,            403,   403,     403,         OK),
    "admin_of_record_or_service": (403,   403,            OK,    OK,      404,         OK),
}
# fmt: on
AUTHENTICATED = ("self", "other_customer", "admin", "manager", "other_admin", "service")
RULES = {rule: dict(zip(AUTHENTICATED, outcomes, strict=True)) for rule, outcomes in _RULE_TABLE.items()}
UNAUTHENTICATED = {"anonymous": 401, "garbled": 401, "expired": 401}


@dataclass
class Cell:
    """What a request in the matrix may refer to."""

    customer: dict[str, Any]
    business_id: uuid.UUID


@dataclass
class Row:
    method: str
    path: str  # the route template, as FastAPI registers it
    rule: str
    success: int
    body: Callable[[Cell], Any] | None = None
    params: Callable[[Cell], dict[str, Any]] | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. files= for multipart
    # Creates what the path refers to besides the customer (a tag, a note) and returns its path values.
    setup: Callable[[Any, Any, Cell], Awaitable[dict[str, str]]] | None = None

    def url(self, cell: Cell, **values: str) -> str:
        return self.path.format(customer_id=cell.customer["id"], user_id=cell.customer["user_id"], **values)


def _new_profile(cell: Cell) -> dict[str, Any]:
    return {
        "user_id": str(uuid.uuid4()),
        "business_id": str(cell.business_id),
        "full_name": "Matrix Row",
        "email": "matrix@example.com",
    }


async def _business_of_cell(client: Any, world: Any, cell: Cell) -> dict[str, str]:
    return {"business_id": str(cell.business_id)}


async def _erasure_record(client: Any, world: Any, cell: Cell) -> dict[str, str]:
    victim = await world.create_customer(client)
    erased = await client.delete(f"/customers/{victim['id']}", headers=world.admin.headers)
    return {"request_id": erased.headers["Location"].rsplit("/", 1)[1]}


async def _make_tag(client: Any, world: Any, cell: Cell) -> dict[str, str]:
    response = await client.post(
        f"/customers/{cell.customer['id']}/tags", json={"label": "Matrix"}, headers=world.admin.headers
    )
    assert response.status_code == 201, response.text
    return {"tag_id": response.json()["id"]}


async def _make_note(client: Any, world: Any, cell: Cell) -> dict[str, str]:
    response = await client.post(
        f"/customers/{cell.customer['id']}/notes", json={"content": "Matrix note"}, headers=world.admin.headers
    )
    assert response.status_code == 201, response.text
    return {"note_id": response.json()["id"]}


ROUTES: list[Row] = [
    Row("POST", "/customers", "service", 201, body=_new_profile),
    Row(
        "PUT",
        "/businesses/{business_id}/customers/{user_id}",
        "service",
        200,  # the cell's customer exists: get-or-create returns it
        body=lambda c: {"full_name": "Matrix Row", "email": "matrix@example.com"},
        setup=_business_of_cell,
    ),
    Row("GET", "/customers/{customer_id}", "self_or_admin", 200),
    Row("PATCH", "/customers/{customer_id}", "self_or_admin", 200, body=lambda c: {"full_name": "Renamed"}),
    Row("DELETE", "/customers/{customer_id}", "self_or_admin", 204),
    Row("GET", "/customers/{customer_id}/export", "self_or_admin", 200),
    Row("GET", "/users/{user_id}/export", "self_or_service", 200),
    Row("DELETE", "/users/{user_id}", "self_or_service", 204),
    Row("GET", "/gdpr/requests/{request_id}", "admin_of_record_or_service", 200, setup=_erasure_record),
    Row(
        "POST",
        "/customers/{customer_id}/avatar",
        "self_or_admin",
        200,
        extra={"files": {"file": ("me.png", crafted.png(), "image/png")}},
    ),
    Row("GET", "/customers/{customer_id}/avatar", "self_or_admin", 200),
    Row("DELETE", "/customers/{customer_id}/avatar", "self_or_admin", 204),
    Row("GET", "/customers/{customer_id}/stats", "self_or_admin", 200),
    Row("GET", "/customers/{customer_id}/history", "self_or_admin", 200),
    Row("POST", "/customers/{customer_id}/stats/recompute", "admin_of_customer", 200),
    Row("GET", "/customers", "admin_of_business", 200, params=lambda c: {"business_id": str(c.business_id)}),
    Row("GET", "/customers/export", "admin_of_business", 200, params=lambda c: {"business_id": str(c.business_id)}),
    Row("POST", "/customers/{customer_id}/tags", "admin_of_customer", 201, body=lambda c: {"label": "VIP"}),
    Row("GET", "/customers/{customer_id}/tags", "admin_of_customer", 200),
    Row("DELETE", "/customers/{customer_id}/tags/{tag_id}", "admin_of_customer", 204, setup=_make_tag),
    Row("POST", "/customers/{customer_id}/notes", "admin_of_customer", 201, body=lambda c: {"content": "Hi"}),
    Row("GET", "/customers/{customer_id}/notes", "admin_of_customer", 200),
    Row("DELETE", "/customers/{customer_id}/notes/{note_id}", "admin_of_customer", 204, setup=_make_note),
]

PUBLIC = {("GET", "/healthcheck"), ("GET", "/readyz")}


def test_every_route_has_a_row():
    app = create_app(make_settings("postgresql+asyncpg://unused@127.0.0.1:1/none"))
    # The OpenAPI document lists every route the app serves, whatever router it came from.
    registered = {(method.upper(), path) for path, item in app.openapi()["paths"].items() for method in item}
    covered = {(row.method, row.path) for row in ROUTES} | PUBLIC
    assert registered - covered == set(), "add these routes to ROUTES in tests/test_access_matrix.py"
    assert covered - registered == set(), "these rows name routes the app does not have"


def _headers(world: Any, caller: str, customer: dict[str, Any]) -> dict[str, str]:
    settings = world.settings
    if caller == "anonymous":
        return {}
    if caller == "garbled":
        return {"Authorization": "Bearer not.a.jwt"}
    if caller == "expired":
        return token_headers(settings, roles=["admin_business"], business_ids=[world.business_id], ttl=-3600)
    if caller == "self":
        return world.customer(uuid.UUID(customer["user_id"])).headers
    if caller == "other_customer":
        return world.customer(uuid.uuid4()).headers
    return getattr(world, caller).headers


CASES = [(row, caller) for row in ROUTES for caller in CALLERS]


@pytest.mark.parametrize(("row", "caller"), CASES, ids=[f"{r.method} {r.path} as {c}" for r, c in CASES])
async def test_access_matrix(client, world, row, caller):
    customer = await world.create_customer(client)
    cell = Cell(customer=customer, business_id=world.business_id)
    expected = {**UNAUTHENTICATED, **RULES[row.rule]}[caller]
    expected_status = row.success if expected == OK else expected

    kwargs: dict[str, Any] = dict(row.extra)
    if row.body is not None:
        kwargs["json"] = row.body(cell)
    if row.params is not None:
        kwargs["params"] = row.params(cell)
    values = await row.setup(client, world, cell) if row.setup is not None else {}
    response = await client.request(
        row.method, row.url(cell, **values), headers=_headers(world, caller, customer), **kwargs
    )

    assert response.status_code == expected_status, response.text
    if expected_status == 401:
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    if expected_status >= 400:
        assert response.headers["content-type"] == "application/problem+json"
