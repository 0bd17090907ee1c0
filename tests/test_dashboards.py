"""The Grafana dashboard and the Prometheus alert rules (deploy/) against the running service.

Every metric a panel or an alert reads must be one `GET /metrics` of a real `bee-customers serve`
exposes (names taken from the PromQL, not from a list kept by hand), counters and histograms go
through rate()/increase() and gauges never do, and the rule file is valid: `promtool check rules`
and its unit tests when promtool is installed (Debian's `prometheus` package), a JSON Schema of the
rule file format and a PromQL sanity check always.
"""

import asyncio
import json
import re
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import aio_pika
import httpx
import jsonschema
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from bee_customers_service.app import create_app
from bee_customers_service.cli import run_migrations
from bee_customers_service.core.db import to_async_url
from tests.conftest import JWT_SECRET, client_for, make_settings, running_app
from tests.events.tools import eventually
from tests.services import RABBITMQ_URL, create_database, drop_database, require_service, serving

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "deploy" / "grafana" / "bee-customers.json"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yaml"
ALERT_TESTS = ROOT / "deploy" / "prometheus" / "alerts.test.yaml"
RULE_FILE_SCHEMA = Path(__file__).with_name("prometheus_rule_file.schema.json")

# What Grafana substitutes before a query reaches Prometheus; any other `$` is a mistake.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__range": "1h", "$job": "bee-customers-service"}
# Metrics a rule or panel may read that the service does not expose itself, each with the reason.
# Empty: readiness is `service_ready` (health.record_readiness), not kube-state-metrics.
EXTERNAL_METRICS: dict[str, str] = {}

# --- PromQL: the metric names an expression reads ---------------------------------------------

AGGREGATIONS = {"sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk", "quantile", "group"}
FUNCTIONS = AGGREGATIONS | {
    "abs", "absent", "absent_over_time", "avg_over_time", "ceil", "changes", "clamp", "clamp_max", "clamp_min",
    "count_over_time", "delta", "deriv", "floor", "histogram_quantile", "idelta", "increase", "irate",
    "label_replace", "last_over_time", "max_over_time", "min_over_time", "predict_linear", "rate", "resets",
    "round", "scalar", "sort", "sort_desc", "sum_over_time", "time", "timestamp", "vector",
}  # fmt: skip
KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left", "group_right"}
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\[\]]*\]")
# The label lists of `by (...)`, `on (...)`, `group_left (...)`: labels, not metrics.
_LABEL_LIST = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_IDENTIFIER = re.compile(r"(?<![\w:.$])([A-Za-z_:][\w:]*)(\s*\()?")
_RATE_ARGUMENT = re.compile(r"\b(rate|irate|increase)\(\s*([A-Za-z_:][\w:]*)")


def metric_reads(expr: str) -> list[str]:
    """The metric names `expr` reads, once per use: identifiers that are no function, keyword or label."""
    bare = _LABEL_LIST.sub(" ", _RANGE.sub(" ", _MATCHERS.sub(" ", _STRING.sub('""', expr))))
    names = []
    for match in _IDENTIFIER.finditer(bare):
        name, call = match.groups()
        if call is None and name not in KEYWORDS:
            names.append(name)
        elif call is not None:
            assert name in FUNCTIONS or name in KEYWORDS, f"unknown PromQL function {name}() in {expr}"
    return names


def metric_names(expr: str) -> set[str]:
    return set(metric_reads(expr))


def rated_reads(expr: str) -> list[str]:
    """The metrics `expr` hands to rate(), irate() or increase(), once per use."""
    return [name for _, name in _RATE_ARGUMENT.findall(_STRING.sub('""', expr))]


