"""Response helpers: fast JSON from Pydantic models, ETags."""

from pydantic import BaseModel
from starlette.responses import Response


def json_response(model: BaseModel, *, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    """Serialise with Pydantic's Rust core in one step (no intermediate dict, no second encoder)."""
    return Response(
        content=model.model_dump_json(),
        status_code=status_code,
        headers=headers,
        media_type="application/json",
    )


def etag(version: int) -> str:
    return f'"{version}"'


def parse_if_match(header: str | None) -> frozenset[int] | None:
    """The versions an `If-Match` header accepts; None when absent or `*` (any current version).

    Weak validators (`W/"3"`) are accepted as well as strong ones; entity tags that are not ours
    match nothing, so a PATCH carrying only those is refused with 412.
    """
    if header is None or header.strip() == "*":
        return None
    versions: set[int] = set()
    for raw in header.split(","):
        tag = raw.strip().removeprefix("W/").strip('"')
        if tag.isdigit():
            versions.add(int(tag))
    return frozenset(versions)
