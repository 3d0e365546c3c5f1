"""Publishing realtime events, for every app: after commit, through the channel layer.

The channel layer only delivers; the database is the truth. Events go to
*topics*: ``t.<thread>`` (a thread's messages, reads, typing), ``u.<user>``
(one person's notifications and control events), ``p.<user>`` (presence),
and topics other apps register for ``watch`` frames (``board.province.01``).

Each web process subscribes to a topic once, however many of its sockets want
it (see ``consult.hub``), so fan-out to sockets happens inside the process.

Between processes events travel on the **bus** (``RedisBus``): Redis pub/sub,
one channel per topic. Publishes wait in one queue per process and leave in
pipelined batches, one round trip per batch. A Channels layer carried them
before (still selectable: ``REALTIME_TRANSPORT=core`` or ``pubsub``); its
``group_send`` is one awaited round trip per event and, on the core layer, its
``receive`` one more, so on a busy event loop (each await waits a whole loop
turn) a process could publish only a few hundred events a second however idle
its CPU (bench/chat_bench.py measures all three). The frame travels as the
JSON text the sockets send: serialised once, by the publisher.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import transaction

logger = logging.getLogger(__name__)

HUB_EVENT = "hub.event"


def topic_group(topic: str) -> str:
    """The channel-layer group of a topic (groups allow only [a-zA-Z0-9-_.])."""
    return f"th.{topic}"


def thread_topic(thread_id: int) -> str:
    return f"t.{thread_id}"


def user_topic(user_id: int) -> str:
    return f"u.{user_id}"


def presence_topic(user_id: int) -> str:
    return f"p.{user_id}"


def bus_enabled() -> bool:
    """Events go over ``RedisBus`` (else through the Channels layer: in-process without Redis)."""
    return bool(settings.REDIS_URL) and settings.REALTIME_TRANSPORT == "bus"


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def encode_event(topic: str, event: dict[str, Any]) -> bytes:
    """One bus message: a JSON header line, then the frame's text as sockets send it."""
    header = {key: value for key, value in event.items() if key != "frame"}
    header["topic"] = topic
    frame = event.get("frame")
    text = _json(frame) if frame is not None else ""
    return f"{_json(header)}\n{text}".encode()


def decode_event(data: bytes) -> tuple[dict[str, Any], str | None]:
    head, _, text = data.partition(b"\n")
    return json.loads(head), (text.decode() or None)


def bus_channel_prefix() -> str:
    """Pub/sub channels ignore Redis database numbers: name ours by the database, so two
    deployments (or test runs) sharing a Redis server never hear each other."""
    path = urlsplit(settings.REDIS_URL).path.strip("/") or "0"
    return f"{settings.REALTIME_CHANNEL_PREFIX}{path}:"


