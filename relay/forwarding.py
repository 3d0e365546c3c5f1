"""Forwarding encoded media through aiortc without decoding it.

How it works (aiortc 1.16.x; every internal used is named here and checked
at run time by :func:`check_aiortc` or where it is hooked):

RTP packets (the default). aiortc's ``RTCRtpReceiver._handle_rtp_packet`` feeds
the REMB estimator, counts the packet for its receiver reports, unwraps RTX,
sends NACKs for gaps and depayloads the packet, then hands it to its jitter
buffer ``_RTCRtpReceiver__jitter_buffer``. :class:`PacketTap` takes that
buffer's place: each packet is kept for forwarding, and reaches a real buffer
(frame assembly, then the frame path below) only while whole frames are needed:
a recorder observes the track, or a subscriber needs re-encoding. Once aiortc's
handler returns (it is wrapped on the receiver instance), each subscriber's
:class:`EncodedTrack` rewrites the packet for its sender (SSRC, payload type,
MID and abs-send-time extensions; sequence numbers and timestamps shifted by
constants chosen at the keyframe it starts from) and hands it to the sender's
transport (``RTCDtlsTransport._send_rtp``: SRTP, then the socket), keeping the
sender's NACK history (``_RTCRtpSender__rtp_history``) and the counts its RTCP
sender reports carry (``__ntp_timestamp``, ``__rtp_timestamp``,
``__octet_count``, ``__packet_count``) as its own loop would. That loop is
parked: :meth:`EncodedTrack.bind_sender` replaces ``_next_encoded_frame`` on
the sender instance with a wait for the end of the track. Nothing is reassembled,
queued or re-packetized; :func:`starts_keyframe` finds where a subscriber may
start in the packets themselves. ``--forward-frames`` keeps the frame path below
for subscribers too (the benchmark compares both).

Receive side (frames). ``RTCRtpReceiver._handle_rtp_packet`` depacketizes RTP into its
jitter buffer; each complete encoded frame (a ``JitterFrame``: ``data`` and a
timestamp) is put, as a ``(codec, frame)`` tuple, on the receiver's private
decoder input queue ``_RTCRtpReceiver__decoder_queue`` (a ``queue.Queue``); a
decoder thread started by ``receive()`` reads that queue (``None`` = stop).
:class:`ReceiverTap` replaces that queue object *before* ``receive()`` starts
the thread. Its ``put`` is called on the event loop thread, so it hands each
encoded frame straight to the forwarding code, and passes it on to the real
queue (the decoder) only while decoding is switched on, i.e. only while some
subscriber needs a re-encoded copy. ``None`` is always passed on, so the
decoder thread and the remote track end as usual. A forwarded track is thus
never decoded: :attr:`ReceiverTap.decoded` stays 0.

The tap also swaps the receiver's ``_RTCRtpReceiver__jitter_buffer`` for a
:class:`LowLatencyJitterBuffer`: aiortc's buffer releases a video frame only
when the first packet of the *next* frame arrives (one frame interval late)
and holds audio back by 4 packets; ours releases a frame as soon as it is
complete (RTP marker bit for video, every packet for audio).

Send side (frames). ``RTCRtpSender._next_encoded_frame`` calls ``track.recv()``; when
that returns an ``av.Packet`` instead of a frame, the sender only packetizes
it (``encoder.pack(packet)``: VP8, H.264, Opus) with ``packet.pts`` in
``packet.time_base``. :class:`EncodedTrack` is such a track, fed by a bounded
queue per subscriber.

Keyframes. When a subscriber sends PLI/FIR, ``RTCRtpSender._handle_rtcp_packet``
calls ``self._send_keyframe()``; :func:`hook_sender_keyframes` overrides that
method *on the sender instance* so the request goes to the publisher instead
(:meth:`PublishedTrack.request_keyframe`: ``RTCRtpReceiver._send_rtcp_pli`` for
each SSRC of ``getSynchronizationSources()``, at most one per
``pli_interval`` per track, later requests deferred, not lost). A subscriber's
track asks for a keyframe when its sender starts reading, and drops frames
until one arrives.

Fallback. A subscriber that cannot take the publisher's codec gets a track
from aiortc's ``MediaRelay`` over the receiver's decoded track (decode once,
encode per such subscriber); the tap switches decoding on for as long as such
subscribers exist, starting at a keyframe, with a bounded decoder backlog.

Pausing. A subscriber in audio-only mode pauses its copy of a video track
(:meth:`EncodedTrack.set_paused`): nothing is queued for it, so its sender
has nothing to packetize and sends no video at all; resuming waits for a
keyframe, which it asks the publisher for.

Bandwidth. :func:`hook_sender_estimates` wraps ``RTCRtpSender._handle_rtcp_packet``
on each forwarding sender to keep the subscriber's REMB (:attr:`EncodedTrack.remb`);
:meth:`PublishedTrack._hook_estimates` wraps ``RTCRtpReceiver._send_rtcp`` on a
published video receiver so the REMB aiortc's estimator sends the publisher is
lowered to the weakest live, unpaused subscriber's (never below ``REMB_FLOOR``).

Observers. :attr:`PublishedTrack.observers` see every encoded frame as it
arrives, subscribers or not (the recorder in ``relay/recording.py``).

Sender clock. The tap also wraps ``RTCRtpReceiver._handle_rtcp_packet`` *on the
receiver instance* to keep the latest RTCP sender report (NTP time, RTP
timestamp) of the track; :meth:`PublishedTrack.sender_time` maps a frame's RTP
timestamp onto the publisher's own wall clock, which all of its tracks share
(the recorder aligns audio and video with it). The frames aiortc hands over
carry the RTP timestamp minus the track's first one
(``_RTCRtpReceiver__timestamp_mapper``, a ``TimestampMapper`` whose ``_origin``
it subtracts); the tap adds that origin back. Without the mapper (another
aiortc) there is no sender clock and the recorder uses arrival times.
"""

from __future__ import annotations

import asyncio
import collections
import fractions
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import aiortc
import av
from aiortc import MediaStreamTrack, RTCRtpReceiver, RTCRtpSender, clock
from aiortc.codecs import depayload
from aiortc.contrib.media import MediaRelay
from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.mediastreams import MediaStreamError
from aiortc.rate import RemoteBitrateEstimator
from aiortc.rtcpeerconnection import is_codec_compatible
from aiortc.rtcrtpparameters import RTCRtpCodecCapability, RTCRtpCodecParameters
from aiortc.rtcrtpreceiver import NackGenerator, StreamStatistics
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTP_HISTORY_SIZE,
    HeaderExtensions,
    HeaderExtensionsMap,
    RtcpPsfbPacket,
    RtcpSrPacket,
    RtpPacket,
    pack_remb_fci,
    unpack_remb_fci,
)
from aiortc.utils import random16, random32

from . import fastpath

logger = logging.getLogger(__name__)

