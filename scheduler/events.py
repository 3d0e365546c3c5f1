"""Live events of the scheduler: board topics and notifications, published after commit.

Board topics: ``board.facility.<code>`` (one facility's queues) and
``board.province.<code>`` (every facility of a province). A facility's
coordinators may watch its board; a province's coordinators watch the province
board, which carries every event of every facility in the province (the page
filters by facility). The router publishes to a facility topic only when the
facility has a coordinator of its own: nobody else could be listening. Frames
are the protocol's ``event`` frames (docs/protocol.md).

Routing works in batches, so events are collected per transaction and sent
after commit merged by topic; with Redis they are sent from one background
event loop per process, every 200 ms at most (``_BackgroundPublisher``).
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import threading
from collections import defaultdict
from typing import Any

from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from django.db import transaction

from telehealth.realtime import publish_many, user_topic

logger = logging.getLogger(__name__)


def facility_topic(code: str) -> str:
    return f"board.facility.{code}"


def province_topic(code: str) -> str:
    return f"board.province.{code}"


_province_codes: dict[int, str] = {}


def province_code(province_id: int) -> str:
    """Province codes never change once loaded; keep them in process memory."""
    code = _province_codes.get(province_id)
    if code is None:
        from telehealth.models import Province

        _province_codes.update(Province.objects.values_list("id", "code"))
        code = _province_codes.get(province_id, "")
    return code


def board_topics(*, facility_code: str, province_id: int, watched: bool = True) -> list[str]:
    """The province's board topic, and the facility's when someone can watch it
    (``watched``: the facility has a coordinator of its own)."""
    topics = [province_topic(province_code(province_id))]
    if watched:
        topics.append(facility_topic(facility_code))
    return topics


class Outbox:
    """Events of one transaction, merged by topic and sent together after commit."""

    def __init__(self) -> None:
        self.topics: dict[str, dict[str, list[Any]]] = defaultdict(lambda: defaultdict(list))
        self.users: list[tuple[int, str, dict[str, Any]]] = []

    def board(self, topics: list[str], name: str, referral_id: int) -> None:
        for topic in topics:
            self.topics[topic][name].append(referral_id)

    def user(self, user_id: int, name: str, data: dict[str, Any]) -> None:
        self.users.append((user_id, name, data))

    def send_on_commit(self) -> None:
        if not self.topics and not self.users:
            return
        board = {
            topic: {name: set(ids) for name, ids in names.items()}
            for topic, names in self.topics.items()
        }
        users = list(self.users)
        transaction.on_commit(lambda: _publisher().send(board, users))


def _event(topic: str, frame_topic: str, name: str, data: dict[str, Any]):  # type: ignore[no-untyped-def]
    return (
        topic,
        {
            "kind": "event",
            "frame": {"type": "event", "topic": frame_topic, "name": name, "data": data},
        },
    )


def _frames(
    board: dict[str, dict[str, set[int]]], users: list[tuple[int, str, dict[str, Any]]]
) -> list[tuple[str, dict[str, Any]]]:
    frames = [
        _event(topic, topic, name, {"referrals": sorted(ids)})
        for topic, names in board.items()
        for name, ids in names.items()
    ]
    frames += [_event(user_topic(user_id), "user", name, data) for user_id, name, data in users]
    return frames


async def _send_frames(frames: list[tuple[str, dict[str, Any]]]) -> None:
    await publish_many(frames)


class _InlinePublisher:
    """The in-process channel layer (embedded default, tests): send at once, on the
    caller's event loop, like ``telehealth.realtime.publish_on_commit``."""

    def send(self, board, users) -> None:  # type: ignore[no-untyped-def]
        async_to_sync(_send_frames)(_frames(board, users))


class _BackgroundPublisher:
    """A cross-process channel layer (Redis): one event loop per process, in a thread.

    Routing commits a batch every few milliseconds; sending each batch's events
    from a new event loop (a new connection pool each time) cost more than the
    routing. Here events wait up to ``FLUSH_SECONDS`` and are merged by topic,
    so a busy board gets one event per topic and interval, listing every
    referral that changed; the routing thread never waits for Redis. Best
    effort, like every realtime event: a board re-reads the database on each
    event and on reconnect.
    """

    FLUSH_SECONDS = 0.2

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.lock = threading.Lock()
        self.board: dict[str, dict[str, set[int]]] = defaultdict(lambda: defaultdict(set))
        self.users: list[tuple[int, str, dict[str, Any]]] = []
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, name="scheduler-events", daemon=True)
        self.thread.start()
        atexit.register(self.flush_now)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.create_task(self._flusher())
        self.loop.run_forever()

    def send(self, board, users) -> None:  # type: ignore[no-untyped-def]
        with self.lock:
            for topic, names in board.items():
                for name, ids in names.items():
                    self.board[topic][name] |= ids
            self.users.extend(users)

    def _take(self) -> list[tuple[str, dict[str, Any]]]:
        with self.lock:
            board, users = self.board, self.users
            self.board, self.users = defaultdict(lambda: defaultdict(set)), []
        return _frames(board, users)

    async def _flusher(self) -> None:
        while True:
            await asyncio.sleep(self.FLUSH_SECONDS)
            frames = self._take()
            if frames:
                try:
                    await _send_frames(frames)
                except Exception:  # never let one bad send stop the flusher
                    logger.warning("board events lost", exc_info=True)

    def flush_now(self, timeout: float = 2.0) -> None:
        frames = self._take()
        if frames and self.loop.is_running():
            future = asyncio.run_coroutine_threadsafe(_send_frames(frames), self.loop)
            try:
                future.result(timeout)
            except Exception:
                logger.warning("board events lost at exit", exc_info=True)


_current: _BackgroundPublisher | _InlinePublisher | None = None


def _publisher() -> _BackgroundPublisher | _InlinePublisher:
    global _current
    from django.conf import settings

    if not settings.REDIS_URL:
        return _InlinePublisher()
    # A forked process (a Celery pool process) starts its own thread and loop.
    if not isinstance(_current, _BackgroundPublisher) or _current.pid != os.getpid():
        _current = _BackgroundPublisher()
    return _current


def flush() -> None:
    """Send whatever is waiting now (tests, shutdown)."""
    if isinstance(_current, _BackgroundPublisher) and _current.pid == os.getpid():
        _current.flush_now()


# --- Who may watch a board ---------------------------------------------------------------


def may_watch_board_sync(user: Any, topic: str) -> bool:
    from telehealth.models import Facility
    from telehealth.selectors import coordinator_scope

    if not getattr(user, "is_authenticated", False):
        return False
    parts = topic.split(".")
    if len(parts) != 3 or parts[0] != "board":
        return False
    _, kind, code = parts
    scope = coordinator_scope(user=user)
    if scope.empty:
        return False
    if kind == "province":
        from telehealth.models import Province

        return Province.objects.filter(code=code, pk__in=scope.province_ids).exists()
    if kind == "facility":
        return Facility.objects.filter(code=code, pk__in=scope.facility_ids).exists()
    return False


async def may_watch_board(user: Any, topic: str) -> bool:
    """The async authorizer ``telehealth.realtime`` calls for ``watch`` frames."""
    return await database_sync_to_async(may_watch_board_sync, thread_sensitive=False)(user, topic)
