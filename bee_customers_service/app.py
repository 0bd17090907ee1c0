"""Application factory: `create_app(settings)` wires config, database, auth, errors and routers."""

import gc
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import anyio
from fastapi import FastAPI

from bee_customers_service import __version__, health
from bee_customers_service.activity.consumer import activity_component
from bee_customers_service.activity.router import router as activity_router
from bee_customers_service.activity.segment_refresh import segment_refresh
from bee_customers_service.avatars.router import files_router as avatar_files_router
from bee_customers_service.avatars.router import router as avatars_router
from bee_customers_service.avatars.storage import storage_from_settings
from bee_customers_service.core.config import Settings, get_settings
from bee_customers_service.core.db import Database, resolve_database_url
from bee_customers_service.core.docs import install_docs
from bee_customers_service.core.errors import install_error_handlers
from bee_customers_service.core.idempotency import idempotency_purge
from bee_customers_service.core.middleware import RequestMiddleware
from bee_customers_service.core.observability import configure_logging, install_metrics
from bee_customers_service.core.openapi import install_openapi
from bee_customers_service.core.ratelimit import RateLimiter
from bee_customers_service.core.security import TokenVerifier
from bee_customers_service.customers.router import router as customers_router
from bee_customers_service.events.readiness import events_readiness
from bee_customers_service.events.relay import relay_component
from bee_customers_service.gdpr.router import router as gdpr_router
from bee_customers_service.identity.consumer import identity_component
from bee_customers_service.notes.router import router as notes_router
from bee_customers_service.search.router import router as search_router
from bee_customers_service.tags.router import router as tags_router

# A background component (the outbox relay, the activity consumer) is an async context manager
# factory: entered after the database is up, exited before it is disposed.
BackgroundFactory = Callable[[FastAPI], Any]
ReadinessReporter = Callable[[], Awaitable[dict[str, Any]]]


def _background_components(settings: Settings) -> list[BackgroundFactory]:
    """What runs beside the API in `serve`; each issue that adds a worker registers it here."""
    components: list[BackgroundFactory] = []
    # Events: /readyz reports the broker and the outbox backlog; the relay publishes the outbox.
    components.append(events_readiness)
    # Idempotency-Key records: expired ones are deleted periodically (core/idempotency.py).
    components.append(idempotency_purge)
    if settings.relay_enabled:
        components.append(relay_component)
    if settings.activity_consumer_enabled and settings.rabbitmq_url:
        components.append(activity_component)
    if settings.auth_consumer_enabled and settings.rabbitmq_url:
        components.append(identity_component)
    # The stored RFM segments: refreshed periodically, by one replica at a time (activity/segment_refresh.py).
    if settings.segment_refresh_seconds:
        components.append(segment_refresh)
    return components


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Starting an embedded PostgreSQL blocks for a few seconds: keep it off the event loop.
        url = await anyio.to_thread.run_sync(resolve_database_url, settings)
        app.state.database = Database(url, settings)
        async with AsyncExitStack() as stack:
            stack.push_async_callback(app.state.database.dispose)
            stack.push_async_callback(app.state.rate_limiter.close)
            for factory in _background_components(settings):
                await stack.enter_async_context(factory(app))
            # Everything built so far (modules, models, routes, the pool) lives as long as the
            # process: move it out of the collector's reach. A full collection over it stops the
            # worker long enough to be a latency spike for every request in flight (bench/README.md).
            gc.collect()
            gc.freeze()
            try:
                yield
            finally:
                gc.unfreeze()  # a process that builds several apps (the tests) can free this one

    app = FastAPI(
        title="bee_customers_service",
        version=__version__,
        summary="Every business's view of its customers: profiles, tags, notes, history, statistics, GDPR.",
        lifespan=lifespan,
        docs_url=None,  # /docs and /redoc: core/docs.py, with their assets served here (offline)
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.token_verifier = TokenVerifier(settings)
    readiness_reporters: dict[str, ReadinessReporter] = {}
    app.state.readiness_reporters = readiness_reporters
    # Async callables run before each /metrics scrape to refresh gauges (e.g. the outbox backlog).
    metrics_refreshers: list[Callable[[], Awaitable[None]]] = []
    app.state.metrics_refreshers = metrics_refreshers
    # The pool's gauges and `service_ready` (deploy/prometheus/alerts.yaml) read the database of
    # the running lifespan, so they are looked up at each scrape.
    metrics_refreshers.append(lambda: app.state.database.record_pool_metrics())
    metrics_refreshers.append(lambda: health.record_readiness(app))
    app.state.rate_limiter = RateLimiter(settings)
    app.state.avatar_storage = storage_from_settings(settings)

    install_error_handlers(app)
    install_openapi(app)
    install_docs(app)
    request_metrics = install_metrics(app, settings)
    app.add_middleware(RequestMiddleware, max_body_bytes=settings.max_request_body_bytes, metrics=request_metrics)

    app.include_router(health.router)
    app.include_router(search_router)  # first: GET /customers/export before /customers/{customer_id}
    app.include_router(customers_router)
    app.include_router(gdpr_router)
    app.include_router(avatars_router)
    if settings.avatar_storage == "local":
        app.include_router(avatar_files_router)
    app.include_router(activity_router)
    app.include_router(tags_router)
    app.include_router(notes_router)
    return app
