"""Media relay benchmark: one publisher to N subscribers, forwarding vs re-encoding.

    .venv/bin/python bench/relay_bench.py                       # 480p and 720p, N = 1 4 8 16
    .venv/bin/python bench/relay_bench.py --sizes 480p --subscribers 1,4 --seconds 5
    .venv/bin/python bench/relay_bench.py --json /tmp/relay_bench.json

For every picture size and N, in the same run, the paths named by ``--modes``
(default ``direct,forward,stockpath,mediarelay``; ``frames`` and ``stockloop``
on request):

- ``forward``: the relay node as deployed (``python -m relay``): each
  subscriber gets the publisher's VP8 RTP packets as they are, renumbered for it
  (no decode, no encode, no reassembly);
- ``frames``: the same node with ``--forward-frames``: the publisher's frames are
  reassembled on the relay and re-packetized by each subscriber's sender (the
  forwarding path before RTP-level forwarding; for comparison);
- ``stockpath``: ``forward`` with packets going through aiortc's own queue,
  receive task and send coroutines (``--stock-media-path``) instead of the
  relay's inline path (``relay/fastpath.py``); for comparison;
- ``stockloop``: ``forward`` on Python's standard event loop
  (``--event-loop asyncio``) instead of uvloop; for comparison;
- ``mediarelay``: the same node with ``--transcode-all --stock-media-path``:
  aiortc's stock path throughout, the receiver decodes once and aiortc's
  ``MediaRelay`` hands the frames to a VP8 encoder per subscriber (latest-frame
  proxies, so a saturated relay drops frames instead of queueing without bound);
- ``direct`` (N = 1 only): publisher and subscriber connected without a relay,
  the latency reference.

The relay runs in its own process (fresh for each point) and its CPU time is
read from ``/proc/<pid>/stat``; the publisher and subscribers run here, all on
loopback. The publisher sends 30 fps synthetic video whose pixels carry a frame
counter. Two subscribers (the first and the last) decode every frame and read
the counter: latency = decode time here - the time the publisher made that
frame (so it includes the publisher's encoding, the subscriber's jitter buffer
and decoding; "added" = minus the direct reference). The others count the
encoded frames they receive without decoding them, so that the machine's two
cores go to the relay and not to N decoders.

Reported per point: relay CPU (% of one core), relay CPU per subscriber
stream, published fps, the publisher's video bitrate (kbit/s: what the relay's
REMB, lowered to the subscribers' estimates on the forwarding paths, let it
reach), delivered fps (mean and worst subscriber), latency p50 /
p95 and "added" (p50 minus the direct p50), "queue" (``frames`` only: mean time a
frame waits on the relay from its last packet's arrival until its subscriber's
sender takes it, i.e. the fan-out's own delay), forwarded streams per core =
N x (delivered fps / 30) / relay cores, this process's CPU and the machine's
(others share it). Then the ratio of streams per core, forward / mediarelay,
and the marginal relay CPU per added subscriber on each path. Each point:
connect, ``--warmup`` s, then ``--seconds`` s measured; the whole default run
takes a few minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from aiortc import RTCSessionDescription  # noqa: E402
from aiortc.mediastreams import MediaStreamError  # noqa: E402

from relay.config import restrict_ice_hosts  # noqa: E402
from relay.forwarding import ReceiverTap  # noqa: E402
from relay.testing import MarkerVideoTrack, client_pc, read_marker  # noqa: E402
from relay.tokens import DEV_SECRET, issue_token  # noqa: E402

SIZES = {"360p": (640, 360), "480p": (640, 480), "720p": (1280, 720)}
FPS = 30
CLK_TCK = os.sysconf("SC_CLK_TCK")
ROOM = "bench-room"


# --------------------------------------------------------------------------- measuring


def process_cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@dataclass
class Subscriber:
    index: int
    decode: bool
    frames: int = 0
    markers: list[tuple[int, float]] = field(default_factory=list)
    pc: Any = None
    tasks: list[Any] = field(default_factory=list)


@dataclass
class Point:
    size: str
    mode: str
    subscribers: int
    seconds: float
    relay_cpu: float | None = None  # cores
    cpu_per_stream: float | None = None  # cores
    fps_published: float = 0.0
    kbps_published: float = 0.0
    fps_mean: float = 0.0
    fps_min: float = 0.0
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None
    relay_queue_ms: float | None = None
    streams_per_core: float | None = None
    client_cpu: float = 0.0
    machine_cpu: float = 0.0
    relay_stats: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


# --------------------------------------------------------------------------- participants


async def _consume(track: Any, sub: Subscriber) -> None:
    with contextlib.suppress(MediaStreamError, asyncio.CancelledError):
        while True:
            frame = await track.recv()
            now = time.time()
            sub.frames += 1
            marker = read_marker(frame.to_ndarray(format="gray"))
            if marker is not None:
                sub.markers.append((marker, now))


def _recv_pc(sub: Subscriber) -> Any:
    pc = client_pc()
    transceiver = pc.addTransceiver("video", direction="recvonly")
    if sub.decode:

        @pc.on("track")
        def on_track(track: Any) -> None:
            sub.tasks.append(asyncio.ensure_future(_consume(track, sub)))
    else:
        # Count encoded frames as they complete, without decoding them.
        def count(codec: Any, frame: Any, keyframe: bool) -> None:
            sub.frames += 1

        ReceiverTap(transceiver.receiver, "video", count, decode=False, low_latency=False)
    sub.pc = pc
    return pc


async def _signal(http: httpx.AsyncClient, pc: Any, path: str, token: str) -> None:
    await pc.setLocalDescription(await pc.createOffer())
    response = await http.post(
        path,
        content=pc.localDescription.sdp,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/sdp"},
    )
    if response.status_code != 201:
        raise RuntimeError(f"{path}: {response.status_code} {response.text[:200]}")
    await pc.setRemoteDescription(RTCSessionDescription(sdp=response.text, type="answer"))


async def _bytes_sent(pc: Any) -> int:
    """The publisher's video bytes sent so far (its outbound-rtp statistics): the
    bitrate the relay's REMB let it reach is part of what the relay forwards."""
    report = await pc.getStats()
    return sum(
        s.bytesSent for s in report.values() if s.type == "outbound-rtp" and s.kind == "video"
    )


