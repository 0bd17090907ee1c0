"""docs/asyncapi.yaml: generated from the code, valid for the official parser, true of the real messages.

The document is checked three ways: it is what the generator writes (no drift); the official
AsyncAPI parser (@asyncapi/parser, run with node; `bash scripts/ensure-services.sh` installs it)
finds no error in it; and every message the service publishes in a real flow through the API and
the relay, read back from RabbitMQ, validates against the payload and header schemas it documents.
"""

import copy
import io
import json
import shutil
import subprocess
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import aio_pika
import httpx
import jsonschema
import pytest
import yaml
from aio_pika.abc import AbstractIncomingMessage
from PIL import Image

from bee_customers_service.activity import contract as activity_contract
from bee_customers_service.activity.consumer import delete_topology as delete_activity_topology
from bee_customers_service.app import create_app
from bee_customers_service.asyncapi import document
from bee_customers_service.core.config import Settings
from bee_customers_service.events.catalogue import CATALOGUE, AuditRecord
from bee_customers_service.gdpr.redaction import redacted_body
from bee_customers_service.identity import contract as identity_contract
from bee_customers_service.identity.consumer import delete_topology as delete_identity_topology
from tests.activity.conftest import broker_names
from tests.conftest import client_for, running_app
from tests.events.tools import eventually
from tests.services import IN_CI, RABBITMQ_URL

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "asyncapi.yaml"
VALIDATE = ROOT / "scripts" / "asyncapi" / "validate.cjs"
PARSER_DIR = ROOT / ".tools" / "asyncapi"

FORMATS = jsonschema.FormatChecker()


@FORMATS.checks("date-time", raises=ValueError)
def _is_datetime(value: object) -> bool:
    # jsonschema checks date-time only with an optional package: this one is RFC 3339 with an offset.
    return not isinstance(value, str) or (value[10:11] == "T" and datetime.fromisoformat(value).tzinfo is not None)


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return yaml.safe_load(DOC.read_text(encoding="utf-8"))


def _errors(spec: dict[str, Any], ref: str, instance: Any) -> list[str]:
    """Validation errors of `instance` against the schema at `ref` ("#/components/schemas/...")."""
    schema = {"$ref": ref, "components": spec["components"]}
    validator = jsonschema.Draft7Validator(schema, format_checker=FORMATS)
    return [f"{'/'.join(map(str, e.absolute_path)) or '(body)'}: {e.message}" for e in validator.iter_errors(instance)]


def _message(spec: dict[str, Any], routing_key: str) -> dict[str, Any]:
    return spec["components"]["messages"][document.message_id(routing_key)]


def _node_and_parser() -> str:
    node = shutil.which("node")
    if node is None or not (PARSER_DIR / "node_modules" / "@asyncapi" / "parser" / "package.json").is_file():
        message = "node and @asyncapi/parser are needed (bash scripts/ensure-services.sh installs the parser)"
        if IN_CI:
            pytest.fail(f"{message}; CI needs them", pytrace=False)
        pytest.skip(message)
    return node


