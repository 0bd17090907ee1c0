"""POST /customers/{id}/avatar on the local backend: what is accepted, what is refused, what is stored."""

import hashlib
import io
import uuid

import pytest
from PIL import Image

from tests.avatars import crafted

MiB = 1024 * 1024


def _upload(client, customer, caller, data, *, filename="avatar.bin", content_type="application/octet-stream"):
    return client.post(
        f"/customers/{customer['id']}/avatar",
        files={"file": (filename, data, content_type)},
        headers=caller.headers,
    )


async def _avatar_events(fetch, customer_id):
    rows = await fetch(
        "SELECT payload FROM outbox WHERE customer_id = :c AND event_name = 'v1.customer.avatar_updated' ORDER BY id",
        c=uuid.UUID(customer_id),
    )
    return [row["payload"] for row in rows]


async def _stored_avatar_url(fetch, customer_id):
    [row] = await fetch("SELECT avatar_url FROM customers WHERE id = :c", c=uuid.UUID(customer_id))
    return row["avatar_url"]


def _stored_files(app, customer):
    root = app.state.avatar_storage.root / "avatars" / customer["business_id"] / customer["id"]
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


@pytest.mark.parametrize(
    ("make", "ext", "content_type", "pillow_format"),
    [
        (crafted.jpeg, "jpg", "image/jpeg", "JPEG"),
        (crafted.png, "png", "image/png", "PNG"),
        (crafted.webp, "webp", "image/webp", "WEBP"),
        (crafted.png_with_alpha, "png", "image/png", "PNG"),
    ],
)
async def test_each_accepted_type_is_stored_and_served(client, world, fetch, make, ext, content_type, pillow_format):
    customer = await world.create_customer(client)
    me = world.customer(uuid.UUID(customer["user_id"]))

    response = await _upload(client, customer, me, make())

    assert response.status_code == 200, response.text
    body = response.json()
    url = body["avatar_url"]
    assert body["content_type"] == content_type
    assert (body["width"], body["height"]) == (64, 48)
    assert body["version"] == 2
    assert url.startswith(f"/avatars/{world.business_id}/{customer['id']}/") and url.endswith(f".{ext}")
    assert await _stored_avatar_url(fetch, customer["id"]) == url

    redirect = await client.get(f"/customers/{customer['id']}/avatar", headers=me.headers)
    assert redirect.status_code == 302
    assert redirect.headers["location"] == url

    served = await client.get(url)  # public, like a CDN: no token
    assert served.status_code == 200
    assert served.headers["content-type"] == content_type
    assert served.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert served.headers["x-content-type-options"] == "nosniff"
    assert len(served.content) == body["size_bytes"]
    # Content addressed: the name is the SHA-256 of the stored bytes.
    assert url.rsplit("/", 1)[1] == f"{hashlib.sha256(served.content).hexdigest()}.{ext}"
    assert Image.open(io.BytesIO(served.content)).format == pillow_format

    profile = await client.get(f"/customers/{customer['id']}", headers=me.headers)
    assert profile.json()["avatar_url"] == url


async def test_upload_emits_updated_and_avatar_updated_events(client, world, fetch):
    customer = await world.create_customer(client)
    admin = world.admin

    url = (await _upload(client, customer, admin, crafted.png())).json()["avatar_url"]

    [event] = await _avatar_events(fetch, customer["id"])
    assert event["customer_id"] == customer["id"]
    assert event["old_avatar_url"] is None
    assert event["new_avatar_url"] == url
    assert event["updated_by"] == str(admin.user_id)
    assert event["business_id"] == str(world.business_id)
    [updated] = await fetch(
        "SELECT payload FROM outbox WHERE customer_id = :c AND event_name = 'v1.customer.updated'",
        c=uuid.UUID(customer["id"]),
    )
    assert updated["payload"]["fields_changed"] == ["avatar_url"]


async def test_type_comes_from_the_bytes_not_the_name_or_declared_type(client, world):
    """A PNG called photo.jpg and declared image/jpeg is accepted, as the PNG it is."""
    customer = await world.create_customer(client)

    response = await _upload(
        client, customer, world.admin, crafted.png(), filename="photo.jpg", content_type="image/jpeg"
    )

    assert response.status_code == 200, response.text
    assert response.json()["content_type"] == "image/png"
    assert response.json()["avatar_url"].endswith(".png")


