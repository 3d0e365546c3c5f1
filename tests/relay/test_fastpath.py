"""The relay's inline media path (relay/fastpath.py), against aiortc's own."""

from __future__ import annotations

import asyncio
import random

import pytest
from aiortc import clock
from aiortc.rate import RateCounter, RemoteBitrateEstimator

from relay import fastpath, testing

from .util import eventually

# --------------------------------------------------------------------------- run_inline


async def test_a_handler_that_never_waits_runs_to_the_end_on_the_spot() -> None:
    done = []

    async def inner() -> None:
        done.append("inner")

    async def handler() -> None:
        await inner()
        done.append("handler")

    fastpath.run_inline(handler())
    assert done == ["inner", "handler"], "nothing was left for the event loop"


async def test_a_handler_that_waits_is_finished_when_what_it_waits_for_is_done() -> None:
    loop = asyncio.get_running_loop()
    future = loop.create_future()
    steps = []

    async def handler() -> None:
        steps.append("started")
        steps.append(await future)
        await asyncio.sleep(0)  # a bare yield too
        steps.append("finished")

    fastpath.run_inline(handler())
    assert steps == ["started"]
    future.set_result("woken")
    assert await eventually(lambda: steps[-1:] == ["finished"], timeout=1)
    assert steps == ["started", "woken", "finished"]


async def test_a_handlers_error_reaches_the_caller() -> None:
    async def handler() -> None:
        raise KeyError("broken")

    with pytest.raises(KeyError):
        fastpath.run_inline(handler())


# --------------------------------------------------------------------------- clocks


def test_the_clocks_are_aiortcs_without_datetimes() -> None:
    assert abs(fastpath.ntp_ms() - clock.current_ms()) <= 2
    ours, theirs = fastpath.ntp_time(), clock.current_ntp_time()
    assert abs(ours - theirs) < (1 << 32) // 100, "more than 10 ms apart"
    assert ours >> 32 > 3_900_000_000  # seconds since 1900: after 2023


# --------------------------------------------------------------------------- REMB


