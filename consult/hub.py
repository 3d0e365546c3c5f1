"""One hub per web process: the channel layer in, the process's sockets out.

Why not let every consumer join channel-layer groups (the Channels tutorial's
way)? Because then every event is dispatched once per *socket* by the layer:
one group_send becomes N channel sends, N deserialisations and N consumer
wake-ups, which is where a naive group chat spends most of its time. Here a
process joins a topic's group once, receives each event once, serialises the
frame once, and hands the same text to each local socket's outbox.

Events arrive on the Redis bus (``telehealth.realtime.RedisBus``, the default
with Redis) or through the Channels layer (in-process without Redis; the
channels_redis layers by choice). With the bus the frame comes as the text
the publisher serialised; through a layer it is serialised here, once.

The hub never stores anything. Losing an event (the bus and the pub/sub layer
while disconnected; the core layer, silently, to a channel over capacity) is
repaired by the sockets: a gap in sequence numbers, or a periodic comparison with the
database (``SYNC_INTERVAL``), makes a socket read what it missed from the
database.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import defaultdict
from typing import Any, Protocol

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer

from telehealth.realtime import bus_enabled, get_bus, register_process_loop, topic_group

logger = logging.getLogger(__name__)

SYNC_INTERVAL = 3.0
# Redis group membership expires (channels_redis: group_expiry, one day by default).
GROUP_REFRESH_INTERVAL = 3600.0


class HubClient(Protocol):
    def hub_event(self, topic: str, event: dict[str, Any], text: str | None) -> None: ...

    def hub_resync(self, last_seqs: dict[int, int]) -> None: ...


class Hub:
    def __init__(self) -> None:
        self.topics: dict[str, set[HubClient]] = defaultdict(set)
        self.bus = get_bus() if bus_enabled() else None
        self.layer = None if self.bus is not None else get_channel_layer()
        self.channel_name: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: list[asyncio.Task] = []
        self._started = asyncio.Event()
        self._starting = False
        self._joined_at: dict[str, float] = {}
        # What the database said at the previous sync, so a socket is repaired
        # only when it is behind what was committed a whole interval ago.
        self._previous_last_seqs: dict[int, int] = {}
        self.events_received = 0
        # Set while the channel layer is unreachable: group memberships must be made
        # again (a restarted Redis has forgotten them) before events flow again.
        self._rejoin_needed = False

    async def ensure_started(self) -> None:
        if self._started.is_set():
            return
        if self._starting:
            await self._started.wait()
            return
        self._starting = True
        self._loop = asyncio.get_running_loop()
        register_process_loop(self._loop)
        if self.bus is not None:
            self._tasks.append(asyncio.create_task(self._bus_loop(), name="hub-bus"))
        elif self.layer is not None:
            self.channel_name = await self.layer.new_channel(prefix="hub")
            self._tasks.append(asyncio.create_task(self._receive_loop(), name="hub-receive"))
        self._tasks.append(asyncio.create_task(self._sync_loop(), name="hub-sync"))
        self._started.set()

    async def subscribe(self, topic: str, client: HubClient) -> None:
        await self.ensure_started()
        clients = self.topics[topic]
        first = not clients
        clients.add(client)
        if not first or (self.bus is None and self.layer is None):
            return
        try:
            await self._join(topic)
        except Exception as error:
            # Redis is down: the socket still works (the sync loop delivers from
            # the database) and the hub joins the topic once Redis is back.
            logger.warning("hub: joining %s failed (%s); joining later", topic, error)
            self._rejoin_needed = True

    async def _join(self, topic: str) -> None:
        if self.bus is not None:
            await self.bus.subscribe(topic)
        elif self.layer is not None:
            await self.layer.group_add(topic_group(topic), self.channel_name)
            self._joined_at[topic] = time.monotonic()

    async def unsubscribe(self, topic: str, client: HubClient) -> None:
        clients = self.topics.get(topic)
        if not clients:
            return
        clients.discard(client)
        if not clients:
            del self.topics[topic]
            self._joined_at.pop(topic, None)
            try:
                if self.bus is not None:
                    await self.bus.unsubscribe(topic)
                elif self.layer is not None and self.channel_name is not None:
                    await self.layer.group_discard(topic_group(topic), self.channel_name)
            except Exception as error:  # a membership expires; a reconnect forgets it
                logger.warning("hub: leaving %s failed (%s)", topic, error)

    async def unsubscribe_all(self, client: HubClient, topics: set[str]) -> None:
        for topic in list(topics):
            await self.unsubscribe(topic, client)

    def dispatch(self, event: dict[str, Any], text: str | None = None) -> None:
        """Hand one event to every local client of its topic. Never blocks.

        ``text`` is the frame as sent to sockets (from the bus); without it the
        event's ``frame`` is serialised here."""
        self.events_received += 1
        topic = event.get("topic")
        clients = self.topics.get(topic) if topic else None
        if not clients:
            return
        if text is None:
            frame = event.get("frame")
            text = json.dumps(frame, ensure_ascii=False, separators=(",", ":")) if frame else None
        for client in list(clients):
            try:
                client.hub_event(topic, event, text)
            except Exception:
                logger.exception("hub: a client failed to take an event")

    async def _bus_loop(self) -> None:
        assert self.bus is not None
        backoff = 0.1
        while True:
            if self._rejoin_needed and not await self._rejoin_all():
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            try:
                async for event, text in self.bus.messages():
                    backoff = 0.1
                    self.dispatch(event, text)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                # Redis went away; the next read reconnects and subscribes again.
                # Events published meanwhile are lost: once back, catch up from
                # the database at once rather than at the next periodic sync.
                logger.warning("hub: bus connection lost (%s); reconnecting", error)
                self._rejoin_needed = True
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                if await self._rejoin_all():
                    try:
                        await self.sync_once(settle=False)
                    except Exception as sync_error:
                        logger.warning("hub: catch-up after reconnect failed (%s)", sync_error)

    async def _receive_loop(self) -> None:
        assert self.layer is not None
        assert self.channel_name is not None
        backoff = 0.1
        while True:
            if self._rejoin_needed and not await self._rejoin_all():
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            try:
                event = await self.layer.receive(self.channel_name)
                backoff = 0.1
            except asyncio.CancelledError:
                raise
            except Exception as error:
                # Redis went away. Events sent meanwhile are lost; the next
                # sync repairs every socket from the database. A restarted Redis
                # has no group memberships: join every topic again before reading.
                logger.warning("hub: channel layer receive failed (%s); retrying", error)
                self._rejoin_needed = True
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            self.dispatch(event)

    async def _rejoin_all(self) -> bool:
        """Join every topic's group again; False (and retried later) if Redis is still away."""
        if self.bus is not None:
            try:
                await self.bus.resubscribe(list(self.topics))
            except Exception as error:
                logger.warning("hub: subscribing again failed (%s)", error)
                return False
            self._rejoin_needed = False
            return True
        if self.layer is None or self.channel_name is None:
            return True
        for topic in list(self.topics):
            try:
                await self._join(topic)
            except Exception as error:
                logger.warning("hub: rejoin %s failed (%s)", topic, error)
                return False
        self._rejoin_needed = False
        return True

    async def _sync_loop(self) -> None:
        while True:
            await asyncio.sleep(SYNC_INTERVAL)
            try:
                await self.sync_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.warning("hub: sync with the database failed", exc_info=True)

    async def sync_once(self, *, settle: bool = True) -> None:
        """Compare what sockets were sent with the database; let laggards catch up.

        With ``settle`` a socket is repaired only when behind what was committed a
        whole interval ago (live events may still be on their way); without it, at once."""
        if self._rejoin_needed:
            await self._rejoin_all()
        thread_ids = [int(t[2:]) for t in self.topics if t.startswith("t.")]
        if thread_ids:
            from consult.selectors import thread_last_seqs

            current = await database_sync_to_async(thread_last_seqs, thread_sensitive=False)(
                thread_ids=thread_ids
            )
            settled = (
                {
                    tid: min(seq, self._previous_last_seqs.get(tid, 0))
                    for tid, seq in current.items()
                }
                if settle
                else current
            )
            self._previous_last_seqs = current
            clients: set[HubClient] = set()
            for tid in thread_ids:
                clients.update(self.topics.get(f"t.{tid}", ()))
            for client in clients:
                client.hub_resync(settled)
        now = time.monotonic()
        for topic, joined in list(self._joined_at.items()):
            if now - joined > GROUP_REFRESH_INTERVAL and self.layer is not None:
                await self.layer.group_add(topic_group(topic), self.channel_name)
                self._joined_at[topic] = now


_hubs: dict[int, Hub] = {}


def get_hub() -> Hub:
    """The hub of the running event loop: one per process in production (tests run many loops)."""
    loop = asyncio.get_running_loop()
    hub = _hubs.get(id(loop))
    if hub is None or hub._loop not in (None, loop):
        hub = Hub()
        _hubs[id(loop)] = hub
    return hub


def reset_hubs() -> None:
    """Forget every hub (tests switch channel layers between cases)."""
    from telehealth.db_async import reset_async_pools
    from telehealth.realtime import reset_buses

    for hub in _hubs.values():
        for task in hub._tasks:
            task.cancel()
    _hubs.clear()
    reset_buses()
    reset_async_pools()