async def _stats(http: httpx.AsyncClient | None) -> dict[str, Any]:
    if http is None:
        return {}
    with contextlib.suppress(httpx.HTTPError, ValueError):
        return (await http.get("/stats")).json()
    return {}


async def _wait(predicate: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.05)
    return bool(predicate())


# --------------------------------------------------------------------------- relay process


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


#: The relay's command-line switches for each path measured.
MODE_ARGS = {
    "forward": [],
    "frames": ["--forward-frames"],
    "stockpath": ["--stock-media-path"],
    "stockloop": ["--event-loop", "asyncio"],
    "mediarelay": ["--transcode-all", "--stock-media-path"],
}


class RelayProcess:
    def __init__(self, mode: str = "forward") -> None:
        self.port = _free_port()
        self.log = tempfile.NamedTemporaryFile(prefix="relay-bench-", suffix=".log", delete=False)
        env = {k: v for k, v in os.environ.items() if not k.startswith("RELAY_")}
        env["PYTHONPATH"] = str(ROOT)
        command = [
            sys.executable, "-m", "relay", "--dev", "--host", "127.0.0.1",
            "--port", str(self.port), "--node-id", "bench", "--ice-host", "127.0.0.1",
            "--log-level", "warning", "--no-access-log",
        ]  # fmt: skip
        command += MODE_ARGS[mode]
        self.process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT
        )
        self.url = f"http://127.0.0.1:{self.port}"

    async def ready(self, http: httpx.AsyncClient, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"relay exited; see {self.log.name}")
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get("/health")).status_code == 200:
                    return
            await asyncio.sleep(0.1)
        raise RuntimeError("relay did not start")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self.log.close()
        with contextlib.suppress(OSError):
            os.unlink(self.log.name)