@pytest.mark.parametrize(
    ("data", "status", "slug"),
    [
        pytest.param(crafted.truncated_jpeg(), 415, "unsupported-image", id="truncated-jpeg"),
        pytest.param(crafted.jpeg_header_with_html(), 415, "unsupported-image", id="polyglot-jpeg-header-html"),
        pytest.param(b"hello, I am a text file\n" * 10, 415, "unsupported-image", id="text-file"),
        pytest.param(crafted.encode(Image.new("RGB", (8, 8)), "GIF"), 415, "unsupported-image", id="gif"),
        pytest.param(
            b"<svg xmlns='http://www.w3.org/2000/svg'><script>1</script></svg>", 415, "unsupported-image", id="svg"
        ),
        pytest.param(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, 415, "unsupported-image", id="png-magic-only"),
        pytest.param(crafted.png_bomb(), 422, "image-too-large", id="png-bomb-20000x20000"),
        pytest.param(crafted.png(4097, 8), 422, "image-too-large", id="wider-than-4096"),
        pytest.param(crafted.png(8, 4097), 422, "image-too-large", id="taller-than-4096"),
        pytest.param(b"", 422, "validation-error", id="empty-file"),
    ],
)
async def test_rejected_files_leave_the_customer_unchanged(client, world, fetch, app, data, status, slug):
    customer = await world.create_customer(client)

    response = await _upload(client, customer, world.admin, data, filename="avatar.jpg", content_type="image/jpeg")

    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"].endswith("/" + slug)
    assert await _stored_avatar_url(fetch, customer["id"]) is None
    assert await _avatar_events(fetch, customer["id"]) == []
    assert _stored_files(app, customer) == []


async def test_empty_file_names_the_field(client, world):
    customer = await world.create_customer(client)
    response = await _upload(client, customer, world.admin, b"")
    assert response.json()["errors"][0]["loc"] == ["body", "file"]


async def test_image_of_exactly_4096_pixels_is_accepted(client, world):
    customer = await world.create_customer(client)
    response = await _upload(client, customer, world.admin, crafted.png(4096, 4))
    assert response.status_code == 200, response.text
    assert (response.json()["width"], response.json()["height"]) == (4096, 4)


async def test_jpeg_with_appended_zip_is_stored_without_the_payload(client, world):
    """A real JPEG carrying a ZIP after its end: the pixels are kept, the payload is not."""
    customer = await world.create_customer(client)
    polyglot = crafted.jpeg_with_zip_appended()

    response = await _upload(client, customer, world.admin, polyglot)

    assert response.status_code == 200, response.text
    stored = (await client.get(response.json()["avatar_url"])).content
    assert b"PK\x03\x04" not in stored
    assert b"payload.html" not in stored
    assert Image.open(io.BytesIO(stored)).format == "JPEG"


async def test_exactly_one_mebibyte_is_accepted(client, world):
    customer = await world.create_customer(client)
    data = crafted.png_of_exact_size(MiB)
    assert len(data) == MiB

    response = await _upload(client, customer, world.admin, data)

    assert response.status_code == 200, response.text


async def test_one_mebibyte_and_one_byte_is_refused_with_413(client, world, fetch):
    customer = await world.create_customer(client)
    data = crafted.png_of_exact_size(MiB + 1)

    response = await _upload(client, customer, world.admin, data)

    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["max_bytes"] == MiB
    assert await _stored_avatar_url(fetch, customer["id"]) is None


class _CountingBody:
    """A multipart body streamed chunk by chunk, counting how much the server pulled."""

    def __init__(self, file_bytes: int, chunk: int = 64 * 1024) -> None:
        self.boundary = "bee-boundary-" + uuid.uuid4().hex
        self.file_bytes = file_bytes
        self.chunk = chunk
        self.pulled = 0

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    async def __aiter__(self):
        head = (
            f'--{self.boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.png"\r\n'
            "Content-Type: image/png\r\n\r\n"
        ).encode()
        self.pulled += len(head)
        yield head
        sent = 0
        while sent < self.file_bytes:
            piece = min(self.chunk, self.file_bytes - sent)
            data = b"\x00" * piece
            if sent == 0:
                data = (b"\x89PNG\r\n\x1a\n" + data)[:piece]  # looks like a PNG, is 50 MB of zeros
            sent += piece
            self.pulled += piece
            yield data
        tail = f"\r\n--{self.boundary}--\r\n".encode()
        self.pulled += len(tail)
        yield tail