def test_metric_names_are_read_from_promql():
    assert metric_names(
        'histogram_quantile(0.95, sum by (le, handler) (rate(api_response_duration_bucket{handler!="/x"}[5m])))'
    ) == {"api_response_duration_bucket"}
    assert metric_names(
        'sum(rate(api_requests_total{status=~"5.."}[5m])) / sum(rate(api_requests_total[5m])) > 0.05'
    ) == {"api_requests_total"}
    assert metric_names('(max(outbox_relay_role{role="leader"}) or vector(0)) < 1') == {"outbox_relay_role"}
    assert metric_names("rate(a_total[5m] offset 1h) * on (instance) group_left (version) b_info > 1e3") == {
        "a_total",
        "b_info",
    }
    assert metric_names('up{job="or"} and service_ready') == {"up", "service_ready"}
    assert rated_reads("sum(increase(x_total[1h])) / max(rate( y_bucket[5m])) + x_total") == ["x_total", "y_bucket"]
    assert metric_reads("sum(increase(x_total[1h])) / max(rate( y_bucket[5m])) + x_total") == [
        "x_total",
        "y_bucket",
        "x_total",
    ]
    with pytest.raises(AssertionError, match="unknown PromQL function"):
        metric_names("sumx(foo)")


# --- the files ----------------------------------------------------------------------------------


def _panels(panels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    found = []
    for panel in panels:
        found.append(panel)
        found += _panels(panel.get("panels", []))
    return found


def dashboard_queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in _panels(dashboard["panels"]) for target in panel.get("targets", [])]


def with_grafana_variables(expr: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    assert "$" not in expr, f"a Grafana variable the test does not know: {expr}"
    return expr


def alert_rules() -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = yaml.safe_load(ALERTS.read_text())["groups"][0]["rules"]
    return rules


def every_expression() -> list[str]:
    return [with_grafana_variables(expr) for expr in dashboard_queries()] + [rule["expr"] for rule in alert_rules()]


def variable_metrics() -> set[str]:
    """The metrics the dashboard's query variables read (`label_values(metric, label)`)."""
    variables = json.loads(DASHBOARD.read_text())["templating"]["list"]
    queries = [variable["definition"] for variable in variables if variable["type"] == "query"]
    assert queries and all(re.fullmatch(r"label_values\(\w+, \w+\)", query) for query in queries), queries
    return {query.split("(", 1)[1].split(",", 1)[0] for query in queries}


def test_dashboard_is_an_importable_grafana_dashboard():
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["schemaVersion"] >= 39 and dashboard["uid"] and dashboard["id"] is None
    variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    panels = [panel for panel in _panels(dashboard["panels"]) if panel["type"] != "row"]
    assert len({panel["id"] for panel in _panels(dashboard["panels"])}) == len(_panels(dashboard["panels"]))
    for panel in panels:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}" and target["legendFormat"], panel["title"]
            # A per-route query names the route in its legend, so the series can be told apart.
            grouped = re.search(r"\bby \(([^)]*)\)", target["expr"])
            if grouped and "handler" in grouped.group(1):
                assert "{{handler}}" in target["legendFormat"], panel["title"]
    titles = {panel["title"] for panel in panels}
    assert {"Request rate per route", "Errors per route", "p95 duration per route", "Relay role per replica"} <= titles
    assert {"Customers created", "Notes added", "Tags added", "Consumer outcomes", "Dead letters"} <= titles
    assert {"Outbox backlog", "Oldest pending age", "Database pool per replica"} <= titles


def test_histogram_quantiles_read_buckets_by_le():
    for expr in every_expression():
        for quantile in re.finditer(r"histogram_quantile\(", expr):
            inner = expr[quantile.end() :]
            assert re.search(r"by \([^)]*\ble\b", inner) and "_bucket" in inner, expr


def test_rule_file_matches_the_rule_file_schema_and_each_runbook_is_in_the_readme():
    document = yaml.safe_load(ALERTS.read_text())
    jsonschema.Draft202012Validator(json.loads(RULE_FILE_SCHEMA.read_text())).validate(document)
    names = [rule["alert"] for group in document["groups"] for rule in group["rules"]]
    assert len(names) == len(set(names)) == 5
    readme = (ROOT / "README.md").read_text()
    for rule in alert_rules():
        anchor = rule["annotations"]["runbook_url"].split("#", 1)[1]
        line = next((line for line in readme.splitlines() if f'id="{anchor}"' in line), None)
        assert line is not None, f"README.md has no runbook line for {rule['alert']} (#{anchor})"
        assert rule["alert"] in line, line


