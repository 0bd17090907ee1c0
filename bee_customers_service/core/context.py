"""Per-request correlation ids, readable anywhere (logs, errors, outbox events) without plumbing."""

import re
import uuid
from contextvars import ContextVar

trace_id_var: ContextVar[str | None] = ContextVar("trace_id", default=None)
request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)

# Ids come from the gateway; accept only short, printable tokens so a header cannot inject
# anything into logs or event headers.
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


def sanitize_id(value: str | None) -> str:
    """The incoming id when it is safe to propagate, otherwise a fresh one."""
    if value and _SAFE_ID.match(value):
        return value
    return uuid.uuid4().hex


def current_trace_id() -> str | None:
    return trace_id_var.get()


def current_request_id() -> str | None:
    return request_id_var.get()


# Who is on the other end, for the audit trail (spec 5.3): the client IP as resolved from the
# trusted proxy header by the server, and the user agent.
client_ip_var: ContextVar[str | None] = ContextVar("client_ip", default=None)
user_agent_var: ContextVar[str | None] = ContextVar("user_agent", default=None)
