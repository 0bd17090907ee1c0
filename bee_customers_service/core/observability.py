"""Observability: structured JSON logs (structlog) with correlation ids, and Prometheus metrics."""

import hmac
import logging
import sys
from typing import Any

import structlog
from fastapi import FastAPI, Request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry
from prometheus_fastapi_instrumentator import Instrumentator, metrics
from starlette.responses import Response

from bee_customers_service.core.config import Settings
from bee_customers_service.core.context import current_request_id, current_trace_id
from bee_customers_service.core.errors import Unauthorized
from bee_customers_service.core.metrics import render


def _add_correlation_ids(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    event_dict.setdefault("trace_id", current_trace_id())
    event_dict.setdefault("request_id", current_request_id())
    return event_dict


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
        processors=[*shared, structlog.processors.format_exc_info, structlog.processors.JSONRenderer()],
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


def install_metrics(app: FastAPI, settings: Settings) -> None:
    """`GET /metrics` (Prometheus) and the per-route latency histogram `api_response_duration`.

    Request metrics are labelled by route template and method (never the raw path, so customer
    ids cannot explode the label set). When `BEE_METRICS_TOKEN` is set, scrapers must send it as a
    bearer token; the endpoint is left out of the public OpenAPI document either way.
    """
    registry = CollectorRegistry()
    instrumentator = Instrumentator(
        should_group_status_codes=False,
        should_ignore_untemplated=True,
        excluded_handlers=["/metrics"],
        registry=registry,
    )
    instrumentator.add(
        metrics.latency(
            metric_name="api_response_duration",
            metric_doc="Time to answer an API request, by route template and method, in seconds.",
            should_include_status=False,
            buckets=(0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
            registry=registry,
        )
    )
    instrumentator.add(metrics.requests(metric_name="api_requests_total", registry=registry))
    instrumentator.instrument(app)
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
