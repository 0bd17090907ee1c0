"""`Idempotency-Key` on every POST and PATCH (Stripe's semantics), as one mechanism: `IdempotentRoute`.

A router built with `APIRouter(route_class=IdempotentRoute)` wraps each of its POST and PATCH
endpoints: the wrapper adds one dependency (`claim_key`, which also declares the optional header in
the OpenAPI document) and sees the `Response` the endpoint returns (every route here builds its own).

- The key is the `Idempotency-Key` header, 1..255 printable ASCII characters (else 422 naming the
  header). It belongs to the caller (the token's subject): the same key from two callers is two keys.
- The fingerprint of a request is sha256(method, path, query, raw body bytes).
- Concurrency: `pg_try_advisory_xact_lock(hash(caller, key))` taken in the request's own transaction
  (the session `SessionDep` gives the route). A second request with the key while the first runs
  does not get the lock and is answered 409 `idempotency-key-in-progress` with `Retry-After: 1` at
  once: waiting would hold a pooled connection for as long as the first runs (up to the statement
  timeout), and a client that retries on 409 gets the replay a second later. The lock ends with the
  first transaction; PostgreSQL makes the commit visible before it releases the lock, so whoever
  takes it next sees the record.
- The record (status, body, Location/ETag/Content-Type) is written by the wrapper into that same
  session after the endpoint returns, so `core/db.get_session` commits the change and its record
  together: they cannot diverge. A retry with the same fingerprint is answered from the record with
  `Idempotent-Replayed: true`; another fingerprint is a 422 `idempotency-key-reused`.
- As Stripe does, the answer is stored once the endpoint has run, a refusal (a 4xx the service
  raised: 409, 412, 422 of a business rule) too: the wrapper rolls back what the endpoint wrote,
  takes the lock again and stores the problem answer, which get_session then commits alone.
  Refusals before the endpoint runs (validation, authentication, a customer not found by its
  loader) are not stored, and neither is a 5xx: its rollback releases the key, so a retry runs again.
- Routes that commit through a sessionmaker of their own (avatar upload) get the lock and the record
  in the `SessionDep` transaction beside theirs: the record commits just after their change. If that
  write fails, a retry runs again (what happens without a key).
- Records live `BEE_IDEMPOTENCY_TTL_HOURS` (24 h). An expired record is ignored and overwritten by
  the next use of its key; `idempotency_purge` (a background component of every process) deletes
  expired rows every `PURGE_INTERVAL_SECONDS`, an indexed DELETE that is harmless to run in parallel.
"""

import asyncio
import hashlib
import inspect
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from datetime import datetime
from functools import wraps
from typing import Annotated, Any

import structlog
from fastapi import Depends, FastAPI, Header, Request
from fastapi.routing import APIRoute
from sqlalchemy import DateTime, Integer, LargeBinary, Text, func, text
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import Mapped, mapped_column
from starlette.responses import Response

from bee_customers_service.core.db import Base
from bee_customers_service.core.dependencies import PrincipalDep, SessionDep
from bee_customers_service.core.errors import Conflict, DomainError, InvalidInput, domain_problem

log = structlog.get_logger(__name__)

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
KEY_PATTERN = r"^[\x20-\x7e]{1,255}$"
KEPT_HEADERS = ("location", "etag", "content-type")
IDEMPOTENT_METHODS = frozenset({"POST", "PATCH"})
PURGE_INTERVAL_SECONDS = 3600.0
_PARAMETER = "idempotency_claim_"


class IdempotencyRecord(Base):
    """The first answer to (caller, key), kept `BEE_IDEMPOTENCY_TTL_HOURS`."""

    __tablename__ = "idempotency_keys"

    caller: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    key: Mapped[str] = mapped_column(Text, primary_key=True)
    request_hash: Mapped[str] = mapped_column(Text, nullable=False)
    status: Mapped[int] = mapped_column(Integer, nullable=False)
    headers: Mapped[dict[str, str]] = mapped_column(JSONB, nullable=False)
    body: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False, index=True
    )


class IdempotencyKeyReused(InvalidInput):
    type_slug, title = "idempotency-key-reused", "Idempotency-Key reused"

    def __init__(self) -> None:
        super().__init__(HEADER, "this key was used for a different request", location="header")


class IdempotencyKeyInProgress(Conflict):
    type_slug, title = "idempotency-key-in-progress", "Idempotency-Key in progress"

    def __init__(self) -> None:
        super().__init__("A request with this Idempotency-Key is in progress; retry shortly.")
        self.headers = {"Retry-After": "1"}


