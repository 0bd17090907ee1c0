"""Export of a whole business's customers (GET /customers/export): CSV or NDJSON, streamed page by page.

The rows come from the search's own page query (`repository.search_page`) in keyset order
(relevance first with `query`, then created_at, id; ascending), `PAGE_SIZE` rows at a time: the
memory used does not grow with the business. Each page is read in its own short read-only
transaction from the sessionmaker (the request's session is gone once the body starts streaming;
the search's settings are transaction-scoped, `set_config(..., true)`). Nothing is written, so
nothing commits. One audit line (`customers.export`) says who exported what, once the stream ends.
"""

import csv
import io
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bee_customers_service.search import repository
from bee_customers_service.search.schemas import ExportParams
from bee_customers_service.search.service import filters_from

audit_log = structlog.get_logger("bee_customers_service.audit")

PAGE_SIZE = 1000
COLUMNS = (
    "id",
    "full_name",
    "email",
    "phone",
    "created_at",
    "total_orders",
    "last_order_date",
    "lifetime_value",
    "lifetime_value_currency",
    "tags",
)
MEDIA_TYPES = {"csv": "text/csv; charset=utf-8", "ndjson": "application/x-ndjson"}
# A spreadsheet reads a cell starting with one of these as a formula (CSV injection, OWASP).
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_FILTER_FIELDS = frozenset(ExportParams.model_fields) - {"business_id", "format"}


def filename(params: ExportParams, *, now: datetime | None = None) -> str:
    day = (now or datetime.now(UTC)).astimezone(UTC).date().isoformat()
    return f"customers-{params.business_id}-{day}.{params.format}"


def neutralised(cell: str) -> str:
    """The cell as text a spreadsheet will not evaluate: a leading quote before a formula start."""
    return f"'{cell}" if cell.startswith(_FORMULA_STARTS) else cell


def _record(row: Any) -> dict[str, Any]:
    return {
        "id": str(row.id),
        "full_name": row.full_name,
        "email": row.email,
        "phone": row.phone,
        "created_at": row.sort_key.isoformat(),
        "total_orders": row.total_orders,
        "last_order_date": row.last_order_date.isoformat() if row.last_order_date is not None else None,
        # Empty (null) when the customer paid in several currencies: no single sum exists.
        "lifetime_value": str(row.lifetime_value) if row.lifetime_value is not None else None,
        "lifetime_value_currency": row.lifetime_value_currency,
        "tags": list(row.tags or ()),
    }


def _csv_line(values: Sequence[str]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerow(values)
    return buffer.getvalue()


def _csv_row(record: dict[str, Any]) -> str:
    cells = [
        ";".join(value) if isinstance(value, list) else "" if value is None else str(value) for value in record.values()
    ]
    return _csv_line([neutralised(cell) for cell in cells])


async def _pages(sessionmaker: async_sessionmaker[AsyncSession], params: ExportParams) -> AsyncIterator[Sequence[Any]]:
    filters = filters_from(params)
    after: tuple[Any, ...] | None = None
    while True:
        async with sessionmaker() as session:
            rows = await repository.search_page(
                session, filters, sort="created_at", direction="asc", after=after, limit=PAGE_SIZE
            )
        if rows:
            yield rows
        if len(rows) < PAGE_SIZE:
            return
        last = rows[-1]
        after = (last.sort_key, last.id)
        if filters.query is not None:
            after = (last.rank, *after)


async def stream(
    sessionmaker: async_sessionmaker[AsyncSession], params: ExportParams, *, requested_by: uuid.UUID
) -> AsyncIterator[bytes]:
    """The file's bytes, one page at a time; the audit line once it ends (or is cut short)."""
    rows = 0
    complete = False
    try:
        if params.format == "csv":
            yield _csv_line(COLUMNS).encode()
        async for page in _pages(sessionmaker, params):
            records = [_record(row) for row in page]
            if params.format == "csv":
                yield "".join(_csv_row(record) for record in records).encode()
            else:
                yield b"".join(orjson.dumps(record) + b"\n" for record in records)
            rows += len(records)
        complete = True
    finally:
        audit_log.info(
            "audit",
            audit_event="customers.export",
            business_id=str(params.business_id),
            requested_by=str(requested_by),
            format=params.format,
            filters=sorted(name for name in _FILTER_FIELDS if name in params.model_fields_set),
            rows=rows,
            complete=complete,
        )
