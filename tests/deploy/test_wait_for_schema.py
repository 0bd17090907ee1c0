"""The API pods' init container (deploy/kubernetes/base/wait_for_schema.py) against real databases.

It must hold a pod back while the schema is behind the image (empty, or an older revision) and
let it start at the image's head, or past it (a later release already migrated, and an older
pod restarts mid-rollout). Run as the init container runs it: a process with the pod's settings.
"""

import asyncio
import importlib.util
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from types import ModuleType

import asyncpg
import pytest
from alembic.script import ScriptDirectory

from bee_customers_service.cli import alembic_config, run_migrations
from bee_customers_service.core.db import to_async_url
from tests.deploy.manifests import KUBERNETES
from tests.services import create_database, drop_database

SCRIPT = KUBERNETES / "base" / "wait_for_schema.py"
SECRETS = ("BEE_JWT_SECRET", "BEE_CURSOR_SECRET", "BEE_GDPR_FINGERPRINT_KEY")


@pytest.fixture(scope="module")
def wait_for_schema() -> ModuleType:
    spec = importlib.util.spec_from_file_location("wait_for_schema", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
async def empty_database(postgres_server: str) -> AsyncIterator[str]:
    name, url = await create_database(postgres_server, prefix="bee_schema")
    yield to_async_url(url)
    await drop_database(postgres_server, name)


def _script(url: str) -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config(url))


def _pod_environment(url: str) -> dict[str, str]:
    """The image's production settings with the variables a deployment must give."""
    environment = {key: value for key, value in os.environ.items() if not key.startswith("BEE_")}
    environment.update({name: f"{name.lower()}-0123456789abcdef0123456789abcdef" for name in SECRETS})
    environment.update(BEE_ENVIRONMENT="production", BEE_DATABASE_URL=url)
    return environment


async def test_an_empty_database_holds_the_pod_back(wait_for_schema, empty_database):
    revisions = await wait_for_schema.database_revisions(empty_database)
    assert revisions == set()
    assert not wait_for_schema.schema_is_current(revisions, _script(empty_database))


async def test_an_older_revision_holds_the_pod_back_until_the_job_has_migrated(wait_for_schema, empty_database):
    script = _script(empty_database)
    (head,) = script.get_heads()
    previous = script.get_revision(head).down_revision
    assert isinstance(previous, str)
    await asyncio.to_thread(run_migrations, empty_database, previous)
    revisions = await wait_for_schema.database_revisions(empty_database)
    assert revisions == {previous}
    assert not wait_for_schema.schema_is_current(revisions, script)
    await asyncio.to_thread(run_migrations, empty_database)  # what the migration Job does
    revisions = await wait_for_schema.database_revisions(empty_database)
    assert revisions == {head}
    assert wait_for_schema.schema_is_current(revisions, script)


async def test_a_schema_past_this_image_lets_an_older_pod_start(wait_for_schema, database_url):
    script = _script(database_url)
    connection = await asyncpg.connect(database_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        (current,) = [row["version_num"] for row in await connection.fetch("SELECT version_num FROM alembic_version")]
    finally:
        await connection.close()
    assert wait_for_schema.schema_is_current({current}, script)
    # A revision this image does not ship: a later release has migrated further.
    assert wait_for_schema.schema_is_current({"9999_from_a_later_release"}, script)


def test_the_init_container_exits_once_the_schema_is_at_head(database_url):
    result = subprocess.run(
        [sys.executable, str(SCRIPT)], env=_pod_environment(database_url), capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    (head,) = _script(database_url).get_heads()
    assert result.stdout.strip() == f"wait-for-schema: schema at {head}"


def test_the_init_container_keeps_waiting_on_an_unmigrated_database(empty_database):
    with subprocess.Popen(
        [sys.executable, str(SCRIPT)], env=_pod_environment(empty_database), stdout=subprocess.PIPE, text=True
    ) as process:
        try:
            assert process.stdout is not None
            first = process.stdout.readline()
            assert first.startswith("wait-for-schema: waiting for the migration Job")
            assert process.poll() is None  # still waiting, not failed
        finally:
            process.terminate()
            process.wait(timeout=30)
