"""Acknowledging a consumer's settled deliveries with one `basic.ack(multiple=True)` per run."""

import asyncio
from collections import OrderedDict
from typing import Any

import structlog
from aio_pika.abc import AbstractIncomingMessage

from bee_customers_service.events.broker import short_error

log = structlog.get_logger(__name__)


class AckWindow:
    """The deliveries of ONE channel, acknowledged per contiguous run of settled delivery tags.

    Workers settle messages out of order; a tag is acknowledged (with every tag below it) only once
    all of them are settled, so nothing is acknowledged before its commit. One frame per batch
    instead of one per message: per-message acks were the consumer's bottleneck (bench/README.md).
    """

    def __init__(self, channel: Any) -> None:
        self.channel = channel
        self._entries: OrderedDict[int, list[Any]] = OrderedDict()  # tag -> [message, settled, to_ack]

    def add(self, message: AbstractIncomingMessage) -> None:
        self._entries[message.delivery_tag or 0] = [message, False, False]

    def settle(self, message: AbstractIncomingMessage, *, ack: bool) -> None:
        entry = self._entries.get(message.delivery_tag or 0)
        if entry is not None and entry[0] is message:
            entry[1], entry[2] = True, ack

    def take_ready(self) -> AbstractIncomingMessage | None:
        """Drop the settled prefix; the last message in it that needs an ack (None if none)."""
        last: AbstractIncomingMessage | None = None
        while self._entries:
            message, settled, to_ack = next(iter(self._entries.values()))
            if not settled:
                break
            self._entries.popitem(last=False)
            if to_ack:
                last = message
        return last


class AckTracker:
    """One AckWindow per AMQP channel: after a reconnect, tags restart at 1 on a new channel and
    the old channel's messages can no longer be acknowledged."""

    def __init__(self, name: str) -> None:
        self.name = name  # the consumer's, in log event names
        self._windows: dict[int, AckWindow] = {}
        self._lock = asyncio.Lock()

    def _window(self, message: AbstractIncomingMessage) -> AckWindow | None:
        try:
            channel = message.channel
        except Exception:  # closed: RabbitMQ has requeued its unacknowledged messages already
            return None
        window = self._windows.get(id(channel))
        if window is None or window.channel is not channel:
            self._windows = {k: w for k, w in self._windows.items() if not w.channel.is_closed}
            window = self._windows[id(channel)] = AckWindow(channel)
        return window

    def add(self, message: AbstractIncomingMessage) -> None:
        window = self._window(message)
        if window is not None:
            window.add(message)

    def settle(self, message: AbstractIncomingMessage, *, ack: bool) -> None:
        window = self._window(message)
        if window is not None:
            window.settle(message, ack=ack)

    async def flush(self) -> None:
        """Send the acks that have become possible (one per channel)."""
        async with self._lock:  # acks of one channel must leave in tag order
            for window in list(self._windows.values()):
                last = window.take_ready()
                if last is None:
                    continue
                try:
                    await last.ack(multiple=True)
                except Exception as exc:  # the channel died after our commit: redeliveries are duplicates
                    log.warning(f"{self.name}_ack_failed", error=short_error(exc))
