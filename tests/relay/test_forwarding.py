"""Units of the forwarding path: keyframe detection, jitter buffer, bounded queues,
keyframe-request rate limiting, and the hook's hold on aiortc's receiver."""

from __future__ import annotations

import asyncio
import fractions
import queue

import av
import numpy as np
import pytest
from aiortc.jitterbuffer import JitterBuffer
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RtpPacket

from relay import forwarding
from relay.forwarding import (
    EncodedFrame,
    EncodedTrack,
    LowLatencyJitterBuffer,
    PublishedTrack,
    ReceiverTap,
    is_keyframe,
)

VP8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=97)


def _encode(codec: str, frames: int = 3) -> list[bytes]:
    context = av.CodecContext.create(codec, "w")
    context.width, context.height, context.pix_fmt = 64, 48, "yuv420p"
    context.time_base = fractions.Fraction(1, 30)
    context.framerate = fractions.Fraction(30, 1)
    if codec == "libx264":
        context.options = {"tune": "zerolatency"}
    out = []
    for i in range(frames):
        image = np.full((72, 64), (i * 40) % 255, dtype=np.uint8)
        frame = av.VideoFrame.from_ndarray(image, format="yuv420p")
        frame.pts = i
        out.extend(bytes(p) for p in context.encode(frame))
    out.extend(bytes(p) for p in context.encode(None))
    return out


@pytest.mark.parametrize("codec", ["libvpx", "libx264"])
def test_keyframes_are_recognised_in_the_bitstream(codec: str) -> None:
    packets = _encode(codec)
    name = "vp8" if codec == "libvpx" else "h264"
    assert len(packets) >= 2
    assert is_keyframe(name, packets[0])
    assert not any(is_keyframe(name, p) for p in packets[1:])
    assert is_keyframe("opus", b"\x01")
    assert not is_keyframe("vp8", b"") and not is_keyframe("h264", b"\x00\x00\x01")


def _packet(seq: int, ts: int, marker: int, data: bytes) -> RtpPacket:
    packet = RtpPacket(payload_type=97, sequence_number=seq, timestamp=ts)
    packet.marker = marker
    packet._data = data  # what the receiver's depayloader leaves on the packet
    return packet


def test_low_latency_buffer_releases_a_frame_on_its_last_packet() -> None:
    stock = JitterBuffer(capacity=128, is_video=True)
    fast = LowLatencyJitterBuffer(capacity=128, is_video=True)
    frame_a = [_packet(100, 3000, 0, b"a1"), _packet(101, 3000, 1, b"a2")]
    frame_b = [_packet(102, 6000, 1, b"b1")]
    assert fast.add(frame_a[0])[1] is None
    released = fast.add(frame_a[1])[1]
    assert released is not None and (released.data, released.timestamp) == (b"a1a2", 3000)
    assert stock.add(frame_a[0])[1] is None and stock.add(frame_a[1])[1] is None
    assert stock.add(frame_b[0])[1].data == b"a1a2"  # stock waits for the next frame
    assert fast.add(frame_b[0])[1].data == b"b1"


def test_low_latency_buffer_waits_for_missing_packets() -> None:
    fast = LowLatencyJitterBuffer(capacity=128, is_video=True)
    assert fast.add(_packet(10, 90, 0, b"x1"))[1] is None
    assert fast.add(_packet(12, 90, 1, b"x3"))[1] is None  # 11 is missing
    released = fast.add(_packet(11, 90, 0, b"x2"))[1]  # retransmission fills the gap
    assert released is not None and released.data == b"x1x2x3"


def test_low_latency_audio_buffer_releases_every_packet() -> None:
    fast = LowLatencyJitterBuffer(capacity=16, is_video=False)
    for seq in range(5):
        released = fast.add(_packet(seq, seq * 960, 1, bytes([seq])))[1]
        assert released is not None and released.data == bytes([seq])


class _Source:
    kind = "video"

    def __init__(self) -> None:
        self.requests = 0

    def request_keyframe(self) -> None:
        self.requests += 1

    def remove_sink(self, sink) -> None:
        pass


def _frame(keyframe: bool, codec: str = "vp8") -> EncodedFrame:
    return EncodedFrame(av.Packet(b"x"), keyframe, codec, 0.0)


