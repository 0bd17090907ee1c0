"""docs/asyncapi.yaml: every event this service publishes and consumes, as an AsyncAPI 3.0 document.

Generated, so it cannot drift: the published messages from the event catalogue (events/catalogue.py:
routing keys, exchanges, fields) and the relay's own message building (events/broker.py), the
consumed ones from the contracts (activity/contract.py, identity/contract.py) and the consumers'
queue topologies, with the settings' defaults for the names. tests/events/test_asyncapi.py fails
when the committed file differs; regenerate with REGENERATE.
"""

import re
import sys
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]  # a dev dependency: this is a developer tool, never served

from bee_customers_service.activity import contract as activity_contract
from bee_customers_service.activity.consumer import activity_topology
from bee_customers_service.asyncapi import examples
from bee_customers_service.asyncapi.schemas import Components, consumed_schema, published_schema
from bee_customers_service.asyncapi.summaries import SUMMARIES
from bee_customers_service.core.config import Settings
from bee_customers_service.events.catalogue import CATALOGUE, CustomerEvent
from bee_customers_service.events.topology import QueueTopology
from bee_customers_service.identity import contract as identity_contract
from bee_customers_service.identity.consumer import identity_topology

REGENERATE = "python -m bee_customers_service.asyncapi --write docs/asyncapi.yaml"
BINDING_VERSION = "0.3.0"
HEADERS_SCHEMA = "EventHeaders"
# Every exchange, ours and the ones we bind to, is declared topic and durable, never auto-deleted
# (events/broker.py EventBroker.connect, events/topology.py QueueTopology.declare).
EXCHANGE_KIND = {"type": "topic", "durable": True, "autoDelete": False, "vhost": "/"}
CONSUMED_MODELS: dict[str, Any] = {**activity_contract.MODELS, **identity_contract.MODELS}

_HEADER_MEANINGS = {
    "event": "the routing key (also the payload's `event`)",
    "trace_id": "the payload's `trace_id`",
    "request_id": "the payload's `request_id`",
}


def message_id(routing_key: str) -> str:
    """`v1.audit.customer.note_added` -> `auditCustomerNoteAdded` (channel and message ids)."""
    first, *rest = re.split(r"[._]", routing_key.removeprefix("v1."))
    return first + "".join(word.capitalize() for word in rest)


def _defaults() -> Settings:
    """The settings' defaults, whatever BEE_* the environment sets: the document names the defaults."""
    return Settings.model_construct()


def _setting_of(settings: Settings, value: str) -> str:
    names = [name for name in type(settings).model_fields if getattr(settings, name) == value]
    return f"BEE_{names[0].upper()}"


def _ref(*parts: str) -> dict[str, str]:
    return {"$ref": "#/" + "/".join(parts)}


def _exchange_channel(key: str, exchange: str, setting: str, direction: str) -> dict[str, Any]:
    ident = message_id(key)
    return {
        "address": key,
        "title": key,
        "description": f"Routing key `{key}` on the `{exchange}` topic exchange (`{setting}`); {direction}.",
        "messages": {ident: _ref("components", "messages", ident)},
        "bindings": {
            "amqp": {
                "is": "routingKey",
                "exchange": {"name": exchange, **EXCHANGE_KIND},
                "bindingVersion": BINDING_VERSION,
            }
        },
    }


