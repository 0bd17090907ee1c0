"""Structured JSON logs (structlog) carrying the service name and the request's correlation ids."""

import logging
import sys
from typing import Any

import structlog

from bee_customers_service.core.config import Settings
from bee_customers_service.core.context import current_request_id, current_trace_id


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
        logger_factory=structlog.PrintLoggerFactory(sys.stdout),
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
    root.setLevel(logging.INFO)
