"""RabbitMQ side of the events: a robust aio-pika connection and a confirmed, mandatory publish.

Every publish waits for the broker's confirm. A message the broker cannot route (no queue bound
for its routing key) is returned because it is published `mandatory`, and a returned or nacked
message raises `PublishRejected`: it is never counted as delivered. Any connection or channel
trouble raises `BrokerUnavailable`, so the caller can tell "this message" from "the broker".
"""

import asyncio
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import aio_pika
import structlog
from aio_pika.abc import AbstractExchange, AbstractRobustChannel, AbstractRobustConnection
from aio_pika.connection import make_url
from aio_pika.exceptions import DeliveryError, PublishError

log = structlog.get_logger(__name__)

BrokerState = Literal["not_connected", "up", "down"]


class BrokerUnavailable(Exception):
    """The broker could not be reached or the channel broke: nothing about this message is known."""


class PublishRejected(Exception):
    """The broker answered for this message and refused it (returned unroutable, or nacked)."""


@dataclass(frozen=True, slots=True)
class OutgoingEvent:
    """One outbox row as it goes on the wire."""

    event_id: str
    name: str
    body: bytes
    trace_id: str | None = None
    request_id: str | None = None
    occurred_at: datetime | None = None


def describe(exc: BaseException) -> str:
    """A short, log- and column-safe description of an error."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}"[:500] if text else type(exc).__name__


def build_message(event: OutgoingEvent, *, app_id: str) -> aio_pika.Message:
    """The AMQP message of an event: JSON body, persistent, message_id = event_id, ids in headers."""
    return aio_pika.Message(
        event.body,
        content_type="application/json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=event.event_id,
        timestamp=event.occurred_at,
        type=event.name,
        app_id=app_id,
        headers={"event": event.name, "trace_id": event.trace_id, "request_id": event.request_id},
    )


class EventBroker:
    """The topic exchange events are published to, over one robust connection and channel."""

    def __init__(
        self,
        url: str,
        exchange_name: str,
        *,
        app_id: str,
        connect_timeout: float = 5.0,
        reconnect_interval: float = 5.0,
    ) -> None:
        self.url = url
        self.exchange_name = exchange_name
        self.app_id = app_id
        self.connect_timeout = connect_timeout
        self.reconnect_interval = reconnect_interval
        self.last_error: str | None = None
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractRobustChannel | None = None
        self._exchange: AbstractExchange | None = None
        self._failed = False

    @property
    def state(self) -> BrokerState:
        if self._connection is None:
            return "down" if self._failed else "not_connected"
        if self._failed or self._connection.is_closed or not self._connection.connected.is_set():
            return "down"
        return "up"

    async def connect(self) -> None:
        """Open the connection, a confirming channel, and declare the exchange (idempotent)."""
        if self._exchange is not None:
            return
        # What `aio_pika.connect_robust` does, keeping hold of the connection so that a failed
        # first attempt can be closed here (instead of by a finaliser outside the event loop).
        connection = aio_pika.RobustConnection(
            make_url(self.url, reconnect_interval=self.reconnect_interval),
            client_properties={"connection_name": self.app_id},
        )
        try:
            await connection.connect(timeout=self.connect_timeout)
            # Confirms on, and a returned (unroutable) mandatory message raises PublishError
            # instead of resolving as if it had been delivered.
            channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
            exchange = await channel.declare_exchange(
                self.exchange_name, aio_pika.ExchangeType.TOPIC, durable=True, timeout=self.connect_timeout
            )
        except Exception as exc:
            self._failed = True
            self.last_error = describe(exc)
            await _close_quietly(connection)
            raise BrokerUnavailable(self.last_error) from exc
        self._connection, self._channel, self._exchange = connection, channel, exchange
        # The robust connection reopens the channel and redeclares the exchange by itself after
        # an outage; this hears about it, so the state is right even before the next publish.
        connection.reconnect_callbacks.add(self._on_reconnect)
        self._failed = False
        self.last_error = None
        log.info("events_broker_connected", exchange=self.exchange_name)

    async def publish(self, event: OutgoingEvent) -> None:
        """Publish one event and wait for the broker's confirm (bound it with `asyncio.timeout`)."""
        if self._exchange is None:
            raise BrokerUnavailable("not connected")
        message = build_message(event, app_id=self.app_id)
        try:
            # No per-message timeout here: a timer per message costs more CPU than the publish
            # itself; the caller bounds a whole batch of confirms with one timeout instead.
            await self._exchange.publish(message, routing_key=event.name, mandatory=True)
        except PublishError as exc:  # returned: no queue is bound for this routing key
            raise PublishRejected(f"unroutable: {exc.message.delivery.reply_text}") from exc
        except DeliveryError as exc:  # nacked by the broker
            raise PublishRejected(describe(exc)) from exc
        except Exception as exc:  # channel closed, connection lost, confirm timed out
            self._failed = True
            self.last_error = describe(exc)
            raise BrokerUnavailable(self.last_error) from exc
        if self._failed:  # a confirm arrived again: the robust connection has recovered
            self._failed = False
            self.last_error = None

    @property
    def is_open(self) -> bool:
        """A connection exists (it may be reconnecting in the background)."""
        return self._exchange is not None

    def _on_reconnect(self, *_args: object) -> None:
        self._failed = False
        self.last_error = None
        log.info("events_broker_reconnected", exchange=self.exchange_name)

    def mark_unavailable(self, error: str) -> None:
        """Record that the broker stopped confirming (e.g. a caller's timeout ran out)."""
        self._failed = True
        self.last_error = error

    async def close(self) -> None:
        connection, self._connection, self._channel, self._exchange = self._connection, None, None, None
        if connection is not None:
            await _close_quietly(connection)


async def _close_quietly(connection: AbstractRobustConnection) -> None:
    try:
        await asyncio.wait_for(connection.close(), timeout=5)
    except Exception as exc:  # closing a broken connection may fail; it is gone either way
        log.debug("events_broker_close_failed", error=describe(exc))
