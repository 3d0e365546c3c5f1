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

from relay import fastpath, forwarding
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
        self._RTCRtpReceiver__codecs = {VP8.payloadType: VP8}
        self.track = None
        self.plis: list[int] = []
        self.handled: list[int] = []

    async def _handle_rtp_packet(self, packet, arrival_time_ms: int) -> None:
        # What aiortc's does once the packet is checked, counted and depayloaded.
        self.handled.append(packet.sequence_number)
        _, frame = self._RTCRtpReceiver__jitter_buffer.add(packet)
        if frame is not None:
            self._RTCRtpReceiver__decoder_queue.put((VP8, frame))

    def getSynchronizationSources(self):
        class Source:
            source = 1234

        return [Source()]

    async def _send_rtcp_pli(self, ssrc: int) -> None:
        self.plis.append(ssrc)


async def test_keyframe_requests_are_rate_limited_and_not_lost() -> None:
    receiver = _FakeReceiver()
    source = PublishedTrack(receiver, "video", VP8, pli_interval=0.3)  # type: ignore[arg-type]
    assert isinstance(receiver._RTCRtpReceiver__jitter_buffer, forwarding.PacketTap)
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


# --------------------------------------------------------------------------- RTP-level


H264 = RTCRtpCodecParameters(
    mimeType="video/H264",
    clockRate=90000,
    payloadType=102,
    parameters={"packetization-mode": "1", "profile-level-id": "42e01f"},
)


def _rtp_payloads(codec: RTCRtpCodecParameters, encoder_name: str) -> list[list[bytes]]:
    """Real frames, packetized as a publisher's aiortc would: one list per frame."""
    from aiortc.codecs import get_encoder

    packer = get_encoder(codec)
    frames = []
    for pts, data in enumerate(_encode(encoder_name, 3)):
        packet = av.Packet(data)
        packet.pts, packet.time_base = pts, fractions.Fraction(1, 30)
        frames.append(packer.pack(packet)[0])
    return frames


@pytest.mark.parametrize(("codec", "encoder"), [(VP8, "libvpx"), (H264, "libx264")])
def test_a_keyframes_first_packet_is_recognised(codec, encoder) -> None:
    from aiortc.codecs import depayload

    key, *deltas = _rtp_payloads(codec, encoder)
    name = codec.name.lower()
    assert forwarding.starts_keyframe(name, key[0], depayload(codec, key[0]))
    for frame in deltas:
        assert not any(forwarding.starts_keyframe(name, p, depayload(codec, p)) for p in frame)
    if name == "vp8":  # the same bytes, but not the first packet of the frame (S bit clear)
        middle = bytes([key[0][0] & ~0x10]) + key[0][1:]
        assert not forwarding.starts_keyframe("vp8", middle, depayload(codec, middle))
    assert forwarding.starts_keyframe("opus", b"\x01", b"\x01")


class _FakeDtls:
    """Where a sender's packets go: kept, parsed."""

    state = "connected"

    def __init__(self) -> None:
        self.sent: list[RtpPacket] = []

    async def _send_rtp(self, data: bytes) -> None:
        self.sent.append(RtpPacket.parse(data))


def _in(seq: int, ts: int, payload: bytes, marker: int = 1) -> RtpPacket:
    from aiortc.codecs import depayload

    packet = RtpPacket(payload_type=97, sequence_number=seq, timestamp=ts, ssrc=42)
    packet.marker, packet.payload = marker, payload
    packet._data = depayload(VP8, payload)
    return packet