# --------------------------------------------------------------------------- one point


async def run_point(size: str, mode: str, n: int, seconds: float, warmup: float) -> Point:
    width, height = SIZES[size]
    point = Point(size, mode, n, seconds)
    video = MarkerVideoTrack(width, height, FPS)
    publisher = client_pc()
    publisher.addTransceiver(video, direction="sendonly")
    probes = {0, n - 1}
    subs = [Subscriber(i, decode=i in probes) for i in range(n)]
    relay = None
    http = None
    try:
        if mode == "direct":
            sub = subs[0]
            subscriber = _recv_pc(sub)
            await publisher.setLocalDescription(await publisher.createOffer())
            await subscriber.setRemoteDescription(publisher.localDescription)
            await subscriber.setLocalDescription(await subscriber.createAnswer())
            await publisher.setRemoteDescription(subscriber.localDescription)
        else:
            relay = RelayProcess(mode)
            http = httpx.AsyncClient(base_url=relay.url, timeout=30)
            await relay.ready(http)
            token = issue_token(DEV_SECRET, room=ROOM, sub="publisher", caps=["publish"])
            await _signal(http, publisher, f"/rooms/{ROOM}/publish", token)
            if not await _wait(lambda: publisher.connectionState == "connected", 10):
                raise RuntimeError("publisher did not connect")
            for start in range(0, n, 4):  # a few offers at a time
                await asyncio.gather(
                    *(
                        _signal(
                            http,
                            _recv_pc(sub),
                            f"/rooms/{ROOM}/subscribe/publisher",
                            issue_token(DEV_SECRET, room=ROOM, sub=f"s{sub.index}",
                                        caps=["subscribe"]),
                        )
                        for sub in subs[start : start + 4]
                    )
                )  # fmt: skip
        if not await _wait(lambda: all(s.frames > 0 for s in subs), 20):
            raise RuntimeError(f"only {sum(s.frames > 0 for s in subs)}/{n} subscribers got video")
        await asyncio.sleep(warmup)

        # ---- measured window
        frames0 = [s.frames for s in subs]
        published0 = video.counter
        bytes0 = await _bytes_sent(publisher)
        stats0 = await _stats(http)
        relay_cpu0 = process_cpu_seconds(relay.process.pid) if relay else 0.0
        client_cpu0 = time.process_time()
        busy0, total0 = machine_busy()
        t0 = time.time()
        await asyncio.sleep(seconds)
        t1 = time.time()
        window = t1 - t0
        frames1 = [s.frames for s in subs]
        published1 = video.counter
        bytes1 = await _bytes_sent(publisher)
        relay_cpu1 = process_cpu_seconds(relay.process.pid) if relay else 0.0
        stats1 = await _stats(http)
        client_cpu1 = time.process_time()
        busy1, total1 = machine_busy()

        fps = [(b - a) / window for a, b in zip(frames0, frames1, strict=True)]
        point.fps_published = (published1 - published0) / window
        point.kbps_published = (bytes1 - bytes0) * 8 / window / 1000
        point.fps_mean = statistics.fmean(fps)
        point.fps_min = min(fps)
        latencies = [
            (received - video.sent[marker]) * 1000
            for sub in subs
            if sub.decode
            for marker, received in sub.markers
            if t0 <= received <= t1 and marker in video.sent
        ]
        point.latency_p50_ms = percentile(latencies, 0.5)
        point.latency_p95_ms = percentile(latencies, 0.95)
        point.client_cpu = (client_cpu1 - client_cpu0) / window
        point.machine_cpu = (busy1 - busy0) / max(1, total1 - total0) * (os.cpu_count() or 1)
        if relay is not None:
            point.relay_cpu = (relay_cpu1 - relay_cpu0) / window
            point.cpu_per_stream = point.relay_cpu / n
            effective = n * point.fps_mean / FPS
            point.streams_per_core = effective / point.relay_cpu if point.relay_cpu else None
            point.relay_stats = stats1
            sent = stats1.get("frames_sent", 0) - stats0.get("frames_sent", 0)
            if sent > 0:
                queued = stats1["queue_seconds_total"] - stats0["queue_seconds_total"]
                point.relay_queue_ms = queued / sent * 1000
    except Exception as exc:
        point.error = f"{type(exc).__name__}: {exc}"
    finally:
        for sub in subs:
            for task in sub.tasks:
                task.cancel()
        await asyncio.gather(
            publisher.close(), *(s.pc.close() for s in subs if s.pc), return_exceptions=True
        )
        if http is not None:
            await http.aclose()
        if relay is not None:
            relay.stop()
        video.stop()
    return point


