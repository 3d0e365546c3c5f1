"""Recording a room on the relay, and audio-only subscriptions (paused video).

aiortc participants on loopback, as in test_media.py. The publisher sends
synthetic 320x240 frames carrying a counter; the relay muxes the encoded
frames it forwards into WebM/Matroska without decoding them, and uploads the
file to a stand-in for the web tier. The test decodes the uploaded file.
"""

from __future__ import annotations

import asyncio
import fractions
import hashlib
import itertools
import os
import time
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any

import av
import httpx
import numpy as np
import pytest

from relay import testing
from relay.recording import RecordingFile, TrackClock, h264_dimensions, vp8_dimensions
from relay.tokens import TokenError, decode_upload_token, issue_token

from .util import eventually

ROOM = "visit-42"
#: Seconds from 1900 (NTP's epoch) to 1970 (Unix time's).
NTP_UNIX_OFFSET = 2_208_988_800
UPLOAD_URL = "http://web.test/api/v1/visits/42/recordings/upload/"


class WebTier:
    """Stands in for the web tier's upload endpoint (an httpx MockTransport).

    ``statuses`` are answered to the first uploads in turn (then 201).
    """

    def __init__(self, secret: str, statuses: tuple[int, ...] = ()) -> None:
        self.secret = secret
        self.statuses = list(statuses)
        self.attempts = 0
        self.files: list[dict[str, Any]] = []

    async def handle(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        self.attempts += 1
        claims = decode_upload_token(
            request.headers["authorization"].removeprefix("Bearer "), self.secret
        )
        message = BytesParser(policy=HTTP).parsebytes(
            f"Content-Type: {request.headers['content-type']}\r\n\r\n".encode() + body
        )
        (part,) = list(message.iter_parts())
        status = self.statuses.pop(0) if self.statuses else 201
        if status < 300:
            self.files.append(
                {
                    "url": str(request.url),
                    "claims": claims,
                    "data": part.get_payload(decode=True),
                    "content_type": part.get_content_type(),
                    "filename": part.get_filename(),
                }
            )
        return httpx.Response(status, json={})


def _web(relay, statuses: tuple[int, ...] = ()) -> WebTier:
    web = WebTier(relay.secret, statuses)
    relay.node.recorder.transport = httpx.MockTransport(web.handle)
    relay.node.recorder.retry_delays = (0.05, 0.05)
    return web


async def _publisher(relay, sub: str = "alice", **kwargs):
    video = testing.MarkerVideoTrack() if kwargs.pop("video", True) else None
    pc, location = await testing.publish(
        relay.http, ROOM, relay.token(ROOM, sub, ["publish"]), video=video, **kwargs
    )
    relay.track(pc)
    return pc, location, video


async def _subscriber(relay, sub: str, **kwargs):
    pc, _, received = await testing.subscribe(
        relay.http, ROOM, "alice", relay.token(ROOM, sub, ["subscribe"]), **kwargs
    )
    relay.track(pc)
    return received


async def _start(relay, recording: str = "rec-1", *, caps=("admin",), **body):
    return await relay.http.post(
        f"/rooms/{ROOM}/recording",
        json={"recording": recording, "upload_url": UPLOAD_URL, **body},
        headers=relay.auth(ROOM, "web", list(caps)),
    )


async def _stop(relay, recording: str | None = None):
    query = f"?recording={recording}" if recording else ""
    return await relay.http.delete(
        f"/rooms/{ROOM}/recording{query}", headers=relay.auth(ROOM, "web", ["admin"])
    )


def _sources(relay):
    return [src for s in relay.node.sessions.values() for src in s.sources]


def _decode(path: str) -> dict[str, Any]:
    """Decode a recorded file here, in the test (the relay never decodes)."""
    out: dict[str, Any] = {"video": [], "audio": 0, "video_pts": [], "audio_pts": []}
    with av.open(path) as container:
        out["format"] = container.format.name
        out["streams"] = {s.type: (s.codec_context.name, s.time_base) for s in container.streams}
        for packet in container.demux():
            if packet.size == 0:
                continue
            out[f"{packet.stream.type}_pts"].append(packet.pts)
            for frame in packet.decode():
                if packet.stream.type == "video":
                    gray = frame.to_ndarray(format="gray")
                    out["video"].append(
                        (frame.width, frame.height, testing.read_marker(gray), frame.pts)
                    )
                else:
                    out["audio"] += 1
    return out


def _save(tmp_path, upload: dict[str, Any]) -> str:
    path = tmp_path / upload["filename"]
    path.write_bytes(upload["data"])
    return str(path)


# --------------------------------------------------------------------------- recording


async def test_a_recording_holds_the_encoded_frames_and_decodes(relay, tmp_path) -> None:
    web = _web(relay)
    await _publisher(relay)
    assert await eventually(lambda: all(s.tap.frames > 10 for s in _sources(relay)), timeout=5)
    video_source = next(s for s in _sources(relay) if s.kind == "video")
    pli_before = video_source.pli_sent

    started = await _start(relay)
    began = time.monotonic()
    assert started.status_code == 201
    assert started.json() == {"recording": "rec-1", "publishers": 1}
    assert (await _start(relay)).status_code == 200, "the same recording again is a no-op"
    await asyncio.sleep(2.5)
    stopped = await _stop(relay, "rec-1")
    elapsed = time.monotonic() - began

    assert stopped.status_code == 200
    (described,) = stopped.json()["files"]
    assert await eventually(lambda: len(web.files) == 1, timeout=5)
    upload = web.files[0]
    claims = upload["claims"]
    assert upload["url"] == UPLOAD_URL
    assert (claims.room, claims.recording, claims.participant) == (ROOM, "rec-1", "alice")
    assert claims.file == described["id"] and claims.reason == "stopped"
    assert claims.size == len(upload["data"]) and claims.content_type == "video/webm"
    assert upload["content_type"] == "video/webm" and upload["filename"].endswith(".webm")
    assert claims.sha256 == hashlib.sha256(upload["data"]).hexdigest()
    assert 2.0 < claims.ended_at - claims.started_at < elapsed + 0.5

    decoded = _decode(_save(tmp_path, upload))
    assert decoded["format"].startswith("matroska")
    assert decoded["streams"]["video"] == ("vp8", fractions.Fraction(1, 1000))
    assert decoded["streams"]["audio"] == ("opus", fractions.Fraction(1, 1000))
    frames = decoded["video"]
    assert len(frames) >= 45, "about 30 fps for 2.5 s"
    assert {(w, h) for w, h, _, _ in frames} == {(320, 240)}
    markers = [m for _, _, m, _ in frames]
    assert None not in markers, "decodable from the first frame (it starts at a keyframe)"
    assert markers == sorted(markers) and markers[-1] - markers[0] + 1 - len(markers) <= 2
    for pts in (decoded["video_pts"], decoded["audio_pts"]):
        assert all(b > a for a, b in itertools.pairwise(pts)), "pts strictly increase"
    span = (decoded["video_pts"][-1] - decoded["video_pts"][0]) / 1000
    assert abs(span - (markers[-1] - markers[0]) / 30) < 0.2, "time follows the publisher's clock"
    assert decoded["audio"] > 80, "Opus frames of 20 ms"
    assert abs(decoded["audio_pts"][0] - decoded["video_pts"][0]) < 300, "audio and video aligned"

    assert video_source.pli_sent > pli_before, "a keyframe was asked for at the start"
    assert all(s.tap.decoded == 0 for s in _sources(relay)), "the relay decoded nothing"
    assert await eventually(lambda: not os.listdir(relay.node.recorder.directory))
    stats = relay.node.stats()
    assert (stats["recording_files_uploaded"], stats["recording_files_pending"]) == (1, 0)
    assert stats["frames_decoded"] == 0


async def test_h264_goes_into_matroska(relay, tmp_path) -> None:
    web = _web(relay)
    await _publisher(relay, video_codec="H264")
    assert (await _start(relay)).status_code == 201
    await asyncio.sleep(2.0)
    assert (await _stop(relay)).status_code == 200

    assert await eventually(lambda: len(web.files) == 1, timeout=5)
    upload = web.files[0]
    assert upload["claims"].content_type == "video/x-matroska"
    assert upload["filename"].endswith(".mkv")
    decoded = _decode(_save(tmp_path, upload))
    assert decoded["streams"]["video"][0] == "h264"
    assert len(decoded["video"]) >= 30
    assert {(w, h) for w, h, _, _ in decoded["video"]} == {(320, 240)}
    assert None not in [m for _, _, m, _ in decoded["video"]]


async def test_publishers_arriving_and_leaving_during_a_recording(relay, tmp_path) -> None:
    web = _web(relay)
    assert (await _start(relay)).json()["publishers"] == 0, "nobody publishes yet"
    _, alice_location, _ = await _publisher(relay)
    await _publisher(relay, "bob", video=False)  # a microphone only
    await asyncio.sleep(1.5)

    left = await relay.http.delete(alice_location, headers=relay.auth(ROOM, "alice", ["publish"]))
    assert left.status_code == 204
    assert await eventually(lambda: len(web.files) == 1, timeout=5)
    assert (web.files[0]["claims"].participant, web.files[0]["claims"].reason) == (
        "alice",
        "publisher-left",
    )
    assert (await _stop(relay)).status_code == 200
    assert await eventually(lambda: len(web.files) == 2, timeout=5)

    alice = _decode(_save(tmp_path, web.files[0]))
    assert len(alice["video"]) >= 20 and None not in [m for _, _, m, _ in alice["video"]]
    bob_upload = web.files[1]
    assert bob_upload["claims"].participant == "bob"
    bob = _decode(_save(tmp_path, bob_upload))
    assert set(bob["streams"]) == {"audio"} and bob["audio"] > 40


async def test_the_node_shutting_down_finishes_and_uploads(relay) -> None:
    web = _web(relay)
    await _publisher(relay)
    await _start(relay)
    await asyncio.sleep(1.0)
    directory = relay.node.recorder.directory

    await relay.node.shutdown()

    assert [f["claims"].reason for f in web.files] == ["shutdown"]
    assert not os.path.exists(directory), "nothing left behind on the node"


async def test_uploads_are_retried_and_a_refused_file_is_not_kept(relay) -> None:
    web = _web(relay, statuses=(503, 201))
    await _publisher(relay)
    await _start(relay, "rec-1")
    await asyncio.sleep(1.0)
    await _stop(relay)
    assert await eventually(lambda: len(web.files) == 1, timeout=5)
    assert web.attempts == 2, "a 503 is retried"

    web.statuses = [403]
    await _start(relay, "rec-2")
    await asyncio.sleep(1.0)
    await _stop(relay)
    assert await eventually(lambda: relay.node.stats()["recording_files_refused"] == 1, timeout=5)
    assert len(web.files) == 1
    assert not os.listdir(relay.node.recorder.directory), "refused files are deleted"


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        ({}, 401, "missing_token"),
        ({"Authorization": "Bearer nonsense"}, 401, "invalid_token"),
        (
            {
                "Authorization": "Bearer "
                + issue_token(
                    "another-secret-that-is-long-enough-for-hs256",
                    room=ROOM,
                    sub="w",
                    caps=["admin"],
                )
            },
            401,
            "invalid_token",
        ),
        ("subscribe", 403, "missing_capability"),
        ("other-room", 403, "wrong_room"),
    ],
    ids=["none", "garbage", "bad-signature", "not-admin", "other-room"],
)
async def test_recording_needs_an_admin_token_for_the_room(relay, headers, status, code) -> None:
    if headers == "subscribe":
        headers = relay.auth(ROOM, "alice", ["publish", "subscribe"])
    elif headers == "other-room":
        headers = relay.auth("visit-7", "web", ["admin"])
    for method in ("POST", "DELETE"):
        response = await relay.http.request(
            method,
            f"/rooms/{ROOM}/recording",
            json={"recording": "rec-1", "upload_url": UPLOAD_URL},
            headers=headers,
        )
        assert (response.status_code, response.json()["code"]) == (status, code)
    assert not relay.node.recorder.rooms


