"""The one commit point: the request's session commits when the endpoint returns, before the answer.

A small app on the real database uses the service's own session dependencies, so what is tested
is exactly what every router gets.
"""

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from bee_customers_service.core.db import Database
from bee_customers_service.core.dependencies import ReadSessionDep, ReadTransactionDep, SessionDep
from bee_customers_service.core.errors import install_error_handlers
from tests.conftest import make_settings

# A foreign key checked only at COMMIT: a write that fails there, after the endpoint has returned.
_PROBE = "session_probe"


@pytest.fixture
async def probe_app(database_url: str, engine: AsyncEngine) -> AsyncIterator[FastAPI]:
    async with engine.begin() as connection:
        await connection.execute(text(f"DROP TABLE IF EXISTS {_PROBE}"))
        await connection.execute(
            text(
                f"CREATE TABLE {_PROBE} (id int PRIMARY KEY, parent int"
                f" REFERENCES {_PROBE}(id) DEFERRABLE INITIALLY DEFERRED)"
            )
        )
    app = FastAPI()
    install_error_handlers(app)
    settings = make_settings(database_url)
    app.state.settings = settings
    app.state.database = Database(database_url, settings)

    @app.post("/rows/{row_id}")
    async def write(row_id: int, session: SessionDep, parent: int | None = None) -> dict[str, Any]:
        await session.execute(text("INSERT INTO session_probe VALUES (:id, :parent)"), {"id": row_id, "parent": parent})
        return {"written": row_id}

    @app.post("/fail/{row_id}")
    async def write_then_fail(row_id: int, session: SessionDep) -> None:
        await session.execute(text("INSERT INTO session_probe VALUES (:id, NULL)"), {"id": row_id})
        raise RuntimeError("the endpoint failed after writing")

    @app.get("/read-commit")
    async def read_commit(session: ReadSessionDep) -> None:
        await session.commit()

    @app.get("/read-only-transaction")
    async def read_only_transaction(session: ReadTransactionDep) -> dict[str, Any]:
        return {"read_only": (await session.execute(text("SHOW transaction_read_only"))).scalar_one()}

    yield app
    await app.state.database.dispose()
    async with engine.begin() as connection:
        await connection.execute(text(f"DROP TABLE {_PROBE}"))


@pytest.fixture
async def probe(probe_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=probe_app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://probe") as client:
        yield client


async def _ids(engine: AsyncEngine) -> list[int]:
    async with engine.connect() as connection:
        return list((await connection.execute(text("SELECT id FROM session_probe ORDER BY id"))).scalars())


async def test_a_write_is_committed_when_the_endpoint_returns(probe, engine):
    assert (await probe.post("/rows/1")).json() == {"written": 1}
    assert await _ids(engine) == [1]


async def test_a_commit_that_fails_is_the_answer_not_a_2xx(probe, engine):
    # The endpoint returned normally; the deferred foreign key fails at COMMIT, before the answer.
    response = await probe.post("/rows/2", params={"parent": 999})
    assert response.status_code >= 500
    assert await _ids(engine) == []


async def test_an_endpoint_that_raises_leaves_nothing_written(probe, engine):
    response = await probe.post("/fail/3")
    assert response.status_code == 500
    assert await _ids(engine) == []


async def test_a_read_session_cannot_commit(probe):
    response = await probe.get("/read-commit")
    assert response.status_code == 500  # a programming error, caught by the tests of whoever wrote it


async def test_a_read_transaction_is_read_only(probe):
    assert (await probe.get("/read-only-transaction")).json() == {"read_only": "on"}