def _published_message(settings: Settings, event: type[CustomerEvent], example: CustomerEvent) -> dict[str, Any]:
    body = examples.published_body(example)
    message = examples.published_message(body, app_id=settings.service_name)
    assert message.message_id == body["event_id"] and message.type == event.name
    return {
        "name": event.name,
        "title": type(example).__name__,
        "summary": SUMMARIES[event.name],
        "contentType": message.content_type,
        "headers": _ref("components", "schemas", HEADERS_SCHEMA),
        "payload": _ref("components", "schemas", type(example).__name__),
        "bindings": {
            "amqp": {
                "messageType": message.type,
                "bindingVersion": BINDING_VERSION,
                # The AMQP properties build_message sets, which the binding has no fields for.
                "x-amqp-properties": {
                    "message_id": "the payload's event_id: consumers deduplicate on it",
                    "app_id": message.app_id,
                    "content_type": message.content_type,
                    "delivery_mode": int(message.delivery_mode),
                    "timestamp": "the payload's occurred_at (whole seconds)",
                    "type": message.type,
                },
            }
        },
        "examples": [{"name": message_id(event.name), "headers": dict(message.headers), "payload": body}],
    }


def _consumed_message(key: str) -> dict[str, Any]:
    model = CONSUMED_MODELS[key]
    return {
        "name": key,
        "title": model.__name__,
        "summary": SUMMARIES[key],
        "contentType": "application/json",
        "payload": _ref("components", "schemas", model.__name__),
        "bindings": {"amqp": {"bindingVersion": BINDING_VERSION}},
        "examples": [{"name": message_id(key), "payload": examples.consumed_body(key)}],
    }


def _queue_channel(settings: Settings, topology: QueueTopology) -> tuple[str, dict[str, Any]]:
    ident = topology.queue.rsplit(".", 1)[-1] + "Queue"
    keys = [key for _, bound in topology.bindings for key in bound]
    bindings = "; ".join(
        f"`{exchange}` (`{_setting_of(settings, exchange)}`): " + ", ".join(f"`{key}`" for key in bound)
        for exchange, bound in topology.bindings
    )
    description = (
        f"The durable queue `{topology.queue}` (`{_setting_of(settings, topology.queue)}`), bound to {bindings}. "
        f"A message that fails for a while waits in `{topology.retry_queue}` (per-message TTL) and comes back; "
        f"one that can never be applied is published to the dead-letter exchange `{topology.dead_letter_exchange}` "
        f"(queue `{topology.dead_letter_queue}`) with the reason in `x-bee-dead-letter-reason` (docs/events.md)."
    )
    channel = {
        "address": topology.queue,
        "title": topology.queue,
        "description": description,
        "messages": {message_id(key): _ref("components", "messages", message_id(key)) for key in keys},
        "bindings": {
            "amqp": {
                "is": "queue",
                "queue": {
                    "name": topology.queue,
                    "durable": True,
                    "exclusive": False,
                    "autoDelete": False,
                    "vhost": "/",
                },
                "bindingVersion": BINDING_VERSION,
            }
        },
    }
    return ident, channel