def _parse(node: str, path: Path) -> tuple[int, list[dict[str, Any]]]:
    result = subprocess.run(
        [node, str(VALIDATE), str(path)], capture_output=True, text=True, timeout=120, cwd=ROOT, check=False
    )
    assert result.returncode in (0, 1), result.stderr
    return result.returncode, [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


# --- the document ---------------------------------------------------------------------------------


def test_committed_document_is_the_generated_one():
    assert DOC.read_text(encoding="utf-8") == document.render(), (
        f"docs/asyncapi.yaml differs from the code: run `{document.REGENERATE}`"
    )


def test_official_parser_finds_no_error_nor_warning():
    code, diagnostics = _parse(_node_and_parser(), DOC)
    serious = [d for d in diagnostics if d["severity"] in ("error", "warning")]
    assert code == 0 and not serious, serious


def test_official_parser_refuses_a_broken_document(spec, tmp_path):
    """The check is real: a dangling reference and a wrong binding are errors of the parser."""
    broken = copy.deepcopy(spec)
    del broken["components"]["schemas"]["Actor"]
    broken["channels"]["customerCreated"]["bindings"]["amqp"]["exchange"]["type"] = "round-robin"
    path = tmp_path / "asyncapi.yaml"
    path.write_text(yaml.safe_dump(broken), encoding="utf-8")
    code, diagnostics = _parse(_node_and_parser(), path)
    errors = [d for d in diagnostics if d["severity"] == "error"]
    assert code == 1
    assert any("Actor" in d["message"] or "Actor" in d["path"] for d in errors), errors
    assert any("customerCreated" in d["path"] for d in errors), errors


def test_every_event_has_a_channel_a_message_and_an_operation(spec):
    published = {key: cls.exchange_setting for key, cls in CATALOGUE.items()}
    consumed = {**activity_contract.MODELS, **identity_contract.MODELS}
    addresses = {channel["address"]: channel for channel in spec["channels"].values()}
    assert set(published) | set(consumed) <= set(addresses)
    for key, setting in published.items():
        exchange = addresses[key]["bindings"]["amqp"]["exchange"]
        assert exchange == {
            "name": "bee.audit.events" if setting == "audit_exchange" else "bee.customers.events",
            "type": "topic",
            "durable": True,
            "autoDelete": False,
            "vhost": "/",
        }
    sends = {
        spec["channels"][op["channel"]["$ref"].rsplit("/", 1)[1]]["address"]
        for op in spec["operations"].values()
        if op["action"] == "send"
    }
    assert sends == set(published)
    receives = [op for op in spec["operations"].values() if op["action"] == "receive"]
    queues = {spec["channels"][op["channel"]["$ref"].rsplit("/", 1)[1]]["address"]: op for op in receives}
    assert set(queues) == {"bee.customers.activity", "bee.customers.auth"}
    received = {ref["$ref"].rsplit("/", 1)[1] for op in receives for ref in op["messages"]}
    assert received == {document.message_id(key) for key in consumed}
    for op in spec["operations"].values():
        if op["action"] == "send":
            assert op["bindings"]["amqp"]["deliveryMode"] == 2  # persistent


# --- the examples and the schemas -----------------------------------------------------------------


@pytest.mark.parametrize("routing_key", sorted(CATALOGUE))
def test_published_example_validates_and_so_does_its_redacted_copy(spec, routing_key):
    message = _message(spec, routing_key)
    [example] = message["examples"]
    assert _errors(spec, message["payload"]["$ref"], example["payload"]) == []
    assert _errors(spec, message["headers"]["$ref"], example["headers"]) == []
    # an erasure rewrites a pending body: personal fields null, `redacted: true`
    assert _errors(spec, message["payload"]["$ref"], redacted_body(example["payload"])) == []


def test_payload_schemas_refuse_what_the_service_never_sends(spec):
    message = _message(spec, "v1.customer.created")
    ref, body = message["payload"]["$ref"], message["examples"][0]["payload"]
    assert _errors(spec, ref, {**body, "email": None})  # null personal data outside a redacted body
    assert _errors(spec, ref, {**body, "nickname": "Ana"})  # a field the catalogue does not have
    assert _errors(spec, ref, {key: value for key, value in body.items() if key != "created_at"})
    assert _errors(spec, ref, {**body, "event": "v1.customer.updated"})
    assert _errors(spec, ref, {**body, "event_id": "not-a-uuid"})
    assert _errors(spec, ref, {**body, "occurred_at": "yesterday"})


@pytest.mark.parametrize("routing_key", sorted({**activity_contract.MODELS, **identity_contract.MODELS}))
def test_consumed_example_is_accepted_by_the_contract_and_its_schema(spec, routing_key):
    message = _message(spec, routing_key)
    [example] = message["examples"]
    assert _errors(spec, message["payload"]["$ref"], example["payload"]) == []
    parse = activity_contract.parse if routing_key in activity_contract.MODELS else identity_contract.parse
    parsed = parse(routing_key, json.dumps(example["payload"]).encode())
    assert not isinstance(parsed, activity_contract.Rejected | identity_contract.Rejected), parsed
    assert str(parsed.event_id) == example["payload"]["event_id"]
    # and what the contract refuses, the schema refuses too
    assert _errors(spec, message["payload"]["$ref"], {**example["payload"], "event_id": None})


def test_no_dangling_references(spec):
    refs: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            refs.extend([node["$ref"]] if isinstance(node.get("$ref"), str) else [])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(spec)
    assert refs and "$defs" not in DOC.read_text(encoding="utf-8")
    for ref in refs:
        target: Any = spec
        for part in ref.removeprefix("#/").split("/"):
            target = target[part]  # KeyError: a reference to nothing


# --- the real messages ----------------------------------------------------------------------------


def _validate_published(spec: dict[str, Any], messages: list[AbstractIncomingMessage]) -> list[dict[str, Any]]:
    """The bodies of messages read back from RabbitMQ, each checked against its documented schemas."""
    bodies = []
    for message in messages:
        key, body = message.routing_key or "", json.loads(message.body)
        documented = _message(spec, key)
        assert _errors(spec, documented["payload"]["$ref"], body) == [], key
        assert _errors(spec, documented["headers"]["$ref"], dict(message.headers or {})) == [], key
        bodies.append(body)
    return bodies


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (24, 24), (40, 120, 200)).save(buffer, format="PNG")
    return buffer.getvalue()