@pytest.mark.parametrize(
    "body",
    [
        {"recording": "rec-1", "upload_url": "file:///etc/passwd"},
        {"recording": "rec 1/../x", "upload_url": UPLOAD_URL},
        {"upload_url": UPLOAD_URL},
    ],
)
async def test_a_malformed_recording_request_is_400(relay, body) -> None:
    response = await relay.http.post(
        f"/rooms/{ROOM}/recording", json=body, headers=relay.auth(ROOM, "web", ["admin"])
    )
    assert (response.status_code, response.json()["code"]) == (400, "bad_request")


async def test_stopping_a_room_that_is_not_recorded_is_404(relay) -> None:
    assert (await _stop(relay)).status_code == 404
    _web(relay)
    await _start(relay, "rec-1")
    assert (await _stop(relay, "rec-other")).status_code == 404, "only the named recording"
    assert (await _stop(relay, "rec-1")).status_code == 200


def test_upload_tokens_and_join_tokens_do_not_pass_for_each_other() -> None:
    from relay.tokens import decode_token, issue_upload_token

    secret = "a-test-secret-that-is-long-enough-for-hs256"
    upload = issue_upload_token(
        secret,
        room=ROOM,
        recording="rec-1",
        file="f1",
        participant="u-1",
        size=10,
        sha256="0" * 64,
        content_type="video/webm",
        started_at=1.0,
        ended_at=2.0,
    )
    join = issue_token(secret, room=ROOM, sub="u-1", caps=["admin"])

    assert decode_upload_token(upload, secret).file == "f1"
    with pytest.raises(TokenError):
        decode_token(upload, secret)
    with pytest.raises(TokenError):
        decode_upload_token(join, secret)
    with pytest.raises(TokenError):
        decode_upload_token(upload, secret + "-other")