class RedisBus:
    """Events between web processes: Redis pub/sub, one channel per topic.

    Publishing takes a batch and sends it in one pipeline. Receiving: one
    subscriber connection per process; ``subscribe`` returns once Redis has
    confirmed the subscription, so a socket that subscribes and then reads the
    database misses nothing published after that read. What is published while
    the subscriber is disconnected is lost, like every Redis pub/sub: the hub's
    sync with the database repairs it (``consult.hub``). One per event loop.
    """

    def __init__(self, url: str) -> None:
        import redis.asyncio as aioredis

        self.prefix = bus_channel_prefix()
        self.loop = asyncio.get_running_loop()
        self._redis = aioredis.Redis.from_url(url, socket_connect_timeout=2)
        self._pubsub = self._redis.pubsub()
        self._confirmations: dict[bytes, asyncio.Future[None]] = {}
        self._connecting = asyncio.Lock()

    async def _connect(self) -> None:
        """Give the subscriber its connection, once. redis-py's ``PubSub.connect`` takes
        a pool connection whenever it has none yet, so subscribers racing through it
        before the first one returned each took one and all but the last leaked: many
        sockets subscribing at once used up the pool (100 connections), and from then
        on every publish failed with "Too many connections" (tests/faults/test_load.py)."""
        if self._pubsub.connection is None:
            async with self._connecting:
                if self._pubsub.connection is None:
                    await self._pubsub.connect()

    def channel(self, topic: str) -> str:
        return self.prefix + topic

    async def publish_many(self, items: list[tuple[str, dict[str, Any]]]) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            for topic, event in items:
                pipe.publish(self.channel(topic), encode_event(topic, event))
            await pipe.execute()

    async def subscribe(self, topic: str, timeout: float = 2.0) -> None:
        name = self.channel(topic).encode()
        loop = asyncio.get_running_loop()
        waiter = self._confirmations.setdefault(name, loop.create_future())
        await self._connect()
        await self._pubsub.subscribe(name)
        try:
            await asyncio.wait_for(asyncio.shield(waiter), timeout)
        except TimeoutError:
            # Subscribed all the same once Redis answers; until then the sync repairs.
            logger.warning("bus: no confirmation of %s within %.0f s", topic, timeout)
        finally:
            if self._confirmations.get(name) is waiter and waiter.done():
                del self._confirmations[name]

    async def resubscribe(self, topics: list[str]) -> None:
        """Subscribe again to ``topics`` not subscribed now (a subscribe that failed while
        Redis was away), without waiting: the caller may be the reader itself."""
        missing = [
            name
            for name in (self.channel(topic).encode() for topic in topics)
            if name not in self._pubsub.channels
        ]
        if missing:
            await self._connect()
            await self._pubsub.subscribe(*missing)

    async def unsubscribe(self, topic: str) -> None:
        await self._connect()
        await self._pubsub.unsubscribe(self.channel(topic).encode())

    async def messages(self):  # type: ignore[no-untyped-def]
        """Yield (header, text) for every event on the subscribed topics. Raises on a lost
        connection; calling it again reconnects and subscribes to every topic again."""
        pubsub = self._pubsub
        while True:
            if not pubsub.subscribed:
                await asyncio.sleep(0.05)
                continue
            message = await pubsub.get_message(timeout=None)
            if message is None:
                continue
            kind = message["type"]
            if kind == "message":
                yield decode_event(message["data"])
            elif kind == "subscribe":
                waiter = self._confirmations.pop(message["channel"], None)
                if waiter is not None and not waiter.done():
                    waiter.set_result(None)

    async def close(self) -> None:
        for waiter in self._confirmations.values():
            waiter.cancel()
        try:
            await self._pubsub.aclose()
            await self._redis.aclose()
        except Exception:
            logger.debug("bus: close failed", exc_info=True)


_buses: dict[int, RedisBus] = {}


def get_bus() -> RedisBus:
    """The bus of the running event loop (Redis clients belong to one loop)."""
    loop = asyncio.get_running_loop()
    bus = _buses.get(id(loop))
    if bus is None or bus.loop is not loop:
        bus = _buses[id(loop)] = RedisBus(settings.REDIS_URL)
    return bus


def reset_buses() -> None:
    _buses.clear()


_sync_client: Any = None


def _publish_sync(items: list[tuple[str, dict[str, Any]]]) -> None:
    """From code with no event loop of its own (Celery tasks, commands): one pipeline."""
    global _sync_client
    import redis

    if _sync_client is None:
        _sync_client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2)
    prefix = bus_channel_prefix()
    try:
        with _sync_client.pipeline(transaction=False) as pipe:
            for topic, event in items:
                pipe.publish(prefix + topic, encode_event(topic, event))
            pipe.execute()
    except Exception as error:
        logger.warning("realtime publish of %d events failed: %s", len(items), error)


async def publish_many(items: list[tuple[str, dict[str, Any]]]) -> None:
    """Send events to every process with a socket on their topics. Best effort: a lost
    event is repaired by the readers' resume-from-database logic.

    On the web process's loop they join its publisher's queue (one connection, one
    pipeline per batch), in order with the events of committed writes: sockets
    announcing their presence at once each sent their own pipeline before, each from
    a pool connection, and on a loaded machine a new connection could time out."""
    if not items:
        return
    publisher = _publisher
    if publisher is not None and not publisher.task.done():
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is publisher.loop:
            for topic, event in items:
                publisher.offer(topic, event)
            return
    await _send(items)


async def _send(items: list[tuple[str, dict[str, Any]]]) -> None:
    try:
        if bus_enabled():
            await get_bus().publish_many(items)
            return
        layer = get_channel_layer()
        if layer is None:
            return
        for topic, event in items:
            await layer.group_send(topic_group(topic), {"type": HUB_EVENT, "topic": topic, **event})
    except Exception as error:  # a broken transport must not break the committed write
        from telehealth.errors import is_service_unavailable

        # Redis down: one line per lost batch, not a traceback (readers repair it).
        logger.warning(
            "realtime publish of %d events failed: %s",
            len(items),
            error,
            exc_info=not is_service_unavailable(error),
        )


