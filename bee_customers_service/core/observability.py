"""Observability: structured JSON logs (structlog) with correlation ids, and Prometheus metrics."""

import hmac
import logging
import sys
from typing import Any

import orjson
import structlog
from fastapi import FastAPI, Request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from starlette.responses import Response

from bee_customers_service.core.config import Settings
from bee_customers_service.core.context import current_request_id, current_trace_id
from bee_customers_service.core.errors import Unauthorized
from bee_customers_service.core.metrics import render


def _add_correlation_ids(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    event_dict.setdefault("trace_id", current_trace_id())
    event_dict.setdefault("request_id", current_request_id())
    return event_dict


def _orjson_dumps(value: Any, **kwargs: Any) -> str:
    """structlog's serializer: orjson (several times faster than json.dumps on every request's line)."""
    return orjson.dumps(value, default=kwargs.get("default"), option=orjson.OPT_NON_STR_KEYS).decode()


def configure_logging(settings: Settings) -> None:
    """JSON lines on stdout: timestamp, level, service_name, trace_id, request_id, event fields."""
    service_name = settings.service_name

    def add_service_name(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
        event_dict["service_name"] = service_name
        return event_dict

    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        add_service_name,
        _add_correlation_ids,
    ]
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(serializer=_orjson_dumps),
        ],
        logger_factory=structlog.PrintLoggerFactory(),  # resolves sys.stdout per logger, not at import
        cache_logger_on_first_use=False,
    )
    # Route the standard library's loggers (uvicorn, sqlalchemy, aio-pika) through the same JSON.
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.JSONRenderer(),
            ],
        )
    )
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(settings.log_level)
    # uvicorn's own access log would repeat our request line without the correlation ids.
    logging.getLogger("uvicorn.access").disabled = True


class RequestMetrics:
    """`api_response_duration` (seconds, by route template and method) and `api_requests_total`
    (by route template, method and status), recorded by the request middleware.

    Labelled by route template, never the raw path, so customer ids cannot explode the label set;
    requests that matched no route are not recorded. The labelled children are looked up once per
    (route, method[, status]) and kept: `.labels()` takes a lock and builds a tuple every call.
    """

    BUCKETS = (0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
    UNRECORDED = frozenset({"/metrics"})

    def __init__(self, registry: CollectorRegistry) -> None:
        self._latency = Histogram(
            "api_response_duration",
            "Time to answer an API request, by route template and method, in seconds.",
            ("handler", "method"),
            buckets=self.BUCKETS,
            registry=registry,
        )
        self._requests = Counter(
            "api_requests_total",
            "API requests by route template, method and status.",
            ("handler", "method", "status"),
            registry=registry,
        )
        self._latency_children: dict[tuple[str, str], Any] = {}
        self._request_children: dict[tuple[str, str, int], Any] = {}

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        if route in self.UNRECORDED:
            return
        latency = self._latency_children.get((route, method))
        if latency is None:
            latency = self._latency_children[(route, method)] = self._latency.labels(route, method)
        requests = self._request_children.get((route, method, status))
        if requests is None:
            requests = self._request_children[(route, method, status)] = self._requests.labels(
                route, method, str(status)
            )
        latency.observe(seconds)
        requests.inc()


def install_metrics(app: FastAPI, settings: Settings) -> RequestMetrics:
    """`GET /metrics` (Prometheus): the process-wide counters plus this app's request metrics.

    When `BEE_METRICS_TOKEN` is set, scrapers must send it as a bearer token; the endpoint is left
    out of the public OpenAPI document either way. Returns the request metrics for the middleware.
    """
    registry = CollectorRegistry()  # per app: tests build many apps in one process
    request_metrics = RequestMetrics(registry)
    token = settings.metrics_token.get_secret_value() if settings.metrics_token else None

    @app.get("/metrics", include_in_schema=False)
    async def prometheus_metrics(request: Request) -> Response:
        if token is not None:
            sent = request.headers.get("authorization", "")
            if not hmac.compare_digest(sent.encode(), f"Bearer {token}".encode()):
                raise Unauthorized("Metrics need the metrics bearer token.")
        for refresh in request.app.state.metrics_refreshers:
            await refresh()
        return Response(render(registry), media_type=CONTENT_TYPE_LATEST)

    return request_metrics