@dataclass
class Claim:
    """A key this request holds (the advisory lock) or answers from (`replay`)."""

    session: AsyncSession
    caller: uuid.UUID
    key: str
    request_hash: str
    request: Request
    replay: Response | None = None

    async def lock(self) -> bool:
        """The advisory lock of (caller, key) for this transaction; False when another request holds it."""
        return bool(
            await self.session.scalar(
                text("SELECT pg_try_advisory_xact_lock(hashtextextended(:name, 0))"),
                {"name": f"idempotency:{self.caller}:{self.key}"},
            )
        )

    async def record(self, response: Response) -> None:
        body = getattr(response, "body", None)
        if response.status_code >= 500 or not isinstance(body, bytes):
            return  # server errors and streams are not stored (module docstring)
        headers = {name: response.headers[name] for name in KEPT_HEADERS if name in response.headers}
        await self.session.execute(
            text(
                "INSERT INTO idempotency_keys (caller, key, request_hash, status, headers, body)"
                " VALUES (:caller, :key, :hash, :status, CAST(:headers AS jsonb), :body)"
                " ON CONFLICT (caller, key) DO UPDATE SET request_hash = EXCLUDED.request_hash,"
                " status = EXCLUDED.status, headers = EXCLUDED.headers, body = EXCLUDED.body,"
                " created_at = now()"  # overwrites an expired record only: the lock guards live ones
            ),
            {
                "caller": self.caller,
                "key": self.key,
                "hash": self.request_hash,
                "status": response.status_code,
                "headers": json.dumps(headers),
                "body": body,
            },
        )


async def _fingerprint(request: Request) -> str:
    digest = hashlib.sha256()
    for part in (request.method, request.url.path, request.url.query):
        digest.update(part.encode())
        digest.update(b"\0")
    digest.update(await request.body())  # raw bytes: JSON and multipart alike
    return digest.hexdigest()


async def claim_key(
    request: Request,
    session: SessionDep,
    principal: PrincipalDep,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias=HEADER,
            min_length=1,
            max_length=255,
            pattern=KEY_PATTERN,
            description="Makes a retry safe: the first answer is replayed for 24 h (README 'Idempotency-Key').",
        ),
    ] = None,
) -> Claim | None:
    if idempotency_key is None:
        return None
    claim = Claim(session, principal.user_id, idempotency_key, await _fingerprint(request), request)
    if not await claim.lock():
        raise IdempotencyKeyInProgress()
    ttl_seconds = request.app.state.settings.idempotency_ttl_hours * 3600
    stored = (
        await session.execute(
            text(
                "SELECT request_hash, status, headers, body FROM idempotency_keys"
                " WHERE caller = :caller AND key = :key AND created_at > now() - make_interval(secs => :ttl)"
            ),
            {"caller": claim.caller, "key": claim.key, "ttl": ttl_seconds},
        )
    ).one_or_none()
    if stored is not None:
        if stored.request_hash != claim.request_hash:
            raise IdempotencyKeyReused()
        claim.replay = Response(
            content=bytes(stored.body),
            status_code=stored.status,
            headers={**stored.headers, REPLAYED_HEADER: "true"},
        )
    return claim


ClaimDep = Annotated[Claim | None, Depends(claim_key)]


def idempotent(endpoint: Callable[..., Awaitable[Response]]) -> Callable[..., Awaitable[Response]]:
    """The endpoint with the claim as one more (keyword) dependency: replay, or run and record."""
    if getattr(endpoint, "__idempotent__", False):
        return endpoint  # include_router builds the route again from the wrapped endpoint
    signature = inspect.signature(endpoint)
    extra = inspect.Parameter(_PARAMETER, inspect.Parameter.KEYWORD_ONLY, annotation=ClaimDep)

    @wraps(endpoint)
    async def wrapper(*args: Any, **kwargs: Any) -> Response:
        claim: Claim | None = kwargs.pop(_PARAMETER)
        if claim is not None and claim.replay is not None:
            return claim.replay
        try:
            response = await endpoint(*args, **kwargs)
        except DomainError as exc:
            if claim is None or exc.status >= 500:
                raise
            # A refusal is the answer to this key too: undo what the endpoint wrote, keep the answer.
            await claim.session.rollback()
            if not await claim.lock():  # the rollback released it, and another request took it
                raise IdempotencyKeyInProgress() from exc
            response = domain_problem(exc, claim.request)
        if claim is not None:
            await claim.record(response)
        return response

    wrapper.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[*signature.parameters.values(), extra]
    )
    wrapper.__idempotent__ = True  # type: ignore[attr-defined]
    return wrapper


class IdempotentRoute(APIRoute):
    """An APIRoute whose POST and PATCH endpoints honour `Idempotency-Key` (module docstring)."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        if IDEMPOTENT_METHODS.intersection(method.upper() for method in kwargs.get("methods") or ()):
            endpoint = idempotent(endpoint)
        super().__init__(path, endpoint, **kwargs)


async def purge_expired(engine: AsyncEngine, ttl_hours: float) -> int:
    """Delete records older than the TTL; one autocommit statement. Returns how many."""
    async with engine.execution_options(isolation_level="AUTOCOMMIT").connect() as connection:
        result = await connection.execute(
            text("DELETE FROM idempotency_keys WHERE created_at <= now() - make_interval(secs => :ttl)"),
            {"ttl": ttl_hours * 3600},
        )
    return int(getattr(result, "rowcount", 0) or 0)


@asynccontextmanager
async def idempotency_purge(app: FastAPI) -> AsyncIterator[None]:
    """Background component: purge expired records now and every `PURGE_INTERVAL_SECONDS`."""

    async def loop() -> None:
        while True:
            try:
                await purge_expired(app.state.database.engine, app.state.settings.idempotency_ttl_hours)
            except Exception as exc:  # the next round tries again; requests ignore expired rows anyway
                log.warning("idempotency_purge_failed", error=type(exc).__name__)
            await asyncio.sleep(PURGE_INTERVAL_SECONDS)

    task = asyncio.create_task(loop())
    try:
        yield
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task
