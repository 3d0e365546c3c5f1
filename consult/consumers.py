"""The one websocket of a signed-in client (docs/protocol.md, version 1).

Thin edges: each frame handler parses, calls one service or selector through
``database_sync_to_async``, and answers. Fan-out comes from the process hub
(``consult.hub``), not from a channel-layer channel per socket.

Per thread the socket keeps a cursor: the highest seq it has sent. Frames
are sent strictly in seq order; a gap (an event lost in the channel layer)
or a cursor left behind the database is repaired by reading the database.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError

from consult import frames, selectors, services
from consult.hub import get_hub
from consult.presence import STATUSES, presence_store
from telehealth import session_security
from telehealth.errors import DomainError, is_service_unavailable
from telehealth.realtime import (
    presence_topic,
    publish_now,
    thread_topic,
    user_topic,
    watchable_authorizer,
)

logger = logging.getLogger(__name__)

MAX_FRAME_BYTES = 64 * 1024
REPLAY_LIMIT = 500
REPLAY_BATCH = 200
SENDS_PER_SECOND = 20
BURST = 40
ABUSE_STRIKES = 50
OUTBOX_LIMIT = 2000
TYPING_EXPIRES = 6
HEARTBEAT_SECONDS = 30

CLOSE_UNAUTHENTICATED = 4401
CLOSE_ABUSE = 4008
CLOSE_PROTOCOL = 4400
CLOSE_TRY_AGAIN_LATER = 1013

# Frames that a person sends by acting (docs/protocol.md, "Session limits"): they keep
# the session from going idle. The rest (subscribe on reconnect, read marks, presence,
# the watchdog's ping) a page sends by itself, and an unattended screen would send them.
ACTIVITY_FRAMES = frozenset({"send", "typing", "active"})


def db(func):  # type: ignore[no-untyped-def]
    """Run ORM code in the thread pool, not serialised on one thread: each call is
    self-contained, and sockets must not wait for each other's queries."""
    return database_sync_to_async(func, thread_sensitive=False)


@dataclass
class ThreadCursor:
    delivered: int
    syncing: bool = True
    pending: dict[int, str] = field(default_factory=dict)


class TokenBucket:
    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst = rate, burst
        self.tokens, self.at = burst, time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