async def test_a_subscribers_copy_is_the_publishers_packets_renumbered() -> None:
    from aiortc import RTCRtpSender, clock

    key, delta, _ = (frame[0] for frame in _rtp_payloads(VP8, "libvpx"))
    transport = _FakeDtls()
    sender = RTCRtpSender("video", transport)  # type: ignore[arg-type]
    source = _Source()
    sink = EncodedTrack(source, "vp8", maxlen=4)  # type: ignore[arg-type]
    sink.bind_sender(sender)
    sink._start_rtp(VP8)  # what the sender's loop does once negotiated
    assert source.requests == 1, "a new subscriber asks for a keyframe"

    async def forward(packet: RtpPacket) -> None:
        starts = forwarding.starts_keyframe("vp8", packet.payload, packet._data)
        await sink.forward(packet, starts, bool(packet.marker), clock.current_ntp_time())

    # given a subscriber that joined mid-stream: a delta frame is dropped, then a keyframe
    await forward(_in(99, 0, delta))
    assert transport.sent == [] and sink.dropped == 1
    for seq, ts, payload in ((100, 3000, key), (102, 6000, delta), (101, 4500, delta)):
        await forward(_in(seq, ts, payload))
    # then it gets the packets from the keyframe on, numbered on from where it started,
    # each keeping its place (101 arrived late), in our SSRC and payload type
    first = transport.sent[0]
    assert [p.sequence_number - first.sequence_number for p in transport.sent] == [0, 2, 1]
    assert [p.timestamp - first.timestamp for p in transport.sent] == [0, 3000, 1500]
    assert {(p.ssrc, p.payload_type) for p in transport.sent} == {(sender._ssrc, 97)}
    assert [p.payload for p in transport.sent] == [key, delta, delta]
    # and a straggler from before the keyframe is not sent
    await forward(_in(98, 0, delta))
    assert len(transport.sent) == 3
    # the sender's NACK history and sender-report counts are kept, as its own loop does
    await sender._retransmit(first.sequence_number + 1)
    assert transport.sent[-1].sequence_number == first.sequence_number + 1
    assert sender._RTCRtpSender__packet_count == 3 and sink.sent == 3

    # when the subscriber pauses video and resumes later
    sink.set_paused(True)
    await forward(_in(103, 7500, delta))
    assert sink.withheld == 1
    sink.set_paused(False)
    assert source.requests == 2, "resuming asks for a keyframe"
    await forward(_in(500, 9000, delta))  # the publisher's numbering moved on meanwhile
    await forward(_in(501, 12000, key))
    # then it starts again at the keyframe, with no gap in the subscriber's numbering
    assert transport.sent[-1].payload == key
    assert transport.sent[-1].sequence_number == first.sequence_number + 3
    sink.stop()
    await forward(_in(502, 15000, delta))
    assert transport.sent[-1].sequence_number == first.sequence_number + 3


async def test_the_sender_loop_hands_over_to_forwarding_and_ends_with_the_track() -> None:
    from aiortc import RTCRtpSender
    from aiortc.mediastreams import MediaStreamError

    transport = _FakeDtls()
    sender = RTCRtpSender("video", transport)  # type: ignore[arg-type]
    source = _Source()
    sink = EncodedTrack(source, "vp8", maxlen=4)  # type: ignore[arg-type]
    sink.bind_sender(sender)
    waiting = asyncio.ensure_future(sender._next_encoded_frame(VP8))
    await asyncio.sleep(0.01)
    assert sink._armed and sink._payload_type == 97 and not waiting.done()
    sink.stop()
    with pytest.raises(MediaStreamError):
        await waiting


