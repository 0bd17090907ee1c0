"""One error family for the whole service, rendered as RFC 9457 application/problem+json.

Services raise `DomainError` subclasses; repositories never raise HTTP errors; the handlers
below turn every failure (domain, validation, routing, unexpected) into a problem document.
"""

import traceback
from http import HTTPStatus
from typing import Any
from uuid import UUID

import asyncpg
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Scope

from bee_customers_service.core.context import current_request_id, current_trace_id

PROBLEM_JSON = "application/problem+json"
PROBLEM_TYPE_BASE = "https://errors.beeconect.dev/customers/"

log = structlog.get_logger(__name__)


class DomainError(Exception):
    """A failure the client can understand and act on."""

    status: int = 400
    type_slug: str = "bad-request"
    title: str = "Bad request"

    def __init__(self, detail: str | None = None, **extra: Any) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.extra = extra
        self.headers: dict[str, str] = {}


class NotFound(DomainError):
    status, type_slug, title = 404, "not-found", "Not found"


class Conflict(DomainError):
    status, type_slug, title = 409, "conflict", "Conflict"


class PreconditionFailed(DomainError):
    status, type_slug, title = 412, "precondition-failed", "Precondition failed"


class PreconditionRequired(DomainError):
    status, type_slug, title = 428, "precondition-required", "Precondition required"


class Unauthorized(DomainError):
    status, type_slug, title = 401, "unauthorized", "Unauthorized"

    def __init__(self, detail: str | None = None, **extra: Any) -> None:
        super().__init__(detail, **extra)
        self.headers = {"WWW-Authenticate": 'Bearer realm="bee_customers_service"'}


class Forbidden(DomainError):
    status, type_slug, title = 403, "forbidden", "Forbidden"


class PayloadTooLarge(DomainError):
    status, type_slug, title = 413, "payload-too-large", "Payload too large"


class UnsupportedMediaType(DomainError):
    status, type_slug, title = 415, "unsupported-media-type", "Unsupported media type"


class InvalidInput(DomainError):
    """A 422 raised by a service for a rule the request schema cannot express."""

    status, type_slug, title = 422, "validation-error", "Validation failed"

    def __init__(self, field: str, message: str, *, location: str = "body") -> None:
        super().__init__(f"{field}: {message}")
        self.extra = {"errors": [{"loc": [location, field], "msg": message, "type": "value_error"}]}


class CustomerNotFound(NotFound):
    type_slug, title = "customer-not-found", "Customer not found"

    def __init__(self, customer_id: UUID | str) -> None:
        super().__init__(f"No customer with id {customer_id}")


def problem(
    request: Request | None,
    *,
    status: int,
    title: str | None = None,
    detail: str | None = None,
    type_slug: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    """Build an RFC 9457 problem response."""
    phrase = HTTPStatus(status).phrase
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_BASE + (type_slug or phrase.lower().replace(" ", "-")),
        "title": title or phrase,
        "status": status,
        "detail": detail or title or phrase,
        "instance": request.url.path if request is not None else None,
        "trace_id": current_trace_id(),
        "request_id": current_request_id(),
    }
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _jsonable_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    # Pydantic's raw errors may hold the offending input or exception objects; keep what a client
    # needs (where, what, which rule) and never echo the input back (it may be personal data).
    return [
        {"loc": list(err.get("loc", ())), "msg": str(err.get("msg", "")), "type": str(err.get("type", ""))}
        for err in exc.errors()
    ]


def domain_problem(exc: DomainError, request: Request | None, **extra: Any) -> JSONResponse:
    """The problem document of a DomainError (its status, title, detail, headers and extras)."""
    return problem(
        request,
        status=exc.status,
        title=exc.title,
        detail=exc.detail,
        type_slug=exc.type_slug,
        headers=exc.headers or None,
        **exc.extra,
        **extra,
    )


async def _domain_error_handler(request: Request, exc: DomainError) -> JSONResponse:
    return domain_problem(exc, request)


