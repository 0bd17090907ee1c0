"""Pure ASGI middlewares: correlation ids and the request body limit.

Written as raw ASGI (not BaseHTTPMiddleware) so they add no task or buffering per request.
"""

import time

import structlog
from fastapi import HTTPException
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bee_customers_service.core.context import (
    client_ip_var,
    request_id_var,
    sanitize_id,
    trace_id_var,
    user_agent_var,
)
from bee_customers_service.core.errors import problem

request_log = structlog.get_logger("bee_customers_service.request")


class CorrelationIdMiddleware:
    """Reads `X-Trace-Id` / `X-Request-Id` (generated when absent) and echoes them back.

    Also remembers the client's address and user agent for audit lines. The address is the one
    the server resolved (uvicorn applies X-Forwarded-For only from `BEE_TRUSTED_PROXIES`).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        trace_id = sanitize_id(headers.get("x-trace-id"))
        request_id = sanitize_id(headers.get("x-request-id"))
        trace_token = trace_id_var.set(trace_id)
        request_token = request_id_var.set(request_id)
        client = scope.get("client")
        ip_token = client_ip_var.set(client[0] if client else None)
        agent_token = user_agent_var.set((headers.get("user-agent") or "")[:256] or None)

        async def send_with_ids(message: Message) -> None:
            if message["type"] == "http.response.start":
                response_headers = MutableHeaders(scope=message)
                response_headers["X-Trace-Id"] = trace_id
                response_headers["X-Request-Id"] = request_id
            await send(message)

        try:
            await self.app(scope, receive, send_with_ids)
        finally:
            trace_id_var.reset(trace_token)
            request_id_var.reset(request_token)
            client_ip_var.reset(ip_token)
            user_agent_var.reset(agent_token)


class RequestLogMiddleware:
    """One structured line per request: method, route template, status, duration_ms.

    The route template (`/customers/{customer_id}`), never the raw path, so ids stay out of logs.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            route = scope.get("route")
            request_log.info(
                "request",
                method=scope["method"],
                route=getattr(route, "path", None) or "unmatched",
                status=status,
                duration_ms=round((time.perf_counter() - started) * 1000, 2),
            )


class _BodyTooLarge(HTTPException):
    """Raised from `receive`; an HTTPException so FastAPI's body parsing re-raises it untouched
    and the problem handler answers 413."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(status_code=413, detail=f"The request body exceeds {max_bytes} bytes.")


class BodyLimitMiddleware:
    """Refuses request bodies over `max_bytes` with 413, without reading them into memory.

    A declared Content-Length is refused up front; a chunked body is counted as it streams and
    cut off at the limit.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(scope, receive, send)
            return

        received = 0
        response_started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _BodyTooLarge(self.max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _BodyTooLarge:
            if not response_started:
                await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem(
            None,
            status=413,
            title="Payload too large",
            type_slug="payload-too-large",
            detail=f"The request body exceeds {self.max_bytes} bytes.",
            instance=scope.get("path"),
        )
        # The client may still be sending; tell it we are done with this connection.
        response.headers["Connection"] = "close"
        await response(scope, receive, send)