async def test_a_50_mb_chunked_upload_is_cut_off_at_the_limit(client, world):
    customer = await world.create_customer(client)
    body = _CountingBody(50 * 1000 * 1000)

    response = await client.post(
        f"/customers/{customer['id']}/avatar",
        content=body,
        headers={**world.admin.headers, "Content-Type": body.content_type},
    )

    assert response.status_code == 413
    assert response.headers["connection"] == "close"
    # Read up to the limit (and the chunk that crossed it), never the 50 MB.
    assert body.pulled <= MiB + 16 * 1024 + body.chunk


async def test_a_declared_content_length_over_the_limit_is_refused_before_reading(client, world):
    customer = await world.create_customer(client)
    body = _CountingBody(int(1.5 * MiB))  # under the global 2 MiB body limit, over the avatar limit

    response = await client.post(
        f"/customers/{customer['id']}/avatar",
        content=body,
        headers={
            **world.admin.headers,
            "Content-Type": body.content_type,
            "Content-Length": str(int(1.5 * MiB) + 200),
        },
    )

    assert response.status_code == 413
    assert body.pulled == 0


async def test_unauthorised_callers_are_refused_before_the_body_is_read(client, world):
    customer = await world.create_customer(client)
    body = _CountingBody(512 * 1024)

    response = await client.post(
        f"/customers/{customer['id']}/avatar",
        content=body,
        headers={**world.other_admin.headers, "Content-Type": body.content_type},
    )

    assert response.status_code == 404
    assert body.pulled == 0


@pytest.mark.parametrize(
    ("make", "pillow_format"),
    [(crafted.jpeg_with_gps, "JPEG"), (crafted.png_with_gps, "PNG"), (crafted.webp_with_gps, "WEBP")],
)
async def test_exif_and_gps_are_gone_from_the_stored_bytes(client, world, make, pillow_format):
    customer = await world.create_customer(client)
    original = make()
    assert b"SpyCam 3000" in original  # the crafted file does carry the metadata
    assert Image.open(io.BytesIO(original)).getexif().get_ifd(crafted.GPS_IFD)

    response = await _upload(client, customer, world.admin, original)

    assert response.status_code == 200, response.text
    stored = (await client.get(response.json()["avatar_url"])).content
    image = Image.open(io.BytesIO(stored))
    assert image.format == pillow_format
    assert dict(image.getexif()) == {}
    assert b"SpyCam 3000" not in stored
    assert b"Exif\x00\x00" not in stored
    assert b"GPSLatitude" not in stored and b"xmpmeta" not in stored
    assert "exif" not in image.info and "xmp" not in image.info


async def test_exif_orientation_is_applied_to_the_pixels(client, world):
    """Stored 80x40 with orientation 6 (rotate 90 degrees clockwise to display): becomes 40x80."""
    customer = await world.create_customer(client)

    response = await _upload(client, customer, world.admin, crafted.jpeg_with_gps(80, 40, orientation=6))

    assert response.status_code == 200, response.text
    assert (response.json()["width"], response.json()["height"]) == (40, 80)
    stored = Image.open(io.BytesIO((await client.get(response.json()["avatar_url"])).content)).convert("RGB")
    assert stored.size == (40, 80)
    top, bottom = stored.getpixel((20, 10)), stored.getpixel((20, 70))
    assert top[0] > 200 and top[2] < 60  # the left (red) half is now on top
    assert bottom[2] > 200 and bottom[0] < 60
    assert crafted.ORIENTATION not in stored.getexif()


@pytest.mark.parametrize(
    ("kwargs", "status"),
    [
        pytest.param({"json": {"file": "aGVsbG8="}}, 415, id="json-body"),
        pytest.param({"files": {"image": ("a.png", crafted.png(), "image/png")}}, 422, id="wrong-field-name"),
        pytest.param(
            {"content": b'--x\r\nContent-Disposition: form-data; name="file"\r\n\r\nabc', "ctype": "x"},
            400,
            id="unterminated-multipart",
        ),
    ],
)
async def test_malformed_requests(client, world, kwargs, status):
    customer = await world.create_customer(client)
    headers = dict(world.admin.headers)
    if kwargs.pop("ctype", None):
        headers["Content-Type"] = "multipart/form-data; boundary=x"
    response = await client.post(f"/customers/{customer['id']}/avatar", headers=headers, **kwargs)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"


async def test_two_file_fields_are_refused(client, world):
    customer = await world.create_customer(client)
    response = await client.post(
        f"/customers/{customer['id']}/avatar",
        files=[("file", ("a.png", crafted.png(), "image/png")), ("file", ("b.png", crafted.png(8, 8), "image/png"))],
        headers=world.admin.headers,
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["body", "file"]