async def test_frames_are_assembled_only_while_someone_needs_them() -> None:
    # given a published track forwarding RTP packets, with one subscriber
    key = _rtp_payloads(VP8, "libvpx")[0][0]
    receiver = _FakeReceiver()
    source = PublishedTrack(receiver, "video", VP8)  # type: ignore[arg-type]
    transport = _FakeDtls()
    from aiortc import RTCRtpSender

    sink = source.add_sink()
    sink.bind_sender(RTCRtpSender("video", transport))  # type: ignore[arg-type]
    sink._start_rtp(VP8)
    packet_tap = receiver._RTCRtpReceiver__jitter_buffer
    seen = []
    # when packets arrive with nobody recording, then while a recorder observes
    await receiver._handle_rtp_packet(_in(10, 0, key), arrival_time_ms=0)
    assert packet_tap._buffer is None, "no frame assembly for forwarding alone"
    source.observers.add(lambda track, codec, frame, keyframe: seen.append(keyframe))
    await receiver._handle_rtp_packet(_in(11, 3000, key), arrival_time_ms=0)
    # then every packet was forwarded, and the recorder got the frame it was there for
    assert [p.payload for p in transport.sent] == [key, key]
    assert seen == [True] and source.tap.frames == 2 and source.frames_forwarded == 2
    assert source.tap.decoded == 0
    source.close()


async def test_an_h264_subscriber_starts_at_the_sps_and_each_keyframe_counts_once() -> None:
    # given a published H.264 track whose keyframe comes as SPS, PPS, IDR fragments
    from aiortc import RTCRtpSender
    from aiortc.codecs import depayload

    def nal_units(annex_b: bytes) -> list[bytes]:  # one single-NAL-unit packet each
        return [n.lstrip(b"\x00") for n in annex_b.split(b"\x00\x00\x01") if n.strip(b"\x00")]

    encoded = _encode("libx264", 2)
    key, delta = nal_units(encoded[0]), nal_units(encoded[1])
    assert [n[0] & 0x1F for n in key][:2] == [7, 8] and key[-1][0] & 0x1F == 5
    receiver = _FakeReceiver()
    receiver._RTCRtpReceiver__codecs = {H264.payloadType: H264}
    source = PublishedTrack(receiver, "video", H264)  # type: ignore[arg-type]
    transport = _FakeDtls()
    sink = source.add_sink()
    sink.bind_sender(RTCRtpSender("video", transport))  # type: ignore[arg-type]

    def packet(seq: int, ts: int, payload: bytes, last: bool) -> RtpPacket:
        out = RtpPacket(payload_type=H264.payloadType, sequence_number=seq, timestamp=ts)
        out.marker, out.payload = int(last), payload
        out._data = depayload(H264, payload)
        return out

    async def send_frame(first_seq: int, ts: int, payloads: list[bytes]) -> None:
        for i, payload in enumerate(payloads):
            last = i == len(payloads) - 1
            await source._forward_packet(packet(first_seq + i, ts, payload, last))

    # when the first keyframe goes by, then one whose SPS the subscriber misses
    await send_frame(100, 0, key)
    sink._start_rtp(H264)  # the subscriber becomes ready mid-stream
    await send_frame(100 + len(key), 0, key[1:])  # (the tail of a keyframe, no SPS)
    assert transport.sent == [], "started in the middle of a keyframe"
    await send_frame(200, 3000, key)
    await send_frame(200 + len(key), 6000, delta)
    # then it starts at the next SPS and gets the whole keyframe and what follows
    assert [p.payload for p in transport.sent] == [*key, *delta]
    assert source.tap.keyframes == 2, "one per SPS-led keyframe, not per packet or slice"
    source.close()


# --------------------------------------------------------------------------- the short way in


def test_the_vp8_descriptor_is_measured_as_aiortc_parses_it() -> None:
    from aiortc.codecs.vpx import VpxPayloadDescriptor

    rng = np.random.default_rng(7)
    headers = [bytes([x, y, p, q, r, s]) for x in (0x00, 0x10, 0x80, 0x90) for y in
               (0x00, 0x80, 0x40, 0x20, 0x10, 0xF0, 0xC0, 0x30) for p in (0x05, 0x85)
               for q, r, s in [tuple(rng.integers(0, 256, 3))]]  # fmt: skip
    for header in headers:
        payload = header + b"\x9d\x01\x2a\x00"
        for cut in range(len(payload) + 1):  # every truncation too
            data = payload[:cut]
            try:
                _, rest = VpxPayloadDescriptor.parse(data)
            except ValueError:
                with pytest.raises(ValueError, match="VPX descriptor"):
                    forwarding.vp8_descriptor_size(data)
                continue
            assert data[forwarding.vp8_descriptor_size(data) :] == rest, data.hex()
    key, *deltas = _rtp_payloads(VP8, "libvpx")
    assert forwarding.vp8_starts_keyframe(key[0])
    assert not any(forwarding.vp8_starts_keyframe(p) for frame in deltas for p in frame)
    assert not forwarding.vp8_starts_keyframe(b"") and not forwarding.vp8_starts_keyframe(b"\x90")


