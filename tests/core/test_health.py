"""Liveness and readiness probes."""

import gc

from bee_customers_service.app import create_app
from tests.conftest import client_for, make_settings, running_app
from tests.services import free_port


async def test_healthcheck_is_ok(client):
    response = await client.get("/healthcheck")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz_checks_the_database(client):
    response = await client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["checks"]["database"]["status"] == "up"


async def test_readyz_is_503_when_database_does_not_answer():
    closed = f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/nothing"
    app = create_app(make_settings(closed))
    async with running_app(app), client_for(app) as http:
        ready = await http.get("/readyz")
        alive = await http.get("/healthcheck")
    assert ready.status_code == 503
    assert ready.json()["checks"]["database"]["status"] == "down"
    assert alive.status_code == 200  # liveness does no I/O: a database outage must not restart pods


async def test_a_started_app_keeps_its_start_up_objects_out_of_the_collector(database_url):
    """gc.freeze() after start-up: a full collection no longer walks the app's long-lived objects."""
    app = create_app(make_settings(database_url))
    async with running_app(app):
        assert gc.get_freeze_count() > 0
    assert gc.get_freeze_count() == 0
