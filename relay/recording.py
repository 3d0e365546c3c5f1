"""Recording a room on the relay node: encoded frames into Matroska/WebM, then upload.

The web tier asks for a recording (admin request, ``POST /rooms/{room}/recording``)
only once every participant has consented; it names its recording id and
the URL to upload the files to. From then on every publisher of the room,
present or arriving later, is recorded into a file of its own:

- The frames are the ones the forwarding path already has
  (:attr:`relay.forwarding.PublishedTrack.observers`): complete *encoded*
  frames straight from aiortc's receiver. They are muxed with PyAV
  (``add_mux_stream``: no codec context is opened), so nothing is decoded or
  encoded: VP8 (+ Opus) into WebM, H.264 (+ Opus) into Matroska, Opus alone
  into WebM. Other codecs are not recorded (logged).
- A file starts at a video keyframe (one is asked of the publisher when its
  recording starts), so it is decodable from its first frame. A publisher
  whose video does not come within :data:`VIDEO_GRACE` seconds (camera off,
  audio-only mode) is recorded audio-only; when its video shows up later,
  that file is closed and a new one with video starts at the keyframe.
- Timestamps: each track's RTP timestamps (90 kHz video, 48 kHz Opus) are
  unwrapped from an anchor: the track's first frame in the file. Where the
  publisher has sent an RTCP sender report for the track (it maps RTP time to
  the publisher's own NTP clock, shared by its audio and video; browsers send
  one about every second), the anchor is placed by that clock, plus one
  transit delay per file (measured on the file's first frame), so audio and
  video line up as the publisher captured them, whatever the two tracks'
  network paths and jitter buffers did. Without a report (the first second of
  a publisher) a track is anchored at its first frame's arrival time, which
  aligns them to within the network jitter. A track whose RTP clock strays
  more than :data:`RESYNC_SECONDS` from arrival time is re-anchored. Packets
  go to the muxer in milliseconds (Matroska's time base), strictly
  increasing per stream.
- Muxing and file I/O run on one writer thread per file (a bounded queue;
  the event loop only enqueues). If the disk cannot keep up, video skips to
  the next keyframe rather than growing memory.

A file is finished when the recording stops (admin ``DELETE``), its publisher
leaves, the room is closed or the node shuts down. Finished files are
uploaded to the web tier (``POST`` multipart, ``Authorization: Bearer`` a
*recording-upload* token signed with the shared secret, see
:func:`relay.tokens.issue_upload_token`), retried on network errors and 5xx,
and deleted once the web tier has them (or refused them for good with a
4xx). Files live in a private directory of the node (mode 0700, under
``$TMPDIR``) until then.

Nothing here logs SDP, ICE data or media; logs name rooms, recording ids and
file ids only.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import fractions
import hashlib
import logging
import os
import queue
import shutil
import tempfile
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import av
import httpx

from .forwarding import PublishedTrack
from .tokens import issue_upload_token

logger = logging.getLogger(__name__)

#: Seconds to wait for a publisher's first video keyframe before recording its audio alone.
VIDEO_GRACE = 2.0
#: A track whose RTP clock strays this far from arrival time is re-anchored.
RESYNC_SECONDS = 2.0
#: Frames waiting for a file's writer thread before video skips to a keyframe.
WRITER_BACKLOG = 900
#: Audio kept while waiting for the first video keyframe (2.4 s of 20 ms frames).
PENDING_AUDIO_FRAMES = 120
MILLISECONDS = fractions.Fraction(1, 1000)
RECORDABLE_VIDEO = {"vp8": "vp8", "h264": "h264"}
RECORDABLE_AUDIO = {"opus": "opus"}
CONTENT_TYPES = {"webm": "video/webm", "matroska": "video/x-matroska"}
EXTENSIONS = {"webm": ".webm", "matroska": ".mkv"}
#: Seconds between upload attempts (after the first); network errors and 5xx are retried.
UPLOAD_RETRY_DELAYS = (2.0, 10.0, 30.0)


# --------------------------------------------------------------------------- bitstream


def vp8_dimensions(data: bytes) -> tuple[int, int] | None:
    """Width and height of a VP8 keyframe (RFC 6386 9.1), or None."""
    if len(data) < 10 or data[0] & 0x01 or data[3:6] != b"\x9d\x01\x2a":
        return None
    width = (data[6] | data[7] << 8) & 0x3FFF
    height = (data[8] | data[9] << 8) & 0x3FFF
    return (width, height) if width and height else None


class _Bits:
    """Exp-Golomb reader over an RBSP (H.264 7.2, 9.1)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def bit(self) -> int:
        byte = self.pos >> 3
        if byte >= len(self.data):
            raise ValueError("truncated")
        value = (self.data[byte] >> (7 - (self.pos & 7))) & 1
        self.pos += 1
        return value

    def bits(self, count: int) -> int:
        value = 0
        for _ in range(count):
            value = value << 1 | self.bit()
        return value

    def ue(self) -> int:
        zeros = 0
        while not self.bit():
            zeros += 1
            if zeros > 31:
                raise ValueError("bad exp-golomb code")
        return (1 << zeros) - 1 + self.bits(zeros)

    def se(self) -> int:
        value = self.ue()
        return (value + 1) // 2 if value & 1 else -(value // 2)


