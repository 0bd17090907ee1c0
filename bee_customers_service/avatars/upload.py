"""Read one file field from a multipart/form-data request without ever holding more than the limit.

FastAPI's `UploadFile` parses the whole form first (spooling it to memory and disk) and only then
lets the endpoint look at the size. Here the body is parsed as it streams in: a declared
Content-Length over the limit is refused before a byte is read, and a body that streams past the
limit (chunked, or a lying Content-Length) is cut off as soon as the file holds limit + 1 bytes.
"""

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

if TYPE_CHECKING:  # a typing-only name of python-multipart
    from python_multipart.multipart import MultipartCallbacks

from bee_customers_service.core.errors import DomainError, InvalidInput, PayloadTooLarge, UnsupportedMediaType

# Room for the boundaries and part headers around the file (and a stray small field or two).
MULTIPART_OVERHEAD_BYTES = 16 * 1024
MAX_PARTS = 4
MAX_PART_HEADERS = 8
MAX_PART_HEADER_BYTES = 1024


class MalformedMultipart(DomainError):
    status, type_slug, title = 400, "malformed-multipart", "Malformed multipart body"


class UploadTooLarge(PayloadTooLarge):
    def __init__(self, max_bytes: int) -> None:
        super().__init__(f"The file must be at most {max_bytes} bytes.", max_bytes=max_bytes)
        # The client may still be sending the rest: we will not read it, so close the connection.
        self.headers = {"Connection": "close"}


@dataclass
class _Part:
    headers: dict[str, str] = field(default_factory=dict)
    name: str | None = None
    is_target: bool = False
    complete: bool = False


@dataclass
class _Collector:
    """The multipart parser's callbacks: keeps the target field's bytes, up to max_bytes + 1."""

    target: str
    max_bytes: int
    parts: list[_Part] = field(default_factory=list)
    data: bytearray = field(default_factory=bytearray)
    too_large: bool = False
    too_many_parts: bool = False
    _header_field: bytearray = field(default_factory=bytearray)
    _header_value: bytearray = field(default_factory=bytearray)

    def callbacks(self) -> "MultipartCallbacks":
        return {
            "on_part_begin": self.on_part_begin,
            "on_header_field": self.on_header_field,
            "on_header_value": self.on_header_value,
            "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished,
            "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end,
        }

    def on_part_begin(self) -> None:
        self.parts.append(_Part())
        if len(self.parts) > MAX_PARTS:
            self.too_many_parts = True

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        name = self._header_field.decode("latin-1").strip().lower()
        self.parts[-1].headers[name] = self._header_value.decode("latin-1").strip()
        self._header_field.clear()
        self._header_value.clear()

    def on_headers_finished(self) -> None:
        part = self.parts[-1]
        _disposition, options = parse_options_header(part.headers.get("content-disposition", ""))
        raw_name = options.get(b"name")
        part.name = raw_name.decode("utf-8", "replace") if raw_name is not None else None
        part.is_target = part.name == self.target

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        part = self.parts[-1]
        if not part.is_target or self.too_large or self.target_count > 1:
            return
        room = self.max_bytes + 1 - len(self.data)
        chunk = data[start : min(end, start + room)]
        self.data += chunk
        if len(self.data) > self.max_bytes:
            self.too_large = True

    def on_part_end(self) -> None:
        self.parts[-1].complete = True

    @property
    def target_count(self) -> int:
        return sum(1 for part in self.parts if part.is_target)


async def read_file_field(request: Request, *, field_name: str, max_bytes: int) -> bytes:
    """The bytes of the multipart field `field_name`; 413 beyond `max_bytes`, 415/400/422 otherwise."""
    media_type, options = parse_options_header(request.headers.get("content-type", ""))
    if media_type != b"multipart/form-data":
        raise UnsupportedMediaType(f"Send the image as multipart/form-data in a `{field_name}` field.")
    boundary = options.get(b"boundary")
    if not boundary:
        raise MalformedMultipart("The multipart/form-data content type has no boundary.")

    budget = max_bytes + MULTIPART_OVERHEAD_BYTES
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > budget:
        raise UploadTooLarge(max_bytes)

    collector = _Collector(target=field_name, max_bytes=max_bytes)
    try:
        parser = MultipartParser(
            boundary,
            collector.callbacks(),
            max_header_count=MAX_PART_HEADERS,
            max_header_size=MAX_PART_HEADER_BYTES,
        )
        received = 0
        async for chunk in request.stream():
            received += len(chunk)
            if received > budget:
                raise UploadTooLarge(max_bytes)
            parser.write(chunk)
            if collector.too_large:
                raise UploadTooLarge(max_bytes)
            if collector.too_many_parts:
                raise MalformedMultipart(f"Send at most {MAX_PARTS} form fields.")
        parser.finalize()
    except MultipartParseError as exc:
        raise MalformedMultipart("The multipart/form-data body could not be parsed.") from exc
    except ClientDisconnect as exc:
        raise MalformedMultipart("The client went away before the body was complete.") from exc

    targets = [part for part in collector.parts if part.is_target]
    if not targets:
        raise InvalidInput(field_name, "field required: send the image in this multipart field")
    if len(targets) > 1:
        raise InvalidInput(field_name, "send exactly one file")
    if not targets[0].complete:
        raise MalformedMultipart("The multipart/form-data body ended in the middle of the file.")
    return bytes(collector.data)
