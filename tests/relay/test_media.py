"""Media through the relay with aiortc participants (loopback only).

The publisher sends synthetic 320x240 VP8 frames whose pixels carry a frame
counter; subscribers decode them and read the counter back.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from relay import testing

from .util import eventually

ROOM = "visit-42"


async def _publisher(relay, sub: str = "alice", **kwargs):
    video = testing.MarkerVideoTrack()
    pc, location = await testing.publish(
        relay.http, ROOM, relay.token(ROOM, sub, ["publish"]), video=video, **kwargs
    )
    relay.track(pc)
    return pc, location, video


async def _subscriber(relay, sub: str, publisher: str = "alice", **kwargs):
    pc, location, received = await testing.subscribe(
        relay.http, ROOM, publisher, relay.token(ROOM, sub, ["subscribe"]), **kwargs
    )
    relay.track(pc)
    return pc, location, received


def _sources(relay):
    return [src for s in relay.node.sessions.values() for src in s.sources]


async def test_frames_are_forwarded_without_decoding(relay) -> None:
    _, _, video = await _publisher(relay)
    _, _, bob = await _subscriber(relay, "bob")
    _, _, carol = await _subscriber(relay, "carol")

    assert await bob.wait_video(45, timeout=6) and await carol.wait_video(45, timeout=6)
    assert await eventually(lambda: bob.audio_frames > 20 and carol.audio_frames > 20)
    for received in (bob, carol):
        counters = [marker for marker, _ in received.markers]
        assert len(counters) >= 45 and received.unreadable == 0
        assert counters == sorted(counters), "frames arrive in order"
        assert counters[-1] - counters[0] + 1 - len(counters) <= 2, "no frames lost on loopback"
        assert all(marker in video.sent for marker in counters)

    sources = _sources(relay)
    assert {(s.kind, s.codec_name) for s in sources} == {("video", "vp8"), ("audio", "opus")}
    for source in sources:
        assert source.tap.frames > 40
        assert source.tap.decoded == 0, "the relay decoded a forwarded track"
        assert source.track._queue.qsize() == 0, "decoded frames piled up on the relay"
        assert source.transcoders == 0
        assert {type(sink).__name__ for sink in source.sinks} == {"EncodedTrack"}
        assert all(sink.sent > 20 and sink.queued <= 2 for sink in source.sinks)
    assert relay.node.stats()["frames_decoded"] == 0
    health = (await relay.http.get("/health")).json()
    assert (health["rooms"], health["streams"]) == (1, 6)


async def test_a_late_joiner_gets_a_picture_quickly(relay) -> None:
    await _publisher(relay)
    _, _, early = await _subscriber(relay, "bob")
    assert await early.wait_video(20, timeout=5)
    video_source = next(s for s in _sources(relay) if s.kind == "video")
    keyframes_before = video_source.tap.keyframes
    await asyncio.sleep(0.5)  # the publisher's last keyframe is old now

    joined = time.monotonic()
    _, _, late = await _subscriber(relay, "carol")
    assert await late.wait_video(1, timeout=2.0), "no picture within 2 s"
    delay = time.monotonic() - joined
    assert delay < 2.0
    assert video_source.tap.keyframes > keyframes_before, "a keyframe was requested and came"
    assert video_source.pli_sent >= 2
    assert late.unreadable == 0


async def test_a_removed_participant_stops_receiving(relay) -> None:
    await _publisher(relay)
    bob_pc, _, bob = await _subscriber(relay, "bob")
    _, _, carol = await _subscriber(relay, "carol")
    assert await bob.wait_video(15, timeout=5) and await carol.wait_video(15, timeout=5)

    bob_events = relay.node.listen(ROOM, "bob")
    admin = relay.auth(ROOM, "doctor-1", ["admin"])
    response = await relay.http.delete(f"/rooms/{ROOM}/participants/bob", headers=admin)
    assert response.status_code == 204
    removed_at = time.time()
    assert all(s.participant != "bob" for s in relay.node.sessions.values())
    events = []
    while not bob_events.queue.empty():
        events.append(bob_events.queue.get_nowait())
    assert [e and e["type"] for e in events] == ["hello", "removed", None]
    relay.node.unlisten(bob_events)

    await asyncio.sleep(1.0)
    frames_after_a_second = bob.video_frames
    late_frames = [t for _, t in bob.markers if t > removed_at + 0.2]
    assert not late_frames, "bob still received frames after removal"
    carol_before = carol.video_frames
    await asyncio.sleep(0.5)
    assert bob.video_frames == frames_after_a_second
    assert carol.video_frames > carol_before + 5, "the others keep receiving"
    assert await eventually(lambda: bob_pc.connectionState in ("closed", "failed"), timeout=5)

    # bob's token from before the removal no longer opens anything
    with pytest.raises(testing.RelayHTTPError) as refused:
        await testing.subscribe(
            relay.http, ROOM, "alice", relay.token(ROOM, "bob", ["subscribe"], now=removed_at - 1)
        )
    assert refused.value.status == 403 and refused.value.body["code"] == "removed"


async def test_a_removed_publisher_stops_sending_to_everyone(relay) -> None:
    alice_pc, _, _ = await _publisher(relay)
    _, _, bob = await _subscriber(relay, "bob")
    assert await bob.wait_video(10, timeout=5)
    admin = relay.auth(ROOM, "doctor-1", ["admin"])
    assert (
        await relay.http.delete(f"/rooms/{ROOM}/participants/alice", headers=admin)
    ).status_code == 204
    assert not relay.node.sessions, "subscriptions to a removed publisher end too"
    count = bob.video_frames
    await asyncio.sleep(0.7)
    assert bob.video_frames <= count + 1
    assert await eventually(lambda: alice_pc.connectionState in ("closed", "failed"), timeout=5)


async def test_leaving_closes_the_session_and_its_subscriptions(relay) -> None:
    _, alice_location, _ = await _publisher(relay)
    _, bob_location, bob = await _subscriber(relay, "bob")
    assert await bob.wait_video(5, timeout=5)
    response = await relay.http.delete(bob_location, headers=relay.auth(ROOM, "bob", ["subscribe"]))
    assert response.status_code == 204
    assert len(relay.node.sessions) == 1
    video_source = next(s for s in _sources(relay) if s.kind == "video")
    assert not video_source.sinks

    _, _, carol = await _subscriber(relay, "carol")
    assert await carol.wait_video(5, timeout=5)
    response = await relay.http.delete(
        alice_location, headers=relay.auth(ROOM, "alice", ["publish"])
    )
    assert response.status_code == 204
    assert not relay.node.sessions and not relay.node.rooms


async def test_mismatched_codecs_fall_back_to_reencoding(relay) -> None:
    await _publisher(relay)  # VP8
    _, h264_location, h264 = await _subscriber(relay, "bob", video_codec="H264")
    _, _, vp8 = await _subscriber(relay, "carol")
    assert await h264.wait_video(20, timeout=8)
    assert await vp8.wait_video(20, timeout=5)
    assert h264.unreadable <= 1 and len(h264.markers) >= 19

    video_source = next(s for s in _sources(relay) if s.kind == "video")
    assert video_source.codec_name == "vp8"
    assert video_source.transcoders == 1 and len(video_source.sinks) == 1
    assert video_source.tap.decoded > 0, "re-encoding needs the decoder"
    bob_session = next(s for s in relay.node.sessions.values() if s.participant == "bob")
    assert (
        bob_session.pc.getTransceivers()[0].sender._RTCRtpSender__encoder.__class__.__name__
        == "H264Encoder"
    )

    # when the last re-encoding subscriber leaves, the relay stops decoding
    await relay.http.delete(h264_location, headers=relay.auth(ROOM, "bob", ["subscribe"]))
    decoded = video_source.tap.decoded
    assert video_source.transcoders == 0 and not video_source.tap.decode
    frames = vp8.video_frames
    assert await vp8.wait_video(frames + 10, timeout=3)
    assert video_source.tap.decoded == decoded


async def test_keyframe_requests_from_subscribers_reach_the_publisher_rate_limited(relay) -> None:
    await _publisher(relay)
    bob_pc, _, bob = await _subscriber(relay, "bob")
    assert await bob.wait_video(10, timeout=5)
    video_source = next(s for s in _sources(relay) if s.kind == "video")
    await asyncio.sleep(1.1)
    sent_before, keyframes_before = video_source.pli_sent, video_source.tap.keyframes

    # bob's receiver reports picture loss ten times in a row
    receiver = next(t.receiver for t in bob_pc.getTransceivers() if t.kind == "video")
    ssrc = receiver.getSynchronizationSources()[0].source
    for _ in range(10):
        await receiver._send_rtcp_pli(ssrc)
        await asyncio.sleep(0.01)
    assert await eventually(lambda: video_source.tap.keyframes > keyframes_before, timeout=2)
    await asyncio.sleep(0.3)
    assert video_source.pli_sent - sent_before == 1, "ten requests, one PLI within a second"


async def test_subscribing_to_audio_only(relay) -> None:
    await _publisher(relay)
    _, _, bob = await _subscriber(relay, "bob", video=False)
    assert await eventually(lambda: bob.audio_frames >= 25, timeout=5)
    assert bob.video_frames == 0


async def test_tracks_nobody_subscribes_to_are_drained_not_decoded(relay) -> None:
    await _publisher(relay)
    sources = _sources(relay)
    assert await eventually(lambda: all(s.tap.frames > 20 for s in sources), timeout=5)
    for source in sources:
        assert source.tap.decoded == 0 and source.track._queue.qsize() == 0
        assert source.tap.qsize() == 0


async def test_a_publisher_leaving_is_announced(relay) -> None:
    listener = relay.node.listen(ROOM, "bob")
    _, location, _ = await _publisher(relay)
    await relay.http.delete(location, headers=relay.auth(ROOM, "alice", ["publish"]))
    events = [listener.queue.get_nowait() for _ in range(listener.queue.qsize())]
    assert [e["type"] for e in events] == ["hello", "publisher-joined", "publisher-left"]
    assert events[1]["tracks"] == ["video", "audio"]
    relay.node.unlisten(listener)


async def test_h264_is_forwarded_without_decoding_too(relay) -> None:
    await _publisher(relay, video_codec="H264")
    _, _, bob = await _subscriber(relay, "bob")  # offers VP8 and H.264
    assert await bob.wait_video(20, timeout=6)
    assert bob.unreadable == 0 and len(bob.markers) >= 20
    video_source = next(s for s in _sources(relay) if s.kind == "video")
    assert video_source.codec_name == "h264"
    assert video_source.tap.decoded == 0 and video_source.transcoders == 0
    assert all(sink.sent >= 20 for sink in video_source.sinks)


async def test_a_subscriber_losing_packets_gets_them_again_from_the_relay(
    relay, monkeypatch
) -> None:
    # given the relay's senders, counted when they resend a packet a subscriber NACKed
    from aiortc import RTCRtpSender
    from aiortc.rtp import RTP_HISTORY_SIZE

    resent = []
    retransmit = RTCRtpSender._retransmit

    async def counted(self, sequence_number: int) -> None:
        kept = self._RTCRtpSender__rtp_history.get(sequence_number % RTP_HISTORY_SIZE)
        if kept is not None and kept.sequence_number == sequence_number:
            resent.append(sequence_number)
        await retransmit(self, sequence_number)

    monkeypatch.setattr(RTCRtpSender, "_retransmit", counted)
    await _publisher(relay)
    pc, _, bob = await _subscriber(relay, "bob")
    # and bob's network losing the first copy of every tenth video packet
    video = next(t for t in pc.getTransceivers() if t.kind == "video")
    transport = video.receiver.transport
    handle = transport._handle_rtp_data
    seen: set[tuple[int, int]] = set()
    dropped = []

    def vp8() -> set[int]:  # the negotiated payload type, once the receiver has it
        codecs = video.receiver._RTCRtpReceiver__codecs.values()
        return {c.payloadType for c in codecs if c.name == "VP8"}

    async def lossy(data: bytes, arrival_time_ms: int) -> None:
        seq = int.from_bytes(data[2:4], "big")
        key = (data[1] & 0x7F, seq)
        if seq % 10 == 3 and key not in seen and video.receiver.track is not None:
            seen.add(key)
            if data[1] & 0x7F in vp8():
                dropped.append(seq)
                return
        await handle(data, arrival_time_ms=arrival_time_ms)

    transport._handle_rtp_data = lossy
    # when video flows for a while
    start = len(bob.markers)
    assert await bob.wait_video(start + 60, timeout=10)
    # then the lost packets were sent again by the relay, and the picture kept up
    counters = [marker for marker, _ in bob.markers[start:]]
    assert len(dropped) >= 5 and len(resent) >= len(dropped) // 2, (dropped, resent)
    print(f"dropped {len(dropped)}, resent from the relay's history {len(resent)}")
    assert counters == sorted(counters) and bob.unreadable == 0
    assert counters[-1] - counters[0] + 1 - len(counters) <= 6, "frames lost for good"


async def test_the_publisher_sends_what_its_subscribers_can_take(relay) -> None:
    from aiortc.rtp import RTCP_PSFB_APP, RtcpPsfbPacket, pack_remb_fci

    # given a publisher whose encoder follows the relay's REMB, and a subscriber
    # whose own estimator is off, so that only the estimates we send count
    publisher, _, _ = await _publisher(relay)
    pc, _, bob = await _subscriber(relay, "bob")
    video = next(t for t in pc.getTransceivers() if t.kind == "video").receiver
    video._RTCRtpReceiver__remote_bitrate_estimator = None
    assert await bob.wait_video(10, timeout=6)
    sender = next(t for t in publisher.getTransceivers() if t.kind == "video").sender

    def publisher_bitrate() -> int:
        return sender._RTCRtpSender__encoder.target_bitrate

    # the relay's own estimate of the path reaches the publisher (aiortc's encoder
    # starts at 500 kbit/s; the estimate follows what arrives, then climbs slowly)
    assert await eventually(lambda: publisher_bitrate() != 500_000, timeout=10)
    assert publisher_bitrate() > 400_000

    async def estimate(bits_per_second: int) -> None:
        ssrcs = [s.source for s in video.getSynchronizationSources()]
        await video._send_rtcp(
            RtcpPsfbPacket(
                fmt=RTCP_PSFB_APP,
                ssrc=video._RTCRtpReceiver__rtcp_ssrc,
                media_ssrc=0,
                fci=pack_remb_fci(bits_per_second, ssrcs),
            )
        )

    # when bob says he can take 300 kbit/s
    await estimate(300_000)
    # then the publisher is asked for no more (at the relay's next REMB, within 1 s)
    assert await eventually(lambda: publisher_bitrate() == 300_000, timeout=5)
    source = next(s for s in _sources(relay) if s.kind == "video")
    assert source.remb_capped >= 1 and relay.node.stats()["remb_capped"] >= 1
    # and never for less than the floor, whatever a subscriber says (the publisher's
    # encoder then keeps to its own minimum, 250 kbit/s)
    await estimate(20_000)
    assert await eventually(lambda: source.subscriber_bitrate_cap() == forwarding_floor())
    assert await eventually(lambda: publisher_bitrate() == 250_000, timeout=5)
    # and once bob pauses video (audio only), his estimate no longer holds it back
    await relay.http.post(
        f"/rooms/{ROOM}/subscriptions/alice/video",
        json={"paused": True},
        headers=relay.auth(ROOM, "bob", ["subscribe"]),
    )
    assert await eventually(lambda: source.subscriber_bitrate_cap() is None)
    assert await eventually(lambda: publisher_bitrate() > 250_000, timeout=10)


def forwarding_floor() -> int:
    from relay.forwarding import REMB_FLOOR

    return REMB_FLOOR
