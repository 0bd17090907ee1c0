"""Where avatar objects live: an S3 bucket or a folder on local disk, behind one small interface.

Keys are content addressed, `avatars/{business_id}/{customer_id}/{sha256}.{ext}`: an object never
changes once written, so it is served with a one-year immutable cache header and a CDN can keep
it forever; a new image is a new key. Every key is checked against that exact shape before it
touches a bucket or a path, which also rules out directory traversal in the local backend.
"""

import os
import re
import uuid
from pathlib import Path
from typing import Protocol

import anyio
import structlog

from bee_customers_service.core.config import Settings

log = structlog.get_logger(__name__)

CACHE_FOREVER = "public, max-age=31536000, immutable"
KEY_PREFIX = "avatars"
_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
KEY_PATTERN = re.compile(rf"^{KEY_PREFIX}/({_UUID})/({_UUID})/[0-9a-f]{{64}}\.(jpg|png|webp)$")
CONTENT_TYPES = {"jpg": "image/jpeg", "png": "image/png", "webp": "image/webp"}


class StorageError(Exception):
    """The object store failed (unreachable, refused, disk full)."""


class InvalidKey(ValueError):
    """A key that is not an avatar key: never used for a path or a bucket operation."""


def object_key(business_id: uuid.UUID, customer_id: uuid.UUID, sha256: str, ext: str) -> str:
    key = f"{KEY_PREFIX}/{business_id}/{customer_id}/{sha256}.{ext}"
    check_key(key)
    return key


def check_key(key: str) -> str:
    if not KEY_PATTERN.match(key):
        raise InvalidKey(key)
    return key


def customer_prefix(business_id: uuid.UUID, customer_id: uuid.UUID) -> str:
    return f"{KEY_PREFIX}/{business_id}/{customer_id}/"


class AvatarStorage(Protocol):
    """Writes, deletes and names avatar objects; implementations never block the event loop."""

    backend: str

    async def put(self, key: str, data: bytes, *, content_type: str) -> None: ...

    async def delete(self, key: str) -> None:
        """Remove the object; a missing object is not an error."""

    def url_for(self, key: str) -> str:
        """The public URL stored in `customers.avatar_url`."""

    def key_for(self, url: str) -> str | None:
        """The key behind one of our URLs; None for any other URL (e.g. set by PATCH)."""


def _key_after_base(base: str, url: str) -> str | None:
    if not url.startswith(base + "/"):
        return None
    key = url[len(base) + 1 :]
    return key if KEY_PATTERN.match(key) else None


class LocalStorage:
    """Files under `root/avatars/...`, served by the app itself at `/avatars/...`."""

    backend = "local"

    def __init__(self, root: Path, *, public_base_url: str | None = None) -> None:
        self.root = root.resolve()
        # Without a CDN the URL is the app's own path (`/avatars/...`), relative to its origin.
        self.base = (public_base_url or "").rstrip("/")

    def path_for(self, key: str) -> Path:
        check_key(key)
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root / KEY_PREFIX):  # belt and braces: the pattern already
            raise InvalidKey(key)
        return path

    def _write(self, path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        try:
            with open(temporary, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(temporary, 0o644)
            os.replace(temporary, path)  # readers see the old file or the whole new one
        finally:
            temporary.unlink(missing_ok=True)

    async def put(self, key: str, data: bytes, *, content_type: str) -> None:
        path = self.path_for(key)
        try:
            await anyio.to_thread.run_sync(self._write, path, data)
        except OSError as exc:
            raise StorageError(f"writing {key} failed: {exc.strerror}") from exc

    async def delete(self, key: str) -> None:
        path = self.path_for(key)
        try:
            await anyio.to_thread.run_sync(lambda: path.unlink(missing_ok=True))
        except OSError as exc:
            raise StorageError(f"deleting {key} failed: {exc.strerror}") from exc

    def url_for(self, key: str) -> str:
        return f"{self.base}/{check_key(key)}"

    def key_for(self, url: str) -> str | None:
        return _key_after_base(self.base, url)


class S3Storage:
    """An S3 bucket (AWS, MinIO, SeaweedFS ...) through boto3, run in worker threads."""

    backend = "s3"

    def __init__(self, settings: Settings) -> None:
        import boto3
        from botocore.config import Config

        assert settings.s3_bucket is not None  # Settings refuses s3 without a bucket
        self.bucket = settings.s3_bucket
        secret = settings.s3_secret_access_key.get_secret_value() if settings.s3_secret_access_key else None
        # Explicit keys when configured; otherwise boto3's usual chain (AWS_* env, profile, IAM role).
        self.client = boto3.session.Session().client(
            "s3",
            endpoint_url=settings.s3_endpoint_url,
            region_name=settings.s3_region,
            aws_access_key_id=settings.s3_access_key_id,
            aws_secret_access_key=secret,
            config=Config(
                connect_timeout=5,
                read_timeout=15,
                retries={"max_attempts": 3, "mode": "standard"},
                # Path-style addressing for self-hosted servers (no wildcard DNS for buckets).
                s3={"addressing_style": "path" if settings.s3_endpoint_url else "auto"},
            ),
        )
        if settings.avatar_public_base_url:
            self.base = settings.avatar_public_base_url.rstrip("/")
        elif settings.s3_endpoint_url:
            self.base = f"{settings.s3_endpoint_url.rstrip('/')}/{self.bucket}"
        else:
            region = settings.s3_region or "us-east-1"
            self.base = f"https://{self.bucket}.s3.{region}.amazonaws.com"

    async def _call(self, operation: str, **kwargs: object) -> object:
        from botocore.exceptions import BotoCoreError, ClientError

        method = getattr(self.client, operation)
        try:
            return await anyio.to_thread.run_sync(lambda: method(Bucket=self.bucket, **kwargs))
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"S3 {operation} failed: {exc}") from exc

    async def put(self, key: str, data: bytes, *, content_type: str) -> None:
        await self._call(
            "put_object",
            Key=check_key(key),
            Body=data,
            ContentType=content_type,
            CacheControl=CACHE_FOREVER,
        )

    async def delete(self, key: str) -> None:
        await self._call("delete_object", Key=check_key(key))  # S3 deletes are idempotent

    def url_for(self, key: str) -> str:
        return f"{self.base}/{check_key(key)}"

    def key_for(self, url: str) -> str | None:
        return _key_after_base(self.base, url)


def storage_from_settings(settings: Settings) -> AvatarStorage:
    """The backend `BEE_AVATAR_STORAGE` names: `local` (default) or `s3`."""
    if settings.avatar_storage == "s3":
        return S3Storage(settings)
    return LocalStorage(settings.data_dir, public_base_url=settings.avatar_public_base_url)