# --------------------------------------------------------------------------- bitstream, time


def _encode_one(codec: str, width: int, height: int) -> bytes:
    context = av.CodecContext.create(codec, "w")
    context.width, context.height, context.pix_fmt = width, height, "yuv420p"
    context.time_base = fractions.Fraction(1, 30)
    frame = av.VideoFrame.from_ndarray(
        np.zeros((height * 3 // 2, width), dtype=np.uint8), format="yuv420p"
    )
    packets = [bytes(p) for p in context.encode(frame)] + [bytes(p) for p in context.encode(None)]
    return packets[0]


@pytest.mark.parametrize(("width", "height"), [(320, 240), (642, 362), (1280, 720)])
def test_picture_sizes_are_read_from_keyframes(width, height) -> None:
    assert vp8_dimensions(_encode_one("libvpx", width, height)) == (width, height)
    assert h264_dimensions(_encode_one("libx264", width, height)) == (width, height)
    assert vp8_dimensions(b"\x01" * 12) is None and h264_dimensions(b"\x00\x00\x01\x41") is None


def test_track_clock_unwraps_and_never_goes_back() -> None:
    clock = TrackClock(90000)
    start = 2**32 - 3000
    assert clock.pts_ms(start, 0.0) == 0
    assert clock.pts_ms((start + 3000) % 2**32, 0.033) == 33, "wraps around 2^32"
    assert clock.pts_ms((start + 6000) % 2**32, 0.066) == 67
    assert clock.pts_ms((start + 6000) % 2**32, 0.07) == 68, "a repeated timestamp moves on"
    assert clock.pts_ms(12345, 5.0) == 5000, "a jumped clock follows arrival time"
    assert clock.resyncs == 1


def _interleaved(audio_delay: float, with_sender_clock: bool) -> list[tuple]:
    """Two seconds of a publisher's 30 fps video and 20 ms audio, captured together
    (the publisher's NTP clock from 5000 s; RTP clocks from arbitrary bases, audio's
    about to wrap), arriving 50 ms later, audio ``audio_delay`` s later still."""
    items = []
    for k in range(60):
        sent = 5000.0 + k / 30
        items.append((100.05 + k / 30, "video", k, (1_000_000 + k * 3000) % 2**32, sent))
    for j in range(100):
        sent = 5000.0 + j * 0.02
        arrival = 100.05 + audio_delay + j * 0.02
        items.append((arrival, "audio", j, (2**32 - 4800 + j * 960) % 2**32, sent))
    items.sort()
    return [(a, kind, n, ts, sent if with_sender_clock else None) for a, kind, n, ts, sent in items]


async def _record_interleaved(tmp_path, items) -> dict[str, list[int]]:
    file = RecordingFile(
        str(tmp_path),
        room=ROOM,
        recording="rec-sync",
        participant="alice",
        video=("vp8", 320, 240, 90000),
        audio=("opus", 48000),
        started=100.0,
    )
    for arrival, kind, n, timestamp, sent in items:
        # Opus: a TOC byte saying "one 20 ms frame", so the muxer keeps every packet.
        data = (b"\xf8" if kind == "audio" else b"\x00") + bytes([n % 256]) * 20
        assert file.add(kind, data, timestamp, arrival, n == 0, sent)
    finished = await file.finish("stopped")
    assert finished is not None
    pts: dict[str, list[int]] = {"video": [], "audio": []}
    with av.open(finished.path) as container:
        for packet in container.demux():
            if packet.size:
                pts[packet.stream.type].append(packet.pts)
    return pts


async def test_audio_and_video_are_aligned_by_the_publishers_clock(tmp_path) -> None:
    """Audio 300 ms late on the way (another path, a deeper jitter buffer): the
    sender reports put each sound where its picture is, as the publisher captured them."""
    pts = await _record_interleaved(tmp_path, _interleaved(0.3, with_sender_clock=True))

    assert pts["video"][0] == 50 and pts["audio"][0] == 50, "the same instant, the same time"
    assert pts["audio"][50] == pts["video"][30] == 1050, "still together one second later"
    assert pts["audio"][-1] == 50 + 99 * 20


async def test_without_sender_reports_arrival_time_places_each_track(tmp_path) -> None:
    pts = await _record_interleaved(tmp_path, _interleaved(0.3, with_sender_clock=False))

    assert pts["video"][0] == 50 and pts["audio"][0] == 350, "as the frames arrived"


def test_a_sender_clock_far_from_arrival_is_not_trusted() -> None:
    clock = TrackClock(48000)
    assert clock.pts_ms(1000, 1.0, synced=1.2) == 1200
    other = TrackClock(48000)
    assert other.pts_ms(1000, 1.0, synced=9.0) == 1000, "a stale report: arrival time"


async def test_the_relay_reads_each_tracks_sender_reports(relay) -> None:
    """aiortc's publisher sends RTCP sender reports with its wall clock (NTP); the relay
    maps each frame's RTP timestamp onto that clock, for audio and video alike."""
    await _publisher(relay)
    sources = _sources(relay)
    assert {s.kind for s in sources} == {"audio", "video"}
    assert await eventually(lambda: all(s.tap.sender_report for s in sources), timeout=8)
    placed: dict[str, list[float]] = {"audio": [], "video": []}

    def observe(source, codec, frame, keyframe) -> None:
        sent = source.sender_time(frame.timestamp, codec.clockRate)
        placed[source.kind].append(sent - (time.time() + NTP_UNIX_OFFSET))

    for source in sources:
        source.observers.add(observe)
    assert await eventually(lambda: all(len(v) > 10 for v in placed.values()), timeout=5)

    for kind, offsets in placed.items():
        # Sent a moment before it got here (the same machine's clock), never hours off.
        assert all(-1.0 < offset <= 0.01 for offset in offsets), (kind, offsets[:5])


# --------------------------------------------------------------------------- audio-only


async def _pause(relay, sub: str, paused: bool, publisher: str = "alice", caps=("subscribe",)):
    return await relay.http.post(
        f"/rooms/{ROOM}/subscriptions/{publisher}/video",
        json={"paused": paused},
        headers=relay.auth(ROOM, sub, list(caps)),
    )


async def test_a_paused_subscriber_gets_no_video_and_a_picture_soon_after_resuming(relay) -> None:
    await _publisher(relay)
    bob = await _subscriber(relay, "bob")
    carol = await _subscriber(relay, "carol")
    assert await bob.wait_video(15, timeout=5) and await carol.wait_video(15, timeout=5)
    bob_session = next(s for s in relay.node.sessions.values() if s.participant == "bob")
    bob_video = next(t for t in bob_session.tracks if t.kind == "video")

    paused = await _pause(relay, "bob", True)
    paused_at = time.time()
    assert paused.status_code == 200 and paused.json() == {"paused": True, "tracks": 1}
    await asyncio.sleep(0.3)  # frames already on the wire
    sent, frames, audio = bob_video.sent, bob.video_frames, bob.audio_frames
    carol_frames = carol.video_frames
    await asyncio.sleep(1.2)

    assert bob_video.sent == sent, "no video frame handed to bob's sender"
    assert bob.video_frames == frames, "bob decoded no video while paused"
    assert not [t for _, t in bob.markers if t > paused_at + 0.3]
    assert bob.audio_frames > audio + 30, "the sound goes on"
    assert carol.video_frames > carol_frames + 20, "others still get video"
    assert bob_video.withheld > 20
    assert relay.node.stats()["paused_tracks"] == 1

    resumed = await _pause(relay, "bob", False)
    resumed_at = time.monotonic()
    assert resumed.json() == {"paused": False, "tracks": 1}
    assert await bob.wait_video(frames + 1, timeout=2.0), "no picture within 2 s of resuming"
    assert time.monotonic() - resumed_at < 2.0
    assert await bob.wait_video(frames + 10, timeout=2.0)
    assert bob.unreadable == 0, "the picture came back at a keyframe, whole"
    assert relay.node.stats()["frames_decoded"] == 0


async def test_pausing_needs_the_subscribers_own_subscription(relay) -> None:
    await _publisher(relay)
    await _subscriber(relay, "bob")

    stranger = await _pause(relay, "carol", True)
    no_cap = await _pause(relay, "bob", True, caps=("publish",))
    no_token = await relay.http.post(
        f"/rooms/{ROOM}/subscriptions/alice/video", json={"paused": True}
    )
    bad_body = await relay.http.post(
        f"/rooms/{ROOM}/subscriptions/alice/video",
        json={"paused": "yes"},
        headers=relay.auth(ROOM, "bob", ["subscribe"]),
    )

    assert (stranger.status_code, stranger.json()["code"]) == (404, "subscription_not_found")
    assert (no_cap.status_code, no_cap.json()["code"]) == (403, "missing_capability")
    assert no_token.status_code == 401
    assert bad_body.status_code == 400
    bob_session = next(s for s in relay.node.sessions.values() if s.participant == "bob")
    assert not any(getattr(t, "paused", False) for t in bob_session.tracks)


async def test_a_paused_reencoding_subscriber_stops_the_decoder(relay) -> None:
    await _publisher(relay)  # VP8
    bob = await _subscriber(relay, "bob", video_codec="H264")
    assert await bob.wait_video(10, timeout=8)
    video_source = next(s for s in _sources(relay) if s.kind == "video")
    assert video_source.tap.decode

    await _pause(relay, "bob", True)
    await asyncio.sleep(0.3)
    frames, decoded = bob.video_frames, video_source.tap.decoded
    await asyncio.sleep(0.8)
    assert not video_source.tap.decode and video_source.tap.decoded == decoded
    assert bob.video_frames <= frames + 1

    await _pause(relay, "bob", False)
    assert await bob.wait_video(frames + 5, timeout=3.0)