async def test_a_slow_subscriber_drops_to_the_next_keyframe() -> None:
    source = _Source()
    sink = EncodedTrack(source, "vp8", maxlen=4)  # type: ignore[arg-type]
    sink.push(_frame(True))
    assert sink.queued == 0, "nothing is queued before the sender reads"
    reader = asyncio.ensure_future(sink.recv())
    await asyncio.sleep(0)
    assert source.requests == 1, "the first read asks for a keyframe"
    sink.push(_frame(False))
    assert sink.queued == 0, "a subscriber starts at a keyframe"
    sink.push(_frame(True))
    await reader
    for _ in range(4):
        sink.push(_frame(False))
    assert sink.queued == 4
    sink.push(_frame(False))  # the sender is not keeping up: overflow
    assert sink.queued == 0 and sink.overflows == 1 and source.requests == 2
    for _ in range(10):
        sink.push(_frame(False))
    assert sink.queued == 0, "deltas are dropped until a keyframe"
    sink.push(_frame(True))
    sink.push(_frame(False))
    assert sink.queued == 2
    sink.push(_frame(False, codec="h264"))
    assert sink.queued == 2, "frames of another codec are never forwarded"
    sink.stop()
    with pytest.raises(forwarding.MediaStreamError):
        await sink.recv()


async def test_a_slow_audio_subscriber_drops_its_oldest_frames() -> None:
    source = _Source()
    source.kind = "audio"
    sink = EncodedTrack(source, "opus", maxlen=3)  # type: ignore[arg-type]
    reader = asyncio.ensure_future(sink.recv())
    await asyncio.sleep(0)
    frames = [EncodedFrame(av.Packet(bytes([i])), True, "opus", 0.0) for i in range(6)]
    for frame in frames:
        sink.push(frame)
    # the reader had not run yet: the three oldest frames made room for the newest
    assert bytes(await reader) == b"\x03"
    assert [bytes(f.packet) for f in sink._frames] == [b"\x04", b"\x05"]
    assert sink.dropped == 3 and sink.overflows == 3
    assert source.requests == 0


class _FakeReceiver:
    """Just what the tap and the keyframe logic touch on an RTCRtpReceiver."""

    def __init__(self) -> None:
        self._RTCRtpReceiver__decoder_queue = queue.Queue()
        self._RTCRtpReceiver__decoder_thread = None
        self._RTCRtpReceiver__jitter_buffer = JitterBuffer(capacity=512, is_video=True)
        self.track = None
        self.plis: list[int] = []

    def getSynchronizationSources(self):
        class Source:
            source = 1234

        return [Source()]

    async def _send_rtcp_pli(self, ssrc: int) -> None:
        self.plis.append(ssrc)


async def test_keyframe_requests_are_rate_limited_and_not_lost() -> None:
    receiver = _FakeReceiver()
    source = PublishedTrack(receiver, "video", VP8, pli_interval=0.3)  # type: ignore[arg-type]
    assert isinstance(receiver._RTCRtpReceiver__jitter_buffer, LowLatencyJitterBuffer)
    for _ in range(5):
        source.request_keyframe()
    await asyncio.sleep(0.05)
    assert receiver.plis == [1234], "one PLI at once"
    await asyncio.sleep(0.35)
    assert receiver.plis == [1234, 1234], "no keyframe came: asked again after the interval"
    tap = receiver._RTCRtpReceiver__decoder_queue
    keyframe = _encode("libvpx", 1)[0]
    tap.put((VP8, forwarding.JitterFrame(keyframe, 0)))
    await asyncio.sleep(0.4)
    assert len(receiver.plis) == 2, "the keyframe arrived: no more requests"
    source.close()


async def test_the_tap_keeps_frames_from_the_decoder_unless_asked() -> None:
    receiver = _FakeReceiver()
    got = []
    tap = ReceiverTap(receiver, "video", lambda c, f, k: got.append(k))  # type: ignore[arg-type]
    real = tap._decoder_queue
    key, delta = _encode("libvpx", 2)[:2]
    tap.put((VP8, forwarding.JitterFrame(key, 0)))
    tap.put((VP8, forwarding.JitterFrame(delta, 3000)))
    assert got == [True, False] and real.qsize() == 0 and tap.decoded == 0
    tap.enable_decode(from_keyframe=True)
    tap.put((VP8, forwarding.JitterFrame(delta, 6000)))
    assert real.qsize() == 0, "decoding starts at a keyframe"
    tap.put((VP8, forwarding.JitterFrame(key, 9000)))
    assert real.qsize() == 1 and tap.decoded == 1
    tap.put(None)
    assert real.get_nowait() is not None and tap.get() is None, "the stop sentinel goes through"


def test_the_hook_refuses_a_started_receiver() -> None:
    receiver = _FakeReceiver()
    receiver._RTCRtpReceiver__decoder_thread = object()
    with pytest.raises(forwarding.HookError):
        ReceiverTap(receiver, "video")  # type: ignore[arg-type]
    receiver = _FakeReceiver()
    del receiver._RTCRtpReceiver__decoder_queue
    with pytest.raises(forwarding.HookError):
        ReceiverTap(receiver, "video")  # type: ignore[arg-type]
    forwarding.check_aiortc()