def build() -> dict[str, Any]:
    """The AsyncAPI document as a dict (rendered by `render`)."""
    settings = _defaults()
    components = Components()
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    payloads: dict[str, Any] = {}

    by_class = {type(example): example for example in examples.PUBLISHED}
    missing = set(CATALOGUE.values()) - set(by_class)
    assert not missing and len(by_class) == len(examples.PUBLISHED), f"one example per event: {missing}"
    for key, event in CATALOGUE.items():
        ident, exchange = message_id(key), getattr(settings, event.exchange_setting)
        channels[ident] = _exchange_channel(key, exchange, f"BEE_{event.exchange_setting.upper()}", "published")
        messages[ident] = _published_message(settings, event, by_class[event])
        payloads[event.__name__] = published_schema(event, components)
        operations["send" + ident[0].upper() + ident[1:]] = {
            "action": "send",
            "channel": _ref("channels", ident),
            "summary": SUMMARIES[key],
            "messages": [_ref("channels", ident, "messages", ident)],
            "bindings": {
                # Persistent, published mandatory (an unroutable message is returned, not lost), with
                # a timestamp: events/broker.py.
                "amqp": {"deliveryMode": 2, "mandatory": True, "timestamp": True, "bindingVersion": BINDING_VERSION}
            },
        }

    for topology in (activity_topology(settings), identity_topology(settings)):
        for exchange, keys in topology.bindings:
            for key in keys:
                ident = message_id(key)
                setting = _setting_of(settings, exchange)
                channels[ident] = _exchange_channel(key, exchange, setting, f"consumed from `{topology.queue}`")
                messages[ident] = _consumed_message(key)
                model = CONSUMED_MODELS[key]
                payloads[model.__name__] = consumed_schema(model, components)
        queue_id, channel = _queue_channel(settings, topology)
        channels[queue_id] = channel
        operations["receive" + queue_id[0].upper() + queue_id[1:]] = {
            "action": "receive",
            "channel": _ref("channels", queue_id),
            "summary": f"Consume `{topology.queue}`: acknowledged after the change commits, idempotent by `event_id`.",
            "messages": [_ref("channels", queue_id, "messages", name) for name in channel["messages"]],
            "bindings": {"amqp": {"ack": True, "bindingVersion": BINDING_VERSION}},
        }

    for name, schema in payloads.items():
        components.add(name, schema)
    components.add(HEADERS_SCHEMA, _headers_schema(settings))
    return {
        "asyncapi": "3.0.0",
        "info": _info(settings),
        "defaultContentType": "application/json",
        "servers": _servers(),
        "channels": channels,
        "operations": operations,
        "components": {
            "schemas": dict(sorted(components.schemas.items())),
            "messages": dict(sorted(messages.items())),
        },
    }


def _headers_schema(settings: Settings) -> dict[str, Any]:
    body = examples.published_body(examples.PUBLISHED[0])
    headers = dict(examples.published_message(body, app_id=settings.service_name).headers)
    return {
        "type": "object",
        "description": "The AMQP headers of every published message (events/broker.py build_message).",
        "properties": {name: {"type": "string", "description": _HEADER_MEANINGS[name]} for name in headers},
        "required": list(headers),
    }


def _info(settings: Settings) -> dict[str, Any]:
    return {
        "title": "bee_customers_service events",
        "version": "1.0.0",
        "description": (
            "The RabbitMQ contract of bee_customers_service: the `v1.customer.*` events "
            f"(`{settings.events_exchange}`) and `v1.audit.customer.*` records (`{settings.audit_exchange}`) "
            "it publishes through its transactional outbox, and the order, appointment and user events it "
            "consumes. Delivery is at least once: deduplicate on `message_id` (the payload's `event_id`). "
            "A customer's events arrive in commit order. Exchange and queue names are the settings' defaults. "
            "Fields marked `x-personal` are personal data; who reads which field, retries and dead letters: "
            "docs/events.md. Generated from the code: do not edit; run `" + REGENERATE + "`."
        ),
    }


def _servers() -> dict[str, Any]:
    return {
        "rabbitmq": {
            "host": "{host}",
            "protocol": "amqp",
            "protocolVersion": "0-9-1",
            "description": "The broker of `BEE_RABBITMQ_URL`.",
            "variables": {"host": {"default": "localhost:5672", "description": "host:port of `BEE_RABBITMQ_URL`"}},
        }
    }


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True  # no &anchors: every schema is spelt out where it is used


def render() -> str:
    """docs/asyncapi.yaml's text: stable (the order is the code's; no anchors)."""
    text = yaml.dump(build(), Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=110)
    return f"# Generated from the event catalogue and the consumed contracts: do not edit; run `{REGENERATE}`.\n{text}"


def main(argv: list[str]) -> int:
    """`python -m bee_customers_service.asyncapi` prints the document; `--write FILE` writes it."""
    if not argv:
        sys.stdout.write(render())
        return 0
    if len(argv) == 2 and argv[0] == "--write":
        Path(argv[1]).write_text(render(), encoding="utf-8")
        return 0
    sys.stderr.write(f"usage: {REGENERATE.rsplit(' --', 1)[0]} [--write docs/asyncapi.yaml]\n")
    return 2
