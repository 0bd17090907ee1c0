"""processed_events retention: keys older than the window are pruned, recent ones kept; the window must
outlast the consumer's retries."""

import uuid

import pytest
from pydantic import ValidationError
from sqlalchemy import text

from bee_customers_service.activity import service as activity_service
from tests.conftest import make_settings


async def _insert(engine, ages_days: dict[uuid.UUID, float]) -> None:
    async with engine.begin() as connection:
        for event_id, age in ages_days.items():
            await connection.execute(
                text(
                    "INSERT INTO processed_events (event_id, business_id, processed_at)"
                    " VALUES (:id, NULL, now() - make_interval(secs => :age))"
                ),
                {"id": event_id, "age": age * 86400},
            )


async def _present(engine, ids) -> set[uuid.UUID]:
    async with engine.connect() as connection:
        rows = await connection.execute(
            text("SELECT event_id FROM processed_events WHERE event_id = ANY(:ids)"), {"ids": list(ids)}
        )
        return set(rows.scalars())


async def test_keys_older_than_the_window_are_pruned_in_chunks_and_recent_ones_kept(app, engine, database_url):
    old = {uuid.uuid4(): 31 + i for i in range(7)}
    recent = {uuid.uuid4(): 29.5, uuid.uuid4(): 0.0}
    await _insert(engine, {**old, **recent})
    settings = make_settings(database_url, processed_events_retention_days=30)

    pruned = await activity_service.prune_processed_events(app.state.database.sessionmaker, settings=settings, chunk=3)

    assert pruned >= len(old)  # other tests' keys are recent: only what is older than 30 days goes
    assert await _present(engine, [*old, *recent]) == set(recent)


def test_the_window_must_outlast_the_consumers_retries(database_url):
    # 8 attempts x 10 s = 80 s of retries: a window of 60 s would let a retried message apply twice.
    with pytest.raises(ValidationError, match="BEE_PROCESSED_EVENTS_RETENTION_DAYS"):
        make_settings(database_url, processed_events_retention_days=60 / 86400)
    assert make_settings(database_url, processed_events_retention_days=1).processed_events_retention_days == 1