#: aiortc versions whose internals this module was written against.
SUPPORTED_AIORTC = "1.16."
_DECODER_QUEUE = "_RTCRtpReceiver__decoder_queue"
_DECODER_THREAD = "_RTCRtpReceiver__decoder_thread"
_JITTER_BUFFER = "_RTCRtpReceiver__jitter_buffer"
_TIMESTAMP_MAPPER = "_RTCRtpReceiver__timestamp_mapper"
_RECEIVER_CODECS = "_RTCRtpReceiver__codecs"
# What RTCRtpReceiver._handle_rtp_packet updates (PublishedTrack._receive_rtp).
_RECEIVER_ACTIVE = "_RTCRtpReceiver__active_ssrc"
_RECEIVER_STREAMS = "_RTCRtpReceiver__remote_streams"
_RECEIVER_NACK = "_RTCRtpReceiver__nack_generator"
_RECEIVER_DECODER_ERROR = "_RTCRtpReceiver__decoder_error"
_RECEIVER_RTCP_SSRC = "_RTCRtpReceiver__rtcp_ssrc"
_ESTIMATOR = "_RTCRtpReceiver__remote_bitrate_estimator"
#: How stale (s) a source's "last heard" for getSynchronizationSources may get
#: (it counts sources heard in the last 10 s; PLIs go to those).
ACTIVE_SOURCE_REFRESH = 0.25
# The sender's state its RTCP sender reports and NACK retransmissions read.
_SENDER_MID = "_RTCRtpSender__mid"
_SENDER_EXTENSIONS = "_RTCRtpSender__rtp_header_extensions_map"
_SENDER_HISTORY = "_RTCRtpSender__rtp_history"
_SENDER_NTP = "_RTCRtpSender__ntp_timestamp"
_SENDER_RTP_TIMESTAMP = "_RTCRtpSender__rtp_timestamp"
_SENDER_OCTETS = "_RTCRtpSender__octet_count"
_SENDER_PACKETS = "_RTCRtpSender__packet_count"
#: A publisher's RTP packet: aiortc's, or the short way in's (same fields).
Packet = RtpPacket | fastpath.InboundRtp
#: Codecs forwarded as-is (others are decoded and re-encoded).
FORWARDABLE = frozenset({"vp8", "h264", "opus"})
VIDEO_QUEUE_FRAMES = 30
AUDIO_QUEUE_FRAMES = 50
#: Encoded frames waiting for the decoder thread before we skip to a keyframe.
DECODER_BACKLOG = 8
#: Subscribers' bandwidth estimates (REMB) never ask a publisher for less than this
#: (bits/s): below it the picture is useless to everyone; a subscriber that cannot
#: take even this loses packets and asks for them again, or for a keyframe.
REMB_FLOOR = 150_000
#: A subscriber's estimate counts for this long (seconds) after it arrived.
REMB_MAX_AGE = 5.0


class HookError(RuntimeError):
    """The installed aiortc does not have the internals this module relies on."""


def check_aiortc() -> None:
    """Fail loudly if aiortc's internals moved (called once by the relay node)."""
    version = getattr(aiortc, "__version__", "")
    if not version.startswith(SUPPORTED_AIORTC):
        logger.warning(
            "relay forwarding was written for aiortc %sx, found %s", SUPPORTED_AIORTC, version
        )
    for cls, name in (
        (RTCRtpReceiver, "_send_rtcp_pli"),
        (RTCRtpReceiver, "_send_rtcp"),
        (RTCRtpReceiver, "_handle_rtp_packet"),
        (RTCRtpReceiver, "_handle_rtcp_packet"),
        (RTCRtpReceiver, "getSynchronizationSources"),
        (RTCRtpSender, "_send_keyframe"),
        (RTCRtpSender, "_handle_rtcp_packet"),
        (RTCRtpSender, "_next_encoded_frame"),
        (RTCRtpSender, "_retransmit"),
        (JitterBuffer, "_remove_frame"),
    ):
        if not callable(getattr(cls, name, None)):
            raise HookError(f"aiortc {version}: {cls.__name__}.{name} is missing")


# --------------------------------------------------------------------------- bitstream


def is_keyframe(codec_name: str, data: bytes) -> bool:
    """Whether an encoded frame can be decoded on its own.

    VP8 (RFC 6386 9.1): frame tag bit 0 is 0 and the start code 9d 01 2a follows.
    H.264 (Annex B, as aiortc's depayloader produces): an IDR slice (NAL type 5).
    Audio frames are all independent.
    """
    name = codec_name.lower()
    if name == "vp8":
        return len(data) >= 6 and not (data[0] & 0x01) and data[3:6] == b"\x9d\x01\x2a"
    if name == "h264":
        return _h264_has_nal(data, (5,))
    return True


def _h264_has_nal(data: bytes, types: tuple[int, ...]) -> bool:
    """Whether Annex B ``data`` holds a NAL unit of one of ``types``."""
    pos = data.find(b"\x00\x00\x01")
    while pos != -1 and pos + 3 < len(data):
        if data[pos + 3] & 0x1F in types:
            return True
        pos = data.find(b"\x00\x00\x01", pos + 3)
    return False


def starts_keyframe(codec_name: str, payload: bytes, data: bytes) -> bool:
    """Whether an RTP packet is the first of a keyframe: a subscriber can start there.

    ``payload`` is the packet's RTP payload, ``data`` what aiortc's depayloader made
    of it. VP8 (RFC 7741 4.2): the descriptor's S bit set and partition index 0, and
    the frame header that follows is a keyframe's. H.264: the packet carries an SPS
    (NAL type 7, sent ahead of an IDR) or an IDR slice (5); its depayloaded data is
    Annex B, and no start code can occur inside a NAL unit (emulation prevention).
    Audio packets are all independent.
    """
    name = codec_name.lower()
    if name == "vp8":
        return bool(payload) and payload[0] & 0x17 == 0x10 and is_keyframe("vp8", data)
    if name == "h264":
        return _h264_has_nal(data, (5, 7))
    return True


def vp8_descriptor_size(payload: bytes) -> int:
    """The length of a VP8 RTP payload descriptor (RFC 7741 4.2); ``ValueError``
    where aiortc's ``VpxPayloadDescriptor.parse`` raises one (truncated)."""
    if not payload:
        raise ValueError("VPX descriptor is too short")
    if not payload[0] & 0x80:
        return 1
    size = len(payload)
    if size < 2:
        raise ValueError("VPX descriptor has truncated extended bits")
    bits, at = payload[1], 2
    if bits & 0x80:  # I: a picture ID of 7 or 15 bits
        if size < at + 1 or (payload[at] & 0x80 and size < at + 2):
            raise ValueError("VPX descriptor has truncated PictureID")
        at += 2 if payload[at] & 0x80 else 1
    if bits & 0x40:  # L: TL0PICIDX
        if size < at + 1:
            raise ValueError("VPX descriptor has truncated TL0PICIDX")
        at += 1
    if bits & 0x30:  # T or K: one byte for both
        if size < at + 1:
            raise ValueError("VPX descriptor has truncated T/K")
        at += 1
    return at


def vp8_starts_keyframe(payload: bytes) -> bool:
    """:func:`starts_keyframe` for VP8 from the payload alone, without depayloading."""
    if not payload or payload[0] & 0x17 != 0x10:
        return False
    try:
        at = vp8_descriptor_size(payload)
    except ValueError:
        return False
    return is_keyframe("vp8", payload[at : at + 6])


