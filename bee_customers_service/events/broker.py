"""RabbitMQ side of the events: a robust aio-pika connection and a confirmed, mandatory publish.

Every publish waits for the broker's confirm. A message the broker cannot route (no queue bound
for its routing key) is returned because it is published `mandatory`, and a returned or nacked
message raises `PublishRejected`: it is never counted as delivered. Any connection or channel
trouble raises `BrokerUnavailable`, so the caller can tell "this message" from "the broker".
"""

import asyncio
import contextlib
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import aio_pika
import structlog
from aio_pika.abc import AbstractExchange, AbstractRobustChannel, AbstractRobustConnection
from aio_pika.connection import make_url
from aio_pika.exceptions import DeliveryError, PublishError
from pamqp.commands import Basic

log = structlog.get_logger(__name__)

# `up`: connected and confirming. `reconnecting`: an established connection was lost and the robust
# connection is re-opening it (expected to be short). `down`: the broker cannot be reached (a fresh
# connection failed), it stopped confirming, or reconnecting has lasted `down_after_seconds`.
BrokerState = Literal["not_connected", "up", "reconnecting", "down"]

# An object repr such as `<aio_pika.robust_channel.RobustChannel object at 0x7f2c...>`: unstable
# (the address changes every run) and noisy, so errors name the class instead.
_OBJECT_REPR = re.compile(r"<(?:[\w.]+\.)?(\w+)(?: object)?(?: [^<>]*?)? at 0x[0-9a-fA-F]+>")
_ADDRESS = re.compile(r"\s*\bat 0x[0-9a-fA-F]+\b|\b0x[0-9a-fA-F]{6,}\b")


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
    exchange: str | None = None  # None: the broker's `exchange_name`


def describe(exc: BaseException) -> str:
    """A short, stable description of an error: class and message, object reprs replaced by their class."""
    text = _ADDRESS.sub("", _OBJECT_REPR.sub(r"\1", str(exc))).strip()
    return f"{type(exc).__name__}: {text}"[:500] if text else type(exc).__name__


