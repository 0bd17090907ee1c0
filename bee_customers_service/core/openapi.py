"""An OpenAPI document that tells the truth about errors, headers and operation ids.

Routes declare the problems only they can give, next to the route: `responses=problems(404, 409)`.
The rest is added here, in one place, from what the app does to every request:

- every operation with a security requirement: 401, 403, 429 (per-caller limits) and 503 (the
  database does not answer);
- every operation outside the probes: 429 (the per-IP guard in `RequestMiddleware`);
- every operation with a request body: 400 (malformed body), 413 (over the body limit) and 415;
- every operation with parameters or a body: 422 as a `ValidationProblem` (FastAPI's own
  `HTTPValidationError` / `ValidationError` are dropped from the document);
- every error answer is `application/problem+json` with the `Problem` schema, every answer
  declares `X-Trace-Id` and `X-Request-Id`, 429 and 503 declare `Retry-After`;
- every POST and PATCH that honours `Idempotency-Key`: 409 (in progress, with Retry-After) and 422;
- operation ids are the route function names (`get_customer`), unless a decorator names one.
"""

from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute

from bee_customers_service.core.errors import PROBLEM_JSON

PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
VALIDATION_PROBLEM_REF = {"$ref": "#/components/schemas/ValidationProblem"}

DESCRIPTIONS: dict[int, str] = {
    400: "Malformed request (a body that is not valid JSON or multipart, or a malformed header).",
    401: "Missing, expired or invalid bearer token.",
    403: "The token's roles do not allow this operation.",
    404: "Not found (another business's data answers the same).",
    409: "Conflicts with what is stored.",
    412: "If-Match names no current version.",
    413: "The request body is over the limit.",
    415: "Unsupported content type.",
    422: "Invalid or unknown fields.",
    428: "If-Match is required.",
    429: "Too many requests; see Retry-After.",
    503: "A dependency (the database) does not answer; see Retry-After.",
}

# Paths the per-IP guard never throttles (RequestMiddleware.UNLIMITED_PATHS).
_PROBE_PATHS = frozenset({"/healthcheck", "/readyz", "/metrics"})
_AUTHENTICATED = (401, 403, 429, 503)
_WITH_BODY = (400, 413, 415)

_PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "description": "RFC 9457 problem details.",
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string", "format": "uri"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"anyOf": [{"type": "string"}, {"type": "null"}]},
        "trace_id": {"anyOf": [{"type": "string"}, {"type": "null"}]},
        "request_id": {"anyOf": [{"type": "string"}, {"type": "null"}]},
    },
    "additionalProperties": True,
}
_VALIDATION_PROBLEM_SCHEMA: dict[str, Any] = {
    **_PROBLEM_SCHEMA,
    "title": "ValidationProblem",
    "description": "RFC 9457 problem details with the list of invalid fields.",
    "required": [*_PROBLEM_SCHEMA["required"], "errors"],
    "properties": {
        **_PROBLEM_SCHEMA["properties"],
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["loc", "msg", "type"],
                "properties": {
                    "loc": {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]}},
                    "msg": {"type": "string"},
                    "type": {"type": "string"},
                },
            },
        },
    },
}


def _header(description: str, *, required: bool = False) -> dict[str, Any]:
    return {"description": description, "required": required, "schema": {"type": "string"}}


_ID_HEADERS = {
    "X-Trace-Id": _header("The trace id (the caller's when safe, else generated).", required=True),
    "X-Request-Id": _header("The request id (the caller's when safe, else generated).", required=True),
}
_ETAG = _header("The customer's version, for If-Match.", required=True)

