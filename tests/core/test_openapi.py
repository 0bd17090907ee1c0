"""The OpenAPI document tells the truth: problems, headers and short, stable operation ids."""

import json

import pytest

from bee_customers_service.app import create_app
from tests.conftest import make_settings

PROBLEM = "application/problem+json"

OPERATION_IDS = {
    ("POST", "/customers"): "create_customer",
    ("PUT", "/businesses/{business_id}/customers/{user_id}"): "get_or_create_customer",
    ("GET", "/customers"): "search_customers",
    ("GET", "/customers/export"): "export_customers",
    ("GET", "/customers/{customer_id}"): "get_customer",
    ("PATCH", "/customers/{customer_id}"): "update_customer",
    ("DELETE", "/customers/{customer_id}"): "erase_customer",
    ("POST", "/customers/{customer_id}/tags"): "add_tag",
    ("GET", "/customers/{customer_id}/tags"): "list_tags",
    ("DELETE", "/customers/{customer_id}/tags/{tag_id}"): "remove_tag",
    ("POST", "/customers/{customer_id}/notes"): "add_note",
    ("GET", "/customers/{customer_id}/notes"): "list_notes",
    ("DELETE", "/customers/{customer_id}/notes/{note_id}"): "delete_note",
    ("POST", "/customers/{customer_id}/avatar"): "upload_avatar",
    ("DELETE", "/customers/{customer_id}/avatar"): "delete_avatar",
    ("GET", "/customers/{customer_id}/avatar"): "get_avatar",
    ("GET", "/customers/{customer_id}/stats"): "get_stats",
    ("POST", "/customers/{customer_id}/stats/recompute"): "recompute_stats",
    ("GET", "/customers/{customer_id}/history"): "get_history",
    ("GET", "/customers/{customer_id}/export"): "export_customer",
    ("GET", "/users/{user_id}/export"): "export_user",
    ("DELETE", "/users/{user_id}"): "erase_user",
    ("GET", "/gdpr/requests/{request_id}"): "get_gdpr_request",
    ("GET", "/healthcheck"): "healthcheck",
    ("GET", "/readyz"): "readyz",
}


@pytest.fixture(scope="module")
def document():
    # Building the document needs no database: the URL is never dialled.
    return create_app(make_settings("postgresql+asyncpg://bee:bee@127.0.0.1:1/bee")).openapi()


def operations(document):
    for path, item in document["paths"].items():
        for method, operation in item.items():
            yield method.upper(), path, operation


def test_problem_schemas_replace_fastapis_validation_error(document):
    schemas = document["components"]["schemas"]
    assert {"Problem", "ValidationProblem"} <= set(schemas)
    assert "errors" in schemas["ValidationProblem"]["required"]
    assert schemas["ValidationProblem"]["properties"]["errors"]["items"]["required"] == ["loc", "msg", "type"]
    text = json.dumps(document)
    assert "HTTPValidationError" not in text
    assert '"#/components/schemas/ValidationError"' not in text


def test_operation_ids_are_short_stable_and_unique(document):
    found = {(method, path): operation["operationId"] for method, path, operation in operations(document)}
    assert found == OPERATION_IDS
    assert len(set(found.values())) == len(found)


def _problem_statuses(operation):
    statuses = set()
    for status, response in operation["responses"].items():
        if int(status) >= 400 and PROBLEM in response.get("content", {}):
            schema = response["content"][PROBLEM]["schema"]["$ref"]
            assert schema.endswith("/ValidationProblem" if status == "422" else "/Problem"), (status, schema)
            assert set(response["content"]) == {PROBLEM}
            statuses.add(int(status))
    return statuses


def test_every_authenticated_operation_declares_its_problems(document):
    for method, path, operation in operations(document):
        statuses = _problem_statuses(operation)
        if operation.get("security"):
            assert {401, 403, 429, 503} <= statuses, (method, path)
            assert 422 in statuses, (method, path)
        if "{customer_id}" in path or "{request_id}" in path:  # a user id is not looked up: no profiles, empty
            assert 404 in statuses, (method, path)
        if "requestBody" in operation:
            assert {400, 413, 415, 422} <= statuses, (method, path)


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("POST", "/customers", {409}),
        ("PATCH", "/customers/{customer_id}", {404, 412}),
        ("POST", "/customers/{customer_id}/tags", {404, 409}),
        ("POST", "/customers/{customer_id}/avatar", {404, 413, 415, 422}),
    ],
)
def test_route_declared_problems(document, method, path, expected):
    assert expected <= _problem_statuses(document["paths"][path][method.lower()])


def test_headers_are_declared(document):
    for method, path, operation in operations(document):
        for status, response in operation["responses"].items():
            headers = response.get("headers", {})
            assert {"X-Trace-Id", "X-Request-Id"} <= set(headers), (method, path, status)
            if status in ("429", "503"):
                assert "Retry-After" in headers, (method, path, status)
    paths = document["paths"]
    assert paths["/customers/{customer_id}"]["get"]["responses"]["200"]["headers"]["ETag"]["required"]
    assert paths["/customers/{customer_id}"]["patch"]["responses"]["200"]["headers"]["ETag"]["required"]
    assert paths["/customers"]["post"]["responses"]["201"]["headers"]["Location"]["required"]
    assert "Location" in paths["/customers/{customer_id}/notes"]["post"]["responses"]["201"]["headers"]
    assert paths["/customers"]["post"]["responses"]["429"]["headers"]["Retry-After"]["required"]


def test_documented_content_types_match_the_answers(document):
    paths = document["paths"]
    for method, path, operation in operations(document):
        if "204" in operation["responses"]:
            assert "content" not in operation["responses"]["204"], (method, path)
    assert set(paths["/customers/{customer_id}/avatar"]["get"]["responses"]["200"]["content"]) == {"image/svg+xml"}
    assert set(paths["/customers/{customer_id}/export"]["get"]["responses"]["200"]["content"]) == {"application/json"}
    # /readyz answers its JSON report with 503 too, not a problem document.
    assert set(paths["/readyz"]["get"]["responses"]["503"]["content"]) == {"application/json"}


async def test_served_document_is_the_post_processed_one(client):
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    assert "Problem" in response.json()["components"]["schemas"]