# --------------------------------------------------------------------------- report


def _f(value: float | None, fmt: str = "{:.1f}") -> str:
    return "-" if value is None else fmt.format(value)


def table(points: list[Point]) -> str:
    header = (
        f"{'size':<5} {'path':<10} {'N':>3} {'relay CPU':>9} {'CPU/stream':>10} "
        f"{'fps pub':>7} {'kbit/s':>6} {'fps mean':>8} {'fps min':>7} "
        f"{'lat p50':>7} {'lat p95':>7} {'added':>6} {'queue':>5} {'streams/core':>12} "
        f"{'client':>6} {'machine':>7}"
    )
    units = (
        f"{'':<5} {'':<10} {'':>3} {'% core':>9} {'% core':>10} {'':>7} {'pub':>6} "
        f"{'':>8} {'':>7} "
        f"{'ms':>7} {'ms':>7} {'ms':>6} {'ms':>5} {'':>12} {'% core':>6} {'% core':>7}"
    )
    direct = {p.size: p.latency_p50_ms for p in points if p.mode == "direct"}
    lines = [header, units]
    for p in points:
        if p.error:
            lines.append(f"{p.size:<5} {p.mode:<10} {p.subscribers:>3} error: {p.error}")
            continue
        added = (
            p.latency_p50_ms - direct[p.size]
            if p.mode != "direct" and p.latency_p50_ms is not None and direct.get(p.size)
            else None
        )
        lines.append(
            f"{p.size:<5} {p.mode:<10} {p.subscribers:>3} "
            f"{_f(p.relay_cpu and p.relay_cpu * 100):>9} "
            f"{_f(p.cpu_per_stream and p.cpu_per_stream * 100, '{:.2f}'):>10} "
            f"{p.fps_published:>7.1f} {p.kbps_published:>6.0f} "
            f"{p.fps_mean:>8.1f} {p.fps_min:>7.1f} "
            f"{_f(p.latency_p50_ms, '{:.0f}'):>7} {_f(p.latency_p95_ms, '{:.0f}'):>7} "
            f"{_f(added, '{:+.0f}'):>6} "
            f"{_f(p.relay_queue_ms if p.mode == 'frames' else None):>5} "
            f"{_f(p.streams_per_core):>12} "
            f"{p.client_cpu * 100:>6.0f} {p.machine_cpu * 100:>7.0f}"
        )
    return "\n".join(lines)


#: other forwarding paths, shown beside the goal's ratio
COMPARED = ("frames", "stockpath", "stockloop")


