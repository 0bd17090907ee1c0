"""`make run` really serves: embedded PostgreSQL, migrations, the API on a free port."""

import os
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import httpx

from bee_customers_service.core.config import Settings
from bee_customers_service.core.security import mint_token
from tests.services import free_port, wait_for_http

ROOT = Path(__file__).resolve().parent.parent


def test_make_run_serves_with_embedded_postgres():
    port = free_port()
    data_dir = tempfile.mkdtemp(prefix="bee-make-run-")
    env = {k: v for k, v in os.environ.items() if not k.startswith("BEE_")}
    env["BEE_DATA_DIR"] = data_dir
    process = subprocess.Popen(
        ["make", "--no-print-directory", "run", f"PORT={port}"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{base_url}/healthcheck", process, timeout=120, interval=0.5, what="make run")
        dev = Settings(_env_file=None)  # type: ignore[call-arg]
        service = mint_token(dev, sub=uuid.uuid4(), roles=["service"])
        body = {
            "user_id": str(uuid.uuid4()),
            "business_id": str(uuid.uuid4()),
            "full_name": "Ștefan Popescu",
            "email": "stefan@example.com",
        }
        created = httpx.post(
            f"{base_url}/customers", json=body, headers={"Authorization": f"Bearer {service}"}, timeout=10
        )
        assert created.status_code == 201, created.text

        customer = created.json()
        business = uuid.UUID(body["business_id"])
        admin = mint_token(dev, sub=uuid.uuid4(), roles=["admin_business"], business_ids=[business])
        read = httpx.get(
            f"{base_url}/customers/{customer['id']}", headers={"Authorization": f"Bearer {admin}"}, timeout=10
        )
        assert read.status_code == 200
        assert read.json()["full_name"] == "Ștefan Popescu"
        assert (Path(data_dir) / "postgres" / "PG_VERSION").exists()
    finally:
        _stop_group(process)


def _stop_group(process: subprocess.Popen) -> None:
    """SIGTERM make and the server; wait until the server (and its embedded PostgreSQL) are gone."""
    os.killpg(process.pid, signal.SIGTERM)
    process.wait(timeout=30)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)