async def test_every_message_published_in_a_real_flow_matches_the_document(
    spec, relay_settings, consumer, audit_consumer, exchange_name, audit_exchange_name, world
):
    admin, service = world.admin, world.service
    settings = relay_settings()
    app = create_app(settings)
    async with running_app(app), client_for(app) as http:
        created = await http.post("/customers", json=world.profile(), headers=service.headers)
        assert created.status_code == 201, created.text
        customer = created.json()
        base = f"/customers/{customer['id']}"
        changes = {"full_name": "Ana Ionescu", "email": "ana.ionescu@example.com", "phone": None}
        assert (await http.patch(base, json=changes, headers=admin.headers)).status_code == 200
        tag = await http.post(f"{base}/tags", json={"label": "VIP", "color": "#ff8800"}, headers=admin.headers)
        assert tag.status_code == 201, tag.text
        assert (await http.delete(f"{base}/tags/{tag.json()['id']}", headers=admin.headers)).status_code == 204
        note = await http.post(f"{base}/notes", json={"content": "Prefers mornings"}, headers=admin.headers)
        assert note.status_code == 201, note.text
        assert (await http.delete(f"{base}/notes/{note.json()['id']}", headers=admin.headers)).status_code == 204
        avatar = await http.post(
            f"{base}/avatar", files={"file": ("a.png", _png(), "image/png")}, headers=admin.headers
        )
        assert avatar.status_code == 200, avatar.text
        assert (await http.delete(f"{base}/avatar", headers=admin.headers)).status_code == 204
        assert (await http.post(f"{base}/stats/recompute", headers=admin.headers)).status_code == 200
        assert (await http.get(f"{base}/export", headers=admin.headers)).status_code == 200
        # Everything is out before the erasure (which would redact what is still pending).
        await consumer.wait_for_count(world.business_id, 7)
        await audit_consumer.wait_for_count(world.business_id, 10)
        assert (await http.delete(base, headers=admin.headers)).status_code == 204
        await consumer.wait_for_count(world.business_id, 8)
        await audit_consumer.wait_for_count(world.business_id, 11)
        await consumer.flush()
        await audit_consumer.flush()

    messages = consumer.of(world.business_id) + audit_consumer.of(world.business_id)
    _validate_published(spec, messages)
    seen: set[str] = set()
    for message in messages:
        key, body = message.routing_key or "", json.loads(message.body)
        channel = spec["channels"][document.message_id(key)]
        # the AMQP properties the document promises
        properties = _message(spec, key)["bindings"]["amqp"]["x-amqp-properties"]
        assert message.message_id == body["event_id"] and message.type == key == body["event"]
        assert (message.content_type, message.delivery_mode, message.app_id) == (
            properties["content_type"],
            properties["delivery_mode"],
            settings.service_name,
        )
        # on the exchange of the channel (the test session's own, named by the same setting)
        expected = audit_exchange_name if issubclass(CATALOGUE[key], AuditRecord) else exchange_name
        assert message.exchange == expected
        assert channel["bindings"]["amqp"]["exchange"]["name"] == getattr(
            Settings.model_construct(), CATALOGUE[key].exchange_setting
        )
        seen.add(key)
    assert seen == set(CATALOGUE)  # every catalogue event went through at least once