def test_expressions_are_well_formed_promql():
    """A sanity check that needs no promtool: balanced brackets, durations in ranges, known functions."""
    pairs = {")": "(", "]": "[", "}": "{"}
    for expr in every_expression():
        stack = []
        for char in _STRING.sub('""', expr):
            if char in "([{":
                stack.append(char)
            elif char in pairs:
                assert stack and stack.pop() == pairs[char], expr
        assert not stack, expr
        for selector in _RANGE.findall(_STRING.sub('""', expr)):
            assert re.fullmatch(r"\[\d+[smhdwy](:\d+[smhdwy])?\]", selector), expr
        metric_names(expr)  # raises on an unknown function


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed (Debian: prometheus)")
def test_promtool_checks_the_rules_runs_their_unit_tests_and_parses_the_dashboard(tmp_path):
    checked = subprocess.run(["promtool", "check", "rules", str(ALERTS)], capture_output=True, text=True)
    assert checked.returncode == 0 and "SUCCESS: 5 rules found" in checked.stdout, checked.stdout + checked.stderr
    tested = subprocess.run(["promtool", "test", "rules", str(ALERT_TESTS)], capture_output=True, text=True)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    # The dashboard's queries as recording rules: promtool parses each with Prometheus' own parser.
    queries = [with_grafana_variables(expr) for expr in dashboard_queries()]
    rules = [{"record": f"dashboard:query_{index}", "expr": expr} for index, expr in enumerate(queries)]
    as_rules = tmp_path / "dashboard-queries.yaml"
    as_rules.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    parsed = subprocess.run(["promtool", "check", "rules", str(as_rules)], capture_output=True, text=True)
    assert parsed.returncode == 0, parsed.stdout + parsed.stderr


# --- against a running service ------------------------------------------------------------------


def exposed(text: str) -> dict[str, str]:
    """Every series name a scrape of `text` can hold, with its family's type. A labelled family with
    no child yet (no consumer has run) is exposed by its TYPE line, its series by that type's suffixes."""
    names: dict[str, str] = {}
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "summary": ("_sum", "_count")}
    for family in text_string_to_metric_families(text):
        for name in [family.name, *(family.name + suffix for suffix in suffixes.get(family.type, ()))]:
            names[name] = family.type
        for sample in family.samples:
            names[sample.name] = family.type
    return names


def test_every_metric_of_the_dashboard_and_the_rules_is_exposed_by_a_running_service(database_url):
    env = {"BEE_DATABASE_URL": database_url, "BEE_JWT_SECRET": JWT_SECRET, "BEE_RELAY_ENABLED": "true"}
    with serving(**env) as base_url:
        assert httpx.get(f"{base_url}/healthcheck").status_code == 200  # a recorded request
        scrape = httpx.get(f"{base_url}/metrics")
    assert scrape.status_code == 200
    names = exposed(scrape.text)
    used = {name for expr in every_expression() for name in metric_names(expr)} | variable_metrics()
    assert used - names.keys() - EXTERNAL_METRICS.keys() == set()
    assert EXTERNAL_METRICS.keys() <= used, "an allowed external metric nothing reads any more"
    # Spec 6.4's metrics, the pipeline's and the new gauges are all read somewhere.
    assert {"customers_created_total", "notes_created_total", "tagged_customers_total"} <= used
    assert {"api_response_duration_bucket", "events_consumed_total", "outbox_relay_role"} <= used
    assert {"database_pool_connections", "service_ready", "outbox_oldest_pending_seconds"} <= used
    # Series the request and the scrape's refreshers have written (not only declared).
    samples = {s.name for family in text_string_to_metric_families(scrape.text) for s in family.samples}
    assert {"api_requests_total", "api_response_duration_bucket", "service_ready", "outbox_relay_role"} <= samples
    # Consumer outcomes exist at 0 before any message: increase() sees the first dead letter.
    assert sample(scrape.text, "events_consumed_total", result="dead_lettered") == 0
    for expr in every_expression():
        rated = rated_reads(expr)
        for name in rated:
            assert names[name] in ("counter", "histogram"), f"rate() of the {names[name]} {name}: {expr}"
        for name in metric_reads(expr):
            if names.get(name) in ("counter", "histogram"):  # a raw counter value means nothing
                assert metric_reads(expr).count(name) == rated.count(name), f"{name} without rate(): {expr}"


