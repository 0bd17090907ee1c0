"""Fixtures of the search tests."""

from typing import Any

import pytest
from sqlalchemy import text


@pytest.fixture
def execute(engine):
    """Run one SQL statement in its own committed transaction (test data the API cannot write)."""

    async def run(sql: str, **params: Any) -> None:
        async with engine.begin() as connection:
            await connection.execute(text(sql), params)

    return run