async def test_the_documented_consumed_examples_are_applied_and_what_follows_matches_the_document(
    spec, relay_settings, consumer, audit_consumer, world
):
    """Each consumed example, published to the consumers' real exchanges, is applied; the profile it
    creates, the auth update and the auth deletion are published as the document says."""
    user, business = str(uuid.uuid4()), str(world.business_id)
    suffix = uuid.uuid4().hex[:10]
    names = broker_names("asyncapi") | {
        "auth_exchange": f"test.asyncapi.{suffix}.auth.events",
        "auth_queue": f"test.asyncapi.{suffix}.customers.auth",
        "auth_dead_letter_exchange": f"test.asyncapi.{suffix}.customers.auth.dlx",
        "auth_dead_letter_queue": f"test.asyncapi.{suffix}.customers.auth.dlq",
    }
    settings = relay_settings(
        **names,
        activity_consumer_enabled=True,
        auth_consumer_enabled=True,
        activity_batch_linger_ms=5,
        auth_batch_linger_ms=5,
        activity_retry_delay_ms=100,
        auth_retry_delay_ms=100,
    )
    exchanges = {
        **dict.fromkeys(activity_contract.ORDER_KEYS, settings.orders_exchange),
        **dict.fromkeys(activity_contract.APPOINTMENT_KEYS, settings.scheduling_exchange),
        **dict.fromkeys(identity_contract.KEYS, settings.auth_exchange),
    }

    def example(key: str) -> bytes:
        payload = {**_message(spec, key)["examples"][0]["payload"], "event_id": str(uuid.uuid4()), "user_id": user}
        if key in activity_contract.MODELS:
            payload["business_id"] = business
        return json.dumps(payload).encode()

    app = create_app(settings)
    try:
        async with running_app(app), client_for(app) as served, await aio_pika.connect(RABBITMQ_URL) as connection:
            for check in ("activity_consumer", "identity_consumer"):
                await eventually(lambda check=check: _is_up(served, check), what=f"{check} to be up")
            channel = await connection.channel(publisher_confirms=True)

            async def send(key: str) -> None:
                exchange = await channel.get_exchange(exchanges[key], ensure=False)
                await exchange.publish(aio_pika.Message(example(key), content_type="application/json"), key)

            for key in (*activity_contract.ORDER_KEYS, *activity_contract.APPOINTMENT_KEYS):
                await send(key)  # the first (an order with its customer snapshot) creates the profile
            [created] = await consumer.wait_for_count(business, 1)
            assert (created["event"], created["user_id"]) == ("v1.customer.created", user)
            await send(identity_contract.USER_UPDATED)
            await consumer.wait_for_count(business, 2)
            await send(identity_contract.USER_DELETED)
            await consumer.wait_for_count(business, 3)
            await audit_consumer.wait_for_count(business, 3)
            await consumer.flush()
            await audit_consumer.flush()
            applied = (await served.get("/readyz")).json()["checks"]
            assert applied["activity_consumer"]["applied"] == len(activity_contract.MODELS)
    finally:
        async with await aio_pika.connect(RABBITMQ_URL) as connection:
            channel = await connection.channel()
            await delete_activity_topology(channel, settings)
            await delete_identity_topology(channel, settings)

    events = _validate_published(spec, consumer.of(business))
    records = _validate_published(spec, audit_consumer.of(business))
    assert [body["event"] for body in events] == ["v1.customer.created", "v1.customer.updated", "v1.customer.deleted"]
    assert events[1]["source"] == "auth" and events[1]["email"] == "ana.p@example.com"
    assert [body["event"] for body in records] == [
        "v1.audit.customer.created",
        "v1.audit.customer.updated",
        "v1.audit.customer.erased",
    ]
    assert records[0]["actor"] is None  # the activity consumer acted on its own


async def _is_up(served: httpx.AsyncClient, check: str) -> bool:
    return (await served.get("/readyz")).json()["checks"].get(check, {}).get("status") == "up"
