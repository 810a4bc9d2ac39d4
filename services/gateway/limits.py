"""What one client may take of the gateway: upload size, decoded duration, batch work at once
and waiting, and how long a websocket may stay silent. Each is a setting (agent/config), listed
with its reason in docs/security.md.

Batch files are CPU-bound and share the engines, so `BatchSlots` runs GATEWAY_BATCH_CONCURRENCY
of them at once, queues GATEWAY_BATCH_QUEUE more in arrival order (asyncio.Semaphore wakes its
waiters first come, first served) and turns away the rest at once with 429 and Retry-After,
rather than letting a request time out behind a long file.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import WSMessage, web

from agent import config

logger = logging.getLogger("gateway")

RETRY_AFTER = 5  # seconds a turned-away client is told to wait: about one short file's work


@dataclass(frozen=True)
class Limits:
    max_upload_bytes: int = 100 * 1024 * 1024
    max_audio_seconds: float = 1800.0
    batch_concurrency: int = 1
    batch_queue: int = 4
    ws_idle_timeout: float = 300.0

    @classmethod
    def from_settings(cls, settings: config.Settings) -> Limits:
        return cls(
            max_upload_bytes=int(settings.gateway_max_upload_mb * 1024 * 1024),
            max_audio_seconds=settings.gateway_max_audio_seconds,
            batch_concurrency=settings.gateway_batch_concurrency,
            batch_queue=settings.gateway_batch_queue,
            ws_idle_timeout=settings.gateway_ws_idle_timeout,
        )


class BusyError(Exception):
    """Every batch slot and queue place is taken: answer 429 with Retry-After."""


@dataclass
class BatchSlots:
    concurrency: int
    queue: int
    _waiting: int = 0
    _semaphore: asyncio.Semaphore | None = field(default=None, repr=False)

    def slot(self) -> _Slot:
        if self._semaphore is None:  # made on first use: inside the running loop
            self._semaphore = asyncio.Semaphore(self.concurrency)
        if self._semaphore.locked() and self._waiting >= self.queue:
            raise BusyError(
                f"{self.concurrency} file(s) are being transcribed and {self._waiting} wait: "
                f"retry in {RETRY_AFTER} s (GATEWAY_BATCH_CONCURRENCY, GATEWAY_BATCH_QUEUE)"
            )
        return _Slot(self)


@dataclass
class _Slot:
    slots: BatchSlots

    async def __aenter__(self) -> None:
        self.slots._waiting += 1
        try:
            await self.slots._semaphore.acquire()
        finally:
            self.slots._waiting -= 1

    async def __aexit__(self, *exc) -> None:
        self.slots._semaphore.release()


async def messages(
    ws: web.WebSocketResponse, idle_timeout: float, on_idle: Callable[[], Awaitable[None]]
) -> AsyncIterator[WSMessage]:
    """The websocket's messages until it closes, or until `idle_timeout` seconds pass without
    one: then `on_idle` (the protocol's error event) runs and the iteration ends."""
    while True:
        try:
            msg = await ws.receive(timeout=idle_timeout)
        except asyncio.TimeoutError:
            logger.info("websocket idle for %.0f s: closed (GATEWAY_WS_IDLE_TIMEOUT)", idle_timeout)
            await on_idle()
            return
        if msg.type in (web.WSMsgType.CLOSE, web.WSMsgType.CLOSING, web.WSMsgType.CLOSED):
            return
        if msg.type == web.WSMsgType.ERROR:
            return
        yield msg