# Headers of success answers, by (operation id, status): (name, header object).
SUCCESS_HEADERS: dict[tuple[str, str], dict[str, dict[str, Any]]] = {
    ("create_customer", "201"): {"Location": _header("The new customer.", required=True), "ETag": _ETAG},
    ("get_customer", "200"): {"ETag": _ETAG},
    ("update_customer", "200"): {"ETag": _ETAG},
    ("add_tag", "201"): {"Location": _header("The new tag (when one tag was added).")},
    ("add_note", "201"): {"Location": _header("The new note.", required=True)},
    ("erase_customer", "204"): {"Location": _header("The erasure record.", required=True)},
    ("erase_user", "204"): {"Location": _header("The erasure record (when there were profiles).")},
    ("get_avatar", "200"): {"ETag": _header("The generated avatar's entity tag.", required=True)},
    ("get_avatar", "302"): {"Location": _header("The uploaded image.", required=True)},
    ("get_avatar", "304"): {"ETag": _header("The generated avatar's entity tag.", required=True)},
}


def _problem_response(status: int, description: str | None = None) -> dict[str, Any]:
    schema = VALIDATION_PROBLEM_REF if status == 422 else PROBLEM_REF
    return {
        "description": description or DESCRIPTIONS.get(status, "Error."),
        "content": {PROBLEM_JSON: {"schema": schema}},
    }


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: the problem answers this route can give besides the global ones."""
    return {status: _problem_response(status) for status in statuses}


def _is_fastapi_default(content: dict[str, Any] | None) -> bool:
    if not content:
        return True
    if set(content) != {"application/json"}:
        return False
    ref = content["application/json"].get("schema", {}).get("$ref", "")
    return ref.endswith("/HTTPValidationError") or not content["application/json"].get("schema")


def _post_process(schema: dict[str, Any]) -> None:
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    schemas["Problem"] = _PROBLEM_SCHEMA
    schemas["ValidationProblem"] = _VALIDATION_PROBLEM_SCHEMA
    for path, item in schema.get("paths", {}).items():
        for operation in item.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            responses: dict[str, Any] = operation["responses"]
            extra: list[int] = []
            if operation.get("security"):
                extra += _AUTHENTICATED
            if path not in _PROBE_PATHS:
                extra.append(429)
            if "requestBody" in operation:
                extra += _WITH_BODY
            if operation.get("parameters") or "requestBody" in operation:
                extra.append(422)
            # Idempotency-Key (core/idempotency.py): 409 while a request with the key runs, 422
            # for a key reused with another request (or malformed); declared by its dependency.
            idempotent = any(p.get("name") == "Idempotency-Key" for p in operation.get("parameters", ()))
            if idempotent:
                extra += (409, 422)
            for code in extra:
                responses.setdefault(str(code), _problem_response(code))
            for status, response in responses.items():
                if status.isdigit() and int(status) >= 400 and _is_fastapi_default(response.get("content")):
                    response["content"] = _problem_response(int(status))["content"]
                    if response.get("description") in (None, "", "Validation Error"):
                        response["description"] = DESCRIPTIONS.get(int(status), "Error.")
                headers = response.setdefault("headers", {})
                headers.update(SUCCESS_HEADERS.get((operation.get("operationId", ""), status), {}))
                if status == "409" and idempotent:
                    headers.setdefault("Retry-After", _header("Seconds to wait (an Idempotency-Key in progress)."))
                if status in ("429", "503"):
                    headers.setdefault("Retry-After", _header("Seconds to wait.", required=status == "429"))
                if status == "401":
                    headers.setdefault("WWW-Authenticate", _header("The bearer challenge.", required=True))
                headers.update(_ID_HEADERS)


def operation_id(route: APIRoute) -> str:
    """The operation id of a route: its function name (`get_customer`), short and stable."""
    return route.name


def install_openapi(app: FastAPI) -> None:
    """Name operations after their functions and replace `app.openapi` with the post-processed
    document (built once, on first use). Call before the routers are included."""
    app.router.generate_unique_id_function = operation_id
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = build()
        seen: set[str] = set()
        for item in schema.get("paths", {}).values():
            for operation in item.values():
                if isinstance(operation, dict) and "operationId" in operation:
                    if operation["operationId"] in seen:
                        raise ValueError(f"duplicate operation id {operation['operationId']!r}")
                    seen.add(operation["operationId"])
        _post_process(schema)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