async def _validation_error_handler(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = _jsonable_errors(exc)
    if any(err["type"] == "json_invalid" for err in errors):
        return problem(
            request,
            status=400,
            title="Malformed JSON",
            type_slug="malformed-json",
            detail="The request body is not valid JSON.",
        )
    return problem(
        request,
        status=422,
        title="Validation failed",
        type_slug="validation-error",
        detail="The request has invalid or unknown fields.",
        errors=errors,
    )


async def _http_error_handler(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    detail = exc.detail if isinstance(exc.detail, str) else None
    return problem(request, status=exc.status_code, detail=detail, headers=getattr(exc, "headers", None))


# A database that does not answer: the client may retry shortly, it is not a bug of ours.
_ASYNCPG_UNAVAILABLE = (
    asyncpg.exceptions.PostgresConnectionError,  # 08xxx, ConnectionDoesNotExistError among them
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.TooManyConnectionsError,
)
# Local file errors are OSErrors too, and say nothing about the database.
_FILE_ERRORS = (FileNotFoundError, FileExistsError, PermissionError, IsADirectoryError, NotADirectoryError)
DATABASE_RETRY_AFTER_SECONDS = 1


class DatabaseUnavailable(Exception):
    """Raised (from the driver's error) where the database connection is known to be gone."""


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen and len(seen) < 10:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def is_database_unavailable(exc: BaseException) -> bool:
    """Whether a failure means the database does not answer (refused, gone, shut down, pool empty)."""
    for link in _chain(exc):
        if isinstance(link, (DatabaseUnavailable, sa_exc.TimeoutError, *_ASYNCPG_UNAVAILABLE)):
            return True
        if isinstance(link, sa_exc.DBAPIError) and link.connection_invalidated:
            return True
        if isinstance(link, OSError) and not isinstance(link, _FILE_ERRORS):
            return True
    return False


def _safe_frames(exc: BaseException, limit: int = 12) -> list[str]:
    """Where it failed (file:line function), without any exception message: DBAPI messages may hold
    SQL parameters or the offending values (`DETAIL: Key (email)=(...)`)."""
    frames = traceback.extract_tb(exc.__traceback__)[-limit:]
    return [f"{frame.filename}:{frame.lineno} {frame.name}" for frame in frames]


def unexpected_problem(exc: BaseException, scope: Scope) -> JSONResponse:
    """The last line of defence: log one line (ids, route, exception type; never values) and answer
    503 when the database does not answer, 500 otherwise."""
    route = getattr(scope.get("route"), "path", None) or "unmatched"
    method = scope.get("method")
    chain = [type(link).__name__ for link in _chain(exc)]
    if is_database_unavailable(exc):
        log.warning(
            "database_unavailable", route=route, method=method, error_type=type(exc).__name__, error_chain=chain
        )
        return problem(
            None,
            status=503,
            title="Database unavailable",
            type_slug="database-unavailable",
            detail="The database does not answer; retry shortly.",
            headers={"Retry-After": str(DATABASE_RETRY_AFTER_SECONDS)},
            instance=scope.get("path"),
        )
    log.error(
        "unhandled_error",
        route=route,
        method=method,
        error_type=type(exc).__name__,
        error_chain=chain,
        frames=_safe_frames(exc),
    )
    return problem(
        None, status=500, detail="An unexpected error occurred; it has been logged.", instance=scope.get("path")
    )


async def _unexpected_error_handler(request: Request, exc: Exception) -> JSONResponse:
    # Reached only for failures outside RequestMiddleware (which answers the others itself).
    return unexpected_problem(exc, request.scope)


def install_error_handlers(app: FastAPI) -> None:
    # Starlette types a handler as taking any Exception; each of these is registered for its own class.
    app.add_exception_handler(DomainError, _domain_error_handler)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation_error_handler)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_error_handler)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _unexpected_error_handler)
