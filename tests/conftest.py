"""Test fixtures: a fresh PostgreSQL database per test session, the app, callers with tokens.

Every test works inside its own business (random UUIDs), so tests share one migrated database
without seeing each other's rows, and code that really commits (racing creates, the relay) is
tested as it runs in production.
"""

import asyncio
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from bee_customers_service.app import create_app
from bee_customers_service.cli import run_migrations
from bee_customers_service.core.config import Settings
from bee_customers_service.core.db import to_async_url
from bee_customers_service.core.security import mint_token
from tests.services import create_database, drop_database, postgres_server_url

JWT_SECRET = "test-secret-0123456789abcdef0123456789abcdef"
# Files the app writes (local avatars) go to a folder of this test session, removed at exit.
_DATA_DIR = tempfile.TemporaryDirectory(prefix="bee-test-data-")


@pytest.fixture(scope="session")
async def postgres_server() -> str:
    return await postgres_server_url()


@pytest.fixture(scope="session")
async def database_url(postgres_server: str) -> AsyncIterator[str]:
    """A database created for this session and migrated to head."""
    name, url = await create_database(postgres_server)
    await asyncio.to_thread(run_migrations, to_async_url(url))
    yield to_async_url(url)
    await drop_database(postgres_server, name)


def make_settings(database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "environment": "test",
        "jwt_secret": JWT_SECRET,
        "rabbitmq_url": None,
        "relay_enabled": False,
        "activity_consumer_enabled": False,
        "auth_consumer_enabled": False,
        "segment_refresh_seconds": 0,  # tests/activity/test_segments.py runs the refresh itself
        "database_pool_size": 5,
        # The whole suite comes from one client address: the per-IP guard has tests of its own.
        "ip_rate_limit": None,
        "data_dir": _DATA_DIR.name,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture(scope="session")
def settings(database_url: str) -> Settings:
    return make_settings(database_url)


class running_app:
    """Run an app's lifespan (startup/shutdown) around a block, as uvicorn would."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self._context = app.router.lifespan_context(app)

    async def __aenter__(self) -> Any:
        await self._context.__aenter__()
        return self.app

    async def __aexit__(self, *exc: object) -> None:
        await self._context.__aexit__(*exc)


def client_for(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")


@pytest.fixture(scope="session")
async def app(settings: Settings) -> AsyncIterator[Any]:
    application = create_app(settings)
    async with running_app(application):
        yield application


@pytest.fixture
async def client(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(app) as http:
        yield http


@pytest.fixture(scope="session")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """A separate engine for asserting what is stored, straight from the tables."""
    eng = create_async_engine(database_url, pool_size=2)
    yield eng
    await eng.dispose()


@dataclass(frozen=True)
class Caller:
    """A kind of caller and the Authorization header it sends."""

    user_id: uuid.UUID
    headers: dict[str, str]


def token_headers(
    settings: Settings,
    *,
    roles: list[str],
    sub: uuid.UUID | None = None,
    business_ids: list[uuid.UUID] | None = None,
    ttl: int = 3600,
) -> dict[str, str]:
    token = mint_token(settings, sub=sub or uuid.uuid4(), roles=roles, business_ids=business_ids or [], ttl_seconds=ttl)
    return {"Authorization": f"Bearer {token}"}


@dataclass
class World:
    """One business with callers of every kind around it."""

    settings: Settings
    business_id: uuid.UUID
    other_business_id: uuid.UUID

    def caller(
        self,
        roles: list[str],
        *,
        sub: uuid.UUID | None = None,
        business_ids: list[uuid.UUID] | None = None,
        ttl: int = 3600,
    ) -> Caller:
        user_id = sub or uuid.uuid4()
        return Caller(
            user_id, token_headers(self.settings, roles=roles, sub=user_id, business_ids=business_ids, ttl=ttl)
        )

    @cached_property
    def service(self) -> Caller:
        return self.caller(["service"])

    @cached_property
    def admin(self) -> Caller:
        return self.caller(["admin_business"], business_ids=[self.business_id])

    @cached_property
    def manager(self) -> Caller:
        return self.caller(["admin_manager"], business_ids=[self.business_id])

    @cached_property
    def other_admin(self) -> Caller:
        return self.caller(["admin_business"], business_ids=[self.other_business_id])

    def customer(self, user_id: uuid.UUID) -> Caller:
        return self.caller(["customer"], sub=user_id)

    profiles_made: int = 0

    def profile(self, **overrides: Any) -> dict[str, Any]:
        """A valid POST /customers body in this business; each one with its own email (one email per
        business), the first one Ana.Popescu@Email.com."""
        self.profiles_made += 1
        suffix = "" if self.profiles_made == 1 else f"+{self.profiles_made}"
        body: dict[str, Any] = {
            "user_id": str(uuid.uuid4()),
            "business_id": str(self.business_id),
            "full_name": "Ana Popescu",
            "email": f"Ana.Popescu{suffix}@Email.com",
            "phone": "+40712345678",
            "gender": "female",
        }
        body.update(overrides)
        return body

    async def create_customer(self, client: httpx.AsyncClient, **overrides: Any) -> dict[str, Any]:
        response = await client.post("/customers", json=self.profile(**overrides), headers=self.service.headers)
        assert response.status_code == 201, response.text
        return response.json()


@pytest.fixture
def world(settings: Settings) -> World:
    return World(settings=settings, business_id=uuid.uuid4(), other_business_id=uuid.uuid4())


@pytest.fixture
def fetch(engine: AsyncEngine) -> Callable[..., Any]:
    """Run a SQL query against the test database and return all rows as dicts."""

    async def run(sql: str, **params: Any) -> list[dict[str, Any]]:
        async with engine.connect() as connection:
            result = await connection.execute(text(sql), params)
            return [dict(row._mapping) for row in result]

    return run


# Test suites may share one Redis server: every key of this session carries its own prefix.
REDIS_SESSION_PREFIX = f"bee-test-{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def redis_prefix() -> AsyncIterator[str]:
    """A Redis key prefix of this test alone; its keys are removed afterwards."""
    import redis.asyncio

    from tests.services import REDIS_URL, require_service

    require_service("Redis", REDIS_URL, 6379)
    prefix = f"{REDIS_SESSION_PREFIX}-{uuid.uuid4().hex[:6]}"
    yield prefix
    client = redis.asyncio.Redis.from_url(REDIS_URL)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()