def sample(text: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(text):
        for each in family.samples:
            if each.name == name and all(each.labels.get(key) == value for key, value in labels.items()):
                return float(each.value)
    raise AssertionError(f"{name}{labels} not exposed")


async def test_pool_gauges_count_connections_in_use_against_the_ceiling(app, client):
    async with app.state.database.engine.connect():  # held through the scrape
        text = (await client.get("/metrics")).text
    settings = app.state.settings
    ceiling = settings.database_pool_size + settings.database_max_overflow
    assert sample(text, "database_pool_max_connections") == ceiling
    assert sample(text, "database_pool_connections", state="in_use") >= 1
    # Released: back in the pool, idle at the next scrape (the scrape's own checks return theirs too).
    assert sample((await client.get("/metrics")).text, "database_pool_connections", state="idle") >= 1


async def test_service_ready_follows_what_readyz_answers(client):
    assert (await client.get("/readyz")).status_code == 200
    assert sample((await client.get("/metrics")).text, "service_ready") == 1
    # A database that does not answer: /readyz is 503 and the gauge says so on the next scrape.
    unreachable = make_settings("postgresql+asyncpg://postgres@127.0.0.1:9/nothing")
    app = create_app(unreachable)
    async with running_app(app), client_for(app) as http:
        assert (await http.get("/readyz")).status_code == 503
        scrape = await http.get("/metrics")
    assert scrape.status_code == 200 and sample(scrape.text, "service_ready") == 0


async def test_relay_role_is_one_series_per_state(client):
    text = (await client.get("/metrics")).text  # the session's app runs no relay
    assert sample(text, "outbox_relay_role", role="not_running") == 1
    assert sample(text, "outbox_relay_role", role="leader") == 0


async def test_relay_role_shows_the_leader_and_the_standby(postgres_server):
    """Two relays on a database of their own (nothing else's outbox rows to publish): one leads."""
    require_service("RabbitMQ", RABBITMQ_URL, 5672)
    name, url = await create_database(postgres_server, prefix="bee_test_relay_role")
    exchanges = [f"bee.customers.events.test.{uuid.uuid4().hex[:12]}", f"bee.audit.events.test.{uuid.uuid4().hex[:12]}"]
    try:
        database_url = to_async_url(url)
        await asyncio.to_thread(run_migrations, database_url)
        settings = make_settings(
            database_url,
            rabbitmq_url=RABBITMQ_URL,
            relay_enabled=True,
            relay_poll_seconds=0.2,
            events_exchange=exchanges[0],
            audit_exchange=exchanges[1],
        )
        first, second = create_app(settings), create_app(settings)
        async with running_app(first), client_for(first) as http:
            await eventually(lambda: first.state.outbox_relay.state == "leader", what="the first relay to lead")
            text = (await http.get("/metrics")).text
            assert sample(text, "outbox_relay_role", role="leader") == 1
            assert sample(text, "outbox_relay_role", role="standby") == 0
            async with running_app(second), client_for(second) as other:
                await eventually(lambda: second.state.outbox_relay.state == "standby", what="the second to stand by")
                text = (await other.get("/metrics")).text
                assert sample(text, "outbox_relay_role", role="standby") == 1
                assert sample(text, "outbox_relay_role", role="leader") == 0
    finally:
        await drop_database(postgres_server, name)
        async with await aio_pika.connect(RABBITMQ_URL) as connection:
            channel = await connection.channel()
            for exchange in exchanges:
                await channel.exchange_delete(exchange)
