"""Input types whose every value PostgreSQL can store: declare a field with one and it is checked.

The boundary rule (ARCHITECTURE.md, "Input at the edge"): a value that PostgreSQL cannot represent
(a NUL in text, a lone surrogate, an integer beyond int4, a timestamp beyond its range once moved to
UTC) is refused by the request's schema as a 422 naming the field, never left to fail as a 500 in
the driver. Request bodies, query models and path/header parameters use these types instead of bare
`str`/`int`/`datetime`, so a new field is safe by being declared.
"""

import unicodedata
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated

from pydantic import AfterValidator, Field

INT4_MIN = -(2**31)
INT4_MAX = 2**31 - 1

# One day inside Python's datetime range on each side: any UTC offset (at most 24 h) applied to a
# value in this range, here or in the driver, stays representable.
DATETIME_MIN = datetime(1, 1, 2, tzinfo=UTC)
DATETIME_MAX = datetime(9999, 12, 30, 23, 59, 59, 999999, tzinfo=UTC)

# Unicode categories that draw nothing: control (Cc), format such as zero-width space (Cf), and the
# separators (Zs, Zl, Zp). A name made only of these looks empty to every reader.
INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Zs", "Zl", "Zp"})


def _has_surrogate(value: str) -> bool:
    # A lone surrogate (U+D800..U+DFFF) is not a Unicode scalar value: it has no UTF-8 encoding.
    return any("\ud800" <= char <= "\udfff" for char in value)


def storable_text(value: str) -> str:
    """`value` if PostgreSQL can store it as text; ValueError (a 422 in a schema) otherwise."""
    if "\x00" in value:
        raise ValueError("must not contain NUL characters (U+0000)")
    if _has_surrogate(value):
        raise ValueError("must not contain lone surrogates (U+D800..U+DFFF): it is not valid Unicode")
    return value


def visible_text(value: str) -> str:
    """`value` if at least one of its characters is visible (not only zero-width, format or spaces)."""
    if all(unicodedata.category(char) in INVISIBLE_CATEGORIES for char in value):
        raise ValueError("must contain at least one visible character")
    return value


def sanitize_header_text(value: str | None, *, max_length: int = 256) -> str | None:
    """A header value made safe to store or log (User-Agent): NUL, other control characters and
    lone surrogates dropped, cut to `max_length`; None when nothing is left. Never raises: a header
    we only record must not fail the request."""
    if value is None:
        return None
    cleaned = "".join(
        char for char in value if unicodedata.category(char) != "Cc" and not ("\ud800" <= char <= "\udfff")
    )
    return cleaned[:max_length] or None


def _safe_datetime(value: datetime) -> datetime:
    # A timestamp without an offset is read as UTC (the wire format is UTC everywhere).
    aware = value.replace(tzinfo=UTC) if value.tzinfo is None else value
    try:
        in_utc = aware.astimezone(UTC)
    except OverflowError:
        # 0001-01-01T00:00+14:00 is before year 1 in UTC: Python (and PostgreSQL's driver) cannot hold it.
        raise ValueError("must be between 0001-01-02 and 9999-12-30 (UTC)") from None
    if not DATETIME_MIN <= in_utc <= DATETIME_MAX:
        raise ValueError("must be between 0001-01-02 and 9999-12-30 (UTC)")
    return in_utc


# Text PostgreSQL can store: no NUL (text cannot hold it), no lone surrogate (no UTF-8 form).
SafeStr = Annotated[str, AfterValidator(storable_text)]
# Text a person must be able to see: storable, and not only invisible characters ("\u200b\u200b").
VisibleStr = Annotated[str, AfterValidator(storable_text), AfterValidator(visible_text)]
# PostgreSQL `integer` (int4): anything wider overflows in the driver or the comparison.
Int4 = Annotated[int, Field(ge=INT4_MIN, le=INT4_MAX)]
NonNegativeInt4 = Annotated[int, Field(ge=0, le=INT4_MAX)]
# An aware timestamp, in UTC, that `timestamptz` and Python's datetime both hold under any offset.
SafeDatetime = Annotated[datetime, AfterValidator(_safe_datetime)]
# Money as the client sends it: what Numeric(12, 2) holds exactly (no NaN, no infinity, no rounding).
MoneyInput = Annotated[Decimal, Field(max_digits=12, decimal_places=2, allow_inf_nan=False)]
NonNegativeMoneyInput = Annotated[Decimal, Field(ge=0, max_digits=12, decimal_places=2, allow_inf_nan=False)]