class RealtimeConsumer(AsyncWebsocketConsumer):
    # No channel-layer channel per socket: the process hub does the fan-out.
    channel_layer_alias = "__hub_only__"

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated or not user.is_active:
            await self.accept()
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        session_key = getattr(self.scope.get("session"), "session_key", None)
        # Over its idle or absolute limit (then ended here), gone, or short of a second
        # factor the person needs: refused like an anonymous socket.
        session = await db(session_security.socket_session_check)(
            session_key=session_key, user=user
        )
        if session.reason is not None:
            await self.accept()
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        self.session_state = session
        self.last_activity: float | None = None
        self.user = user
        self.user_name = user.display_name
        self.session_key = session_key
        self.socket_id = uuid.uuid4().hex
        self.cursors: dict[int, ThreadCursor] = {}
        self.topics: set[str] = set()
        self.watched_presence: dict[int, int] = {}
        self.bucket = TokenBucket(SENDS_PER_SECOND, BURST)
        self.strikes = 0
        self.closed = False
        self.outbox: asyncio.Queue[str | None] = asyncio.Queue()
        self.background: set[asyncio.Task] = set()
        self.hub = get_hub()
        await self.accept()
        self.writer = asyncio.create_task(self._write_loop())
        self.heartbeat = asyncio.create_task(self._heartbeat_loop())
        self.session_watch = asyncio.create_task(self._session_watch_loop())
        await self._join(user_topic(user.pk))
        self._emit(
            {
                "type": "welcome",
                "protocol": frames.PROTOCOL_VERSION,
                "user": {"id": user.pk, "name": self.user_name},
                "limits": {
                    "max_frame_bytes": MAX_FRAME_BYTES,
                    "max_body_chars": services.MAX_BODY_CHARS,
                    "sends_per_second": SENDS_PER_SECOND,
                    "replay_limit": REPLAY_LIMIT,
                },
            }
        )
        await self._set_presence("online")

    async def disconnect(self, code: int) -> None:
        if not hasattr(self, "outbox"):
            return
        self.closed = True
        self.outbox.put_nowait(None)
        self.heartbeat.cancel()
        self.session_watch.cancel()
        await self.hub.unsubscribe_all(self, self.topics)
        self.topics.clear()
        try:
            before = (await presence_store().status_of([self.user.pk]))[self.user.pk]
            await presence_store().clear(self.user.pk, self.socket_id)
            after = (await presence_store().status_of([self.user.pk]))[self.user.pk]
            if after != before:
                await publish_now(presence_topic(self.user.pk), self._presence_event(after))
        except Exception:
            logger.debug("presence clear failed", exc_info=True)

    def _spawn(self, coroutine: Any) -> None:
        """Run a coroutine beside the socket, keeping a reference until it ends."""
        task = asyncio.create_task(coroutine)
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    # --- Outgoing ----------------------------------------------------------------

    def _emit(self, frame: dict[str, Any]) -> None:
        self._emit_text(json.dumps(frame, ensure_ascii=False, separators=(",", ":")))

    def _emit_text(self, text: str) -> None:
        if self.closed:
            return
        if self.outbox.qsize() >= OUTBOX_LIMIT:
            # A socket that cannot keep up is closed; it reconnects and resumes
            # from the database instead of making this process hold its backlog.
            self.closed = True
            self._spawn(self.close(code=CLOSE_TRY_AGAIN_LATER))
            return
        self.outbox.put_nowait(text)

    async def _write_loop(self) -> None:
        while True:
            text = await self.outbox.get()
            if text is None:
                return
            try:
                await self.send(text_data=text)
            except Exception:
                logger.debug("send failed; socket closing", exc_info=True)
                return

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_SECONDS)
            try:
                await presence_store().set(self.user.pk, self.socket_id, self.presence_status)
            except Exception:
                logger.debug("presence refresh failed", exc_info=True)

    async def _session_watch_loop(self) -> None:
        """Every SESSION_SOCKET_CHECK_SECONDS: is the session still there, within its
        limits, and is this socket's last use recorded in it?

        Each interval is drawn from 75-125 % of the setting: sockets that connected
        together (a reconnect storm, a load test) would otherwise all query their
        sessions in the same instant, every interval (a latency spike every 30 s)."""
        interval = settings.SESSION_SOCKET_CHECK_SECONDS
        while not self.closed:
            await asyncio.sleep(interval * random.uniform(0.75, 1.25))  # nosec B311
            await self._check_session()

    async def _check_session(self) -> bool:
        """Look at the session; close with 4401 when it is over. True while it is good."""
        try:
            state = await db(session_security.socket_session_check)(
                session_key=self.session_key, user=self.user, activity=self.last_activity
            )
        except Exception:  # the store is unreachable: keep the socket, look again later
            logger.warning("session check failed; retrying", exc_info=True)
            return True
        if state.reason is None:
            self.session_state = state
            return True
        if not self.closed:
            self.closed = True
            await self.close(code=CLOSE_UNAUTHENTICATED)
        return False

    # --- Hub callbacks (run on the event loop; must not block) ----------------------

    def hub_event(self, topic: str, event: dict[str, Any], text: str | None) -> None:
        kind = event.get("kind")
        if kind == "message":
            self._on_message(int(topic[2:]), int(event["seq"]), text or "")
        elif kind == "removed":
            self._spawn(self._on_removed(int(event["thread"]), text))
        elif kind == "session_ended":
            if event.get("session_key") in (None, self.session_key):
                self.closed = True
                self._spawn(self.close(code=CLOSE_UNAUTHENTICATED))
        elif kind == "typing":
            if event.get("user") != self.user.pk and text:
                self._emit_text(text)
        elif text:
            self._emit_text(text)

    def hub_resync(self, last_seqs: dict[int, int]) -> None:
        for thread_id, cursor in self.cursors.items():
            if not cursor.syncing and cursor.delivered < last_seqs.get(thread_id, 0):
                cursor.syncing = True
                self._spawn(self._catch_up(thread_id))

    def _on_message(self, thread_id: int, seq: int, text: str) -> None:
        cursor = self.cursors.get(thread_id)
        if cursor is None or seq <= cursor.delivered:
            return
        if cursor.syncing:
            cursor.pending[seq] = text
            return
        if seq == cursor.delivered + 1:
            cursor.delivered = seq
            self._emit_text(text)
            return
        cursor.syncing = True
        cursor.pending[seq] = text
        self._spawn(self._catch_up(thread_id))

    async def _catch_up(self, thread_id: int) -> int:
        """Send what the database has after the cursor, then what arrived meanwhile."""
        cursor = self.cursors.get(thread_id)
        if cursor is None:
            return 0
        sent = 0
        try:
            while True:
                # Pending live frames that continue the cursor need no query.
                while cursor.delivered + 1 in cursor.pending:
                    cursor.delivered += 1
                    self._emit_text(cursor.pending.pop(cursor.delivered))
                    sent += 1
                batch = await db(selectors.messages_after_for_replay)(
                    thread_id=thread_id, after=cursor.delivered, limit=REPLAY_BATCH
                )
                if self.cursors.get(thread_id) is not cursor:
                    return sent
                for frame in batch:
                    if frame["seq"] == cursor.delivered + 1:
                        cursor.delivered = frame["seq"]
                        cursor.pending.pop(frame["seq"], None)
                        self._emit(frame)
                        sent += 1
                if len(batch) < REPLAY_BATCH and cursor.delivered + 1 not in cursor.pending:
                    break
        except (OperationalError, InterfaceError):
            logger.warning("catch-up of thread %s failed; the next sync retries", thread_id)
        finally:
            for seq in [s for s in cursor.pending if s <= cursor.delivered]:
                del cursor.pending[seq]
            cursor.syncing = False
        return sent

    async def _on_removed(self, thread_id: int, text: str | None) -> None:
        if self.cursors.pop(thread_id, None) is not None:
            await self._leave(thread_topic(thread_id))
        if text:
            self._emit_text(text)

    # --- Incoming ------------------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.closed:
            return
        if bytes_data is not None:
            await self.close(code=CLOSE_PROTOCOL)
            return
        text = text_data or ""
        if len(text.encode()) > MAX_FRAME_BYTES:
            await self._strike(frames.error_frame("too_large", "Frame too large."))
            return
        try:
            frame = json.loads(text)
        except ValueError:
            frame = None
        if not isinstance(frame, dict):
            await self._strike(frames.error_frame("bad_json", "A frame is a JSON object."))
            return
        ref = frame.get("ref")
        if ref is not None and (not isinstance(ref, str | int) or len(str(ref)) > 64):
            ref = None
        if not self.bucket.take():
            await self._strike(frames.error_frame("rate_limited", "Slow down.", ref=ref))
            return
        handler = self.HANDLERS.get(frame.get("type"))  # type: ignore[arg-type]
        if frame.get("type") in ACTIVITY_FRAMES:
            now = time.time()
            # Past what the socket knows of its limits: look before this use counts.
            deadline = session_security.socket_deadline(self.session_state, self.last_activity)
            if now >= deadline and not await self._check_session():
                return
            self.last_activity = now
        if handler is None:
            await self._strike(
                frames.error_frame(
                    "unknown_type", f"Unknown frame type {frame.get('type')!r}.", ref=ref
                )
            )
            return
        try:
            await handler(self, frame, ref)
        except DomainError as error:
            self._emit(frames.error_frame(error.code, error.message, ref=ref, fields=error.fields))
        except Exception as error:
            # The database or Redis is unreachable: the socket stays open and the
            # client retries (a send with the same client_id is never stored twice).
            if not isinstance(error, OperationalError | InterfaceError | DatabaseError) and (
                not is_service_unavailable(error)
            ):
                raise
            logger.warning("service unavailable for a %s frame", frame.get("type"), exc_info=True)
            self._emit(
                frames.error_frame(
                    "unavailable",
                    "Temporarily unavailable; retry with the same client_id.",
                    ref=ref,
                )
            )

    async def _strike(self, error: dict[str, Any]) -> None:
        self.strikes += 1
        if self.strikes > ABUSE_STRIKES:
            self.closed = True
            await self.close(code=CLOSE_ABUSE)
            return
        self._emit(error)

    @staticmethod
    def _thread_id(frame: dict[str, Any]) -> int:
        value = frame.get("thread")
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise DomainError(
                "thread must be a thread id.",
                code="invalid",
                fields={"thread": ["A positive whole number."]},
            )
        return value

    async def handle_subscribe(self, frame: dict[str, Any], ref: Any) -> None:
        thread_id = self._thread_id(frame)
        after = frame.get("after")
        if after is not None and (
            not isinstance(after, int) or isinstance(after, bool) or after < 0
        ):
            raise DomainError(
                "after must be a sequence number or null.",
                code="invalid",
                fields={"after": ["A whole number, 0 or more, or null."]},
            )
        # Listen first, then read, so nothing committed in between is missed.
        previous = self.cursors.get(thread_id)
        cursor = ThreadCursor(delivered=0)
        self.cursors[thread_id] = cursor
        await self._join(thread_topic(thread_id))
        try:
            info = await db(_subscribe_info)(user=self.user, thread_id=thread_id)
        except DomainError:
            if previous is None:
                self.cursors.pop(thread_id, None)
                await self._leave(thread_topic(thread_id))
            else:
                self.cursors[thread_id] = previous
            raise
        last_seq = info["last_seq"]
        if after is None or after > last_seq:
            after = last_seq
        if last_seq - after > REPLAY_LIMIT:
            self.cursors.pop(thread_id, None)
            await self._leave(thread_topic(thread_id))
            self._emit(
                {
                    "type": "resync_required",
                    "ref": ref,
                    "thread": thread_id,
                    "after": after,
                    "last_seq": last_seq,
                }
            )
            return
        cursor.delivered = after
        replayed = await self._catch_up(thread_id)
        if replayed:
            await db(_audit_replay)(user=self.user, thread_id=thread_id, scope=self.scope)
        await self._watch_presence([p["id"] for p in info["participants"]])
        try:
            statuses = await presence_store().status_of([p["id"] for p in info["participants"]])
        except Exception:  # presence is best effort; Redis may be down
            logger.debug("presence read failed", exc_info=True)
            statuses = {}
        for participant in info["participants"]:
            participant["presence"] = statuses.get(participant["id"], "offline")
        self._emit(
            {
                "type": "subscribed",
                "ref": ref,
                "thread": thread_id,
                "last_seq": max(last_seq, cursor.delivered),
                "read_seq": info["read_seq"],
                "unread": max(0, last_seq - info["read_seq"]),
                "participants": info["participants"],
            }
        )

    async def handle_unsubscribe(self, frame: dict[str, Any], ref: Any) -> None:
        thread_id = self._thread_id(frame)
        if self.cursors.pop(thread_id, None) is not None:
            await self._leave(thread_topic(thread_id))
        self._emit({"type": "unsubscribed", "ref": ref, "thread": thread_id})

    async def handle_send(self, frame: dict[str, Any], ref: Any) -> None:
        thread_id = self._thread_id(frame)
        result = await services.message_send_async(
            user=self.user,
            thread_id=thread_id,
            client_id=frame.get("client_id"),
            body=frame.get("body", ""),
            attachment_ids=frame.get("attachments"),
        )
        self._emit(frames.ack_frame(result.frame, duplicate=not result.created, ref=ref))

    async def handle_read(self, frame: dict[str, Any], ref: Any) -> None:
        thread_id = self._thread_id(frame)
        await db(services.thread_mark_read)(
            user=self.user, thread_id=thread_id, seq=frame.get("seq")
        )

    async def handle_typing(self, frame: dict[str, Any], ref: Any) -> None:
        thread_id = self._thread_id(frame)
        if thread_id not in self.cursors:
            raise DomainError("Subscribe to the thread first.", code="not_found")
        await publish_now(
            thread_topic(thread_id),
            {
                "kind": "typing",
                "user": self.user.pk,
                "frame": {
                    "type": "typing",
                    "thread": thread_id,
                    "user": {"id": self.user.pk, "name": self.user_name},
                    "expires_in": TYPING_EXPIRES,
                },
            },
        )

    async def handle_presence(self, frame: dict[str, Any], ref: Any) -> None:
        status = frame.get("status")
        if status not in STATUSES:
            raise DomainError(
                "status is online or away.", code="invalid", fields={"status": ["online or away"]}
            )
        await self._set_presence(status)

    async def handle_watch(self, frame: dict[str, Any], ref: Any) -> None:
        topic = frame.get("topic")
        authorize = watchable_authorizer(topic) if isinstance(topic, str) else None
        if authorize is None or len(topic) > 90:
            raise DomainError("Unknown topic.", code="not_found")
        if not await authorize(self.user, topic):
            raise DomainError("You may not watch this topic.", code="forbidden")
        await self._join(topic)
        self._emit({"type": "watching", "ref": ref, "topic": topic})

    async def handle_unwatch(self, frame: dict[str, Any], ref: Any) -> None:
        topic = frame.get("topic")
        if isinstance(topic, str) and watchable_authorizer(topic) is not None:
            await self._leave(topic)
        self._emit({"type": "unwatched", "ref": ref, "topic": topic})

    async def handle_ping(self, frame: dict[str, Any], ref: Any) -> None:
        self._emit({"type": "pong", "ref": ref})

    async def handle_active(self, frame: dict[str, Any], ref: Any) -> None:
        """The person used the page (typed, clicked, scrolled): counted above, no answer."""

    HANDLERS = {
        "subscribe": handle_subscribe,
        "unsubscribe": handle_unsubscribe,
        "send": handle_send,
        "read": handle_read,
        "typing": handle_typing,
        "presence": handle_presence,
        "watch": handle_watch,
        "unwatch": handle_unwatch,
        "ping": handle_ping,
        "active": handle_active,
    }

    # --- Topics and presence ------------------------------------------------------------

    async def _join(self, topic: str) -> None:
        if topic not in self.topics:
            self.topics.add(topic)
            await self.hub.subscribe(topic, self)

    async def _leave(self, topic: str) -> None:
        if topic in self.topics:
            self.topics.discard(topic)
            await self.hub.unsubscribe(topic, self)

    async def _watch_presence(self, user_ids: list[int]) -> None:
        for uid in user_ids:
            if uid != self.user.pk:
                await self._join(presence_topic(uid))

    def _presence_event(self, status: str) -> dict[str, Any]:
        return {
            "kind": "presence",
            "frame": {"type": "presence", "user": self.user.pk, "status": status},
        }

    async def _set_presence(self, status: str) -> None:
        self.presence_status = status
        try:
            store = presence_store()
            before = (await store.status_of([self.user.pk]))[self.user.pk]
            await store.set(self.user.pk, self.socket_id, status)
            after = (await store.status_of([self.user.pk]))[self.user.pk]
        except Exception:
            logger.debug("presence update failed", exc_info=True)
            return
        if after != before:
            await publish_now(presence_topic(self.user.pk), self._presence_event(after))


def _subscribe_info(*, user: Any, thread_id: int) -> dict[str, Any]:
    thread = selectors.thread_get_for_user(user=user, thread_id=thread_id)
    participants = selectors.participants_of(thread_id=thread.pk)
    mine = next(p for p in participants if p.user_id == user.pk)
    return {
        "last_seq": thread.last_seq,
        "read_seq": mine.read_seq,
        "participants": [
            {"id": p.user_id, "name": p.user.display_name, "role": p.role, "read_seq": p.read_seq}
            for p in participants
        ],
    }


def _audit_replay(*, user: Any, thread_id: int, scope: dict[str, Any]) -> None:
    from consult.models import Thread
    from telehealth.audit import audit_record
    from telehealth.models import AuditEvent

    thread = Thread.objects.select_related("patient").get(pk=thread_id)
    audit_record(
        actor=user,
        action=AuditEvent.Action.READ,
        target=f"consult.thread:{thread_id}:replay",
        patient=thread.patient,
        reason="conversation history (websocket resume)",
        request=scope,
    )
