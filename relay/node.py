"""The relay node: rooms, sessions (one RTCPeerConnection each), load.

A *publish* session receives a participant's tracks; each becomes a
:class:`~relay.forwarding.PublishedTrack`. A *subscribe* session sends one
publisher's tracks to a participant: forwarded as encoded frames when the
subscriber accepts the publisher's codec, otherwise decoded once and
re-encoded (aiortc's MediaRelay). Every peer connection is closed when its
session is deleted, its participant removed, its room closed, its publisher
leaves (subscriptions to it), its ICE/DTLS fails or closes, it does not
connect within ``connect_timeout``, or the node shuts down.

A room may be recorded (:mod:`relay.recording`) when the web tier asks: every
publisher, present or arriving, gets a file of its own, finished when it
leaves, when the recording stops, when the room is closed or when the node
shuts down (uploads are then given ``upload_drain_timeout`` seconds).

A subscriber may pause its copy of a publisher's video (audio-only mode):
no video frames are sent to it until it resumes.

SDP and ICE data are never logged: only session ids, rooms, participants,
kinds and codec names.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription, sdp

from . import fastpath
from .config import RelayConfig, quiet_media_loggers, restrict_ice_hosts, rtc_configuration
from .forwarding import (
    EncodedTrack,
    PublishedTrack,
    check_aiortc,
    drain_receiver,
    hook_sender_estimates,
    hook_sender_keyframes,
)
from .recording import FinishedFile, Recorder

logger = logging.getLogger(__name__)

MEDIA_KINDS = ("audio", "video")
#: Tokens of a removed participant issued before the removal are refused this long.
REMOVAL_MEMORY = 900.0


class RelayError(Exception):
    """A refused request: HTTP ``status``, machine ``code``, human ``detail``."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail


@dataclass(eq=False)
class Session:
    id: str
    room: str
    participant: str
    kind: str  # "publish" | "subscribe"
    pc: RTCPeerConnection
    publisher: str | None = None
    sources: list[PublishedTrack] = field(default_factory=list)
    tracks: list[MediaStreamTrack] = field(default_factory=list)
    created: float = field(default_factory=time.monotonic)
    connected: bool = False
    closed: bool = False
    #: its transports' inline SRTP receive paths (``relay/fastpath.py``)
    receive_paths: list[fastpath.SrtpReceiver] = field(default_factory=list)

    @property
    def location(self) -> str:
        return f"/rooms/{self.room}/sessions/{self.id}"

    @property
    def streams(self) -> int:
        return len(self.sources) if self.kind == "publish" else len(self.tracks)


@dataclass(eq=False)
class Room:
    id: str
    sessions: dict[str, Session] = field(default_factory=dict)
    publishers: dict[str, Session] = field(default_factory=dict)
    listeners: set[Listener] = field(default_factory=set)

    @property
    def empty(self) -> bool:
        return not self.sessions and not self.listeners


class Listener:
    """One events stream: a bounded queue of events; ``None`` ends the stream."""

    def __init__(self, room: str, participant: str, maxsize: int = 64) -> None:
        self.room = room
        self.participant = participant
        self.queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(maxsize)

    def send(self, event: dict[str, Any] | None) -> None:
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            # A stalled reader loses old events, never the end of the stream.
            with contextlib.suppress(asyncio.QueueEmpty):
                self.queue.get_nowait()
            self.queue.put_nowait(event)


class CpuMeter:
    """This process's CPU use (all threads) as a fraction of the cores it may use."""

    def __init__(self, min_window: float = 0.5) -> None:
        self.cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
        self.min_window = min_window
        self._wall = time.monotonic()
        self._cpu = time.process_time()
        self.value = 0.0

    def sample(self) -> float:
        wall, cpu = time.monotonic(), time.process_time()
        if wall - self._wall >= self.min_window:
            self.value = max(0.0, (cpu - self._cpu) / (wall - self._wall) / self.cores)
            self._wall, self._cpu = wall, cpu
        return self.value


