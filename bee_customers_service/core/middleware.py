"""The one ASGI middleware around every request: ids, per-IP guard, body limit, log line, metrics.

One layer instead of five: each ASGI layer costs a coroutine frame and a `send` wrapper per
request, and the Prometheus instrumentator's middleware alone built a Request, a Response and
walked every route to find the template again (bench/README.md, issue 10 profile). Written as raw
ASGI (not BaseHTTPMiddleware), so it adds no task and no buffering.

In request order:
1. correlation ids: `X-Trace-Id` / `X-Request-Id` read (generated when absent or unsafe), kept in
   context variables for logs, errors and outbox events, echoed on the response; the client's
   address and user agent are kept for audit lines (the address is the one uvicorn resolved: it
   applies X-Forwarded-For only from `BEE_TRUSTED_PROXIES`);
2. the global per-IP guard (`BEE_IP_RATE_LIMIT`), before any routing or body parsing; probes and
   scrapes are never throttled;
3. the body limit (`BEE_MAX_REQUEST_BODY_BYTES`): a declared Content-Length over it is refused up
   front, a chunked body is counted as it streams and cut off at the limit, never read into memory;
4. after the response: one log line (method, route template, status, duration_ms) and the
   request metrics, both by route template (`/customers/{customer_id}`), never the raw path, so
   ids stay out of logs and label sets.
"""

import time

import structlog
from fastapi import HTTPException
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bee_customers_service.core.context import (
    client_ip_var,
    request_id_var,
    sanitize_id,
    trace_id_var,
    user_agent_var,
)
from bee_customers_service.core.errors import domain_problem, problem, unexpected_problem
from bee_customers_service.core.observability import RequestMetrics
from bee_customers_service.core.ratelimit import RateLimited

request_log = structlog.get_logger("bee_customers_service.request")

# Probes and scrapes are never throttled: an orchestrator must always see the truth.
UNLIMITED_PATHS = frozenset({"/healthcheck", "/readyz", "/metrics"})


class _BodyTooLarge(HTTPException):
    """Raised from `receive`; an HTTPException so FastAPI's body parsing re-raises it untouched
    and the problem handler answers 413."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(status_code=413, detail=f"The request body exceeds {max_bytes} bytes.")


class RequestMiddleware:
    """Everything the service does around each HTTP request (the module docstring lists it)."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int, metrics: RequestMetrics) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        # One pass over the raw headers instead of a Headers object per concern.
        trace_header = request_header = agent = content_length = transfer_encoding = None
        for name, value in scope["headers"]:
            if name == b"x-trace-id":
                trace_header = value.decode("latin-1")
            elif name == b"x-request-id":
                request_header = value.decode("latin-1")
            elif name == b"user-agent":
                agent = value.decode("latin-1")[:256] or None
            elif name == b"content-length":
                content_length = value
            elif name == b"transfer-encoding":
                transfer_encoding = value
        trace_id = sanitize_id(trace_header)
        request_id = sanitize_id(request_header)
        client = scope.get("client")
        tokens = (
            trace_id_var.set(trace_id),
            request_id_var.set(request_id),
            client_ip_var.set(client[0] if client else None),
            user_agent_var.set(agent),
        )
        ids = [(b"x-trace-id", trace_id.encode()), (b"x-request-id", request_id.encode())]
        status = 500
        response_started = False

        async def send_with_ids(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status = message["status"]
                response_started = True
                message["headers"] = [*message.get("headers", ()), *ids]
            await send(message)

        try:
            refusal = await self._ip_guard(scope, client)
            if refusal is None and content_length is not None and content_length.isdigit():
                refusal = self._too_large(scope) if int(content_length) > self.max_body_bytes else None
            if refusal is not None:
                await refusal(scope, receive, send_with_ids)
                return
            # Without Content-Length the body (if any) is chunked: count it as it arrives. With
            # one, the server never hands over more than it declared, and it was checked above.
            if content_length is None and transfer_encoding is not None:
                receive = self._counting(receive)
            try:
                await self.app(scope, receive, send_with_ids)
            except _BodyTooLarge:
                if not response_started:
                    await self._too_large(scope)(scope, receive, send_with_ids)
            except Exception as exc:
                # The last line of defence, here rather than in Starlette's outer error middleware
                # so the answer still carries the ids (body and headers) and is logged safely.
                # Not re-raised: the server's own traceback would print the DBAPI message.
                if response_started:
                    unexpected_problem(exc, scope)  # logs; nothing more can be said to the client
                    return
                await unexpected_problem(exc, scope)(scope, receive, send_with_ids)
        finally:
            self._record(scope, status, time.perf_counter() - started)
            for var, token in zip((trace_id_var, request_id_var, client_ip_var, user_agent_var), tokens, strict=True):
                var.reset(token)

    def _record(self, scope: Scope, status: int, seconds: float) -> None:
        route = getattr(scope.get("route"), "path", None)
        request_log.info(
            "request",
            method=scope["method"],
            route=route or "unmatched",
            status=status,
            duration_ms=round(seconds * 1000, 2),
        )
        if route is not None:
            self.metrics.observe(route, scope["method"], status, seconds)

    async def _ip_guard(self, scope: Scope, client: tuple[str, int] | None) -> JSONResponse | None:
        state = scope["app"].state
        limit = state.settings.ip_rate_limit
        if limit is None or client is None or scope["path"] in UNLIMITED_PATHS or not state.rate_limiter.enabled:
            return None
        try:
            await state.rate_limiter.hit("ip", limit, client[0])
        except RateLimited as refused:
            return domain_problem(refused, None, instance=scope["path"])
        return None

    def _counting(self, receive: Receive) -> Receive:
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise _BodyTooLarge(self.max_body_bytes)
            return message

        return counting_receive

    def _too_large(self, scope: Scope) -> JSONResponse:
        response = problem(
            None,
            status=413,
            title="Payload too large",
            type_slug="payload-too-large",
            detail=f"The request body exceeds {self.max_body_bytes} bytes.",
            instance=scope.get("path"),
        )
        # The client may still be sending; tell it we are done with this connection.
        response.headers["Connection"] = "close"
        return response
