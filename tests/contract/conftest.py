"""A real server on a loopback port, and rows for every kind of id its operations take.

The contract tests talk HTTP to `bee-customers serve` as a generated client or a fuzzer would, so
what they check is the document and the answers a deployment really gives.
"""

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import JWT_SECRET, token_headers
from tests.services import free_port, wait_for_http

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class LiveApi:
    """A served app and one customer (with a tag and a note) whose ids bind the path parameters."""

    base_url: str
    business_id: uuid.UUID
    customer_id: str
    user_id: str
    tag_id: str
    note_id: str
    admin: dict[str, str]
    service: dict[str, str]
    # One token that passes every access rule for the customer above: itself, an admin of its
    # business and an internal service at once, so generated requests get past authorization.
    everything: dict[str, str]


@pytest.fixture(scope="session")
def live_api(settings, database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApi]:
    port = free_port()
    env = {
        **os.environ,
        "BEE_DATABASE_URL": database_url,
        "BEE_JWT_SECRET": JWT_SECRET,
        "BEE_RELAY_ENABLED": "false",
        "BEE_ACTIVITY_CONSUMER_ENABLED": "false",
        "BEE_LOG_LEVEL": "WARNING",
        "BEE_DATA_DIR": str(tmp_path_factory.mktemp("live-api-data")),
        # The fuzzer sends thousands of requests from one address and PATCHes one customer:
        # limits stay on (their code runs) but far above what the run reaches.
        "BEE_IP_RATE_LIMIT": "1000000/minute",
        "BEE_PATCH_RATE_LIMIT": "1000000/minute",
        "BEE_AVATAR_UPLOAD_RATE_LIMIT": "1000000/hour",
    }
    env.pop("BEE_RABBITMQ_URL", None)
    command = [sys.executable, "-m", "bee_customers_service.cli", "serve", "--port", str(port)]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{base_url}/readyz", process, timeout=60, interval=0.1, what="the server")
        business_id = uuid.uuid4()
        user_id = uuid.uuid4()
        admin = token_headers(settings, roles=["admin_manager"], business_ids=[business_id])
        service = token_headers(settings, roles=["service"])
        everything = token_headers(
            settings, roles=["customer", "admin_manager", "service"], sub=user_id, business_ids=[business_id]
        )
        with httpx.Client(base_url=base_url, timeout=10) as http:
            body = {
                "user_id": str(user_id),
                "business_id": str(business_id),
                "full_name": "Ioana Marinescu",
                "email": "ioana.marinescu@example.com",
                "phone": "+40712345678",
            }
            customer = http.post("/customers", json=body, headers=service)
            assert customer.status_code == 201, customer.text
            customer_id = customer.json()["id"]
            tag = http.post(f"/customers/{customer_id}/tags", json={"label": "VIP"}, headers=admin)
            assert tag.status_code == 201, tag.text
            note = http.post(f"/customers/{customer_id}/notes", json={"content": "Prefers mornings"}, headers=admin)
            assert note.status_code == 201, note.text
        yield LiveApi(
            base_url=base_url,
            business_id=business_id,
            customer_id=customer_id,
            user_id=str(user_id),
            tag_id=tag.json()["id"],
            note_id=note.json()["id"],
            admin=admin,
            service=service,
            everything=everything,
        )
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
