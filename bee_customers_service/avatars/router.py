"""HTTP surface of avatars: upload, remove, read (redirect or generated SVG), and local files."""

import uuid
from pathlib import Path
from typing import Annotated

import anyio
from fastapi import APIRouter, Depends, Header, Request
from starlette.responses import FileResponse, RedirectResponse, Response

from bee_customers_service.avatars import service
from bee_customers_service.avatars.schemas import AvatarView
from bee_customers_service.avatars.storage import CACHE_FOREVER, CONTENT_TYPES, KEY_PREFIX, InvalidKey, LocalStorage
from bee_customers_service.avatars.upload import read_file_field
from bee_customers_service.core.dependencies import DatabaseDep, ReadSessionDep, SettingsDep
from bee_customers_service.core.errors import NotFound
from bee_customers_service.core.idempotency import IdempotentRoute
from bee_customers_service.core.openapi import problems
from bee_customers_service.core.ratelimit import path_param, rate_limit
from bee_customers_service.core.responses import json_response
from bee_customers_service.core.security import CustomerOrAdminCaller
from bee_customers_service.core.types import SafeStr
from bee_customers_service.customers.dependencies import SelfOrAdminRead

router = APIRouter(prefix="/customers", tags=["avatars"], route_class=IdempotentRoute)

# Generated SVGs come from our origin: no script may ever run in them, and browsers must not
# second-guess the type.
_SVG_HEADERS = {
    "Cache-Control": "private, no-cache",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; sandbox",
    "X-Content-Type-Options": "nosniff",
}

_UPLOAD_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["file"],
                "properties": {
                    "file": {
                        "type": "string",
                        "format": "binary",
                        "description": "A JPEG, PNG or WebP image, at most 1 MiB and 4096x4096 pixels.",
                    }
                },
            }
        }
    },
}


async def _upload_owner(customer: SelfOrAdminRead, session: ReadSessionDep) -> service.AvatarOwner:
    return await service.release_for_upload(session, customer)


_upload_rate_limit = rate_limit(
    "avatar-upload", lambda settings: settings.avatar_upload_rate_limit, key=path_param("customer_id")
)


@router.post(
    "/{customer_id}/avatar",
    response_model=AvatarView,
    summary="Upload an avatar (multipart `file`: JPEG, PNG or WebP; at most 1 MiB)",
    openapi_extra={"requestBody": _UPLOAD_BODY},
    responses={
        **problems(404),
        413: {"description": "The file is over the size limit."},
        415: {"description": "Not a JPEG, PNG or WebP image, or it does not decode."},
        422: {"description": "Empty file, or more pixels than allowed (decompression bombs included)."},
        429: {"description": "Too many uploads for this customer; see Retry-After."},
    },
)
async def upload_avatar(
    request: Request,
    settings: SettingsDep,
    database: DatabaseDep,
    principal: CustomerOrAdminCaller,
    owner: Annotated[service.AvatarOwner, Depends(_upload_owner)],
    _limit: Annotated[None, Depends(_upload_rate_limit)],  # after authorization: only callers who may upload count
) -> Response:
    data = await read_file_field(request, field_name="file", max_bytes=settings.avatar_max_bytes)
    stored = await service.upload_avatar(
        database.sessionmaker,
        owner=owner,
        data=data,
        storage=request.app.state.avatar_storage,
        actor=principal,
        max_dimension=settings.avatar_max_dimension,
    )
    view = AvatarView(
        customer_id=stored.customer_id,
        avatar_url=stored.url,
        content_type=stored.image.format.content_type,
        width=stored.image.width,
        height=stored.image.height,
        size_bytes=len(stored.image.data),
        version=stored.version,
    )
    return json_response(view)


@router.delete(
    "/{customer_id}/avatar",
    status_code=204,
    responses=problems(404),
    summary="Remove the uploaded avatar (back to the generated one)",
)
async def delete_avatar(
    request: Request,
    customer: SelfOrAdminRead,
    database: DatabaseDep,
    principal: CustomerOrAdminCaller,
) -> Response:
    await service.remove_avatar(
        database.sessionmaker, customer=customer, storage=request.app.state.avatar_storage, actor=principal
    )
    return Response(status_code=204)


def _etag_matches(if_none_match: str | None, etag: str) -> bool:
    if if_none_match is None:
        return False
    if if_none_match.strip() == "*":
        return True
    return any(candidate.strip().removeprefix("W/") == etag for candidate in if_none_match.split(","))


@router.get(
    "/{customer_id}/avatar",
    summary="The avatar: 302 to the uploaded image, or a generated SVG with the initials",
    response_class=Response,
    responses={
        200: {"content": {"image/svg+xml": {}}, "description": "The generated avatar (with an ETag)."},
        302: {"description": "Redirect to the uploaded image."},
        304: {"description": "The generated avatar has not changed (If-None-Match)."},
        **problems(404),
    },
)
async def get_avatar(
    customer: SelfOrAdminRead,
    if_none_match: Annotated[SafeStr | None, Header()] = None,
) -> Response:
    if customer.avatar_url:
        # The target changes when the avatar does: clients must ask again, not cache the redirect.
        return RedirectResponse(customer.avatar_url, status_code=302, headers={"Cache-Control": "private, no-cache"})
    generated = service.generated_avatar(customer)
    headers = {**_SVG_HEADERS, "ETag": generated.etag}
    if _etag_matches(if_none_match, generated.etag):
        return Response(status_code=304, headers=headers)
    return Response(generated.svg, media_type="image/svg+xml", headers=headers)


@router.get(
    "/{customer_id}/avatar/generated/{token}.svg",
    response_class=Response,
    include_in_schema=False,  # a public image URL handed out in `avatar_url`, like the stored files
)
async def public_generated_avatar(
    customer_id: uuid.UUID, token: SafeStr, session: ReadSessionDep, settings: SettingsDep
) -> Response:
    """No bearer token (an <img src> cannot send one): the URL's HMAC token is the credential.

    The token covers the id and the initials, so the bytes behind one URL never change (cached for
    a year); a rename that changes the initials hands out a new URL, an erased customer is a 404.
    """
    generated = await service.public_generated_avatar(session, settings, customer_id, token)
    if generated is None:
        raise NotFound("No such avatar.")
    headers = {**_SVG_HEADERS, "Cache-Control": CACHE_FOREVER, "ETag": generated.etag}
    return Response(generated.svg, media_type="image/svg+xml", headers=headers)


# --- local backend: the stored files themselves --------------------------------------------------

files_router = APIRouter(tags=["avatars"])


@files_router.api_route(
    f"/{KEY_PREFIX}/{{path:path}}",
    methods=["GET", "HEAD"],
    include_in_schema=False,  # public static files (like a CDN), not part of the API
)
async def avatar_file(request: Request, path: SafeStr) -> Response:
    storage = request.app.state.avatar_storage
    missing = NotFound("No such avatar.")
    if not isinstance(storage, LocalStorage):
        raise missing
    try:
        file_path: Path = storage.path_for(f"{KEY_PREFIX}/{path}")
    except InvalidKey:
        raise missing from None  # anything but an exact avatar key (no `..`, no directories)
    if not await anyio.to_thread.run_sync(file_path.is_file):
        raise missing
    return FileResponse(
        file_path,
        media_type=CONTENT_TYPES[file_path.suffix.lstrip(".")],
        headers={"Cache-Control": CACHE_FOREVER, "X-Content-Type-Options": "nosniff"},
    )