class LowLatencyJitterBuffer(JitterBuffer):
    """aiortc's jitter buffer, releasing each frame as soon as it is complete.

    The stock buffer sees a frame as complete only when a packet of the next
    timestamp arrives. Here a gap-free run of packets from the buffer's origin
    that ends with the RTP marker bit (last packet of a video frame) is released
    at once; for audio, where a packet is a frame, every in-order packet is.
    Anything else falls back to the stock logic (reordering, loss, wraps).
    """

    def __init__(self, capacity: int, is_video: bool) -> None:
        super().__init__(capacity=capacity, prefetch=0, is_video=is_video)

    def _remove_frame(self, sequence_number: int) -> JitterFrame | None:
        frame = super()._remove_frame(sequence_number)
        if frame is not None or self._origin is None:
            return frame
        packets = []
        timestamp = None
        for count in range(self._capacity):
            packet = self._packets[(self._origin + count) % self._capacity]
            if packet is None:
                return None
            if timestamp is None:
                timestamp = packet.timestamp
            elif packet.timestamp != timestamp:
                return None
            packets.append(packet)
            if packet.marker or not self._is_video:
                self.remove(count + 1)
                return JitterFrame(
                    data=b"".join(p._data for p in packets),  # type: ignore[attr-defined]
                    timestamp=timestamp,
                )
        return None


# --------------------------------------------------------------------------- receive hook


class ReceiverTap:
    """Stands in for ``RTCRtpReceiver._RTCRtpReceiver__decoder_queue``.

    ``on_frame(codec, frame, keyframe)`` gets every complete encoded frame on the
    event loop thread. Frames reach the decoder thread only while ``decode`` is
    on (counted in :attr:`decoded`); with ``on_frame`` doing nothing the tap
    drains a track nobody consumes.
    """

    def __init__(
        self,
        receiver: RTCRtpReceiver,
        kind: str,
        on_frame: Callable[[RTCRtpCodecParameters, JitterFrame, bool], None] | None = None,
        *,
        decode: bool = False,
        low_latency: bool = True,
        on_decoder_backlog: Callable[[], None] | None = None,
    ) -> None:
        if getattr(receiver, _DECODER_THREAD, "missing") is not None:
            raise HookError("receiver already started, or aiortc's receiver internals changed")
        original = getattr(receiver, _DECODER_QUEUE, None)
        if not isinstance(original, queue.Queue):
            raise HookError("aiortc's RTCRtpReceiver has no decoder queue to tap")
        self.kind = kind
        self.on_frame = on_frame
        self.on_decoder_backlog = on_decoder_backlog
        self.decode = decode
        self._decoder_queue = original
        self._wait_keyframe_for_decoder = False
        self.frames = 0
        self.keyframes = 0
        self.bytes = 0
        self.decoded = 0
        #: the latest RTCP sender report: (NTP seconds, RTP timestamp), or None
        self.sender_report: tuple[float, int] | None = None
        self._timestamp_mapper = getattr(receiver, _TIMESTAMP_MAPPER, None)
        if not hasattr(self._timestamp_mapper, "_origin"):
            logger.warning("aiortc's receiver has no timestamp mapper: no sender clock")
            self._timestamp_mapper = None
        setattr(receiver, _DECODER_QUEUE, self)
        handle_rtcp = getattr(receiver, "_handle_rtcp_packet", None)
        if handle_rtcp is not None:  # (check_aiortc makes sure aiortc's receiver has it)

            async def handle_rtcp_packet(packet: Any) -> None:
                if isinstance(packet, RtcpSrPacket):
                    ntp = packet.sender_info.ntp_timestamp
                    self.sender_report = (
                        (ntp >> 32) + (ntp & 0xFFFFFFFF) / (1 << 32),
                        packet.sender_info.rtp_timestamp,
                    )
                await handle_rtcp(packet)

            receiver._handle_rtcp_packet = handle_rtcp_packet  # type: ignore[method-assign]
        if low_latency:
            stock = getattr(receiver, _JITTER_BUFFER, None)
            if not isinstance(stock, JitterBuffer):
                raise HookError("aiortc's RTCRtpReceiver has no jitter buffer to replace")
            setattr(
                receiver,
                _JITTER_BUFFER,
                LowLatencyJitterBuffer(stock.capacity, is_video=kind == "video"),
            )

    def rtp_timestamp(self, frame_timestamp: int) -> int | None:
        """The RTP timestamp of a frame this tap was handed (aiortc made it relative)."""
        origin = getattr(self._timestamp_mapper, "_origin", None)
        if origin is None:
            return None
        return (frame_timestamp + origin) & 0xFFFFFFFF

    # -- the part of the queue.Queue protocol RTCRtpReceiver and its thread use
    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        if item is None:  # stop sentinel for the decoder thread
            self._decoder_queue.put(None)
            return
        codec, frame = item
        keyframe = is_keyframe(codec.name, frame.data)
        self.frames += 1
        self.bytes += len(frame.data)
        if keyframe:
            self.keyframes += 1
        if self.on_frame is not None:
            try:
                self.on_frame(codec, frame, keyframe)
            except Exception:  # never break the receiver's RTP loop
                logger.exception("relay forwarding callback failed")
        if self.decode:
            self._feed_decoder(item, keyframe)

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        return self._decoder_queue.get(block, timeout)

    def qsize(self) -> int:
        return self._decoder_queue.qsize()

    # -- decoding for re-encoding subscribers
    def _feed_decoder(self, item: Any, keyframe: bool) -> None:
        if self._wait_keyframe_for_decoder and not keyframe:
            return
        if self._decoder_queue.qsize() >= DECODER_BACKLOG:
            # The decoder falls behind: skip to the next keyframe instead of queueing.
            if self.kind == "video":
                self._wait_keyframe_for_decoder = True
                if self.on_decoder_backlog is not None:
                    self.on_decoder_backlog()
            return
        self._wait_keyframe_for_decoder = False
        self.decoded += 1
        self._decoder_queue.put(item)

    def enable_decode(self, from_keyframe: bool = True) -> None:
        if not self.decode:
            self.decode = True
            self._wait_keyframe_for_decoder = from_keyframe and self.kind == "video"

    def disable_decode(self) -> None:
        self.decode = False


class PacketTap:
    """Stands in for the receiver's jitter buffer when forwarding RTP packets.

    aiortc's receiver hands its jitter buffer every RTP packet once it has fed the
    bitrate estimator (REMB), kept the statistics of its receiver reports, unwrapped
    retransmissions (RTX), asked for missing packets (NACK) and depayloaded it:
    exactly the packets a forwarder wants, in arrival order. Each goes to
    ``on_packet``. The real buffer (frame assembly, then the tap above) sees them
    only while ``frames_wanted()``: a recorder observes the track, or a re-encoding
    subscriber needs decoded frames. It starts afresh each time it is wanted again.
    """

    def __init__(
        self,
        make_buffer: Callable[[], JitterBuffer],
        on_packet: Callable[[RtpPacket], None],
        frames_wanted: Callable[[], bool],
    ) -> None:
        self._make_buffer = make_buffer
        self._buffer: JitterBuffer | None = None
        self.on_packet = on_packet
        self.frames_wanted = frames_wanted

    def add(self, packet: RtpPacket) -> tuple[bool, JitterFrame | None]:
        self.on_packet(packet)
        if self.frames_wanted():
            if self._buffer is None:
                self._buffer = self._make_buffer()
            return self._buffer.add(packet)
        self._buffer = None
        return False, None


def drain_receiver(receiver: RTCRtpReceiver, kind: str) -> ReceiverTap:
    """Read a remote track nobody consumes without decoding or buffering it."""
    return ReceiverTap(receiver, kind, None, decode=False, low_latency=False)


# --------------------------------------------------------------------------- fan-out