def short_error(exc: BaseException) -> str:
    """One line about an error, the database's own message for a wrapped DBAPI error (consumer logs)."""
    text = str(getattr(exc, "orig", None) or exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"[:300]


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
    """The topic exchanges events are published to, over one robust connection and channel.

    `exchange_name` is the default one; `other_exchanges` are declared beside it, for events that
    name their exchange (`OutgoingEvent.exchange`, e.g. the audit records).
    """

    def __init__(
        self,
        url: str,
        exchange_name: str,
        *,
        app_id: str,
        other_exchanges: Sequence[str] = (),
        connect_timeout: float = 5.0,
        reconnect_interval: float = 5.0,
        down_after_seconds: float = 30.0,
    ) -> None:
        self.url = url
        self.exchange_name = exchange_name
        self.exchange_names = tuple(dict.fromkeys((exchange_name, *other_exchanges)))
        self.app_id = app_id
        self.connect_timeout = connect_timeout
        self.reconnect_interval = reconnect_interval
        self.down_after_seconds = down_after_seconds
        self.last_error: str | None = None
        # How many times the robust connection came back; set on each return (see `wait_recovered`).
        self.reconnects = 0
        self.recovered = asyncio.Event()
        self._trouble_since: float | None = None  # monotonic time the state stopped being `up`
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractRobustChannel | None = None
        self._exchange: AbstractExchange | None = None
        self._exchanges: dict[str, AbstractExchange] = {}
        self._failed = False

    @property
    def state(self) -> BrokerState:
        connection = self._connection
        if connection is None:
            return "down" if self._failed else "not_connected"
        if connection.is_closed:
            return "down"
        if not connection.connected.is_set():  # lost: the robust connection is retrying
            since = self.trouble_seconds
            return "down" if since is not None and since >= self.down_after_seconds else "reconnecting"
        return "down" if self._failed else "up"  # connected but not confirming (or a channel broke)

    @property
    def trouble_seconds(self) -> float | None:
        """Seconds since the broker stopped being `up` (None while it is up)."""
        connection = self._connection
        troubled = self._failed or connection is None or connection.is_closed or not connection.connected.is_set()
        if not troubled:
            self._trouble_since = None
            return None
        if self._trouble_since is None:
            self._trouble_since = time.monotonic()
        return round(time.monotonic() - self._trouble_since, 3)

    def _set_failed(self, error: str) -> None:
        self._failed = True
        self.last_error = error
        if self._trouble_since is None:
            self._trouble_since = time.monotonic()

    def _set_ok(self) -> None:
        self._failed = False
        self.last_error = None
        self._trouble_since = None

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
            exchanges: dict[str, AbstractExchange] = {
                name: await channel.declare_exchange(
                    name, aio_pika.ExchangeType.TOPIC, durable=True, timeout=self.connect_timeout
                )
                for name in self.exchange_names
            }
        except Exception as exc:
            self._set_failed(describe(exc))
            await _close_quietly(connection)
            raise BrokerUnavailable(self.last_error) from exc
        self._connection, self._channel, self._exchange = connection, channel, exchanges[self.exchange_name]
        self._exchanges = exchanges
        # The robust connection reopens the channel and redeclares the exchange by itself after
        # an outage; this hears about it, so the state is right even before the next publish.
        connection.reconnect_callbacks.add(self._on_reconnect)
        connection.close_callbacks.add(self._on_connection_lost)
        self._set_ok()
        log.info("events_broker_connected", exchange=self.exchange_name, exchanges=list(self.exchange_names))

    async def publish(self, event: OutgoingEvent) -> None:
        """Publish one event and wait for the broker's confirm (bound it with `asyncio.timeout`)."""
        if self._exchange is None:
            raise BrokerUnavailable("not connected")
        exchange = self._exchanges.get(event.exchange) if event.exchange else self._exchange
        if exchange is None:
            raise PublishRejected(f"exchange {event.exchange!r} is not declared by this broker")
        message = build_message(event, app_id=self.app_id)
        try:
            # No per-message timeout here: a timer per message costs more CPU than the publish
            # itself; the caller bounds a whole batch of confirms with one timeout instead.
            await exchange.publish(message, routing_key=event.name, mandatory=True)
        except PublishError as exc:  # returned: no queue is bound for this routing key
            raise PublishRejected(f"unroutable: {_reply_text(exc)}") from exc
        except DeliveryError as exc:  # nacked by the broker
            raise PublishRejected(describe(exc)) from exc
        except Exception as exc:  # channel closed, connection lost, confirm timed out
            self._set_failed(describe(exc))
            raise BrokerUnavailable(describe(exc)) from exc
        if self._failed:  # a confirm arrived again: the robust connection has recovered
            self._set_ok()

    @property
    def is_open(self) -> bool:
        """A connection exists (it may be reconnecting in the background)."""
        return self._exchange is not None

    def _on_reconnect(self, *_args: object) -> None:
        self._set_ok()
        self.reconnects += 1
        self.recovered.set()
        log.info("events_broker_reconnected", exchange=self.exchange_name)

    def _on_connection_lost(self, _connection: object, exc: BaseException | None = None) -> None:
        if self._connection is not None and exc is not None:  # not our own close()
            self._set_failed(describe(exc))

    async def wait_recovered(self, since: int, seconds: float) -> bool:
        """Wait up to `seconds` for the robust connection to come back after reconnect number `since`."""
        if self.reconnects > since:
            return True
        self.recovered.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.recovered.wait(), seconds)
        return self.reconnects > since

    def mark_unavailable(self, error: str) -> None:
        """Record that the broker stopped confirming (e.g. a caller's timeout ran out)."""
        self._set_failed(error)

    async def close(self) -> None:
        connection, self._connection, self._channel, self._exchange = self._connection, None, None, None
        self._exchanges = {}
        if connection is not None:
            await _close_quietly(connection)


def _reply_text(exc: PublishError) -> str:
    """The broker's reason for returning a message (e.g. NO_ROUTE)."""
    delivery = exc.message.delivery if exc.message is not None else None
    return delivery.reply_text if isinstance(delivery, Basic.Return) else describe(exc)


async def _close_quietly(connection: AbstractRobustConnection) -> None:
    try:
        await asyncio.wait_for(connection.close(), timeout=5)
    except Exception as exc:  # closing a broken connection may fail; it is gone either way
        log.debug("events_broker_close_failed", error=describe(exc))