class _RtcpSink:
    """A receiver's DTLS transport, as far as its RTCP and our short way in go."""

    state = "connected"

    def __init__(self) -> None:
        from aiortc.rtcdtlstransport import RtpRouter
        from aiortc.rtp import HeaderExtensionsMap

        self._rtp_router = RtpRouter()
        self._rtp_header_extensions_map = HeaderExtensionsMap()
        self._rtp_header_extensions_map._HeaderExtensionsMap__ids.abs_send_time = 3
        self.rtcp: list[bytes] = []

    async def _send_rtp(self, data: bytes) -> None:
        self.rtcp.append(data)


class _RawDtls(_FakeDtls):
    """A sender's transport keeping the bytes too."""

    def __init__(self) -> None:
        super().__init__()
        self.raw: list[bytes] = []

    async def _send_rtp(self, data: bytes) -> None:
        self.raw.append(data)
        await super()._send_rtp(data)


@pytest.mark.parametrize(("codec", "encoder"), [(VP8, "libvpx"), (H264, "libx264")])
async def test_the_short_way_in_leaves_aiortcs_receiver_as_its_own_handler_would(
    monkeypatch, codec, encoder
) -> None:
    # given two publishers' receivers, one fed by aiortc's handler and forwarded through
    # aiortc's serialize and send, one the short way in and out
    import aiortc.rtcrtpreceiver
    from aiortc import RTCRtpReceiver, RTCRtpSender
    from aiortc.rtp import RTCP_PSFB_APP, RtcpPacket, RtcpPsfbPacket, RtcpRtpfbPacket

    clock_now = [1000.0]
    monkeypatch.setattr(aiortc.rtcrtpreceiver.time, "time", lambda: clock_now[0])
    monkeypatch.setattr(fastpath, "ntp_time", lambda: 0x1234567890ABCDEF)
    sides = []
    for short in (False, True):
        dtls = _RtcpSink()
        receiver = RTCRtpReceiver("video", dtls)  # type: ignore[arg-type]
        receiver._RTCRtpReceiver__codecs[codec.payloadType] = codec
        receiver._RTCRtpReceiver__rtcp_ssrc = 1234
        dtls._rtp_router.register_receiver(receiver, ssrcs=[], payload_types=[codec.payloadType])
        source = PublishedTrack(receiver, "video", codec)
        out = _RawDtls()
        sink = source.add_sink()
        sender = RTCRtpSender("video", out)  # type: ignore[arg-type]
        sender._ssrc = 777
        ids = sender._RTCRtpSender__rtp_header_extensions_map._HeaderExtensionsMap__ids
        ids.mid, ids.abs_send_time = 1, 3
        sink.bind_sender(sender)
        sink._start_rtp(codec)
        sink._mid, sink._out_next, sink._ts_offset = "0", 5000, 0
        if short:  # the inline sender, with its writer, straight to the "socket"
            sink._writer = fastpath.RtpWriter(sink._extensions)
            sink._send_now = out.raw.append
        sides.append((dtls, receiver, source, out))
    frames = _rtp_payloads(codec, encoder)

    # when the same five seconds of packets reach both, with a loss and a late packet
    packets = []
    seq, held = 100, None
    for n in range(150):
        payloads = frames[0] if n % 30 == 0 else frames[1 + n % 2]
        for i, payload in enumerate(payloads):
            packet = RtpPacket(payload_type=codec.payloadType, sequence_number=seq & 0xFFFF,
                               timestamp=n * 3000, ssrc=42, payload=payload)  # fmt: skip
            packet.marker = int(i == len(payloads) - 1)
            packet.extensions.abs_send_time = (int(n * 33.3 * 262.144) + i) & 0xFFFFFF
            data = packet.serialize(sides[0][0]._rtp_header_extensions_map)
            seq += 1
            if n == 40 and i == 0:
                held = data  # lost for now, arrives three frames later
                continue
            packets.append((1000 + n * 33 + i, data))
            if n == 43 and i == 0:
                packets.append((1000 + n * 33 + i, held))
    (a_dtls, a_receiver, a_source, a_out), (b_dtls, b_receiver, b_source, b_out) = sides
    for arrival, data in packets:
        clock_now[0] = arrival / 1000
        await a_receiver._handle_rtp_packet(
            RtpPacket.parse(data, a_dtls._rtp_header_extensions_map), arrival_time_ms=arrival
        )
        if not b_source._receive_rtp(data, arrival):
            await b_receiver._handle_rtp_packet(
                RtpPacket.parse(data, b_dtls._rtp_header_extensions_map), arrival_time_ms=arrival
            )

    # then the short way took all but the first packet
    assert b_source.rtp_taken == len(packets) - 1 and a_source.rtp_taken == 0

    # and both receivers asked for the same lost packet and sent the same REMBs
    def feedback(dtls: _RtcpSink) -> list[bytes]:
        kept = []
        for data in dtls.rtcp:
            for rtcp in RtcpPacket.parse(data):
                nack = isinstance(rtcp, RtcpRtpfbPacket)
                remb = isinstance(rtcp, RtcpPsfbPacket) and rtcp.fmt == RTCP_PSFB_APP
                if nack or remb:
                    kept.append(bytes(rtcp))
        return kept

    a_feedback = feedback(a_dtls)
    assert any(b[1] == 205 for b in a_feedback), "a NACK for the lost packet"
    assert sum(b[1] == 206 for b in a_feedback) >= 3, "REMBs"
    assert feedback(b_dtls) == a_feedback
    # and keep the same statistics for their receiver reports and sources
    a_stats = a_receiver._RTCRtpReceiver__remote_streams[42].__dict__
    assert b_receiver._RTCRtpReceiver__remote_streams[42].__dict__ == a_stats
    assert a_stats["packets_received"] == len(packets)
    a_nack = a_receiver._RTCRtpReceiver__nack_generator
    b_nack = b_receiver._RTCRtpReceiver__nack_generator
    assert (b_nack.max_seq, b_nack.missing) == (a_nack.max_seq, a_nack.missing)
    assert [s.source for s in b_receiver.getSynchronizationSources()] == [42]
    # and forward the same bytes (aiortc's serialize on one side, the writer on the other)
    assert len(a_out.raw) == len(packets) and b_out.raw == a_out.raw
    assert (b_source.tap.frames, b_source.tap.keyframes, b_source.frames_forwarded) == (
        a_source.tap.frames, a_source.tap.keyframes, a_source.frames_forwarded,
    )  # fmt: skip
    assert a_source.tap.keyframes == 5
    # and a retransmission from the short way's history is aiortc's packet again
    b_sender = next(iter(b_source.sinks)).sender
    recent = a_out.raw[-5]
    await b_sender._retransmit(int.from_bytes(recent[2:4], "big"))
    assert len(b_out.raw) == len(a_out.raw) + 1 and b_out.raw[-1] == recent
    b_out.raw.pop()

    # when whole frames are wanted (a recorder), aiortc's handler takes over
    last, arrival = packets[-1][1], packets[-1][0]
    b_source.observers.add(lambda *args: None)
    assert not b_source._receive_rtp(last, arrival + 1)
    b_source.observers.clear()
    # and so it does for a disabled receiver, a decoder error to report, another
    # payload type (a retransmission), touching nothing
    before = (b_source.rtp_taken, a_stats["packets_received"], len(b_out.raw))
    b_receiver._enabled = False
    assert not b_source._receive_rtp(last, arrival + 2)
    b_receiver._enabled = True
    b_receiver._RTCRtpReceiver__decoder_error.set()
    assert not b_source._receive_rtp(last, arrival + 3)
    b_receiver._RTCRtpReceiver__decoder_error.clear()
    rtx = bytearray(last)
    rtx[1] = (rtx[1] & 0x80) | 98
    assert not b_source._receive_rtp(bytes(rtx), arrival + 4)
    stats = b_receiver._RTCRtpReceiver__remote_streams[42].__dict__
    assert (b_source.rtp_taken, stats["packets_received"], len(b_out.raw)) == before
    if codec is VP8:  # a descriptor aiortc's depayloader refuses is dropped, counted
        damaged = RtpPacket(payload_type=codec.payloadType, sequence_number=seq & 0xFFFF,
                            timestamp=999_000, ssrc=42, payload=b"\x80")  # fmt: skip
        assert b_source._receive_rtp(damaged.serialize(), arrival + 5)
        assert stats["packets_received"] == before[1] + 1 and len(b_out.raw) == before[2]
    b_source.close()
    assert not hasattr(b_receiver, fastpath.RTP_HANDLER)
    assert not b_source._receive_rtp(last, arrival + 6)
    a_source.close()