_HIGH_PROFILES = {100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135}


def _annexb_nal_units(data: bytes) -> Iterable[bytes]:
    starts = []
    pos = data.find(b"\x00\x00\x01")
    while pos != -1:
        starts.append(pos + 3)
        pos = data.find(b"\x00\x00\x01", pos + 3)
    for index, start in enumerate(starts):
        end = starts[index + 1] - 3 if index + 1 < len(starts) else len(data)
        yield data[start:end].rstrip(b"\x00") if index + 1 < len(starts) else data[start:end]


def h264_dimensions(data: bytes) -> tuple[int, int] | None:
    """Width and height from the SPS in an Annex B access unit (H.264 7.3.2.1.1), or None."""
    for nal in _annexb_nal_units(data):
        if not nal or nal[0] & 0x1F != 7:
            continue
        rbsp = nal[1:].replace(b"\x00\x00\x03", b"\x00\x00")
        try:
            return _sps_dimensions(_Bits(rbsp))
        except ValueError:
            return None
    return None


def _sps_dimensions(r: _Bits) -> tuple[int, int] | None:
    profile_idc = r.bits(8)
    r.bits(16)  # constraint flags, level_idc
    r.ue()  # seq_parameter_set_id
    chroma_format_idc = 1
    separate_colour_planes = 0
    if profile_idc in _HIGH_PROFILES:
        chroma_format_idc = r.ue()
        if chroma_format_idc == 3:
            separate_colour_planes = r.bit()
        r.ue()  # bit_depth_luma_minus8
        r.ue()  # bit_depth_chroma_minus8
        r.bit()  # qpprime_y_zero_transform_bypass_flag
        if r.bit():  # seq_scaling_matrix_present_flag
            for index in range(8 if chroma_format_idc != 3 else 12):
                if r.bit():
                    last = following = 8
                    for _ in range(16 if index < 6 else 64):
                        if following:
                            following = (last + r.se() + 256) % 256
                        last = following or last
    r.ue()  # log2_max_frame_num_minus4
    poc_type = r.ue()
    if poc_type == 0:
        r.ue()
    elif poc_type == 1:
        r.bit()
        r.se()
        r.se()
        for _ in range(r.ue()):
            r.se()
    r.ue()  # max_num_ref_frames
    r.bit()  # gaps_in_frame_num_value_allowed_flag
    width_mbs = r.ue() + 1
    height_units = r.ue() + 1
    frame_mbs_only = r.bit()
    if not frame_mbs_only:
        r.bit()  # mb_adaptive_frame_field_flag
    r.bit()  # direct_8x8_inference_flag
    width = width_mbs * 16
    height = (2 - frame_mbs_only) * height_units * 16
    if r.bit():  # frame_cropping_flag
        left, right, top, bottom = r.ue(), r.ue(), r.ue(), r.ue()
        if chroma_format_idc == 0 or separate_colour_planes:
            crop_x, crop_y = 1, 2 - frame_mbs_only
        else:
            crop_x = 2 if chroma_format_idc in (1, 2) else 1
            crop_y = (2 if chroma_format_idc == 1 else 1) * (2 - frame_mbs_only)
        width -= (left + right) * crop_x
        height -= (top + bottom) * crop_y
    return (width, height) if width > 0 and height > 0 else None