class _ReceiverInternals:
    """What aiortc's ``RTCRtpReceiver._handle_rtp_packet`` updates for each packet,
    for :meth:`PublishedTrack._receive_rtp` (all made once, in the receiver's
    ``__init__``)."""

    __slots__ = (
        "_active_at",
        "_active_ssrc",
        "active",
        "decoder_error",
        "estimator",
        "nack",
        "streams",
    )

    def __init__(self, receiver: RTCRtpReceiver) -> None:
        for name in (
            _RECEIVER_ACTIVE,
            _RECEIVER_STREAMS,
            _RECEIVER_NACK,
            _ESTIMATOR,
            _RECEIVER_DECODER_ERROR,
            _RECEIVER_RTCP_SSRC,
            _RECEIVER_CODECS,
            "_enabled",
            "_send_rtcp",
            "_send_rtcp_nack",
        ):
            if not hasattr(receiver, name):
                raise HookError(f"aiortc's RTCRtpReceiver has no {name}")
        self.active: dict[int, Any] = getattr(receiver, _RECEIVER_ACTIVE)
        self.streams: dict[int, StreamStatistics] = getattr(receiver, _RECEIVER_STREAMS)
        self.nack: NackGenerator | None = getattr(receiver, _RECEIVER_NACK)
        self.estimator: RemoteBitrateEstimator | None = getattr(receiver, _ESTIMATOR)
        self.decoder_error: threading.Event = getattr(receiver, _RECEIVER_DECODER_ERROR)
        self._active_ssrc: int | None = None
        self._active_at = 0.0

    def mark_active(self, ssrc: int) -> None:
        """``getSynchronizationSources``' record of when ``ssrc`` was last heard,
        refreshed every ``ACTIVE_SOURCE_REFRESH`` s (aiortc: every packet)."""
        now = time.monotonic()
        if ssrc != self._active_ssrc or now - self._active_at >= ACTIVE_SOURCE_REFRESH:
            self.active[ssrc] = clock.current_datetime()
            self._active_ssrc, self._active_at = ssrc, now


class SentPacket(RtpPacket):
    """A forwarded packet as a sender's NACK history keeps it: the header written for
    this sender (the payload is the publisher's, shared by every subscriber's
    history), and ``RtpPacket``'s fields for aiortc's ``RTCRtpSender._retransmit``
    (which serializes it again with the sender's map, or wraps it for RTX).
    Made without ``RtpPacket.__init__``: its header extensions are built only when
    read (an RTX retransmission)."""

    def __init__(
        self,
        header: bytes,
        extensions_map: Any,
        marker: int,
        payload_type: int,
        sequence_number: int,
        timestamp: int,
        ssrc: int,
        payload: bytes,
        mid: str | None,
        abs_send_time: int,
        audio_level: Any,
    ) -> None:
        self.version = 2
        self.marker = marker
        self.payload_type = payload_type
        self.sequence_number = sequence_number
        self.timestamp = timestamp
        self.ssrc = ssrc
        self.csrc: list[int] = []
        self.payload = payload
        self.padding_size = 0
        self._header = header
        self._map = extensions_map
        self._values = (mid, abs_send_time, audio_level)

    @property  # type: ignore[override]
    def extensions(self) -> HeaderExtensions:
        mid, abs_send_time, audio_level = self._values
        return HeaderExtensions(mid=mid, abs_send_time=abs_send_time, audio_level=audio_level)

    def serialize(self, extensions_map: Any = None) -> bytes:
        if extensions_map is self._map:
            return self._header + self.payload
        packet = RtpPacket(
            payload_type=self.payload_type,
            marker=self.marker,
            sequence_number=self.sequence_number,
            timestamp=self.timestamp,
            ssrc=self.ssrc,
            payload=self.payload,
        )
        packet.extensions = self.extensions
        return packet.serialize(extensions_map or HeaderExtensionsMap())


class EncodedFrame:
    __slots__ = ("arrival", "codec_name", "keyframe", "packet")

    def __init__(self, packet: av.Packet, keyframe: bool, codec_name: str, arrival: float):
        self.packet = packet
        self.keyframe = keyframe
        self.codec_name = codec_name
        self.arrival = arrival


