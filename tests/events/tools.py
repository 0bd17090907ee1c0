"""Test tools for the events: a real RabbitMQ consumer, a relay runner and a TCP fault injector."""

import asyncio
import contextlib
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aio_pika
from aio_pika.abc import AbstractIncomingMessage

from bee_customers_service.core.config import Settings
from bee_customers_service.events.relay import OutboxRelay
from tests.services import free_port

WAIT_SECONDS = 20.0  # a guard against hanging, not a timing assertion


async def eventually(check: Callable[[], Any], *, what: str, seconds: float = WAIT_SECONDS) -> Any:
    """Poll `check` (sync or async) until it returns something truthy; fail with `what` otherwise."""
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        await asyncio.sleep(0.05)


class EventConsumer:
    """An exclusive queue bound to the test exchange, collecting every message it receives."""

    def __init__(self, url: str, exchange: str, binding_keys: Iterable[str] = ("v1.customer.#",)) -> None:
        self.url = url
        self.exchange_name = exchange
        self.binding_keys = list(binding_keys)
        self.messages: list[AbstractIncomingMessage] = []
        self._sentinels: set[str] = set()

    async def __aenter__(self) -> "EventConsumer":
        self.connection = await aio_pika.connect(self.url)
        self.channel = await self.connection.channel()
        self.exchange = await self.channel.declare_exchange(
            self.exchange_name, aio_pika.ExchangeType.TOPIC, durable=True
        )
        self.queue = await self.channel.declare_queue(exclusive=True, auto_delete=True)
        for key in self.binding_keys:
            await self.queue.bind(self.exchange, routing_key=key)
        await self.queue.consume(self._on_message, no_ack=True)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.connection.close()

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        if message.message_id in self._sentinels:
            self._sentinels.discard(message.message_id)
            return
        self.messages.append(message)

    async def bind(self, routing_key: str) -> None:
        await self.queue.bind(self.exchange, routing_key=routing_key)

    def bodies(self, business_id: uuid.UUID | str) -> list[dict[str, Any]]:
        """The decoded bodies of this business's events, in arrival order."""
        decoded = (json.loads(m.body) for m in self.messages)
        return [body for body in decoded if body.get("business_id") == str(business_id)]

    def of(self, business_id: uuid.UUID | str) -> list[AbstractIncomingMessage]:
        return [m for m in self.messages if json.loads(m.body).get("business_id") == str(business_id)]

    async def wait_for_count(self, business_id: uuid.UUID | str, count: int) -> list[dict[str, Any]]:
        await eventually(lambda: len(self.bodies(business_id)) >= count, what=f"{count} events of {business_id}")
        return self.bodies(business_id)

    async def flush(self) -> None:
        """Wait until everything already routed to the queue has been received.

        A marker goes through the default exchange into the same queue; queues are FIFO, so when
        the marker arrives, every message the broker confirmed before it has arrived too.
        """
        marker = uuid.uuid4().hex
        self._sentinels.add(marker)
        await self.channel.default_exchange.publish(aio_pika.Message(b"{}", message_id=marker), self.queue.name)
        await eventually(lambda: marker not in self._sentinels, what="the queue to drain")


@asynccontextmanager
async def running_relay(settings: Settings, database_url: str, relay_class: type[OutboxRelay] = OutboxRelay):
    """An OutboxRelay running in the background for the duration of the block."""
    relay = relay_class(settings, database_url)
    relay.start()
    try:
        yield relay
    finally:
        await relay.stop(grace_seconds=15)


class TcpProxy:
    """A TCP forwarder to a server (the broker, PostgreSQL) that a test can close and reopen.

    `stop` cuts every open connection and refuses new ones (the server is away, as the client
    sees it); `start` listens again on the same port (the server is back); `stall` keeps the
    connections open but forwards nothing (a server that hangs without hanging up).
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._flowing = asyncio.Event()
        self._flowing.set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def stop(self) -> None:
        """Stop listening and cut every open connection."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    def stall(self) -> None:
        """Keep connections open but stop forwarding: a broker that hangs without hanging up."""
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, upstream_writer))

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, OSError):
                while data := await source.read(65536):
                    await self._flowing.wait()
                    sink.write(data)
                    await sink.drain()
            sink.transport.abort()

        try:
            await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))
        finally:
            self._writers.discard(writer)
            self._writers.discard(upstream_writer)


@asynccontextmanager
async def proxy_to(url_host: str, url_port: int) -> AsyncIterator[TcpProxy]:
    proxy = TcpProxy(url_host, url_port)
    try:
        yield proxy
    finally:
        await proxy.stop()


def through(url: str, proxy: TcpProxy) -> str:
    """`url` (amqp://, postgresql+asyncpg://, ...) with its host and port replaced by the proxy's."""
    parts = urlsplit(url)
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = f"{userinfo}@127.0.0.1:{proxy.port}" if userinfo else f"127.0.0.1:{proxy.port}"
    return urlunsplit(parts._replace(netloc=netloc))


@asynccontextmanager
async def proxied(url: str, default_port: int, *, started: bool = True) -> AsyncIterator[tuple[TcpProxy, str]]:
    """A proxy in front of the server of `url` (listening unless `started=False`) and the URL through it."""
    parts = urlsplit(url)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or default_port)
    if started:
        await proxy.start()
    try:
        yield proxy, through(url, proxy)
    finally:
        await proxy.stop()


ROOT = Path(__file__).resolve().parents[2]


async def spawn_relay(
    database_url: str,
    rabbitmq_url: str,
    exchange: str,
    *,
    audit_exchange: str | None = None,
    capture_output: bool = False,
) -> asyncio.subprocess.Process:
    """`bee-customers relay` as its own process, with only these BEE_ settings and fast retries."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BEE_")}
    env.update(
        BEE_DATABASE_URL=database_url,
        BEE_RABBITMQ_URL=rabbitmq_url,
        BEE_EVENTS_EXCHANGE=exchange,
        BEE_AUDIT_EXCHANGE=audit_exchange or f"{exchange}.audit",
        BEE_RELAY_POLL_SECONDS="0.2",
        BEE_RELAY_MAX_BACKOFF_SECONDS="0.5",
    )
    output = asyncio.subprocess.PIPE if capture_output else asyncio.subprocess.DEVNULL
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bee_customers_service.cli",
        "relay",
        cwd=ROOT,
        env=env,
        stdout=output,
        stderr=asyncio.subprocess.STDOUT if capture_output else asyncio.subprocess.DEVNULL,
    )
