"""The S3 backend against a real S3-compatible server (SeaweedFS on loopback)."""

import hashlib
import uuid
from contextlib import asynccontextmanager

import httpx
import pytest

from bee_customers_service.app import create_app
from tests.avatars import crafted
from tests.conftest import client_for, make_settings, running_app
from tests.s3server import create_bucket


@pytest.fixture(scope="session")
def bucket(s3_server):
    name = f"bee-test-{uuid.uuid4().hex[:12]}"
    create_bucket(s3_server.client(), name)
    return name


def _s3_settings(database_url, s3_server, bucket, **overrides):
    return make_settings(
        database_url,
        avatar_storage="s3",
        s3_bucket=bucket,
        s3_endpoint_url=s3_server.endpoint_url,
        s3_region=s3_server.region,
        s3_access_key_id=s3_server.access_key_id,
        s3_secret_access_key=s3_server.secret_access_key,
        **overrides,
    )


@asynccontextmanager
async def _client(settings):
    app = create_app(settings)
    async with running_app(app), client_for(app) as client:
        yield client


def _exists(s3, bucket, key):
    from botocore.exceptions import ClientError

    try:
        s3.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        assert exc.response["Error"]["Code"] in ("404", "NoSuchKey", "NotFound")
        return False
    return True


async def _upload(client, customer, caller, data):
    response = await client.post(
        f"/customers/{customer['id']}/avatar", files={"file": ("a.webp", data, "image/webp")}, headers=caller.headers
    )
    assert response.status_code == 200, response.text
    return response.json()


async def test_upload_writes_the_object_and_redirects_to_it(database_url, world, s3_server, bucket):
    s3 = s3_server.client()
    async with _client(_s3_settings(database_url, s3_server, bucket)) as client:
        customer = await world.create_customer(client)
        me = world.customer(uuid.UUID(customer["user_id"]))

        body = await _upload(client, customer, me, crafted.webp())

        url = body["avatar_url"]
        prefix = f"{s3_server.endpoint_url}/{bucket}/"
        assert url.startswith(prefix)
        key = url[len(prefix) :]
        assert key.startswith(f"avatars/{world.business_id}/{customer['id']}/") and key.endswith(".webp")
        stored = s3.get_object(Bucket=bucket, Key=key)
        data = stored["Body"].read()
        assert stored["ContentType"] == "image/webp"
        assert stored["CacheControl"] == "public, max-age=31536000, immutable"
        assert key.rsplit("/", 1)[1] == f"{hashlib.sha256(data).hexdigest()}.webp"

        redirect = await client.get(f"/customers/{customer['id']}/avatar", headers=me.headers)
        assert redirect.status_code == 302
        assert redirect.headers["location"] == url
        async with httpx.AsyncClient() as browser:  # follow it like a browser would, over loopback
            served = await browser.get(url)
        assert served.status_code == 200
        assert served.content == data
        # With S3 the app does not serve files itself.
        assert (await client.get("/" + key)).status_code == 404


async def test_replacing_and_deleting_remove_the_objects(database_url, world, s3_server, bucket, fetch):
    s3 = s3_server.client()
    prefix = f"{s3_server.endpoint_url}/{bucket}/"
    async with _client(_s3_settings(database_url, s3_server, bucket)) as client:
        customer = await world.create_customer(client)

        first = (await _upload(client, customer, world.admin, crafted.png(32, 32)))["avatar_url"]
        second = (await _upload(client, customer, world.admin, crafted.png(48, 48)))["avatar_url"]

        assert not _exists(s3, bucket, first[len(prefix) :])
        assert _exists(s3, bucket, second[len(prefix) :])

        deleted = await client.delete(f"/customers/{customer['id']}/avatar", headers=world.admin.headers)
        assert deleted.status_code == 204
        assert not _exists(s3, bucket, second[len(prefix) :])
        [row] = await fetch("SELECT avatar_url FROM customers WHERE id = :c", c=uuid.UUID(customer["id"]))
        assert row["avatar_url"] is None


async def test_public_base_url_names_the_cdn(database_url, world, s3_server, bucket):
    s3 = s3_server.client()
    cdn = "https://cdn.example.test/img"
    async with _client(_s3_settings(database_url, s3_server, bucket, avatar_public_base_url=cdn + "/")) as client:
        customer = await world.create_customer(client)

        first = (await _upload(client, customer, world.admin, crafted.png(32, 32)))["avatar_url"]
        assert first.startswith(f"{cdn}/avatars/{world.business_id}/{customer['id']}/")
        key = first[len(cdn) + 1 :]
        assert _exists(s3, bucket, key)

        await _upload(client, customer, world.admin, crafted.png(48, 48))
        assert not _exists(s3, bucket, key)  # the CDN URL still maps back to its object


async def test_an_unreachable_store_answers_503_and_changes_nothing(database_url, world, s3_server, bucket, fetch):
    from tests.services import free_port

    settings = _s3_settings(database_url, s3_server, bucket).model_copy(
        update={"s3_endpoint_url": f"http://127.0.0.1:{free_port()}"}
    )
    async with _client(settings) as client:
        customer = await world.create_customer(client)
        response = await client.post(
            f"/customers/{customer['id']}/avatar",
            files={"file": ("a.png", crafted.png(), "image/png")},
            headers=world.admin.headers,
        )
        assert response.status_code == 503
        assert response.headers["content-type"] == "application/problem+json"
        [row] = await fetch("SELECT avatar_url FROM customers WHERE id = :c", c=uuid.UUID(customer["id"]))
        assert row["avatar_url"] is None