class EncodedTrack(MediaStreamTrack):
    """One subscriber's copy of a published track; ``recv()`` returns ``av.Packet``.

    Bounded: when ``maxlen`` frames wait (the sender is not keeping up), video
    drops the backlog and waits for the next keyframe (and asks for one); audio
    drops the oldest frame. Frames are only accepted once the sender reads, and
    video starts at a keyframe requested at that moment.
    """

    def __init__(self, source: PublishedTrack, codec_name: str, maxlen: int) -> None:
        super().__init__()
        self.kind = source.kind
        self.source: PublishedTrack | None = source
        self.codec_name = codec_name.lower()
        self.maxlen = maxlen
        self._frames: collections.deque[EncodedFrame] = collections.deque()
        self._wakeup = asyncio.Event()
        self._armed = False
        self._need_keyframe = self.kind == "video"
        self.paused = False
        self.sent = 0
        self.dropped = 0
        #: frames not queued because the subscriber paused this track
        self.withheld = 0
        self.overflows = 0
        self.residence_total = 0.0
        self.residence_max = 0.0
        #: set by bind_sender: this copy goes out as RTP packets, not frames
        self.sender: RTCRtpSender | None = None
        #: the subscriber's latest bandwidth estimate: (bits/s, time.monotonic())
        self.remb: tuple[int, float] | None = None
        self._inline = True
        self._send_now: Callable[[bytes], None] | None = None
        self._writer: fastpath.RtpWriter | None = None

    def push(self, frame: EncodedFrame) -> None:
        if not self._armed or self.readyState != "live":
            return
        if self.paused:
            self.withheld += 1
            return
        if frame.codec_name != self.codec_name:
            self.dropped += 1
            return
        if self._need_keyframe:
            if not frame.keyframe:
                self.dropped += 1
                return
            self._need_keyframe = False
        if len(self._frames) >= self.maxlen:
            self.overflows += 1
            if self.kind == "video":
                self.dropped += len(self._frames)
                self._frames.clear()
                if not frame.keyframe:
                    self.dropped += 1
                    self._need_keyframe = True
                    if self.source is not None:
                        self.source.request_keyframe()
                    return
            else:
                self._frames.popleft()
                self.dropped += 1
        self._frames.append(frame)
        self._wakeup.set()

    async def recv(self) -> av.Packet:
        if not self._armed:
            self._armed = True
            if self.kind == "video" and self.source is not None:
                self._need_keyframe = True
                self.source.request_keyframe()
        while not self._frames:
            if self.readyState != "live":
                raise MediaStreamError
            self._wakeup.clear()
            await self._wakeup.wait()
        frame = self._frames.popleft()
        self.sent += 1
        residence = time.monotonic() - frame.arrival
        self.residence_total += residence
        self.residence_max = max(self.residence_max, residence)
        return frame.packet

    @property
    def queued(self) -> int:
        return len(self._frames)

    # -- RTP-level forwarding (the node's default): packets, not frames
    def bind_sender(self, sender: RTCRtpSender, inline: bool = True) -> None:
        """Send this copy as the publisher's RTP packets through ``sender``
        (``inline``: straight to its socket, :func:`relay.fastpath.rtp_sender`,
        where its transport is aiortc's; else through ``_send_rtp``).

        The sender's own loop reads frames from its track and packetizes them. Its
        ``_next_encoded_frame`` is replaced, on this instance, by one that learns the
        negotiated codec, starts forwarding (asking the publisher for a keyframe) and
        waits for the end. From then on :meth:`forward` rewrites each packet of the
        publisher (this sender's SSRC, payload type and header extensions; sequence
        numbers and timestamps shifted by constants, so reordering and the
        publisher's retransmissions keep their place) and hands it to the sender's
        transport, keeping the sender's NACK history and the counts its RTCP sender
        reports carry, as its own loop would. Nothing is queued on the relay: a
        packet leaves for every subscriber before the next one is read.
        """
        for name in (
            _SENDER_MID,
            _SENDER_EXTENSIONS,
            _SENDER_HISTORY,
            _SENDER_NTP,
            _SENDER_RTP_TIMESTAMP,
            _SENDER_OCTETS,
            _SENDER_PACKETS,
        ):
            if not hasattr(sender, name):
                raise HookError(f"aiortc's RTCRtpSender has no {name}")
        self.sender = sender
        self._inline = inline

        async def next_encoded_frame(codec: RTCRtpCodecParameters) -> None:
            self._start_rtp(codec)
            while self.readyState == "live":
                self._wakeup.clear()
                await self._wakeup.wait()
            raise MediaStreamError

        sender._next_encoded_frame = next_encoded_frame  # type: ignore[method-assign]

    def _start_rtp(self, codec: RTCRtpCodecParameters) -> None:
        sender = self.sender
        self._payload_type = codec.payloadType
        self._mid = getattr(sender, _SENDER_MID)
        self._extensions = getattr(sender, _SENDER_EXTENSIONS)
        self._history = getattr(sender, _SENDER_HISTORY)
        self._send_now = fastpath.rtp_sender(sender.transport) if self._inline else None
        self._writer = None
        if self._send_now is not None:
            try:
                self._writer = fastpath.RtpWriter(self._extensions)
            except fastpath.FastPathError:
                pass  # aiortc's serialize, as on the stock path
        self._out_next = random16()
        self._seq_offset = 0
        self._ts_offset = random32()
        self._in_first = self._in_highest = 0
        self._need_keyframe = True  # audio too: it starts with the next packet
        self._armed = True
        if self.kind == "video" and self.source is not None:
            self.source.request_keyframe()

    async def forward(self, packet: Packet, starts: bool, ends: bool, now: int) -> None:
        """Send one of the publisher's packets on (``starts``: a keyframe or audio
        packet starts with it; ``ends``: it ends a frame; ``now``: the NTP clock)."""
        if self._send_now is not None:
            self.forward_now(packet, starts, ends, now)
            return
        seq = self._out_sequence(packet, starts, ends)
        if seq is None:
            return
        out = self._out_packet(packet, seq, now)
        self._history[seq % RTP_HISTORY_SIZE] = out
        try:
            await self.sender.transport._send_rtp(out.serialize(self._extensions))  # type: ignore[union-attr]
        except ConnectionError:  # not connected (yet, or any more)
            return
        self._count_sent(seq, out.timestamp, len(out.payload), ends, now)

    def forward_now(self, packet: Packet, starts: bool, ends: bool, now: int) -> None:
        """:meth:`forward` on the inline path (``_send_now``): no coroutine, and the
        packet written by :class:`relay.fastpath.RtpWriter` (aiortc's bytes)."""
        seq = self._out_sequence(packet, starts, ends)
        if seq is None:
            return
        writer = self._writer
        if writer is None:
            out = self._out_packet(packet, seq, now)
            wire = out.serialize(self._extensions)
        else:
            ssrc = self.sender._ssrc  # type: ignore[union-attr]
            timestamp = (packet.timestamp + self._ts_offset) & 0xFFFFFFFF
            abs_send_time = (now >> 14) & 0x00FFFFFF
            level = packet.extensions.audio_level
            header = writer.header(
                packet.marker,
                self._payload_type,
                seq,
                timestamp,
                ssrc,
                self._mid,
                abs_send_time,
                level,
            )
            wire = header + packet.payload
            out = SentPacket(
                header,
                self._extensions,
                packet.marker,
                self._payload_type,
                seq,
                timestamp,
                ssrc,
                packet.payload,
                self._mid,
                abs_send_time,
                level,
            )
        self._history[seq % RTP_HISTORY_SIZE] = out
        try:
            self._send_now(wire)  # type: ignore[misc]
        except ConnectionError:  # not connected (yet, or any more)
            return
        self._count_sent(seq, out.timestamp, len(out.payload), ends, now)

    def _out_sequence(self, packet: Packet, starts: bool, ends: bool) -> int | None:
        """This copy's sequence number for ``packet``, or None: not sent to it."""
        if not self._armed or self.readyState != "live":
            return None
        if self.paused:
            self.withheld += ends
            return None
        seq = packet.sequence_number
        if self._need_keyframe:
            if not starts:
                self.dropped += ends
                return None
            self._need_keyframe = False
            # Continue our numbering without a gap (after a pause too).
            self._seq_offset = (self._out_next - seq) & 0xFFFF
            self._in_first = self._in_highest = seq
        elif (seq - self._in_highest) & 0xFFFF < 0x8000:
            self._in_highest = seq
            if (seq - self._in_first) & 0xFFFF > 0x4000:
                self._in_first = (seq - 0x4000) & 0xFFFF
        elif (self._in_highest - seq) & 0xFFFF > (self._in_highest - self._in_first) & 0xFFFF:
            return None  # older than this copy's first keyframe: useless to the subscriber
        return (seq + self._seq_offset) & 0xFFFF

    def _out_packet(self, packet: Packet, seq: int, now: int) -> RtpPacket:
        out = RtpPacket(
            payload_type=self._payload_type,
            marker=packet.marker,
            sequence_number=seq,
            timestamp=(packet.timestamp + self._ts_offset) & 0xFFFFFFFF,
            ssrc=self.sender._ssrc,  # type: ignore[union-attr]
            payload=packet.payload,
        )
        out.extensions.abs_send_time = (now >> 14) & 0x00FFFFFF
        out.extensions.mid = self._mid
        out.extensions.audio_level = packet.extensions.audio_level
        return out

    def _count_sent(self, seq: int, timestamp: int, size: int, ends: bool, now: int) -> None:
        """What the sender's own loop counts for a packet it sent (its RTCP sender
        reports carry them)."""
        if (seq - self._out_next) & 0xFFFF < 0x8000:
            self._out_next = (seq + 1) & 0xFFFF
        state = self.sender.__dict__
        state[_SENDER_NTP] = now
        state[_SENDER_RTP_TIMESTAMP] = timestamp
        state[_SENDER_OCTETS] += size
        state[_SENDER_PACKETS] += 1
        self.sent += ends

    def set_paused(self, paused: bool) -> None:
        """Withhold frames (nothing reaches the sender, so nothing is sent) or resume.

        Resuming video starts again at a keyframe, asked of the publisher now
        (within the per-track rate limit), so the picture comes back quickly.
        """
        if paused == self.paused:
            return
        self.paused = paused
        if paused:
            self._frames.clear()
            return
        if self.kind == "video":
            self._need_keyframe = True
            if self._armed and self.source is not None:
                self.source.request_keyframe()

    def stop(self) -> None:
        super().stop()
        if self.source is not None:
            self.source.remove_sink(self)
            self.source = None
        self._frames.clear()
        self._wakeup.set()