async def publish_now(topic: str, event: dict[str, Any]) -> None:
    await publish_many([(topic, event)])


# The event loop of this web process, registered by its hub. Code running on a
# worker thread of that loop (a socket's query) hands the publish to the loop
# and returns at once, instead of blocking its thread until Redis answers.
#
# One consumer task sends them, in the order they were handed over, taking
# whatever has queued up as one batch: on the bus one pipeline, one round trip.
# (A coroutine per publish let hundreds race for the Redis connection pool.)
MAX_PENDING_PUBLISHES = 10_000
MAX_BATCH = 500


class _LoopPublisher:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.queue: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()
        self.task = loop.create_task(self._run(), name="realtime-publisher")

    async def _run(self) -> None:
        task = asyncio.current_task()
        while True:
            batch = [await self.queue.get()]
            while not self.queue.empty() and len(batch) < MAX_BATCH:
                batch.append(self.queue.get_nowait())
            await _send(batch)
            if task is not None and task.cancelling():
                # A Redis client can turn the cancellation into the error ``_send``
                # logs and swallows; the loop is shutting down all the same.
                raise asyncio.CancelledError

    def offer(self, topic: str, event: dict[str, Any]) -> None:
        """On the loop's thread: queue the publish (or drop it when Redis has fallen
        far behind: readers repair a lost event from the database)."""
        if self.queue.qsize() >= MAX_PENDING_PUBLISHES:
            logger.warning("realtime publisher %d behind; dropped an event", self.queue.qsize())
            return
        self.queue.put_nowait((topic, event))


_publisher: _LoopPublisher | None = None


def register_process_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Called on ``loop`` by the process's hub when it starts (tests start new ones)."""
    global _publisher
    if _publisher is None or _publisher.loop is not loop or _publisher.task.done():
        _publisher = _LoopPublisher(loop)


def _publish(topic: str, event: dict[str, Any]) -> None:
    publisher = _publisher
    if publisher is not None and publisher.loop.is_running():
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is publisher.loop:
            publisher.offer(topic, event)
        else:
            publisher.loop.call_soon_threadsafe(publisher.offer, topic, event)
        return
    if bus_enabled():
        _publish_sync([(topic, event)])
        return
    async_to_sync(publish_now)(topic, event)


def publish_committed(topic: str, event: dict[str, Any]) -> None:
    """Publish what is already committed (a statement run in autocommit), now."""
    _publish(topic, event)


def publish_on_commit(topic: str, event: dict[str, Any]) -> None:
    """Publish after the current transaction commits (at once outside one)."""
    transaction.on_commit(lambda: _publish(topic, event))


def notify_user_on_commit(user_id: int, *, name: str, data: dict[str, Any]) -> None:
    """An ``event`` frame for every socket of one person, after commit.

    Other apps use it for live notifications (a mentorship request, a referral
    accepted). ``name`` is a dotted event name, ``data`` is JSON.
    """
    publish_on_commit(
        user_topic(user_id),
        {"kind": "event", "frame": {"type": "event", "topic": "user", "name": name, "data": data}},
    )


def publish_topic_event_on_commit(topic: str, *, name: str, data: dict[str, Any]) -> None:
    """An ``event`` frame for every socket watching ``topic``, after commit."""
    publish_on_commit(
        topic,
        {"kind": "event", "frame": {"type": "event", "topic": topic, "name": name, "data": data}},
    )


# Topics other apps add to the ``watch`` frame: a prefix and a check of who may watch.
TopicAuthorizer = Callable[[Any, str], Awaitable[bool]]
_watchable: dict[str, TopicAuthorizer] = {}


def register_watchable_topic(prefix: str, authorize: TopicAuthorizer) -> None:
    """Let sockets ``watch`` topics "<prefix>.…" when ``authorize(user, topic)`` says yes."""
    _watchable[prefix] = authorize


def watchable_authorizer(topic: str) -> TopicAuthorizer | None:
    prefix = topic.split(".", 1)[0]
    return _watchable.get(prefix)