def ratios(points: list[Point]) -> tuple[str, list[float]]:
    """Forwarded streams per core, forward / mediarelay (the goal), and where measured
    forward against the other forwarding paths (frame forwarding, stock receive)."""
    by_key = {(p.size, p.mode, p.subscribers): p for p in points if not p.error}
    shown = [m for m in COMPARED if any(k[1] == m for k in by_key)]
    lines = [
        f"{'size':<5} {'N':>3} {'forward':>9} {'mediarelay':>10} {'ratio':>7}"
        + "".join(f" {m:>10} {'forward/' + m:>18}" for m in shown)
    ]
    found = []
    for (size, mode, n), p in sorted(by_key.items()):
        if mode != "forward":
            continue
        if not p.streams_per_core:
            continue
        other = by_key.get((size, "mediarelay", n))
        line = f"{size:<5} {n:>3} {p.streams_per_core:>9.1f} "
        if other is not None and other.streams_per_core:
            ratio = p.streams_per_core / other.streams_per_core
            found.append(ratio)
            line += f"{other.streams_per_core:>10.1f} {ratio:>6.1f}x"
        else:
            line += f"{'-':>10} {'-':>7}"
        for m in shown:
            q = by_key.get((size, m, n))
            if q is not None and q.streams_per_core:
                versus = p.streams_per_core / q.streams_per_core
                line += f" {q.streams_per_core:>10.1f} {versus:>17.2f}x"
            else:
                line += f" {'-':>10} {'-':>18}"
        lines.append(line)
    return "\n".join(lines), found


def marginal(points: list[Point]) -> str:
    """CPU per added subscriber: the slope between the smallest and largest N
    that still delivered (nearly) the full frame rate, per size and path."""
    lines = [f"{'size':<5} {'path':<10} {'from N':>6} {'to N':>5} {'% core per added stream':>24}"]
    slopes: dict[tuple[str, str], float] = {}
    for size in dict.fromkeys(p.size for p in points):
        for mode in ("forward", "mediarelay"):
            full = sorted(
                (p for p in points
                 if p.size == size and p.mode == mode and not p.error and p.relay_cpu
                 and p.fps_min >= 0.9 * FPS),
                key=lambda p: p.subscribers,
            )  # fmt: skip
            if len(full) < 2:
                lines.append(f"{size:<5} {mode:<10} {'-':>6} {'-':>5} {'(not enough points)':>24}")
                continue
            first, last = full[0], full[-1]
            slope = (last.relay_cpu - first.relay_cpu) / (last.subscribers - first.subscribers)
            slopes[(size, mode)] = slope
            lines.append(
                f"{size:<5} {mode:<10} {first.subscribers:>6} {last.subscribers:>5} "
                f"{slope * 100:>24.2f}"
            )
        if (size, "forward") in slopes and (size, "mediarelay") in slopes:
            lines.append(
                f"{size:<5} ratio (mediarelay / forward per added stream): "
                f"{slopes[(size, 'mediarelay')] / slopes[(size, 'forward')]:.1f}x"
            )
    return "\n".join(lines)


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="480p,720p")
    parser.add_argument("--subscribers", default="1,4,8,16")
    parser.add_argument("--modes", default="direct,forward,stockpath,mediarelay")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--json", default=None, help="also write every figure here")
    args = parser.parse_args()
    restrict_ice_hosts(["127.0.0.1"])  # all media on loopback, here and in the relay
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    counts = [int(n) for n in args.subscribers.split(",")]
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    points: list[Point] = []
    started = time.time()
    for size in sizes:
        for mode in modes:
            for n in [1] if mode == "direct" else counts:
                print(f"... {size} {mode} N={n}", file=sys.stderr, flush=True)
                point = await run_point(size, mode, n, args.seconds, args.warmup)
                points.append(point)
                if point.error:
                    print(f"    {point.error}", file=sys.stderr, flush=True)
    print()
    print(f"relay benchmark: 1 publisher (VP8, {FPS} fps) -> N subscribers, loopback, "
          f"{args.seconds:.0f} s per point, {os.cpu_count()} cores, "
          f"{time.time() - started:.0f} s in all")  # fmt: skip
    print(table(points))
    text, found = ratios(points)
    print()
    print("forwarded streams per core, forward / mediarelay:")
    print(text)
    if found:
        print(f"lowest ratio {min(found):.1f}x, highest {max(found):.1f}x")
    print()
    print("marginal relay CPU per added subscriber (points at >= 90 % of the frame rate):")
    print(marginal(points))
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(p) for p in points], indent=2))
    return 0 if not any(p.error for p in points) else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