class TranscodedTrack(MediaStreamTrack):
    """A subscriber's re-encoded copy: aiortc's ``MediaRelay`` proxy over the decoded track.

    Decoding on the relay is switched on by the first read of the first such
    track and off when the last one stops, so nothing is decoded (or queued)
    for subscribers that are not connected yet.
    """

    def __init__(self, source: PublishedTrack, proxy: MediaStreamTrack) -> None:
        super().__init__()
        self.kind = source.kind
        self.source: PublishedTrack | None = source
        self._proxy = proxy
        self._started = False
        # whether this track counts among the source's readers of decoded frames
        self._counted = False
        self.paused = False
        self._resumed = asyncio.Event()

    def _count(self, reading: bool) -> None:
        if self.source is None or reading == self._counted:
            return
        self._counted = reading
        if reading:
            self.source._transcoder_started()
        else:
            self.source._transcoder_stopped()

    async def recv(self) -> Any:
        self._started = True
        while self.paused and self.readyState == "live":
            # Not reading the proxy: a paused subscriber costs no decoding.
            self._resumed.clear()
            await self._resumed.wait()
        if self.readyState != "live":
            raise MediaStreamError
        self._count(True)
        try:
            return await self._proxy.recv()
        except MediaStreamError:
            self.stop()
            raise

    def set_paused(self, paused: bool) -> None:
        if paused == self.paused:
            return
        self.paused = paused
        if self._started:
            # Resuming counts the track again, which switches decoding on from a
            # keyframe (requested) if it was the only re-encoding subscriber.
            self._count(not paused)
        if not paused:
            self._resumed.set()

    def stop(self) -> None:
        super().stop()
        self._proxy.stop()
        self._resumed.set()
        if self.source is not None:
            self.source.transcoded.discard(self)
            self._count(False)
            self.source = None


def hook_sender_keyframes(
    sender: RTCRtpSender, source: PublishedTrack, sink: EncodedTrack | None = None
) -> None:
    """Route PLI/FIR a subscriber sends to this sender to the publisher.

    ``RTCRtpSender._handle_rtcp_packet`` calls ``self._send_keyframe()`` on
    PLI/FIR; the override lives on this sender instance only. Requests from a
    subscriber that paused ``sink`` are ignored: it would not get the keyframe.
    """

    def send_keyframe() -> None:
        if sink is None or not sink.paused:
            source.request_keyframe()

    sender._send_keyframe = send_keyframe  # type: ignore[method-assign]


def hook_sender_estimates(sender: RTCRtpSender, sink: EncodedTrack) -> None:
    """Keep the bandwidth estimate (REMB) a subscriber sends about ``sender``'s
    stream on ``sink`` (:attr:`EncodedTrack.remb`), for its publisher's REMB
    (:meth:`PublishedTrack.subscriber_bitrate_cap`). aiortc's own handling of
    the packet (setting an encoder's bitrate: forwarded streams have none) follows.
    ``RTCRtpSender._handle_rtcp_packet`` is wrapped on this instance only."""
    handle_rtcp = sender._handle_rtcp_packet

    async def handle_rtcp_packet(packet: Any) -> None:
        if isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_APP:
            try:
                bitrate, ssrcs = unpack_remb_fci(packet.fci)
            except ValueError:
                pass
            else:
                if sender._ssrc in ssrcs:
                    sink.remb = (bitrate, time.monotonic())
        await handle_rtcp(packet)

    sender._handle_rtcp_packet = handle_rtcp_packet  # type: ignore[method-assign]


FrameObserver = Callable[["PublishedTrack", RTCRtpCodecParameters, JitterFrame, bool], None]


