"""Publishing realtime events, for every app: after commit, through the channel layer.

The channel layer only delivers; the database is the truth. Events go to
*topics*: ``t.<thread>`` (a thread's messages, reads, typing), ``u.<user>``
(one person's notifications and control events), ``p.<user>`` (presence),
and topics other apps register for ``watch`` frames (``board.province.01``).

Each web process joins a topic's channel-layer group once, however many of
its sockets want the topic (see ``consult.hub``), so fan-out to sockets
happens inside the process, not once per socket in the channel layer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
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


async def publish_now(topic: str, event: dict[str, Any]) -> None:
    """Send an event to every process that has a socket on ``topic``. Best effort:
    a lost event is repaired by the readers' resume-from-database logic."""
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        await layer.group_send(topic_group(topic), {"type": HUB_EVENT, "topic": topic, **event})
    except Exception:  # a broken layer must not break the write that was already committed
        logger.warning("realtime publish to %s failed", topic, exc_info=True)


# The event loop of this web process, registered by its hub. Code running on a
# worker thread of that loop (a socket's query) hands the publish to the loop
# and returns at once, instead of blocking its thread until Redis answers.
#
# One consumer task sends them, in the order they were handed over. Starting a
# coroutine per publish instead let hundreds of group_sends race for the Redis
# connection pool under load ("Too many connections"), and every event that
# lost the race had to be repaired from the database seconds later.
MAX_PENDING_PUBLISHES = 10_000


class _LoopPublisher:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.queue: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()
        self.task = loop.create_task(self._run(), name="realtime-publisher")

    async def _run(self) -> None:
        while True:
            topic, event = await self.queue.get()
            await publish_now(topic, event)

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
    async_to_sync(publish_now)(topic, event)


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