def video_dimensions(codec_name: str, data: bytes) -> tuple[int, int] | None:
    if codec_name == "vp8":
        return vp8_dimensions(data)
    if codec_name == "h264":
        return h264_dimensions(data)
    return None


# --------------------------------------------------------------------------- timing


class TrackClock:
    """One track's RTP timestamps → milliseconds from its file's start, strictly increasing."""

    def __init__(self, clock_rate: int) -> None:
        self.clock_rate = clock_rate
        self._last_ts: int | None = None
        self._ticks = 0  # unwrapped RTP ticks since the anchor
        self._anchor_at = 0.0  # seconds from the file's start
        self.last_ms = -1
        self.resyncs = 0

    def _anchor(self, timestamp: int, at: float) -> None:
        self._last_ts = timestamp
        self._ticks = 0
        self._anchor_at = at

    def pts_ms(self, timestamp: int, at: float, synced: float | None = None) -> int:
        """``timestamp`` (RTP, 32 bits) of a frame that arrived ``at`` seconds into the file.

        ``synced``: where the frame belongs in the file by the publisher's clock
        (see :meth:`RecordingFile.add`); an anchor is placed there rather than at
        ``at`` unless the two are more than ``RESYNC_SECONDS`` apart.
        """
        if synced is not None and abs(synced - at) > RESYNC_SECONDS:
            synced = None  # a stale or foreign report: arrival time is safer
        if self._last_ts is None:
            self._anchor(timestamp, at if synced is None else synced)
        else:
            delta = (timestamp - self._last_ts) & 0xFFFFFFFF
            if delta >= 1 << 31:  # earlier than the last one (wrapped backwards)
                delta -= 1 << 32
            self._ticks += delta
            self._last_ts = timestamp
        seconds = self._anchor_at + self._ticks / self.clock_rate
        if abs(seconds - at) > RESYNC_SECONDS:
            # The sender's clock jumped (a restarted encoder, a long gap): follow arrival.
            self.resyncs += 1
            seconds = at if synced is None else synced
            self._anchor(timestamp, seconds)
        ms = max(0, round(seconds * 1000))
        if ms <= self.last_ms:
            ms = self.last_ms + 1
        self.last_ms = ms
        return ms


# --------------------------------------------------------------------------- one file


@dataclass
class FinishedFile:
    """A closed recording file waiting for (or after) its upload."""

    id: str
    path: str
    room: str
    recording: str
    participant: str
    content_type: str
    started_at: float  # wall clock, seconds since the epoch
    ended_at: float
    size: int
    sha256: str
    reason: str
    video_frames: int
    audio_frames: int
    upload_url: str = ""
    attempts: int = 0