class PublishedTrack:
    """A publisher's remote track on the relay: tap, fan-out, keyframe requests.

    ``codec`` is the codec negotiated for the publisher (first one in our
    answer); it is corrected from the first frames actually received.
    """

    def __init__(
        self,
        receiver: RTCRtpReceiver,
        kind: str,
        codec: RTCRtpCodecParameters | None,
        *,
        pli_interval: float = 1.0,
        video_queue_frames: int = VIDEO_QUEUE_FRAMES,
        audio_queue_frames: int = AUDIO_QUEUE_FRAMES,
        low_latency: bool = True,
        stock_transcode: bool = False,
        transcode_buffered: bool = False,
        rtp_forwarding: bool = True,
    ) -> None:
        self.receiver = receiver
        self.kind = kind
        self.track = receiver.track
        self.codec = codec
        self._named: tuple[RTCRtpCodecParameters | None, str] = (None, "")
        self.pli_interval = pli_interval
        self.maxlen = video_queue_frames if kind == "video" else audio_queue_frames
        self.stock_transcode = stock_transcode
        self.transcode_buffered = transcode_buffered
        self.sinks: set[EncodedTrack] = set()
        self.transcoded: set[TranscodedTrack] = set()
        #: called with (track, codec, frame, keyframe) for every frame, on the loop thread
        self.observers: set[FrameObserver] = set()
        self.closed = False
        self.frames_forwarded = 0
        #: REMB sent to the publisher lowered to what a subscriber can take
        self.remb_capped = 0
        #: REMB packets sent to the publisher
        self.remb_sent = 0
        #: RTP packets taken the short way (:meth:`_receive_rtp`), not aiortc's
        self.rtp_taken = 0
        self.pli_sent = 0
        self.pli_requested = 0
        self._loop = asyncio.get_event_loop()
        self._keyframe_wanted = False
        self._last_pli = float("-inf")
        self._pli_timer: asyncio.TimerHandle | None = None
        self._pli_tasks: set[asyncio.Future[Any]] = set()
        self._media_relay: MediaRelay | None = None
        self._transcoders = 0
        self.tap = ReceiverTap(
            receiver,
            kind,
            self._on_frame,
            # aiortc's stock path (benchmark baseline): decode everything, stock buffer.
            decode=stock_transcode,
            low_latency=low_latency and not stock_transcode,
            on_decoder_backlog=self.request_keyframe,
        )
        #: subscribers get the publisher's RTP packets (else its frames, re-packetized)
        self.rtp_forwarding = rtp_forwarding and not stock_transcode
        self._outbox: list[RtpPacket] = []
        self._h264_sps_seen = False
        self._codec_payload_type: int | None = None
        self._internals: _ReceiverInternals | None = None
        self._packet_tap: PacketTap | None = None
        if self.rtp_forwarding:
            self._hook_packets()
        if kind == "video":
            self._hook_estimates()

    @property
    def codec_name(self) -> str:
        codec = self.codec
        if codec is not self._named[0]:  # read for every packet: worked out once per codec
            self._named = (codec, codec.name.lower() if codec is not None else "")
        return self._named[1]

    @property
    def forwardable(self) -> bool:
        return self.codec_name in FORWARDABLE and not self.stock_transcode

    def sender_time(self, frame_timestamp: int, clock_rate: int) -> float | None:
        """When the publisher stamped a frame we were handed (its ``timestamp``), in
        seconds of its own NTP clock, from its last RTCP sender report; None before
        the first report."""
        report = self.tap.sender_report
        rtp = self.tap.rtp_timestamp(frame_timestamp)
        if report is None or rtp is None:
            return None
        ntp_seconds, reference = report
        delta = (rtp - reference) & 0xFFFFFFFF
        if delta >= 1 << 31:  # before the report's timestamp (modulo 2**32)
            delta -= 1 << 32
        return ntp_seconds + delta / clock_rate

    # -- bandwidth: subscribers' estimates reach the publisher
    def subscriber_bitrate_cap(self) -> int | None:
        """The least bandwidth estimate among the subscribers receiving this track's
        video (paused ones and estimates older than ``REMB_MAX_AGE`` do not count),
        never below ``REMB_FLOOR``; None when no subscriber has said."""
        now = time.monotonic()
        rates = [
            sink.remb[0]
            for sink in self.sinks
            if sink.remb is not None
            and not sink.paused
            and now - sink.remb[1] <= REMB_MAX_AGE
            and sink.readyState == "live"
        ]
        return max(REMB_FLOOR, min(rates)) if rates else None

    def _hook_estimates(self) -> None:
        """The REMB aiortc's receiver sends the publisher (its own estimate of the
        publisher-to-relay path) is lowered to :meth:`subscriber_bitrate_cap`: the
        publisher sends what its subscribers can take, as an SFU without simulcast
        must. ``RTCRtpReceiver._send_rtcp`` is wrapped on this receiver only."""
        send_rtcp = getattr(self.receiver, "_send_rtcp", None)
        if send_rtcp is None:  # a stand-in receiver (check_aiortc vouches for aiortc's)
            return

        async def capped(packet: Any) -> None:
            if isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_APP:
                cap = self.subscriber_bitrate_cap()
                if cap is not None:
                    try:
                        bitrate, ssrcs = unpack_remb_fci(packet.fci)
                    except ValueError:
                        bitrate, ssrcs = 0, []
                    if cap < bitrate:
                        packet = RtcpPsfbPacket(
                            fmt=RTCP_PSFB_APP,
                            ssrc=packet.ssrc,
                            media_ssrc=packet.media_ssrc,
                            fci=pack_remb_fci(cap, ssrcs),
                        )
                        self.remb_capped += 1
                self.remb_sent += 1
            await send_rtcp(packet)

        self.receiver._send_rtcp = capped  # type: ignore[method-assign]

    # -- packets in (RTP-level forwarding)
    def _hook_packets(self) -> None:
        """Swap the receiver's jitter buffer for a :class:`PacketTap` and forward what it
        is handed once aiortc's ``_handle_rtp_packet`` (wrapped on this receiver
        instance) has finished with the packet."""
        receiver = self.receiver
        buffer = getattr(receiver, _JITTER_BUFFER, None)
        if not isinstance(buffer, JitterBuffer) or not hasattr(receiver, _RECEIVER_CODECS):
            raise HookError("aiortc's RTCRtpReceiver internals changed: cannot forward RTP")
        capacity, is_video = buffer.capacity, self.kind == "video"
        if isinstance(buffer, LowLatencyJitterBuffer):

            def make_buffer() -> JitterBuffer:
                return LowLatencyJitterBuffer(capacity, is_video=is_video)
        else:
            prefetch = buffer._prefetch

            def make_buffer() -> JitterBuffer:
                return JitterBuffer(capacity, prefetch=prefetch, is_video=is_video)

        self._packet_tap = PacketTap(make_buffer, self._outbox.append, self._frames_wanted)
        setattr(receiver, _JITTER_BUFFER, self._packet_tap)
        handle_rtp = receiver._handle_rtp_packet

        async def handle_rtp_packet(packet: RtpPacket, arrival_time_ms: int) -> None:
            await handle_rtp(packet, arrival_time_ms=arrival_time_ms)
            if self._outbox:  # aiortc hands the buffer at most one packet per call
                kept = self._outbox.pop()
                self._outbox.clear()
                await self._forward_packet(kept)

        receiver._handle_rtp_packet = handle_rtp_packet  # type: ignore[method-assign]
        if isinstance(receiver, RTCRtpReceiver):
            try:
                self._internals = _ReceiverInternals(receiver)
            except HookError as exc:
                logger.warning("relay: aiortc's receive path stays in use: %s", exc)
            else:
                fastpath.set_rtp_handler(receiver, self._receive_rtp)

    def _frames_wanted(self) -> bool:
        """Whether whole frames are needed: for a recorder, or for decoding."""
        return bool(self.observers) or self.tap.decode

    async def _forward_packet(self, packet: RtpPacket) -> None:
        self._fan_out(packet)

    def _fan_out(self, packet: Packet) -> None:
        """Send a packet aiortc's receiver has finished with to every subscriber."""
        if self.closed:
            return
        if packet.payload_type != self._codec_payload_type:
            codec = getattr(self.receiver, _RECEIVER_CODECS).get(packet.payload_type)
            if codec is None:
                return
            self._codec_payload_type = packet.payload_type
            if self.codec is None or codec.name.lower() != self.codec_name:
                self.codec = codec
        video = self.kind == "video"
        name = self.codec_name
        if not video:
            starts = True
        elif name == "h264":
            # A keyframe starts at its SPS (then PPS, then IDR slices, the first of
            # each fragmented NAL unit carrying a start code): once the stream has
            # shown an SPS, only a packet with one starts a subscriber's copy; a
            # stream that never sends one in-band starts at its IDR slices.
            data = getattr(packet, "_data", b"")
            if _h264_has_nal(data, (7,)):
                self._h264_sps_seen = starts = True
            else:
                starts = not self._h264_sps_seen and _h264_has_nal(data, (5,))
        elif name == "vp8":
            starts = vp8_starts_keyframe(packet.payload)
        else:
            starts = starts_keyframe(name, packet.payload, getattr(packet, "_data", b""))
        ends = not video or bool(packet.marker)
        if starts and video:
            self._keyframe_wanted = False
        if not self._frames_wanted():  # else the tap counts the frames it is handed
            tap = self.tap
            tap.bytes += len(packet.payload)
            tap.frames += ends
            tap.keyframes += starts
        sinks = self.sinks
        if not sinks:
            return
        now = fastpath.ntp_time()
        for sink in tuple(sinks):
            try:
                if sink._send_now is not None:
                    sink.forward_now(packet, starts, ends, now)
                else:
                    fastpath.run_inline(sink.forward(packet, starts, ends, now))
            except Exception:  # one subscriber must never break the publisher's stream
                logger.exception("relay forwarding to a subscriber failed")
        if ends:
            self.frames_forwarded += len(sinks)

    # -- packets in, the short way (the inline media path)
    def _receive_rtp(self, data: bytes, arrival_time_ms: int) -> bool:
        """Take a decrypted RTP packet of this track from the inline path
        (:func:`relay.fastpath.set_rtp_handler`) and forward it, doing on the way
        what aiortc's ``_handle_rtp_data`` and ``_handle_rtp_packet`` do for a
        packet that reaches only our :class:`PacketTap`, in the same order: the
        bitrate estimator (REMB), the active sources, the statistics of receiver
        reports, NACK. What it leaves out has no effect here: the debug log, the
        depayloading a VP8 packet needs only for its keyframe test (made on the
        payload, :func:`vp8_starts_keyframe`; a descriptor aiortc would refuse is
        dropped as aiortc drops it), the jitter buffer (a :class:`PacketTap` that
        only forwards). ``getSynchronizationSources``' time is refreshed every
        ``ACTIVE_SOURCE_REFRESH`` s, not for every packet.

        Returns False, touching nothing, for any packet aiortc must handle: another
        payload type (RTX, a codec not seen yet), whole frames wanted (a recorder,
        decoding), a disabled receiver, a decoder error to report, a packet that
        does not parse."""
        receiver = self.receiver
        internals = self._internals
        payload_type = data[1] & 0x7F if len(data) > 1 else -1
        if (
            payload_type != self._codec_payload_type
            or internals is None
            or self.closed
            or not receiver._enabled
            or self.observers  # whole frames wanted (as _frames_wanted)
            or self.tap.decode
            or internals.decoder_error.is_set()
        ):
            return False
        dtls = receiver.transport
        if receiver not in dtls._rtp_router.payload_type_table.get(payload_type, ()):
            return False
        packet = fastpath.parse_rtp(data, dtls._rtp_header_extensions_map)
        if packet is None:  # unusual, or refused by aiortc's parse
            return False
        ssrc = packet.ssrc
        streams = internals.streams
        statistics = streams.get(ssrc)
        if statistics is None:  # a new source: its statistics start at its clock rate
            codec = getattr(receiver, _RECEIVER_CODECS).get(payload_type)
            if codec is None:
                return False  # not a codec of this receiver (any more): aiortc's way
            statistics = streams[ssrc] = StreamStatistics(codec.clockRate)
        self.rtp_taken += 1
        estimator = internals.estimator
        if estimator is not None and packet.extensions.abs_send_time is not None:
            remb = estimator.add(
                abs_send_time=packet.extensions.abs_send_time,
                arrival_time_ms=arrival_time_ms,
                payload_size=len(packet.payload) + packet.padding_size,
                ssrc=ssrc,
            )
            rtcp_ssrc = getattr(receiver, _RECEIVER_RTCP_SSRC)
            if rtcp_ssrc is not None and remb is not None:
                fci = pack_remb_fci(*remb)
                remb_packet = RtcpPsfbPacket(
                    fmt=RTCP_PSFB_APP, ssrc=rtcp_ssrc, media_ssrc=0, fci=fci
                )
                fastpath.run_inline(receiver._send_rtcp(remb_packet))
        internals.mark_active(ssrc)
        statistics.add(packet)
        nack = internals.nack
        if nack is not None and nack.add(packet):
            fastpath.run_inline(receiver._send_rtcp_nack(ssrc, sorted(nack.missing)))
        name = self.codec_name
        try:
            if name == "vp8" and packet.payload:
                vp8_descriptor_size(packet.payload)  # aiortc's depayloader would refuse it
            elif name == "h264":
                packet._data = depayload(self.codec, packet.payload) if packet.payload else b""  # type: ignore[arg-type,attr-defined]
        except ValueError:
            return True  # dropped, as aiortc drops it (counted, NACKed)
        self._packet_tap._buffer = None  # type: ignore[union-attr]  # as PacketTap.add would
        self._fan_out(packet)
        return True

    # -- frames in
    def _on_frame(self, codec: RTCRtpCodecParameters, frame: JitterFrame, keyframe: bool) -> None:
        if self.closed:
            return
        if self.codec is None or codec.name.lower() != self.codec_name:
            self.codec = codec
        if keyframe:
            self._keyframe_wanted = False
        for observer in tuple(self.observers):
            try:
                observer(self, codec, frame, keyframe)
            except Exception:  # a failing observer must not stop forwarding
                logger.exception("relay frame observer failed")
        if not self.sinks or self.rtp_forwarding:
            return
        packet = av.Packet(frame.data)
        packet.pts = frame.timestamp
        packet.time_base = fractions.Fraction(1, codec.clockRate)
        encoded = EncodedFrame(packet, keyframe, codec.name.lower(), time.monotonic())
        for sink in tuple(self.sinks):
            sink.push(encoded)
        self.frames_forwarded += len(self.sinks)

    # -- subscribers
    def accepts(self, offered: list[RTCRtpCodecParameters]) -> bool:
        """Whether a subscriber offering ``offered`` can take our frames as they are."""
        if not self.forwardable:
            return False
        return any(is_codec_compatible(c, self.codec) for c in offered)

    def codec_preferences(self) -> list[RTCRtpCodecCapability]:
        """Capabilities pinning a subscriber's transceiver to our codec (+ RTX)."""
        codecs = RTCRtpSender.getCapabilities(self.kind).codecs
        chosen = [
            c for c in codecs if c.name.lower() != "rtx" and is_codec_compatible(c, self.codec)
        ][:1]
        chosen += [c for c in codecs if c.name.lower() == "rtx"]
        return chosen

    def add_sink(self) -> EncodedTrack:
        sink = EncodedTrack(self, self.codec_name, self.maxlen)
        self.sinks.add(sink)
        return sink

    def remove_sink(self, sink: EncodedTrack) -> None:
        self.sinks.discard(sink)

    def transcoded_track(self) -> MediaStreamTrack:
        """A decoded-then-re-encoded copy for a subscriber that cannot take our codec."""
        if self._media_relay is None:
            self._media_relay = MediaRelay()
        proxy = self._media_relay.subscribe(self.track, buffered=self.transcode_buffered)
        track = TranscodedTrack(self, proxy)
        self.transcoded.add(track)
        return track

    def _transcoder_started(self) -> None:
        self._transcoders += 1
        if not self.tap.decode:
            # Decode only while someone reads the decoded frames, from a keyframe on.
            self.tap.enable_decode(from_keyframe=not self.stock_transcode)
            self.request_keyframe()

    def _transcoder_stopped(self) -> None:
        self._transcoders -= 1
        if self._transcoders <= 0:
            self.tap.disable_decode()
            # frames decoded for nobody: drop them rather than keep them queued
            pending = getattr(self.track, "_queue", None)
            while pending is not None and not pending.empty():
                if pending.get_nowait() is None:  # end of track: keep the sentinel
                    pending.put_nowait(None)
                    break

    @property
    def transcoders(self) -> int:
        return self._transcoders

    # -- keyframe requests
    def request_keyframe(self) -> None:
        """Ask the publisher for a keyframe: now, or when the rate limit allows."""
        if self.kind != "video" or self.closed:
            return
        self.pli_requested += 1
        self._keyframe_wanted = True
        if self._pli_timer is not None:
            return  # a request is already scheduled
        wait = self._last_pli + self.pli_interval - self._loop.time()
        if wait <= 0:
            self._send_pli()
        else:
            self._pli_timer = self._loop.call_later(wait, self._pli_due)

    def _pli_due(self) -> None:
        self._pli_timer = None
        if self._keyframe_wanted and not self.closed:
            self._send_pli()

    def _send_pli(self) -> None:
        ssrcs = [s.source for s in self.receiver.getSynchronizationSources()]
        self._last_pli = self._loop.time()
        if ssrcs:
            self.pli_sent += 1
            for ssrc in ssrcs:
                task = asyncio.ensure_future(self.receiver._send_rtcp_pli(ssrc))
                self._pli_tasks.add(task)
                task.add_done_callback(self._pli_tasks.discard)
        # Until a keyframe shows up, ask again once per interval (lost PLI, no media yet).
        self._pli_timer = self._loop.call_later(self.pli_interval, self._pli_due)

    # -- end
    def close(self) -> None:
        """The publisher left: end every subscriber's copy now."""
        if self.closed:
            return
        self.closed = True
        if self._internals is not None:
            fastpath.set_rtp_handler(self.receiver, None)
            self._internals = None
        if self._pli_timer is not None:
            self._pli_timer.cancel()
            self._pli_timer = None
        for track in (*self.sinks, *self.transcoded):
            track.stop()
        self.sinks.clear()
        self.transcoded.clear()
        self.observers.clear()

    def stats(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "codec": self.codec_name,
            "frames_in": self.tap.frames,
            "keyframes_in": self.tap.keyframes,
            "frames_decoded": self.tap.decoded,
            "frames_forwarded": self.frames_forwarded,
            "subscribers": len(self.sinks),
            "transcoders": self._transcoders,
            "pli_sent": self.pli_sent,
        }
