"""Application factory: `create_app(settings)` wires config, database, auth, errors and routers."""

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import anyio
from fastapi import FastAPI

from bee_customers_service import __version__, health
from bee_customers_service.core.config import Settings, get_settings
from bee_customers_service.core.db import Database, resolve_database_url
from bee_customers_service.core.errors import install_error_handlers
from bee_customers_service.core.middleware import BodyLimitMiddleware, CorrelationIdMiddleware
from bee_customers_service.core.observability import configure_logging
from bee_customers_service.core.security import TokenVerifier
from bee_customers_service.customers.router import router as customers_router
from bee_customers_service.events.relay import events_readiness, relay_component

# A background component (the outbox relay, the activity consumer) is an async context manager
# factory: entered after the database is up, exited before it is disposed.
BackgroundFactory = Callable[[FastAPI], Any]
ReadinessReporter = Callable[[], Awaitable[dict[str, Any]]]


def _background_components(settings: Settings) -> list[BackgroundFactory]:
    """What runs beside the API in `serve`; each issue that adds a worker registers it here."""
    components: list[BackgroundFactory] = []
    # Events: /readyz reports the broker and the outbox backlog; the relay publishes the outbox.
    components.append(events_readiness)
    if settings.relay_enabled:
        components.append(relay_component)
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
            for factory in _background_components(settings):
                await stack.enter_async_context(factory(app))
            yield

    app = FastAPI(
        title="bee_customers_service",
        version=__version__,
        summary="Every business's view of its customers: profiles, tags, notes, history, statistics, GDPR.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.token_verifier = TokenVerifier(settings)
    app.state.readiness_reporters: dict[str, ReadinessReporter] = {}

    install_error_handlers(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_request_body_bytes)
    app.add_middleware(CorrelationIdMiddleware)  # added last = outermost: ids exist for everything

    app.include_router(health.router)
    app.include_router(customers_router)
    return app
