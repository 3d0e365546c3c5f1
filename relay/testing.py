"""Synthetic participants for tests and the benchmark (needs numpy; not used by the node).

A publisher sends video whose pixels carry a frame counter (two rows of 16
black/white blocks: the bits, then their complement as a check), so a
subscriber that decodes a frame knows which published frame it is and when it
was made. Block sizes scale with the picture, so the marker survives VP8 and
H.264 compression at any of the sizes used here.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from aiortc import (
    MediaStreamTrack,
    RTCBundlePolicy,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.mediastreams import AudioStreamTrack, MediaStreamError
from av import VideoFrame

MARKER_BITS = 16
VIDEO_CLOCK = 90000


def marker_geometry(width: int, height: int) -> tuple[int, int]:
    return width // MARKER_BITS, max(8, height // 12)


def stamp_marker(y_plane: np.ndarray, counter: int) -> None:
    """Write ``counter`` (16 bits) into the top two block rows of a luma plane."""
    height, width = y_plane.shape
    bw, bh = marker_geometry(width, height)
    for bit in range(MARKER_BITS):
        on = (counter >> bit) & 1
        x = bit * bw
        y_plane[0:bh, x : x + bw] = 235 if on else 16
        y_plane[bh : 2 * bh, x : x + bw] = 16 if on else 235


def read_marker(y_plane: np.ndarray) -> int | None:
    """The counter in a decoded luma plane, or ``None`` if the check fails."""
    height, width = y_plane.shape
    bw, bh = marker_geometry(width, height)
    qw, qh = max(1, bw // 4), max(1, bh // 4)
    value = 0
    for bit in range(MARKER_BITS):
        x = bit * bw
        top = y_plane[qh : bh - qh, x + qw : x + bw - qw].mean() > 128
        bottom = y_plane[bh + qh : 2 * bh - qh, x + qw : x + bw - qw].mean() > 128
        if top == bottom:
            return None
        value |= int(top) << bit
    return value


class MarkerVideoTrack(MediaStreamTrack):
    """Synthetic video at ``fps``: a moving texture under the counter marker.

    ``sent[counter]`` is the wall-clock time the frame was made.
    """

    kind = "video"

    def __init__(self, width: int = 320, height: int = 240, fps: int = 30) -> None:
        super().__init__()
        self.width, self.height, self.fps = width, height, fps
        self.counter = 0
        self.sent: dict[int, float] = {}
        self._start: float | None = None
        rng = np.random.default_rng(7)
        # A texture twice as wide as the picture, scrolled a few pixels a frame:
        # real motion for the encoder, no per-frame cost for us.
        texture = rng.integers(40, 200, size=(height // 8, width // 4), dtype=np.uint8)
        texture = np.kron(texture, np.ones((8, 8), dtype=np.uint8))[:height, : width // 2 * 4]
        self._texture = np.concatenate([texture, texture], axis=1)
        self._chroma = np.full((height // 2, width), 128, dtype=np.uint8)

    async def recv(self) -> VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.time()
        else:
            wait = self._start + self.counter / self.fps - time.time()
            if wait > 0:
                await asyncio.sleep(wait)
        counter = self.counter
        self.counter += 1
        shift = (counter * 4) % (self._texture.shape[1] - self.width)
        y_plane = np.ascontiguousarray(self._texture[:, shift : shift + self.width])
        stamp_marker(y_plane, counter & 0xFFFF)
        frame = VideoFrame.from_ndarray(np.concatenate([y_plane, self._chroma]), format="yuv420p")
        frame.pts = int(counter * VIDEO_CLOCK / self.fps)
        frame.time_base = fractions.Fraction(1, VIDEO_CLOCK)
        self.sent[counter & 0xFFFF] = time.time()
        return frame


def client_pc() -> RTCPeerConnection:
    """A participant's peer connection: no STUN/TURN (aiortc's default would be a public one)."""
    return RTCPeerConnection(
        RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
    )


@dataclass
class Received:
    """What a subscriber got: decoded markers with arrival times, audio frame count."""

    markers: list[tuple[int, float]] = field(default_factory=list)
    video_frames: int = 0
    unreadable: int = 0
    audio_frames: int = 0
    first_video_at: float | None = None
    last_video_at: float | None = None
    codecs: set[str] = field(default_factory=set)
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)

    async def wait_video(self, count: int = 1, timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        while self.video_frames < count and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        return self.video_frames >= count


async def _consume(track: MediaStreamTrack, received: Received) -> None:
    with contextlib.suppress(MediaStreamError, asyncio.CancelledError):
        while True:
            frame = await track.recv()
            now = time.time()
            if track.kind == "video":
                received.video_frames += 1
                received.last_video_at = now
                if received.first_video_at is None:
                    received.first_video_at = now
                marker = read_marker(frame.to_ndarray(format="gray"))
                if marker is None:
                    received.unreadable += 1
                else:
                    received.markers.append((marker, now))
            else:
                received.audio_frames += 1


def consume_tracks(pc: RTCPeerConnection) -> Received:
    """Decode every track ``pc`` receives, reading the video marker."""
    received = Received()

    @pc.on("track")
    def on_track(track: MediaStreamTrack) -> None:
        received.tasks.append(asyncio.ensure_future(_consume(track, received)))

    return received


async def publish(
    http: Any,
    room: str,
    token: str,
    *,
    video: MediaStreamTrack | None = None,
    audio: bool = True,
    video_codec: str | None = None,
) -> tuple[RTCPeerConnection, str]:
    """Publish over ``http`` (an httpx.AsyncClient on the node); returns (pc, Location)."""
    pc = client_pc()
    if video is not None:
        transceiver = pc.addTransceiver(video, direction="sendonly")
        if video_codec:
            transceiver.setCodecPreferences(_codecs("video", video_codec))
    if audio:
        pc.addTransceiver(AudioStreamTrack(), direction="sendonly")
    response = await _offer(http, pc, f"/rooms/{room}/publish", token)
    return pc, response.headers["location"]


async def subscribe(
    http: Any,
    room: str,
    publisher: str,
    token: str,
    *,
    video: bool = True,
    audio: bool = True,
    video_codec: str | None = None,
    decode: bool = True,
) -> tuple[RTCPeerConnection, str, Received]:
    """Subscribe (recvonly offer) and decode what arrives; returns (pc, Location, Received)."""
    pc = client_pc()
    received = consume_tracks(pc) if decode else Received()
    if video:
        transceiver = pc.addTransceiver("video", direction="recvonly")
        if video_codec:
            transceiver.setCodecPreferences(_codecs("video", video_codec))
    if audio:
        pc.addTransceiver("audio", direction="recvonly")
    response = await _offer(http, pc, f"/rooms/{room}/subscribe/{publisher}", token)
    return pc, response.headers["location"], received


def _codecs(kind: str, name: str) -> list[Any]:
    return [
        c
        for c in RTCRtpSender.getCapabilities(kind).codecs
        if c.name.lower() in (name.lower(), "rtx")
    ]


class RelayHTTPError(Exception):
    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"{status}: {body}")
        self.status = status
        self.body = body


async def _offer(http: Any, pc: RTCPeerConnection, path: str, token: str) -> Any:
    await pc.setLocalDescription(await pc.createOffer())
    response = await http.post(
        path,
        content=pc.localDescription.sdp,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/sdp"},
    )
    if response.status_code != 201:
        await pc.close()
        try:
            body = response.json()
        except ValueError:
            body = response.text
        raise RelayHTTPError(response.status_code, body)
    await pc.setRemoteDescription(RTCSessionDescription(sdp=response.text, type="answer"))
    return response
