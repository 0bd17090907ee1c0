"""Signed cursors: only what this service handed out, for this list, comes back as a sort key."""

import base64
import uuid
from datetime import UTC, datetime

import orjson
import pytest
from pydantic import AwareDatetime, ValidationError

from bee_customers_service.core.config import DEV_CURSOR_SECRET, Settings
from bee_customers_service.core.pagination import TAG_BYTES, CursorCodec, InvalidCursor

TYPES = (AwareDatetime, uuid.UUID)
KEY = (datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC), uuid.UUID("12345678-1234-5678-1234-567812345678"))
codec = CursorCodec("a-test-cursor-secret-0123456789abcdef")


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def test_round_trip_and_short():
    cursor = codec.encode(KEY, scope="notes:v1")
    assert codec.decode(cursor, scope="notes:v1", types=TYPES) == KEY
    assert len(cursor) < 120
    assert codec.decode(None, scope="notes:v1", types=TYPES) is None
    assert codec.decode("", scope="notes:v1", types=TYPES) is None


def test_another_scope_or_key_is_refused():
    cursor = codec.encode(KEY, scope="notes:v1")
    with pytest.raises(InvalidCursor):
        codec.decode(cursor, scope="history:v1", types=TYPES)
    with pytest.raises(InvalidCursor):
        CursorCodec("another-secret-0123456789abcdef0123").decode(cursor, scope="notes:v1", types=TYPES)


def test_every_altered_character_is_refused():
    cursor = codec.encode(KEY, scope="notes:v1")
    for i in range(len(cursor)):
        for replacement in ("A", "_"):
            altered = cursor[:i] + replacement + cursor[i + 1 :]
            if altered != cursor:
                with pytest.raises(InvalidCursor):
                    codec.decode(altered, scope="notes:v1", types=TYPES)


@pytest.mark.parametrize(
    "cursor",
    [
        _b64(orjson.dumps({"s": "notes:v1", "k": ["2026-01-01T00:00:00Z", str(uuid.uuid4())]})),  # old, unsigned
        _b64(orjson.dumps(["2026-01-01T00:00:00Z", str(uuid.uuid4())])),
        _b64(b"\x00" * TAG_BYTES + b'["x"]'),
        "short",
        "not a cursor!",
        "x" * 5000,
        "é",
    ],
)
def test_forged_cursors_are_refused(cursor):
    with pytest.raises(InvalidCursor):
        codec.decode(cursor, scope="notes:v1", types=TYPES)


def test_non_canonical_base64_is_refused():
    cursor = codec.encode(KEY, scope="notes:v1")
    with pytest.raises(InvalidCursor):
        codec.decode(cursor + "=", scope="notes:v1", types=TYPES)


def test_signed_values_of_the_wrong_type_are_still_refused():
    naive = codec.encode(["2026-01-01T00:00:00", str(uuid.uuid4())], scope="notes:v1")
    with pytest.raises(InvalidCursor):
        codec.decode(naive, scope="notes:v1", types=TYPES)
    too_few = codec.encode([str(uuid.uuid4())], scope="notes:v1")
    with pytest.raises(InvalidCursor):
        codec.decode(too_few, scope="notes:v1", types=TYPES)


def test_page_of_signs_the_next_cursor():
    items, next_cursor = codec.page_of([1, 2, 3], 2, key=lambda n: (n,), scope="s")
    assert items == [1, 2] and codec.decode(next_cursor, scope="s", types=(int,)) == (2,)
    assert codec.page_of([1, 2], 2, key=lambda n: (n,), scope="s") == ([1, 2], None)


def test_from_settings_uses_the_configured_secret():
    a = CursorCodec.from_settings(Settings(_env_file=None, cursor_secret="x" * 40))  # type: ignore[call-arg]
    b = CursorCodec.from_settings(Settings(_env_file=None))  # type: ignore[call-arg]
    cursor = a.encode([1], scope="s")
    assert a.decode(cursor, scope="s", types=(int,)) == (1,)
    with pytest.raises(InvalidCursor):
        b.decode(cursor, scope="s", types=(int,))


def _production(**overrides):
    values = {
        "environment": "production",
        "database_url": "postgresql://x@127.0.0.1/x",
        "jwt_secret": "j" * 48,
        "gdpr_fingerprint_key": "g" * 48,
    }
    return Settings(_env_file=None, **(values | overrides))  # type: ignore[call-arg]


@pytest.mark.parametrize("secret", [None, DEV_CURSOR_SECRET, "too-short"])
def test_production_requires_a_real_cursor_secret(secret):
    with pytest.raises(ValidationError, match="BEE_CURSOR_SECRET"):
        _production(**({} if secret is None else {"cursor_secret": secret}))
    assert _production(cursor_secret="c" * 48).cursor_secret.get_secret_value() == "c" * 48


def test_an_empty_cursor_secret_is_refused():
    with pytest.raises(ValidationError, match="cursor_secret"):
        Settings(_env_file=None, cursor_secret="")  # type: ignore[call-arg]