def _arrivals(seed: int, count: int = 3000) -> list[tuple[int, int, int]]:
    """(arrival ms, abs-send-time, size) of a 30 fps video: bursts of packets per
    frame, jitter, a congested stretch where queueing delay builds up, and a
    pause longer than the rate window."""
    rng = random.Random(seed)
    packets = []
    send_ms = 0.0
    queue_ms = 0.0
    arrival_floor = 0
    for frame in range(count // 4):
        if frame == 300:
            send_ms += 1500  # the publisher stops for 1.5 s
        for _ in range(rng.randint(2, 6)):
            send_ms += rng.uniform(0.1, 1.5)
            if 120 <= frame < 200:
                queue_ms += rng.uniform(0, 3)  # congested: delay grows
            else:
                queue_ms = max(0.0, queue_ms - rng.uniform(0, 4))
            arrival = int(send_ms + 20 + queue_ms + rng.uniform(0, 2))
            arrival_floor = max(arrival_floor, arrival)  # arrival times never go back
            abs_send = int(send_ms / 1000 * (1 << 18)) & 0xFFFFFF
            packets.append((arrival_floor, abs_send, rng.randint(200, 1200)))
        send_ms += 1000 / 30
    return packets


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_reworked_estimator_gives_aiortcs_estimates_exactly(seed: int) -> None:
    stock, reworked = RemoteBitrateEstimator(), RemoteBitrateEstimator()
    assert fastpath.speed_up_estimator(reworked)
    assert isinstance(reworked.incoming_bitrate, fastpath.WindowRateCounter)
    estimates = 0
    for arrival, abs_send, size in _arrivals(seed):
        expected = stock.add(arrival, abs_send, size, ssrc=1234)
        got = reworked.add(arrival, abs_send, size, ssrc=1234)
        assert got == expected, (arrival, got, expected)
        estimates += expected is not None
    assert estimates > 10, "the sequence never produced an estimate"
    assert stock.estimator.ts_delta_hist == reworked.estimator.ts_delta_hist


@pytest.mark.parametrize("seed", range(5))
def test_the_rate_window_forgets_as_aiortcs_does_even_when_the_clock_goes_back(seed) -> None:
    stock, ours = RateCounter(1000, 8000), fastpath.WindowRateCounter(1000, 8000)
    rng = random.Random(seed)
    now = 10_000
    for _ in range(5000):
        # arrival times are the wall clock's: they may step back, a little or a lot
        now += rng.choice([0, 1, 3, 8, 20, 250, 1200, -1, -7, -400, -1500, -3000])
        if rng.random() < 0.02:
            stock.reset()
            ours.reset()
        assert ours.rate(now) == stock.rate(now)
        size = rng.randint(1, 1500)
        stock.add(size, now)
        ours.add(size, now)
        assert ours.rate(now) == stock.rate(now)


def test_an_estimator_already_in_use_is_left_alone() -> None:
    used = RemoteBitrateEstimator()
    used.add(1000, 0, 500, ssrc=1)
    assert not fastpath.speed_up_estimator(used)
    assert type(used.incoming_bitrate) is RateCounter


# --------------------------------------------------------------------------- real connections


class Pair:
    """An aiortc publisher (video and a data channel) and a receiving peer
    connection with the inline path, connected on loopback."""

    def __init__(self) -> None:
        self.sender, self.receiver = testing.client_pc(), testing.client_pc()
        self.video = testing.MarkerVideoTrack()
        self.sender.addTransceiver(self.video, direction="sendonly")
        self.channel = self.sender.createDataChannel("chat")
        self.messages: list[str] = []
        self.frames = 0
        self.tasks: list[asyncio.Future] = []
        self.paths: list[fastpath.SrtpReceiver] = []

        @self.receiver.on("datachannel")
        def on_channel(remote) -> None:
            remote.on("message", self.messages.append)

        @self.receiver.on("track")
        def on_track(track) -> None:
            self.tasks.append(asyncio.ensure_future(self._read(track)))

    async def _read(self, track) -> None:
        while True:
            await track.recv()
            self.frames += 1

    async def __aenter__(self) -> Pair:
        await self.sender.setLocalDescription(await self.sender.createOffer())
        await self.receiver.setRemoteDescription(self.sender.localDescription)
        await self.receiver.setLocalDescription(await self.receiver.createAnswer())
        self.paths = fastpath.install(self.receiver)
        await self.sender.setRemoteDescription(self.receiver.localDescription)
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self.tasks:
            task.cancel()
        self.video.stop()
        await asyncio.gather(self.sender.close(), self.receiver.close())

    @property
    def dtls(self):
        return self.receiver.getTransceivers()[0].receiver.transport


async def test_media_arrives_inline_and_everything_else_the_usual_way(monkeypatch) -> None:
    import aioice.ice

    # given aioice's socket handler (it tries to parse every datagram as STUN), watched
    seen: list[tuple[object, int]] = []
    stock = aioice.ice.StunProtocol.datagram_received

    def watched(self, data: bytes, addr) -> None:
        seen.append((self, data[0]))
        stock(self, data, addr)

    monkeypatch.setattr(aioice.ice.StunProtocol, "datagram_received", watched)
    async with Pair() as pair:
        assert len(pair.paths) == 1, "one transport (BUNDLE)"
        # media is decoded by the receiver as usual, having come the short way
        assert await eventually(lambda: pair.frames > 30, timeout=10)
        path = pair.paths[0]
        assert path.packets > 30 and path.errors == 0
        stats = [s for s in pair.dtls._get_stats().values() if s.type == "transport"]
        assert stats[0].packetsReceived >= path.packets, "the transport still counts them"
        # the data channel (DTLS, SCTP) still goes through aiortc's queue
        pair.channel.send("hello")
        assert await eventually(lambda: pair.messages == ["hello"], timeout=5)
        # and on the receiving side only STUN (first byte 0-3) reached aioice's handler
        sockets = set(pair.dtls.transport._connection._protocols)
        firsts = [first for protocol, first in seen if protocol in sockets]
        assert firsts and all(first <= 3 for first in firsts), firsts
        assert pair.receiver.connectionState == "connected"
        # installing again changes nothing more
        assert fastpath.install(pair.receiver) == []


async def _freed_on_close(install: bool) -> list[bool]:
    """Which of a closed connection's DTLS transport, ICE connection and sockets
    are freed by reference counting alone (the collector off)."""
    import gc
    import weakref

    pc = testing.client_pc()
    pc.addTransceiver("video", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    if install:
        assert len(fastpath.install(pc)) == 1
    dtls = pc.getTransceivers()[0].receiver.transport
    connection = dtls.transport._connection
    refs = [weakref.ref(o) for o in (dtls, connection, *connection._protocols)]
    del dtls, connection
    gc.collect()
    gc.disable()
    try:
        await pc.close()
        del pc
        await asyncio.sleep(0.1)  # the sockets' transports let go of them
        return [ref() is None for ref in refs]
    finally:
        gc.enable()


async def test_the_hooks_keep_nothing_alive_that_aiortc_would_free() -> None:
    stock = await _freed_on_close(install=False)
    assert any(stock), "the sockets are freed as soon as the connection closes"
    assert await _freed_on_close(install=True) == stock


async def test_the_inline_sender_needs_aiortcs_transport_and_a_connection() -> None:
    class StandIn:
        async def _send_rtp(self, data: bytes) -> None: ...

    assert fastpath.rtp_sender(StandIn()) is None
    pc = testing.client_pc()
    try:
        pc.addTransceiver("video", direction="sendonly")
        await pc.setLocalDescription(await pc.createOffer())
        send = fastpath.rtp_sender(pc.getTransceivers()[0].sender.transport)
        assert send is not None
        with pytest.raises(ConnectionError):
            send(b"\x80" + bytes(11))
    finally:
        await pc.close()


async def test_a_handler_error_drops_the_packet_not_the_connection(caplog) -> None:
    async with Pair() as pair:
        assert await eventually(lambda: pair.frames > 5, timeout=10)
        handle = pair.dtls._handle_rtp_data
        broken = {"left": 3}

        async def failing(data: bytes, arrival_time_ms: int) -> None:
            if broken["left"]:
                broken["left"] -= 1
                raise RuntimeError("a bug in a handler")
            await handle(data, arrival_time_ms=arrival_time_ms)

        pair.dtls._handle_rtp_data = failing
        before = pair.frames
        assert await eventually(lambda: pair.frames > before + 20, timeout=10)
        assert pair.paths[0].errors == 3
        assert caplog.text.count("relay receive handler failed") == 1, "logged once"
        assert pair.receiver.connectionState == "connected"


# --------------------------------------------------------------------------- the node


async def test_the_node_receives_and_forwards_inline(relay) -> None:
    pc, _ = await testing.publish(
        relay.http, "room", relay.token("room", "alice", ["publish"]),
        video=testing.MarkerVideoTrack(),
    )  # fmt: skip
    relay.track(pc)
    pc, _, bob = await testing.subscribe(
        relay.http, "room", "alice", relay.token("room", "bob", ["subscribe"])
    )
    relay.track(pc)
    assert await bob.wait_video(20, timeout=6)
    stats = relay.node.stats()
    assert stats["fast_receive_packets"] > 40 and stats["fast_receive_errors"] == 0
    assert stats["fast_rtp_packets"] > 30, "the video track takes its packets the short way"
    # the subscriber's copy leaves through the inline sender, not aiortc's coroutines
    sink = next(t for s in relay.node.sessions.values() for t in s.tracks if t.kind == "video")
    sent = []
    send_now = sink._send_now

    def counted(data: bytes) -> None:
        sent.append(len(data))
        send_now(data)

    sink._send_now = counted
    dtls = sink.sender.transport
    stock_sends = []
    send_rtp = dtls._send_rtp

    async def stock(data: bytes) -> None:
        if not 192 <= data[1] <= 208:  # RTP, not the sender's RTCP
            stock_sends.append(len(data))
        await send_rtp(data)

    dtls._send_rtp = stock
    packets_before = dtls._RTCDtlsTransport__tx_packets
    frames = len(bob.markers)
    assert await bob.wait_video(frames + 15, timeout=6)
    assert len(sent) > 15 and stock_sends == []
    assert dtls._RTCDtlsTransport__tx_packets - packets_before >= len(sent)
    # and the publisher's video receiver has the reworked estimator
    publisher = next(s for s in relay.node.sessions.values() if s.kind == "publish")
    video = next(t for t in publisher.pc.getTransceivers() if t.kind == "video")
    estimator = video.receiver._RTCRtpReceiver__remote_bitrate_estimator
    assert isinstance(estimator.incoming_bitrate, fastpath.WindowRateCounter)


async def test_the_stock_path_still_forwards() -> None:
    import httpx

    from relay.app import create_app
    from relay.config import RelayConfig

    from .conftest import RelayUnderTest

    app = create_app(RelayConfig(dev=True, node_id="relay-stock", inline_media=False))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://relay.test"
    ) as http:
        relay = RelayUnderTest(app, http)
        try:
            pc, _ = await testing.publish(
                http, "room", relay.token("room", "alice", ["publish"]),
                video=testing.MarkerVideoTrack(),
            )  # fmt: skip
            relay.track(pc)
            pc, _, bob = await testing.subscribe(
                http, "room", "alice", relay.token("room", "bob", ["subscribe"])
            )
            relay.track(pc)
            assert await bob.wait_video(20, timeout=6)
            assert relay.node.stats()["fast_receive_packets"] == 0
            assert relay.node.stats()["fast_rtp_packets"] == 0
            sinks = [t for s in app.state.node.sessions.values() for t in s.tracks]
            assert all(getattr(t, "_send_now", None) is None for t in sinks)
        finally:
            await asyncio.gather(*(pc.close() for pc in relay.pcs), return_exceptions=True)
            await app.state.node.shutdown()


# --------------------------------------------------------------------------- the way out


@pytest.mark.parametrize(
    ("ids", "mid"),
    [
        ({"mid": 1, "abs_send_time": 3, "audio_level": 2}, "0"),  # one-byte form
        ({"mid": 15, "abs_send_time": 3, "audio_level": 2}, "1"),  # an ID over 14: two-byte
        ({"mid": 4, "abs_send_time": 9, "audio_level": 1}, "x" * 17),  # a value over 16 bytes
        ({"abs_send_time": 3}, "0"),  # no MID negotiated
        ({"mid": 1, "abs_send_time": 3}, None),  # no MID given
        ({"mid": 1}, "video"),  # no abs-send-time
        ({}, "0"),  # no extensions at all
    ],
)
def test_the_rtp_writer_writes_aiortcs_bytes(ids, mid) -> None:
    from aiortc.rtp import HeaderExtensionsMap, RtpPacket

    extensions_map = HeaderExtensionsMap()
    for name, value in ids.items():
        setattr(extensions_map._HeaderExtensionsMap__ids, name, value)
    writer = fastpath.RtpWriter(extensions_map)
    rng = random.Random(5)
    for level in (None, (True, 37), (False, 127), None):
        for _ in range(20):
            fields = dict(
                payload_type=rng.choice((96, 111, 127)), marker=rng.randrange(2),
                sequence_number=rng.randrange(1 << 16), timestamp=rng.randrange(1 << 32),
                ssrc=rng.randrange(1 << 32), payload=rng.randbytes(rng.randrange(0, 1200)),
            )  # fmt: skip
            abs_send_time = rng.randrange(1 << 24)
            packet = RtpPacket(**fields)
            packet.extensions.mid, packet.extensions.audio_level = mid, level
            packet.extensions.abs_send_time = abs_send_time
            header = writer.header(
                fields["marker"], fields["payload_type"], fields["sequence_number"],
                fields["timestamp"], fields["ssrc"], mid, abs_send_time, level,
            )  # fmt: skip
            assert header + fields["payload"] == packet.serialize(extensions_map)
    # and it follows the map when aiortc configures it later
    extensions_map._HeaderExtensionsMap__ids.abs_send_time = 7
    packet = RtpPacket(payload_type=96, sequence_number=1, timestamp=2, ssrc=3, payload=b"x")
    packet.extensions.mid, packet.extensions.abs_send_time = mid, 99
    assert writer.header(0, 96, 1, 2, 3, mid, 99, None) + b"x" == packet.serialize(extensions_map)


def test_the_srtp_session_protects_and_unprotects_as_pylibsrtp_does() -> None:
    import pylibsrtp
    from aiortc.rtp import RtpPacket

    key = bytes(range(30))

    def session(direction: int) -> pylibsrtp.Session:
        policy = pylibsrtp.Policy(key=key, ssrc_type=direction)
        return pylibsrtp.Session(policy=policy)

    outbound = pylibsrtp.Policy.SSRC_ANY_OUTBOUND
    inbound = pylibsrtp.Policy.SSRC_ANY_INBOUND
    theirs, ours = session(outbound), fastpath.srtp_session(session(outbound))
    assert isinstance(ours, fastpath.SrtpSession), "pylibsrtp 1.0, as pinned"
    receiver, own_receiver = fastpath.srtp_session(session(inbound)), session(inbound)
    rng = random.Random(3)
    for seq in range(200):
        packet = RtpPacket(payload_type=96, sequence_number=seq, timestamp=seq * 3000,
                           ssrc=7, payload=rng.randbytes(rng.randrange(0, 1300)))  # fmt: skip
        plain = packet.serialize()
        protected = ours.protect(plain)
        assert protected == theirs.protect(plain)
        assert receiver.unprotect(protected) == own_receiver.unprotect(protected) == plain
    # a replayed or damaged packet fails as pylibsrtp's does; so does one too long
    with pytest.raises(pylibsrtp.Error, match="replay"):
        receiver.unprotect(protected)
    damaged = bytearray(ours.protect(RtpPacket(sequence_number=500, ssrc=7).serialize()))
    damaged[-1] ^= 1
    with pytest.raises(pylibsrtp.Error, match="auth"):
        receiver.unprotect(bytes(damaged))
    with pytest.raises(ValueError, match="too long"):
        ours.protect(bytes(1400))


# --------------------------------------------------------------------------- RTP in


def _parse_both(data: bytes, extensions_map):
    import struct

    from aiortc.rtp import RtpPacket

    try:
        theirs = RtpPacket.parse(data, extensions_map)
    except (ValueError, struct.error):
        theirs = None
    return theirs, fastpath.parse_rtp(data, extensions_map)


def test_rtp_packets_are_read_as_aiortc_reads_them_or_left_to_it() -> None:
    from aiortc.rtp import HeaderExtensionsMap, RtpPacket

    extensions_map = HeaderExtensionsMap()
    ids = extensions_map._HeaderExtensionsMap__ids
    ids.mid, ids.abs_send_time, ids.audio_level, ids.transmission_offset = 1, 3, 2, 5
    ids.transport_sequence_number, ids.rtp_stream_id = 4, 10
    rng = random.Random(11)
    taken = 0
    for n in range(3000):
        packet = RtpPacket(
            payload_type=rng.randrange(128), marker=rng.randrange(2),
            sequence_number=rng.randrange(1 << 16), timestamp=rng.randrange(1 << 32),
            ssrc=rng.randrange(1 << 32), payload=rng.randbytes(rng.randrange(0, 300)),
        )  # fmt: skip
        extensions = packet.extensions
        if rng.random() < 0.8:
            extensions.abs_send_time = rng.randrange(1 << 24)
        if rng.random() < 0.3:
            extensions.mid = rng.choice(("0", "1", "video"))
        if rng.random() < 0.3:
            extensions.audio_level = (rng.random() < 0.5, rng.randrange(128))
        if rng.random() < 0.1:
            extensions.transport_sequence_number = rng.randrange(1 << 16)
        if rng.random() < 0.05:
            packet.csrc = [rng.randrange(1 << 32)]
        if rng.random() < 0.05:
            packet.padding_size = rng.randrange(1, 20)
        data = packet.serialize(extensions_map)
        if n % 3 == 1:  # damaged: a byte changed, or cut short
            damaged = bytearray(data)
            damaged[rng.randrange(min(len(data), 24))] = rng.randrange(256)
            data = bytes(damaged)
        elif n % 3 == 2:
            data = data[: rng.randrange(len(data) + 1)]
        theirs, ours = _parse_both(data, extensions_map)
        if ours is None:
            continue
        taken += 1
        assert theirs is not None, data.hex()
        fields = ("marker", "payload_type", "sequence_number", "timestamp", "ssrc", "payload",
                  "padding_size")  # fmt: skip
        assert [getattr(ours, f) for f in fields] == [getattr(theirs, f) for f in fields]
        assert ours.extensions.abs_send_time == theirs.extensions.abs_send_time
        assert ours.extensions.audio_level == theirs.extensions.audio_level
        assert theirs.csrc == []
    assert taken > 1500, "the common packet is read here"
    # the forms left to aiortc: padding, CSRC, two-byte extensions, another version
    plain = RtpPacket(payload_type=96, sequence_number=1, timestamp=2, ssrc=3, payload=b"x")
    with_padding = RtpPacket(payload_type=96, payload=b"x")
    with_padding.padding_size = 4
    two_byte = RtpPacket(payload_type=96, payload=b"x")
    two_byte.extensions.mid = "m" * 20
    for data in (with_padding.serialize(), two_byte.serialize(extensions_map), b"\x40" + bytes(20)):
        assert fastpath.parse_rtp(data, extensions_map) is None
    assert fastpath.parse_rtp(plain.serialize(), extensions_map).payload == b"x"
