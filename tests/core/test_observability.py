"""Metrics at /metrics and structured logs: ids on every line, no personal data, audit lines."""

import json
import re

from bee_customers_service.app import create_app
from tests.conftest import client_for, make_settings, running_app

NAMED_METRICS = (
    "customers_created_total",
    "notes_created_total",
    "tagged_customers_total",
    "api_response_duration_bucket",
    "outbox_pending_events",
    "outbox_oldest_pending_seconds",
    "events_published_total",
    "events_consumed_total",
    "rate_limited_total",
)


def metric_value(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} ([0-9.e+]+)$", text, re.MULTILINE)
    assert match, f"{name} not exposed"
    return float(match.group(1))


async def test_metrics_expose_every_named_metric(client, world):
    await world.create_customer(client)
    await client.get("/healthcheck")
    text = (await client.get("/metrics")).text
    for name in NAMED_METRICS:
        assert re.search(rf"^(# TYPE )?{name}", text, re.MULTILINE), name
    # latency is labelled by route template, never by the raw path
    assert 'handler="/customers"' in text
    assert not re.search(r'handler="/customers/[0-9a-f]{8}-', text)


async def test_request_metrics_count_by_route_method_and_status(client, world):
    created = await world.create_customer(client)
    missing = "/customers/00000000-0000-0000-0000-000000000000"
    for _ in range(2):
        await client.get(f"/customers/{created['id']}", headers=world.admin.headers)
    await client.get(missing, headers=world.admin.headers)
    await client.get("/no/such/route")
    text = (await client.get("/metrics")).text

    def requests(status: str) -> float:
        pattern = (
            rf'^api_requests_total{{handler="/customers/{{customer_id}}",method="GET",status="{status}"}} ([0-9.e+]+)$'
        )
        match = re.search(pattern, text, re.MULTILINE)
        return float(match.group(1)) if match else 0.0

    assert requests("200") >= 2 and requests("404") >= 1
    assert re.search(r'^api_response_duration_count\{handler="/customers/\{customer_id\}",method="GET"\}', text, re.M)
    # unmatched paths and the scrape itself are not recorded (no label per random path)
    assert "/no/such/route" not in text and 'handler="/metrics"' not in text


async def test_business_counters_move_with_committed_changes_only(client, world):
    before = metric_value((await client.get("/metrics")).text, "customers_created_total")
    created = await world.create_customer(client)
    duplicate = await client.post(
        "/customers", json=world.profile(user_id=created["user_id"]), headers=world.service.headers
    )
    invalid = await client.post("/customers", json=world.profile(email="nope"), headers=world.service.headers)
    after = metric_value((await client.get("/metrics")).text, "customers_created_total")

    assert (duplicate.status_code, invalid.status_code) == (409, 422)
    assert after - before == 1


async def test_metrics_can_require_a_token(database_url):
    app = create_app(make_settings(database_url, metrics_token="scrape-me"))
    async with running_app(app), client_for(app) as http:
        anonymous = await http.get("/metrics")
        wrong = await http.get("/metrics", headers={"Authorization": "Bearer nope"})
        right = await http.get("/metrics", headers={"Authorization": "Bearer scrape-me"})
    assert anonymous.status_code == wrong.status_code == 401
    assert right.status_code == 200 and "customers_created_total" in right.text


def _json_lines(captured: str) -> list[dict]:
    lines = []
    for line in captured.splitlines():
        line = line.strip()
        if line.startswith("{"):
            lines.append(json.loads(line))
    return lines


async def test_request_log_line_has_ids_and_no_personal_data(client, world, capsys):
    body = world.profile(email="secret.person@example.com", phone="+40712345678")
    capsys.readouterr()
    response = await client.post(
        "/customers",
        json=body,
        headers={
            **world.service.headers,
            "X-Trace-Id": "trace-log-1",
            "X-Request-Id": "req-log-1",
            "User-Agent": "pytest-agent/1.0",
        },
    )
    assert response.status_code == 201
    output = capsys.readouterr().out
    lines = _json_lines(output)

    [request_line] = [line for line in lines if line.get("event") == "request" and line["route"] == "/customers"]
    assert request_line["trace_id"] == "trace-log-1"
    assert request_line["request_id"] == "req-log-1"
    assert request_line["method"] == "POST" and request_line["status"] == 201
    assert request_line["service_name"] == "bee_customers_service"
    assert request_line["level"] == "info" and "timestamp" in request_line
    assert isinstance(request_line["duration_ms"], float)

    [audit] = [line for line in lines if line.get("audit_event") == "v1.customer.created"]
    assert audit["user_id"] == body["user_id"] and audit["business_id"] == body["business_id"]
    # The IP and User-Agent are personal data: they go in the v1.audit.customer.created record
    # (tests/events/test_audit_trail.py), not in the stdout line.
    assert "user_agent" not in audit and "client_ip" not in audit
    assert audit["trace_id"] == "trace-log-1"

    assert "secret.person@example.com" not in output
    assert "712345678" not in output


async def test_audit_of_an_edit_names_fields_and_author_not_values(client, world, capsys):
    created = await world.create_customer(client)
    admin = world.admin
    capsys.readouterr()
    await client.patch(
        f"/customers/{created['id']}", json={"email": "changed.secret@example.com"}, headers=admin.headers
    )
    output = capsys.readouterr().out
    [audit] = [line for line in _json_lines(output) if line.get("audit_event") == "v1.customer.updated"]
    assert audit["fields_changed"] == ["email"]
    assert audit["updated_by"] == str(admin.user_id)
    assert "changed.secret@example.com" not in output


async def test_rolled_back_change_writes_no_audit_line(client, world, capsys):
    created = await world.create_customer(client)
    capsys.readouterr()
    again = await client.post(
        "/customers", json=world.profile(user_id=created["user_id"]), headers=world.service.headers
    )
    assert again.status_code == 409
    assert not [line for line in _json_lines(capsys.readouterr().out) if "audit_event" in line]