class RecordingFile:
    """One Matroska/WebM file: a video and/or an audio stream, muxed on a writer thread."""

    def __init__(
        self,
        directory: str,
        *,
        room: str,
        recording: str,
        participant: str,
        video: tuple[str, int, int, int] | None,  # codec name, width, height, clock rate
        audio: tuple[str, int] | None,  # codec name, clock rate
        started: float,  # monotonic seconds
    ) -> None:
        self.id = uuid.uuid4().hex
        self.room = room
        self.recording = recording
        self.participant = participant
        self.video = video
        self.audio = audio
        self.format = "matroska" if video is not None and video[0] == "h264" else "webm"
        self.path = os.path.join(directory, self.id + EXTENSIONS[self.format])
        self.started = started
        self.started_wall = time.time() - (time.monotonic() - started)
        self.clocks = {
            "video": TrackClock(video[3]) if video else None,
            "audio": TrackClock(audio[1]) if audio else None,
        }
        self.frames = {"video": 0, "audio": 0}
        #: arrival minus the publisher's clock, measured on the first frame that had both
        self.transit: float | None = None
        #: frames placed by the publisher's clock (RTCP sender reports)
        self.synced_frames = 0
        self.skipped = 0
        self._video_needs_keyframe = False
        self.error: str | None = None
        self._queue: queue.SimpleQueue[tuple[str, bytes, int, bool] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(
            target=self._write, name=f"relay-recording-{self.id[:8]}", daemon=True
        )
        self._thread.start()

    # -- event loop side
    def add(
        self,
        kind: str,
        data: bytes,
        timestamp: int,
        arrival: float,
        keyframe: bool,
        sent: float | None = None,
    ) -> bool:
        """Queue one encoded frame; False if it was skipped (backlog, waiting for a keyframe).

        ``arrival``: monotonic seconds; ``sent``: the frame's time on the publisher's
        clock (:meth:`PublishedTrack.sender_time`), None if not known yet.
        """
        clock = self.clocks.get(kind)
        if clock is None or self.error is not None:
            return False
        if kind == "video" and self._video_needs_keyframe:
            if not keyframe:
                self.skipped += 1
                return False
            self._video_needs_keyframe = False
        if self._queue.qsize() >= WRITER_BACKLOG:
            # The disk does not keep up: skip, and let video restart at a keyframe.
            self.skipped += 1
            if kind == "video":
                self._video_needs_keyframe = True
            return False
        synced = None
        if sent is not None:
            if self.transit is None:
                self.transit = arrival - sent
            synced = sent + self.transit - self.started
            self.synced_frames += 1
        pts = clock.pts_ms(timestamp, arrival - self.started, synced)
        self.frames[kind] += 1
        self._queue.put((kind, data, pts, keyframe))
        return True

    @property
    def needs_keyframe(self) -> bool:
        return self._video_needs_keyframe

    async def finish(self, reason: str, upload_url: str = "") -> FinishedFile | None:
        """Close the file (trailer written, thread ended); None if it holds nothing usable."""
        self._queue.put(None)
        await asyncio.to_thread(self._thread.join)
        ended = time.time()
        if self.error is not None or self.frames["video"] + self.frames["audio"] == 0:
            if self.error is not None:
                logger.warning("recording file %s failed: %s", self.id, self.error)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
            return None
        size, digest = await asyncio.to_thread(_size_and_digest, self.path)
        return FinishedFile(
            id=self.id,
            path=self.path,
            room=self.room,
            recording=self.recording,
            participant=self.participant,
            content_type=CONTENT_TYPES[self.format],
            started_at=self.started_wall,
            ended_at=ended,
            size=size,
            sha256=digest,
            reason=reason,
            video_frames=self.frames["video"],
            audio_frames=self.frames["audio"],
            upload_url=upload_url,
        )

    # -- writer thread
    def _write(self) -> None:
        container = None
        streams: dict[str, Any] = {}
        try:
            container = av.open(self.path, "w", format=self.format)
            container.metadata["title"] = f"{self.room} {self.participant}"
            if self.video is not None:
                name, width, height, _ = self.video
                streams["video"] = container.add_mux_stream(
                    RECORDABLE_VIDEO[name], width=width, height=height
                )
            if self.audio is not None:
                streams["audio"] = container.add_mux_stream(
                    RECORDABLE_AUDIO[self.audio[0]], rate=self.audio[1]
                )
            for stream in streams.values():
                stream.time_base = MILLISECONDS
            while True:
                item = self._queue.get()
                if item is None:
                    break
                if self.error is not None:
                    continue
                kind, data, pts, keyframe = item
                packet = av.Packet(data)
                packet.stream = streams[kind]
                packet.time_base = MILLISECONDS
                packet.pts = packet.dts = pts
                packet.is_keyframe = keyframe
                container.mux(packet)
        except Exception as exc:  # the file is dropped; forwarding goes on
            self.error = type(exc).__name__
            while self._queue.get() is not None:  # let finish() return
                pass
        finally:
            if container is not None:
                try:
                    container.close()
                except Exception as exc:
                    self.error = self.error or type(exc).__name__


def _size_and_digest(path: str) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


# --------------------------------------------------------------------------- one publisher


class PublisherRecorder:
    """Records one publish session: watches its tracks and keeps its current file."""

    def __init__(
        self,
        recording: RoomRecording,
        session_id: str,
        participant: str,
        sources: list[PublishedTrack],
        directory: str,
        on_finished: Any,
    ) -> None:
        self.recording = recording
        self.session_id = session_id
        self.participant = participant
        self.directory = directory
        self.on_finished = on_finished  # called with (RecordingFile, reason, RoomRecording)
        self.video_source = next(
            (s for s in sources if s.kind == "video" and s.codec_name in RECORDABLE_VIDEO), None
        )
        self.audio_source = next(
            (s for s in sources if s.kind == "audio" and s.codec_name in RECORDABLE_AUDIO), None
        )
        skipped = [
            f"{s.kind}/{s.codec_name}"
            for s in sources
            if s is not self.video_source and s is not self.audio_source
        ]
        if skipped:
            logger.warning(
                "recording %s: not recording %s of a publisher (codec)",
                recording.id,
                ",".join(skipped),
            )
        self.sources = [s for s in (self.video_source, self.audio_source) if s is not None]
        self.file: RecordingFile | None = None
        self._pending_audio: collections.deque[tuple[float, int, bytes, float | None]] = (
            collections.deque(maxlen=PENDING_AUDIO_FRAMES)
        )
        self._waiting_since: float | None = None

    def attach(self) -> None:
        for source in self.sources:
            source.observers.add(self._on_frame)
        if self.video_source is not None:
            self.video_source.request_keyframe()  # so the file starts soon, decodable

    def detach(self) -> None:
        for source in self.sources:
            source.observers.discard(self._on_frame)

    def _open(self, *, with_video: tuple[str, int, int, int] | None, started: float) -> None:
        audio = None
        if self.audio_source is not None and self.audio_source.codec is not None:
            audio = (self.audio_source.codec_name, self.audio_source.codec.clockRate)
        self.file = RecordingFile(
            self.directory,
            room=self.recording.room,
            recording=self.recording.id,
            participant=self.participant,
            video=with_video,
            audio=audio,
            started=started,
        )
        for arrival, timestamp, data, sent in self._pending_audio:
            self.file.add("audio", data, timestamp, arrival, True, sent)
        self._pending_audio.clear()
        self._waiting_since = None

    def _close_current(self, reason: str) -> None:
        if self.file is not None:
            self.on_finished(self.file, reason, self.recording)
            self.file = None

    def _on_frame(self, source: PublishedTrack, codec: Any, frame: Any, keyframe: bool) -> None:
        now = time.monotonic()
        name = codec.name.lower()
        sent = source.sender_time(frame.timestamp, codec.clockRate)
        if source.kind == "video":
            self._on_video(name, codec.clockRate, frame, keyframe, now, sent)
        else:
            self._on_audio(frame, now, sent)

    def _on_video(
        self, name: str, rate: int, frame: Any, keyframe: bool, now: float, sent: float | None
    ) -> None:
        current = self.file
        if current is not None and current.video is not None:
            current.add("video", frame.data, frame.timestamp, now, keyframe, sent)
            if current.needs_keyframe and self.video_source is not None:
                self.video_source.request_keyframe()
            return
        if not keyframe or name not in RECORDABLE_VIDEO:
            return  # until a keyframe (asked for when the recording started)
        size = video_dimensions(name, frame.data)
        if size is None:
            if self.video_source is not None:
                self.video_source.request_keyframe()
            return
        if current is not None:
            # Video came back to an audio-only file: a new file with both starts here.
            self._close_current("video-started")
        started = min([now, *(arrival for arrival, _, _, _ in self._pending_audio)])
        self._open(with_video=(name, size[0], size[1], rate), started=started)
        assert self.file is not None
        self.file.add("video", frame.data, frame.timestamp, now, keyframe, sent)

    def _on_audio(self, frame: Any, now: float, sent: float | None) -> None:
        if self.file is not None:
            self.file.add("audio", frame.data, frame.timestamp, now, True, sent)
            return
        self._pending_audio.append((now, frame.timestamp, frame.data, sent))
        if self._waiting_since is None:
            self._waiting_since = now
        if self.video_source is None or now - self._waiting_since >= VIDEO_GRACE:
            # No video (camera off, audio-only mode): record the voice alone.
            self._open(with_video=None, started=self._pending_audio[0][0])

    def finish(self, reason: str) -> None:
        self.detach()
        self._close_current(reason)


# --------------------------------------------------------------------------- a room


@dataclass(eq=False)
class RoomRecording:
    id: str
    room: str
    upload_url: str
    started: float = field(default_factory=time.time)
    publishers: dict[str, PublisherRecorder] = field(default_factory=dict)
    #: every file of this recording closed so far
    files: list[FinishedFile] = field(default_factory=list)


class Recorder:
    """The node's recordings: at most one per room; finished files go to the web tier."""

    def __init__(
        self,
        *,
        secret: str,
        node_id: str,
        directory: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        retry_delays: tuple[float, ...] = UPLOAD_RETRY_DELAYS,
        upload_timeout: float = 120.0,
    ) -> None:
        self.secret = secret
        self.node_id = node_id
        self._directory = directory
        self._own_directory = directory is None
        self.transport = transport
        self.retry_delays = retry_delays
        self.upload_timeout = upload_timeout
        self.rooms: dict[str, RoomRecording] = {}
        self.counters = {
            "recordings_started": 0,
            "recording_files": 0,
            "recording_files_uploaded": 0,
            "recording_upload_failures": 0,
            "recording_files_refused": 0,
        }
        #: finished files not uploaded yet, by file id
        self.pending: dict[str, FinishedFile] = {}
        self._finishing: set[asyncio.Future[Any]] = set()
        self._uploads: dict[str, asyncio.Task[Any]] = {}

    @property
    def directory(self) -> str:
        """The node's private directory for files not uploaded yet (created on first use)."""
        if self._directory is None:
            self._directory = tempfile.mkdtemp(prefix="relay-recordings-")  # mode 0700
        return self._directory

    def active(self, room: str) -> RoomRecording | None:
        return self.rooms.get(room)

    # -- start / stop
    async def start(
        self,
        room: str,
        recording_id: str,
        upload_url: str,
        publishers: Iterable[tuple[str, str, list[PublishedTrack]]],
    ) -> tuple[RoomRecording, bool]:
        """Record ``room`` from now on; returns (recording, whether it is new).

        ``publishers`` are the room's current (session id, participant, tracks).
        The same id again is a no-op; another id ends the running recording first.
        """
        current = self.rooms.get(room)
        if current is not None and current.id == recording_id:
            return current, False
        if current is not None:
            await self.stop(room, reason="replaced")
        recording = RoomRecording(recording_id, room, upload_url)
        self.rooms[room] = recording
        self.counters["recordings_started"] += 1
        for session_id, participant, sources in publishers:
            self.attach(room, session_id, participant, sources)
        logger.info("recording %s started in room=%s", recording_id, room)
        return recording, True

    def attach(
        self, room: str, session_id: str, participant: str, sources: list[PublishedTrack]
    ) -> None:
        """A publisher (already there, or arriving) of a room being recorded."""
        recording = self.rooms.get(room)
        if recording is None or session_id in recording.publishers:
            return
        publisher = PublisherRecorder(
            recording, session_id, participant, sources, self.directory, self._file_done
        )
        recording.publishers[session_id] = publisher
        publisher.attach()

    async def detach(self, room: str, session_id: str, reason: str = "publisher-left") -> None:
        """A publisher left: its file is finished and uploaded; the recording goes on."""
        recording = self.rooms.get(room)
        publisher = recording.publishers.pop(session_id, None) if recording else None
        if publisher is not None:
            publisher.finish(reason)
        await self._settle()

    async def stop(
        self, room: str, recording_id: str | None = None, reason: str = "stopped"
    ) -> list[FinishedFile] | None:
        """Finish every file of the room's recording; None if there was none (or another id).

        Returns once the files are closed on disk; uploads go on in the background.
        """
        recording = self.rooms.get(room)
        if recording is None or (recording_id is not None and recording.id != recording_id):
            return None
        del self.rooms[room]
        closing = list(recording.publishers.values())
        recording.publishers.clear()
        for publisher in closing:
            publisher.finish(reason)
        await self._settle()
        logger.info(
            "recording %s stopped in room=%s (%s): %d files",
            recording.id,
            room,
            reason,
            len(recording.files),
        )
        return list(recording.files)

    async def stop_all(self, reason: str) -> None:
        for room in list(self.rooms):
            await self.stop(room, reason=reason)

    # -- files
    def _file_done(
        self, recording_file: RecordingFile, reason: str, recording: RoomRecording
    ) -> None:
        future = asyncio.ensure_future(self._finish(recording_file, reason, recording))
        self._finishing.add(future)
        future.add_done_callback(self._finishing.discard)

    async def _finish(
        self, recording_file: RecordingFile, reason: str, recording: RoomRecording
    ) -> None:
        finished = await recording_file.finish(reason, recording.upload_url)
        if finished is None:
            return
        recording.files.append(finished)
        self.counters["recording_files"] += 1
        self.pending[finished.id] = finished
        self._schedule_upload(finished, self.retry_delays)

    def _schedule_upload(self, finished: FinishedFile, retry_delays: tuple[float, ...]) -> None:
        task = asyncio.ensure_future(self._upload(finished, retry_delays))
        self._uploads[finished.id] = task
        task.add_done_callback(lambda _: self._uploads.pop(finished.id, None))

    async def _settle(self) -> None:
        """Wait until every file being closed is closed (and its upload scheduled)."""
        while self._finishing:
            await asyncio.gather(*list(self._finishing), return_exceptions=True)

    # -- upload
    async def _upload(self, finished: FinishedFile, retry_delays: tuple[float, ...]) -> bool:
        """Upload with retries; the file is deleted once the web tier has it or refuses it."""
        for attempt, delay in enumerate((0.0, *retry_delays)):
            if delay:
                await asyncio.sleep(delay)
            finished.attempts += 1
            status = await self._post(finished)
            if status is not None and 200 <= status < 300:
                self.counters["recording_files_uploaded"] += 1
                self._forget(finished)
                logger.info("recording file %s uploaded (%d bytes)", finished.id, finished.size)
                return True
            if status is not None and 400 <= status < 500 and status not in (408, 429):
                # Refused for good (for example: it runs past the recording's end,
                # so it may hold someone who did not consent): never kept.
                self.counters["recording_files_refused"] += 1
                self._forget(finished)
                logger.warning("recording file %s refused by the web tier: %d", finished.id, status)
                return False
            logger.warning(
                "recording file %s upload attempt %d failed (%s)",
                finished.id,
                attempt + 1,
                status if status is not None else "network",
            )
        self.counters["recording_upload_failures"] += 1
        return False

    async def _post(self, finished: FinishedFile) -> int | None:
        token = issue_upload_token(
            self.secret,
            room=finished.room,
            recording=finished.recording,
            file=finished.id,
            participant=finished.participant,
            size=finished.size,
            sha256=finished.sha256,
            content_type=finished.content_type,
            started_at=finished.started_at,
            ended_at=finished.ended_at,
            reason=finished.reason,
            node=self.node_id,
        )
        name = f"{finished.room}-{finished.participant}-{finished.id[:8]}" + (
            ".mkv" if finished.path.endswith(".mkv") else ".webm"
        )
        try:
            async with httpx.AsyncClient(
                transport=self.transport, timeout=self.upload_timeout
            ) as client:
                with open(finished.path, "rb") as handle:
                    response = await client.post(
                        finished.upload_url,
                        headers={"Authorization": f"Bearer {token}"},
                        files={"file": (name, handle, finished.content_type)},
                    )
            return response.status_code
        except (httpx.HTTPError, OSError) as exc:
            logger.warning("recording upload of %s: %s", finished.id, type(exc).__name__)
            return None

    def _forget(self, finished: FinishedFile) -> None:
        self.pending.pop(finished.id, None)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(finished.path)

    async def drain(self, timeout: float) -> None:
        """At shutdown: wait (at most ``timeout`` s) for uploads in flight, giving files
        whose retries ran out one more try. Files still not uploaded stay in the
        node's private directory (logged); otherwise the directory is removed."""
        await self._settle()
        for finished in list(self.pending.values()):
            if finished.id not in self._uploads:
                self._schedule_upload(finished, ())
        if self._uploads:
            _, late = await asyncio.wait(list(self._uploads.values()), timeout=timeout)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        if self.pending:
            logger.warning(
                "%d recording files could not be uploaded; kept in the node's private directory",
                len(self.pending),
            )
        elif self._own_directory and self._directory is not None:
            shutil.rmtree(self._directory, ignore_errors=True)
            self._directory = None

    def stats(self) -> dict[str, int]:
        return {
            **self.counters,
            "recordings_active": len(self.rooms),
            "recording_files_pending": len(self.pending),
        }


def valid_upload_url(url: object) -> bool:
    if not isinstance(url, str) or len(url) > 2048:
        return False
    parts = urllib.parse.urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.netloc)