@pytest.mark.parametrize("rtx", [False, True])
async def test_a_forwarded_packet_is_sent_again_as_aiortc_would_send_it(rtx) -> None:
    # given a sender whose NACK history holds a packet the short way sent
    from aiortc import RTCRtpSender
    from aiortc.rtp import HeaderExtensions, unwrap_rtx

    transport = _FakeDtls()
    sender = RTCRtpSender("video", transport)  # type: ignore[arg-type]
    extensions_map = sender._RTCRtpSender__rtp_header_extensions_map
    ids = extensions_map._HeaderExtensionsMap__ids
    ids.mid, ids.abs_send_time = 1, 2
    if rtx:
        sender._RTCRtpSender__rtx_payload_type = 98
    writer = fastpath.RtpWriter(extensions_map)
    header = writer.header(1, 97, 777, 90000, sender._ssrc, "0", 12345, None)
    wire = header + b"payload"
    sent = forwarding.SentPacket(
        header, extensions_map, 1, 97, 777, 90000, sender._ssrc, b"payload", "0", 12345, None
    )
    sender._RTCRtpSender__rtp_history[777 % forwarding.RTP_HISTORY_SIZE] = sent
    assert sent.extensions == HeaderExtensions(mid="0", abs_send_time=12345)

    raw: list[bytes] = []
    send_rtp = transport._send_rtp

    async def capture(data: bytes) -> None:
        raw.append(data)
        await send_rtp(data)

    transport._send_rtp = capture  # type: ignore[method-assign]

    # when the subscriber asks for it again
    await sender._retransmit(777)

    # then the bytes are those first sent, or their RTX wrapping, as for aiortc's packet
    again = transport.sent[-1]
    if rtx:
        assert again.payload_type == 98 and again.ssrc == sender._rtx_ssrc
        again = unwrap_rtx(again, payload_type=97, ssrc=sender._ssrc)
    assert (again.sequence_number, again.timestamp, again.marker, again.payload) == (
        777, 90000, 1, b"payload",
    )  # fmt: skip
    extensions = RtpPacket.parse(raw[-1], extensions_map).extensions
    assert (extensions.abs_send_time, extensions.mid) == (12345, "0")
    if not rtx:
        assert raw[-1] == wire