def parse_offer(text: str) -> sdp.SessionDescription:
    """Parse an SDP offer enough to plan the answer; 400 if it is not one."""
    if not text.strip().startswith("v=0"):
        raise RelayError(400, "bad_sdp", "the body is not an SDP offer")
    try:
        description = sdp.SessionDescription.parse(text)
    except Exception:
        raise RelayError(400, "bad_sdp", "the SDP offer cannot be parsed") from None
    media = [m for m in description.media if m.kind in MEDIA_KINDS]
    if not media:
        raise RelayError(400, "bad_sdp", "the SDP offer has no audio or video section")
    for m in media:
        if not m.ice.usernameFragment or not m.ice.password or not m.dtls:
            raise RelayError(400, "bad_sdp", "the SDP offer lacks ICE or DTLS parameters")
    return description


def _sends(direction: str | None) -> bool:
    return direction in ("sendonly", "sendrecv")


def _receives(direction: str | None) -> bool:
    return direction in ("recvonly", "sendrecv")


class RelayNode:
    def __init__(self, config: RelayConfig) -> None:
        check_aiortc()
        quiet_media_loggers()
        restrict_ice_hosts(config.ice_hosts)
        self.config = config
        self.rooms: dict[str, Room] = {}
        self.sessions: dict[str, Session] = {}
        self.cpu = CpuMeter()
        self.closing = False
        self._removed: dict[tuple[str, str], float] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self.counters = {"sessions_opened": 0, "sessions_closed": 0, "bad_offers": 0}
        self.recorder = Recorder(secret=config.token_secret, node_id=config.node_id)
        #: seconds the node waits at shutdown for recording uploads in flight
        self.upload_drain_timeout = 20.0
        self._inline_media_warned = False

    # ------------------------------------------------------------------ load

    @property
    def streams(self) -> int:
        return sum(s.streams for s in self.sessions.values())

    @property
    def active_rooms(self) -> int:
        return sum(1 for r in self.rooms.values() if r.sessions)

    def load(self) -> tuple[int, int, float]:
        return self.active_rooms, self.streams, self.cpu.sample()

    def health(self) -> dict[str, Any]:
        rooms, streams, cpu = self.load()
        return {"node": self.config.node_id, "rooms": rooms, "streams": streams, "cpu": cpu}

    def stats(self) -> dict[str, Any]:
        """Aggregate counters (no room or participant ids)."""
        published = [src for s in self.sessions.values() for src in s.sources]
        sinks = [t for s in self.sessions.values() for t in s.tracks if isinstance(t, EncodedTrack)]
        paths = [p for s in self.sessions.values() for p in s.receive_paths]
        return {
            **self.health(),
            **self.counters,
            "sessions": len(self.sessions),
            "published_tracks": len(published),
            "forwarded_tracks": len(sinks),
            "transcoded_tracks": sum(src.transcoders for src in published),
            "frames_in": sum(src.tap.frames for src in published),
            "frames_decoded": sum(src.tap.decoded for src in published),
            "frames_forwarded": sum(src.frames_forwarded for src in published),
            "frames_dropped": sum(t.dropped for t in sinks),
            # time frames wait on the relay between their last packet's arrival
            # and their subscriber's sender taking them (fan-out queueing)
            "frames_sent": sum(t.sent for t in sinks),
            "queue_seconds_total": sum(t.residence_total for t in sinks),
            "queue_seconds_max": max((t.residence_max for t in sinks), default=0.0),
            "pli_sent": sum(src.pli_sent for src in published),
            "remb_capped": sum(src.remb_capped for src in published),
            "remb_sent": sum(src.remb_sent for src in published),
            "paused_tracks": sum(1 for t in sinks if t.paused),
            "frames_withheld": sum(t.withheld for t in sinks),
            # packets of the open sessions received inline, and handler errors there
            "fast_receive_packets": sum(p.packets for p in paths),
            "fast_receive_errors": sum(p.errors for p in paths),
            # of which RTP packets a forwarded track took without aiortc's handler
            "fast_rtp_packets": sum(src.rtp_taken for src in published),
            **self.recorder.stats(),
        }

    # ------------------------------------------------------------------ admission

    def check_not_removed(self, room: str, participant: str, issued_at: float | None) -> None:
        removed_at = self._removed.get((room, participant))
        if removed_at is None:
            return
        if time.time() - removed_at > REMOVAL_MEMORY:
            del self._removed[(room, participant)]
            return
        if issued_at is None or issued_at <= removed_at:
            raise RelayError(403, "removed", "this participant was removed from the room")

    def _admit(self) -> None:
        if self.closing:
            raise RelayError(503, "node_closing", "this relay node is shutting down")
        if len(self.sessions) >= self.config.max_sessions:
            raise RelayError(503, "node_full", "this relay node is full")

    def _room(self, room_id: str) -> Room:
        room = self.rooms.get(room_id)
        if room is None:
            room = self.rooms[room_id] = Room(room_id)
        return room

    def session(self, room_id: str, session_id: str) -> Session:
        session = self.sessions.get(session_id)
        if session is None or session.room != room_id:
            raise RelayError(404, "session_not_found", "no such session in this room")
        return session

    # ------------------------------------------------------------------ peer connections

    def _new_pc(self) -> RTCPeerConnection:
        return RTCPeerConnection(rtc_configuration(self.config.ice_servers))

    async def _negotiate(self, pc: RTCPeerConnection, offer: str) -> str:
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        except Exception as exc:
            self.counters["bad_offers"] += 1
            raise RelayError(
                400, "bad_sdp", f"the SDP offer was refused ({type(exc).__name__})"
            ) from None
        self._drain_unconsumed(pc)
        answer = await pc.createAnswer()
        await pc.setLocalDescription(answer)
        return pc.localDescription.sdp

    def _shorten_receive(self, pc: RTCPeerConnection) -> list[fastpath.SrtpReceiver]:
        """Media packets go from the socket to aiortc's handlers inline
        (``relay/fastpath.py``); if aiortc's internals moved, its own path stays."""
        if not self.config.inline_media:
            return []
        try:
            return fastpath.install(pc)
        except fastpath.FastPathError as exc:
            if not self._inline_media_warned:
                self._inline_media_warned = True
                logger.warning("relay inline media path off: %s", exc)
            return []

    def _drain_unconsumed(self, pc: RTCPeerConnection, keep: Iterable[Any] = ()) -> None:
        """Remote tracks we will not forward are still read (and dropped), never decoded."""
        keep = set(keep)
        for transceiver in pc.getTransceivers():
            receiver = transceiver.receiver
            if (
                receiver.track is not None
                and receiver not in keep
                and not hasattr(receiver, "_relay_tap")
            ):
                receiver._relay_tap = drain_receiver(receiver, transceiver.kind)

    def _watch(self, session: Session) -> None:
        pc = session.pc

        @pc.on("connectionstatechange")
        def on_state() -> None:
            state = pc.connectionState
            if state == "connected":
                session.connected = True
            elif state in ("failed", "closed"):
                self._spawn(self.close_session(session.id, reason=f"connection {state}"))

        async def connect_deadline() -> None:
            await asyncio.sleep(self.config.connect_timeout)
            if not session.connected and not session.closed:
                await self.close_session(session.id, reason="did not connect")

        self._spawn(connect_deadline())

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _register(self, session: Session) -> None:
        room = self._room(session.room)
        room.sessions[session.id] = session
        self.sessions[session.id] = session
        self.counters["sessions_opened"] += 1
        self._watch(session)

    # ------------------------------------------------------------------ publish

    async def publish(self, room_id: str, participant: str, offer: str) -> tuple[Session, str]:
        self._admit()
        description = parse_offer(offer)
        if not any(_sends(m.direction) for m in description.media if m.kind in MEDIA_KINDS):
            raise RelayError(400, "bad_sdp", "a publish offer must send audio or video")
        existing = self.rooms.get(room_id)
        previous = existing.publishers.get(participant) if existing else None
        if previous is not None:  # a reconnecting publisher replaces its old session
            await self.close_session(previous.id, reason="replaced")

        pc = self._new_pc()
        session = Session(secrets.token_urlsafe(12), room_id, participant, "publish", pc)
        pending: list[tuple[Any, PublishedTrack]] = []
        try:
            try:
                await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
            except Exception as exc:
                self.counters["bad_offers"] += 1
                raise RelayError(
                    400, "bad_sdp", f"the SDP offer was refused ({type(exc).__name__})"
                ) from None
            # Taps go in before receive() starts the decoder threads (in the
            # connect task, once ICE and DTLS are up): nothing is decoded.
            for transceiver in pc.getTransceivers():
                receiver = transceiver.receiver
                if receiver.track is None:
                    continue
                source = PublishedTrack(
                    receiver,
                    transceiver.kind,
                    None,
                    pli_interval=self.config.pli_interval,
                    video_queue_frames=self.config.video_queue_frames,
                    audio_queue_frames=self.config.audio_queue_frames,
                    low_latency=self.config.low_latency,
                    stock_transcode=self.config.transcode_all,
                    transcode_buffered=self.config.transcode_buffered,
                    rtp_forwarding=self.config.forward_rtp,
                )
                receiver._relay_tap = source.tap
                pending.append((transceiver, source))
            answer = await pc.createAnswer()
            await pc.setLocalDescription(answer)
            session.receive_paths = self._shorten_receive(pc)
            # The publisher sends with the first codec of our answer.
            local = sdp.SessionDescription.parse(pc.localDescription.sdp)
            by_mid = {m.rtp.muxId: m for m in local.media}
            for transceiver, source in pending:
                media = by_mid.get(transceiver.mid)
                codecs = [c for c in (media.rtp.codecs if media else []) if c.name.lower() != "rtx"]
                if codecs and source.codec is None:
                    source.codec = codecs[0]
                session.sources.append(source)
        except BaseException:
            for _, source in pending:
                source.close()
            await pc.close()
            raise
        if not session.sources or self.closing:
            self._cut(session)
            await pc.close()
            if self.closing:
                raise RelayError(503, "node_closing", "this relay node is shutting down")
            raise RelayError(400, "bad_sdp", "the offer has no track the relay can receive")
        room = self._room(room_id)
        room.publishers[participant] = session
        self._register(session)
        self.recorder.attach(room_id, session.id, participant, session.sources)
        logger.info(
            "publish %s room=%s participant=%s tracks=%s",
            session.id,
            room_id,
            participant,
            ",".join(f"{s.kind}/{s.codec_name}" for s in session.sources),
        )
        self.emit(
            room_id,
            {
                "type": "publisher-joined",
                "participant": participant,
                "tracks": [s.kind for s in session.sources],
            },
        )
        return session, pc.localDescription.sdp

    # ------------------------------------------------------------------ subscribe

    async def subscribe(
        self, room_id: str, participant: str, publisher_id: str, offer: str
    ) -> tuple[Session, str]:
        self._admit()
        description = parse_offer(offer)
        room = self.rooms.get(room_id)
        publisher = room.publishers.get(publisher_id) if room else None
        if publisher is None or publisher.closed:
            raise RelayError(404, "publisher_not_found", "that participant is not publishing here")

        pc = self._new_pc()
        session = Session(
            secrets.token_urlsafe(12), room_id, participant, "subscribe", pc, publisher=publisher_id
        )
        available = {kind: [s for s in publisher.sources if s.kind == kind] for kind in MEDIA_KINDS}
        modes = []
        try:
            # One transceiver per offered m-line, in order, so setRemoteDescription
            # pairs them up; m-lines we cannot serve get an inactive placeholder.
            for media in description.media:
                if media.kind not in MEDIA_KINDS:
                    continue
                source = available[media.kind].pop(0) if available[media.kind] else None
                if source is None or not _receives(media.direction):
                    if source is not None:
                        available[media.kind].insert(0, source)
                    pc.addTransceiver(media.kind, direction="inactive")
                    continue
                if source.accepts(media.rtp.codecs):
                    sink = source.add_sink()
                    track: MediaStreamTrack = sink
                    transceiver = pc.addTransceiver(track, direction="sendonly")
                    transceiver.setCodecPreferences(source.codec_preferences())
                    hook_sender_keyframes(transceiver.sender, source, sink)
                    if media.kind == "video":  # REMB is about video
                        hook_sender_estimates(transceiver.sender, sink)
                    if source.rtp_forwarding:
                        sink.bind_sender(transceiver.sender, inline=self.config.inline_media)
                    modes.append(f"{media.kind}/{source.codec_name}:forward")
                else:
                    track = source.transcoded_track()
                    pc.addTransceiver(track, direction="sendonly")
                    modes.append(f"{media.kind}/{source.codec_name}:transcode")
                session.tracks.append(track)
            if not session.tracks:
                raise RelayError(
                    400, "bad_sdp", "the offer receives none of the publisher's tracks"
                )
            answer = await self._negotiate(pc, offer)
            session.receive_paths = self._shorten_receive(pc)
        except BaseException:
            for track in session.tracks:
                track.stop()
            await pc.close()
            raise
        if self.closing or publisher.closed:
            self._cut(session)
            await pc.close()
            if self.closing:
                raise RelayError(503, "node_closing", "this relay node is shutting down")
            raise RelayError(404, "publisher_not_found", "that participant stopped publishing")
        self._register(session)
        logger.info(
            "subscribe %s room=%s participant=%s publisher=%s tracks=%s",
            session.id,
            room_id,
            participant,
            publisher_id,
            ",".join(modes),
        )
        return session, answer

    # ------------------------------------------------------------------ leaving

    def _cut(self, session: Session) -> None:
        """Stop a session's media at once (before its connection is closed)."""
        for source in session.sources:
            source.close()
        for track in session.tracks:
            track.stop()

    async def close_session(self, session_id: str, reason: str = "closed") -> None:
        session = self.sessions.pop(session_id, None)
        if session is None or session.closed:
            return
        session.closed = True
        self._cut(session)
        if session.kind == "publish":
            # Its recording file (if the room is being recorded) is finished and uploaded.
            await self.recorder.detach(session.room, session.id)
        room = self.rooms.get(session.room)
        dependents: list[Session] = []
        if room is not None:
            room.sessions.pop(session.id, None)
            if session.kind == "publish" and room.publishers.get(session.participant) is session:
                del room.publishers[session.participant]
                dependents = [
                    s
                    for s in room.sessions.values()
                    if s.kind == "subscribe" and s.publisher == session.participant
                ]
                self.emit(
                    session.room, {"type": "publisher-left", "participant": session.participant}
                )
        self.counters["sessions_closed"] += 1
        logger.info("close %s room=%s (%s)", session.id, session.room, reason)
        await asyncio.gather(
            self._close_pc(session.pc),
            *(self.close_session(s.id, reason="publisher left") for s in dependents),
        )
        self._forget_room_if_empty(session.room)

    async def _close_pc(self, pc: RTCPeerConnection) -> None:
        try:
            await pc.close()
        except Exception as exc:  # closing must not fail the caller
            logger.warning("closing a peer connection failed: %s", type(exc).__name__)

    def _forget_room_if_empty(self, room_id: str) -> None:
        room = self.rooms.get(room_id)
        if room is not None and room.empty:
            del self.rooms[room_id]

    async def remove_participant(self, room_id: str, participant: str) -> int:
        """Cut every session of ``participant`` in the room at once; refuse its old tokens."""
        self._removed[(room_id, participant)] = time.time()
        room = self.rooms.get(room_id)
        if room is None:
            return 0
        sessions = [s for s in room.sessions.values() if s.participant == participant]
        for session in sessions:
            self._cut(session)
        for listener in [lis for lis in room.listeners if lis.participant == participant]:
            listener.send({"type": "removed", "participant": participant})
            listener.send(None)
            room.listeners.discard(listener)
        self.emit(room_id, {"type": "participant-removed", "participant": participant})
        await asyncio.gather(*(self.close_session(s.id, reason="removed") for s in sessions))
        return len(sessions)

    async def close_room(self, room_id: str) -> int:
        await self.recorder.stop(room_id, reason="room-closed")
        room = self.rooms.get(room_id)
        if room is None:
            return 0
        sessions = list(room.sessions.values())
        for session in sessions:
            self._cut(session)
        for listener in list(room.listeners):
            listener.send({"type": "room-closed"})
            listener.send(None)
        await asyncio.gather(*(self.close_session(s.id, reason="room closed") for s in sessions))
        self._forget_room_if_empty(room_id)
        return len(sessions)

    # ------------------------------------------------------------------ audio-only

    def set_video_paused(
        self, room_id: str, participant: str, publisher_id: str, paused: bool
    ) -> int:
        """Pause (or resume) the video ``participant`` receives from ``publisher_id``.

        Paused, the subscriber's video sender gets no frames, so it sends no
        video at all; resuming asks the publisher for a keyframe. Returns the
        number of video tracks changed; 404 if there is no such subscription.
        """
        room = self.rooms.get(room_id)
        sessions = [
            s
            for s in (room.sessions.values() if room else ())
            if s.kind == "subscribe"
            and s.participant == participant
            and s.publisher == publisher_id
        ]
        if not sessions:
            raise RelayError(
                404, "subscription_not_found", "no subscription to that participant here"
            )
        changed = 0
        for session in sessions:
            for track in session.tracks:
                if track.kind == "video" and hasattr(track, "set_paused"):
                    track.set_paused(paused)
                    changed += 1
        logger.info(
            "video %s room=%s participant=%s publisher=%s",
            "paused" if paused else "resumed",
            room_id,
            participant,
            publisher_id,
        )
        return changed

    # ------------------------------------------------------------------ recording

    async def start_recording(
        self, room_id: str, recording_id: str, upload_url: str
    ) -> tuple[int, bool]:
        """Record the room (see :mod:`relay.recording`); returns (publishers, whether new)."""
        if self.closing:
            raise RelayError(503, "node_closing", "this relay node is shutting down")
        room = self.rooms.get(room_id)
        publishers = [
            (s.id, s.participant, s.sources)
            for s in (room.publishers.values() if room else ())
            if not s.closed
        ]
        recording, new = await self.recorder.start(room_id, recording_id, upload_url, publishers)
        if new:
            self.emit(room_id, {"type": "recording-started"})
        return len(recording.publishers), new

    async def stop_recording(
        self, room_id: str, recording_id: str | None = None
    ) -> list[FinishedFile]:
        """Finish the room's recording files (uploads continue in the background)."""
        files = await self.recorder.stop(room_id, recording_id, reason="stopped")
        if files is None:
            raise RelayError(404, "not_recording", "this room is not being recorded")
        self.emit(room_id, {"type": "recording-stopped"})
        return files

    # ------------------------------------------------------------------ events

    def listen(self, room_id: str, participant: str) -> Listener:
        self._admit()
        room = self._room(room_id)
        listener = Listener(room_id, participant)
        room.listeners.add(listener)
        listener.send(
            {
                "type": "hello",
                "node": self.config.node_id,
                "publishers": sorted(room.publishers),
            }
        )
        return listener

    def unlisten(self, listener: Listener) -> None:
        room = self.rooms.get(listener.room)
        if room is not None:
            room.listeners.discard(listener)
            self._forget_room_if_empty(listener.room)

    def emit(self, room_id: str, event: dict[str, Any]) -> None:
        room = self.rooms.get(room_id)
        if room is not None:
            for listener in list(room.listeners):
                listener.send(event)

    # ------------------------------------------------------------------ shutdown

    def begin_shutdown(self) -> None:
        """Refuse new sessions and tell every events stream to rejoin elsewhere."""
        if self.closing:
            return
        self.closing = True
        for room in self.rooms.values():
            for listener in list(room.listeners):
                listener.send({"type": "rejoin", "reason": "node shutting down"})
                listener.send(None)

    async def shutdown(self) -> None:
        self.begin_shutdown()
        await self.recorder.stop_all(reason="shutdown")
        sessions = list(self.sessions.values())
        for session in sessions:
            self._cut(session)
        await asyncio.gather(*(self.close_session(s.id, reason="node shutdown") for s in sessions))
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.recorder.drain(self.upload_drain_timeout)
