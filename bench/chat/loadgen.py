"""The load generator: several OS processes, each holding a share of the sockets.

The parent (``bench/chat_bench.py``) calls :func:`run_load`, which starts
``--procs`` copies of this file as subprocesses and talks to each over its
standard input and output, one JSON line at a time:

1. parent → child: the configuration (this process's sockets, its share of the
   message rate, the timing);
2. child → parent: ``READY {...}`` once every socket is connected, has had its
   ``welcome`` and is ``subscribed`` to its thread;
3. parent → child: ``GO <t_start>``, a wall-clock time (``time.time()``) shared
   by every process, so that they all start sending at once;
4. child → parent: ``RESULT {...}`` after sending for warm-up + duration and
   waiting ``drain`` seconds for the last deliveries.

What a child measures:

- **Sending** is open-loop at a fixed rate: message *k* of the process is due at
  ``t_start + k / rate``, whatever the server's latency (no coordinated
  omission). Senders take turns, so each sends ``rate / senders`` per second,
  well under the service's ``sends_per_second``. Every message has a unique
  ``client_id`` (``<thread>:<socket>:<n>:<run>``, the run part new for every
  run, or the service would answer a reused one as a duplicate and deliver
  nothing) and a body starting with its send
  time in ``time.time_ns()`` (the wall clock, shared by processes on one
  machine, unlike the monotonic clock). ``sender_lag`` is how late sends went
  out, to show the generator kept up.
- **Delivery latency** = receive time − send time in the body, for every
  ``message`` frame on every socket (the sender's own included), for messages
  sent after the warm-up.
- **Deliveries/s** = ``message`` frames received during the measured window
  divided by its length. Latencies are also kept per second of sending, to show
  stalls (``timeline``).
- **Ping round trip**: one socket per process sends ``ping`` every 100 ms and
  times the ``pong``: the event loop's and the websocket path's responsiveness
  alone, with no database or channel layer in the way.
- **Lost and duplicated**: each socket remembers the seqs it got for its thread; a
  seq seen twice on a socket is a duplicate, a seq lower than one already seen
  is out of order. ``received`` counts, per ``client_id``, the distinct sockets
  that got it (and its seq); the parent adds the processes up and compares with
  the sockets subscribed to the thread: every socket should get every message,
  once, by the end of the drain time.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

DUMPS = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
# A Vietnamese sentence: multi-byte UTF-8, as the service's real messages are.
FILLER = "Chào bác sĩ, tôi bị đau ngực từ sáng nay và hơi khó thở khi leo cầu thang. "


def make_body(send_ns: int, chars: int) -> str:
    """A message body: the send time, then filler up to ``chars`` characters."""
    head = f"{send_ns} "
    filler = FILLER * (chars // len(FILLER) + 1)
    return head + filler[: max(0, chars - len(head))]


def origin_of(url: str) -> str:
    """The ``Origin`` a browser on the same host would send."""
    parts = urlsplit(url)
    return f"http://{parts.netloc}"


@dataclass
class Stats:
    """What one process saw; turned into the ``RESULT`` line."""

    measure_start_ns: int = 0
    measure_end_ns: int = 0
    received: dict[str, list[int]] = field(default_factory=dict)  # client_id -> [seq, sockets]
    # [second of sending counted from t_start, microseconds], measured window only
    latencies: list[tuple[int, int]] = field(default_factory=list)
    ack_latencies: list[tuple[int, int]] = field(default_factory=list)
    ping_rtts: list[tuple[int, int]] = field(default_factory=list)
    start_ns: int = 0
    window_deliveries: int = 0
    duplicates: int = 0
    out_of_order: int = 0
    seq_mismatch: int = 0
    errors: Counter = field(default_factory=Counter)
    other_frames: Counter = field(default_factory=Counter)
    closed_early: Counter = field(default_factory=Counter)
    sent: list[str] = field(default_factory=list)
    send_failures: int = 0
    acked: int = 0
    deliveries: int = 0
    duplicate_acks: int = 0
    sender_lag_ms: list[float] = field(default_factory=list)
    sending: bool = False

    def record(self, into: list[tuple[int, int]], sent_ns: int, now_ns: int) -> None:
        into.append(((sent_ns - self.start_ns) // 1_000_000_000, (now_ns - sent_ns) // 1000))


class Socket:
    """One client: connects, subscribes to its thread, records every frame."""

    def __init__(self, spec: dict[str, Any], stats: Stats, deflate: bool, run: str = "") -> None:
        self.index: int = spec["i"]
        self.url: str = spec["url"]
        self.cookie: str | None = spec.get("cookie")
        self.thread: int = spec["thread"]
        self.sender: bool = spec["sender"]
        self.stats = stats
        self.deflate = deflate
        self.run = run or os.urandom(4).hex()
        self.ws: ClientConnection | None = None
        self.seen: set[int] = set()
        self.max_seq = 0
        self.subscribed = asyncio.Event()
        self.reader: asyncio.Task | None = None
        self.send_times: dict[str, int] = {}
        self.sent_count = 0
        self.done = False

    async def open(self, timeout: float) -> None:
        """Connect, await ``welcome``, subscribe with ``after: null``, await ``subscribed``."""
        headers = {"Cookie": self.cookie} if self.cookie else None
        self.ws = await connect(
            self.url,
            origin=origin_of(self.url),
            additional_headers=headers,
            compression="deflate" if self.deflate else None,
            ping_interval=None,
            open_timeout=timeout,
            close_timeout=2,
            max_queue=None,
            proxy=None,
        )
        welcome = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
        if welcome.get("type") != "welcome" or welcome.get("protocol") != 1:
            raise RuntimeError(f"unexpected first frame {welcome.get('type')!r}")
        self.reader = asyncio.create_task(self._read())
        await self.ws.send(
            DUMPS({"type": "subscribe", "thread": self.thread, "after": None, "ref": "s"})
        )
        await asyncio.wait_for(self.subscribed.wait(), timeout)

    async def _read(self) -> None:
        assert self.ws is not None
        stats = self.stats
        try:
            async for text in self.ws:
                now_ns = time.time_ns()
                frame = json.loads(text)
                kind = frame.get("type")
                if kind == "message":
                    self._on_message(frame, now_ns)
                elif kind == "ack":
                    stats.acked += 1
                    stats.duplicate_acks += bool(frame.get("duplicate"))
                    sent_ns = self.send_times.pop(frame.get("client_id"), None)
                    if sent_ns is not None and sent_ns >= stats.measure_start_ns:
                        stats.record(stats.ack_latencies, sent_ns, now_ns)
                elif kind == "subscribed":
                    self.subscribed.set()
                elif kind == "pong":
                    sent_ns = int(frame.get("ref") or 0)
                    if sent_ns >= stats.measure_start_ns:
                        stats.record(stats.ping_rtts, sent_ns, now_ns)
                elif kind == "error":
                    stats.errors[frame.get("code", "?")] += 1
                else:
                    stats.other_frames[kind] += 1
        except ConnectionClosed as closed:
            if not self.done:
                code = closed.rcvd.code if closed.rcvd else "no close frame"
                stats.closed_early[str(code)] += 1
            return
        if not self.done:
            code = self.ws.close_code
            stats.closed_early[str(code)] += 1

    def _on_message(self, frame: dict[str, Any], now_ns: int) -> None:
        stats = self.stats
        seq = frame["seq"]
        if seq in self.seen:
            stats.duplicates += 1
            return
        if seq < self.max_seq:
            stats.out_of_order += 1
        self.seen.add(seq)
        self.max_seq = max(self.max_seq, seq)
        client_id = frame.get("client_id") or ""
        stats.deliveries += 1
        entry = stats.received.get(client_id)
        if entry is None:
            stats.received[client_id] = [seq, 1]
        else:
            entry[1] += 1
            if entry[0] != seq:
                stats.seq_mismatch += 1
        sent_ns = int(frame["body"].split(" ", 1)[0])
        if sent_ns >= stats.measure_start_ns:
            stats.record(stats.latencies, sent_ns, now_ns)
        if stats.measure_start_ns <= now_ns < stats.measure_end_ns:
            stats.window_deliveries += 1

    def send(self, body_chars: int) -> None:
        """Send one message now (without waiting for the write to drain)."""
        assert self.ws is not None
        send_ns = time.time_ns()
        self.sent_count += 1
        client_id = f"{self.thread}:{self.index}:{self.sent_count}:{self.run}"
        self.send_times[client_id] = send_ns
        self.stats.sent.append(client_id)
        text = DUMPS(
            {
                "type": "send",
                "thread": self.thread,
                "client_id": client_id,
                "body": make_body(send_ns, body_chars),
            }
        )
        task = asyncio.create_task(self.ws.send(text))
        task.add_done_callback(self._sent)

    def ping(self) -> None:
        """A ``ping`` whose ``ref`` is its send time; the reader times the ``pong``."""
        assert self.ws is not None
        text = DUMPS({"type": "ping", "ref": str(time.time_ns())})
        asyncio.create_task(self.ws.send(text)).add_done_callback(self._sent)

    def _sent(self, task: asyncio.Task) -> None:
        if task.cancelled() or task.exception() is not None:
            self.stats.send_failures += 1

    async def close(self) -> None:
        self.done = True
        if self.ws is not None:
            await self.ws.close()
        if self.reader is not None:
            await asyncio.wait([self.reader], timeout=2)


async def open_all(sockets: list[Socket], concurrency: int, timeout: float) -> Counter:
    """Open every socket, ``concurrency`` at a time; returns failures by reason."""
    gate = asyncio.Semaphore(concurrency)
    failures: Counter = Counter()

    async def one(sock: Socket) -> None:
        async with gate:
            try:
                await sock.open(timeout)
            except InvalidStatus as error:
                failures[f"HTTP {error.response.status_code}"] += 1
            except ConnectionClosed as error:
                failures[f"closed {error.rcvd.code if error.rcvd else '?'}"] += 1
            except (OSError, TimeoutError, RuntimeError) as error:
                failures[type(error).__name__] += 1

    await asyncio.gather(*(one(s) for s in sockets))
    return failures


async def send_at_rate(
    senders: list[Socket],
    rate: float,
    t_start: float,
    t_stop: float,
    body_chars: int,
    stats: Stats,
) -> None:
    """Open-loop sending: message k is due at t_start + k / rate; senders take turns."""
    if not senders or rate <= 0:
        return
    await asyncio.sleep(max(0.0, t_start - time.time()))
    n_sent = 0
    turn = 0
    while True:
        now = time.time()
        if now >= t_stop:
            return
        due = int((now - t_start) * rate) + 1 - n_sent  # message k is due at k / rate
        for _ in range(due):
            stats.sender_lag_ms.append((now - (t_start + n_sent / rate)) * 1000)
            sock = senders[turn % len(senders)]
            turn += 1
            n_sent += 1
            if sock.ws is None or sock.done:
                stats.send_failures += 1
                continue
            sock.send(body_chars)
        await asyncio.sleep(min(0.005, max(0.0, t_stop - now)))


async def ping_every(sock: Socket | None, t_start: float, t_stop: float, every: float) -> None:
    """One socket's pings, every ``every`` seconds from t_start to t_stop."""
    if sock is None:
        return
    await asyncio.sleep(max(0.0, t_start - time.time()))
    while time.time() < t_stop and not sock.done:
        sock.ping()
        await asyncio.sleep(every)


async def child_main(config: dict[str, Any]) -> dict[str, Any]:
    """One load-generator process: see the module docstring for the steps."""
    stats = Stats()
    run = config.get("run") or os.urandom(4).hex()
    sockets = [Socket(spec, stats, config.get("deflate", False), run) for spec in config["sockets"]]
    failures = await open_all(sockets, config["connect_concurrency"], config["connect_timeout"])
    ready = [s for s in sockets if s.subscribed.is_set()]
    subscribed = Counter(s.thread for s in ready)
    print("READY " + json.dumps({"connected": len(ready), "failures": failures}), flush=True)

    loop = asyncio.get_running_loop()
    line = await loop.run_in_executor(None, sys.stdin.readline)
    if not line.startswith("GO "):
        raise SystemExit(f"loadgen: expected GO, got {line!r}")
    t_start = float(line.split()[1])
    t_measure = t_start + config["warmup"]
    t_stop = t_measure + config["duration"]
    stats.start_ns = int(t_start * 1e9)
    stats.measure_start_ns = int(t_measure * 1e9)
    stats.measure_end_ns = int(t_stop * 1e9)
    cpu_before = time.process_time()
    senders = [s for s in ready if s.sender]
    pinger = next((s for s in ready if not s.sender), ready[0] if ready else None)
    await asyncio.gather(
        send_at_rate(senders, config["rate"], t_start, t_stop, config["body_chars"], stats),
        ping_every(pinger, t_start, t_stop, 0.1),
    )
    await asyncio.sleep(max(0.0, t_stop + config["drain"] - time.time()))
    # With a longer bound (the fault tests: a check of what arrives, not of how fast),
    # keep waiting while acknowledgements are missing or deliveries still come in.
    last = -1
    while time.time() < t_stop + config.get("drain_max", config["drain"]) and (
        stats.acked < len(stats.sent) or stats.deliveries != last
    ):
        last = stats.deliveries
        await asyncio.sleep(2.0)
    t_end = time.time()
    cpu_s = time.process_time() - cpu_before
    await asyncio.wait_for(asyncio.gather(*(s.close() for s in sockets)), timeout=20)
    lag = sorted(stats.sender_lag_ms)
    return {
        "proc": config["proc"],
        "connected": len(ready),
        "connect_failures": dict(failures),
        "subscribed": {str(k): v for k, v in subscribed.items()},
        "sent": stats.sent,
        "send_failures": stats.send_failures,
        "acked": stats.acked,
        "duplicate_acks": stats.duplicate_acks,
        "received": stats.received,
        "latencies": stats.latencies,
        "ack_latencies": stats.ack_latencies,
        "ping_rtts": stats.ping_rtts,
        "window_deliveries": stats.window_deliveries,
        "duplicates": stats.duplicates,
        "out_of_order": stats.out_of_order,
        "seq_mismatch": stats.seq_mismatch,
        "errors": dict(stats.errors),
        "other_frames": dict(stats.other_frames),
        "closed_early": dict(stats.closed_early),
        "cpu_s": cpu_s,
        "run_s": max(t_end, t_stop + config["drain"]) - t_start,
        "sender_lag_ms_p99": lag[int(len(lag) * 0.99)] if lag else 0.0,
        "sender_lag_ms_max": lag[-1] if lag else 0.0,
    }


# --- The parent's side ---------------------------------------------------------------


@dataclass
class LoadParams:
    """The load, the same for every target of a run."""

    rate: float  # messages/s, all processes together
    warmup: float
    duration: float
    drain: float
    #: wait past ``drain``, up to this many seconds after sending stops, while
    #: acknowledgements are missing or deliveries still arrive (None: ``drain``)
    drain_max: float | None = None
    body_chars: int = 100
    procs: int = 3
    connect_concurrency: int = 50
    connect_timeout: float = 60.0
    deflate: bool = False


async def run_load(specs: list[dict[str, Any]], params: LoadParams, on_ready=None) -> dict:
    """Run the load generator processes over ``specs`` (one dict per socket) and merge.

    ``on_ready`` (an async callable) runs once every socket is subscribed and
    before sending starts: the parent measures the server's idle memory there.
    """
    procs = max(1, min(params.procs, len(specs)))
    shares = [specs[k::procs] for k in range(procs)]
    total_senders = sum(1 for s in specs if s["sender"])
    children = []
    run = os.urandom(4).hex()
    for k, share in enumerate(shares):
        senders = sum(1 for s in share if s["sender"])
        config = {
            "proc": k,
            "run": run,
            "result_path": str(Path(tempfile.gettempdir()) / f"chat-loadgen-{run}-{k}.json"),
            "sockets": share,
            "rate": params.rate * senders / total_senders if total_senders else 0.0,
            "warmup": params.warmup,
            "duration": params.duration,
            "drain": params.drain,
            "drain_max": params.drain_max if params.drain_max is not None else params.drain,
            "body_chars": params.body_chars,
            "connect_concurrency": params.connect_concurrency,
            "connect_timeout": params.connect_timeout,
            "deflate": params.deflate,
        }
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            str(Path(__file__).resolve()),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=2**30,
        )
        assert child.stdin is not None
        child.stdin.write((json.dumps(config) + "\n").encode())
        await child.stdin.drain()
        children.append(child)
    try:
        connect_started = time.time()
        ready = [
            await _expect(child, "READY", params.connect_timeout * 3 + 30) for child in children
        ]
        connect_s = time.time() - connect_started
        if on_ready is not None:
            await on_ready(ready)
        t_start = time.time() + 1.0
        for child in children:
            assert child.stdin is not None
            child.stdin.write(f"GO {t_start}\n".encode())
            await child.stdin.drain()
        budget = (
            1.0 + params.warmup + params.duration + max(params.drain, params.drain_max or 0) + 60
        )
        results = []
        for child in children:
            where = Path((await _expect(child, "RESULT", budget))["path"])
            results.append(json.loads(where.read_text()))
            where.unlink()
    finally:
        for child in children:
            if child.returncode is None:
                child.kill()
            await child.wait()
    return {**merge(results, params), "t_start": t_start, "connect_s": connect_s}


async def _expect(child: asyncio.subprocess.Process, tag: str, timeout: float) -> dict:
    assert child.stdout is not None
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"loadgen: no {tag} line within {timeout:.0f} s")
        line = await asyncio.wait_for(child.stdout.readline(), left)
        if not line:
            raise RuntimeError(f"loadgen exited before {tag} (exit code {await child.wait()})")
        text = line.decode()
        if text.startswith(tag + " "):
            return json.loads(text[len(tag) + 1 :])


def _quantile(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * q))]


def _ms(results: list[dict], key: str) -> dict[int, list[float]]:
    """Per second of sending, the sorted samples of ``key`` in milliseconds."""
    by_second: dict[int, list[float]] = {}
    for result in results:
        for second, us in result[key]:
            by_second.setdefault(second, []).append(us / 1000)
    for values in by_second.values():
        values.sort()
    return by_second


def merge(results: list[dict], params: LoadParams) -> dict:
    """Add the processes up: throughput, latency quantiles, lost and duplicated deliveries."""
    subscribed: Counter = Counter()
    received: dict[str, list[int]] = {}
    seq_mismatch = 0
    for result in results:
        subscribed.update({int(k): v for k, v in result["subscribed"].items()})
        for client_id, (seq, n) in result["received"].items():
            entry = received.get(client_id)
            if entry is None:
                received[client_id] = [seq, n]
            else:
                entry[1] += n
                seq_mismatch += entry[0] != seq
    sent = [cid for result in results for cid in result["sent"]]
    expected = lost = 0
    for client_id in sent:
        want = subscribed[int(client_id.split(":", 1)[0])]
        got = received.get(client_id, (0, 0))[1]
        expected += want
        lost += max(0, want - got)
    sent_set = set(sent)
    stray = sum(n for cid, (_, n) in received.items() if cid not in sent_set)
    latencies = _ms(results, "latencies")
    acks = _ms(results, "ack_latencies")
    pings = _ms(results, "ping_rtts")
    timeline = [
        [
            second,
            len(latencies.get(second, [])),
            _quantile(latencies.get(second, []), 0.5),
            _quantile(latencies.get(second, []), 0.99),
            _quantile(acks.get(second, []), 0.99),
            _quantile(pings.get(second, []), 1.0),
        ]
        for second in sorted(set(latencies) | set(acks) | set(pings))
    ]
    latencies_all = sorted(v for values in latencies.values() for v in values)
    acks_all = sorted(v for values in acks.values() for v in values)
    pings_all = sorted(v for values in pings.values() for v in values)
    counter_keys = ("connect_failures", "errors", "other_frames", "closed_early")
    counters = {key: Counter() for key in counter_keys}
    for result in results:
        for key in counter_keys:
            counters[key].update(result[key])
    return {
        "sockets": sum(r["connected"] for r in results),
        "sent": len(sent),
        "sent_per_s": len(sent) / (params.warmup + params.duration),
        "acked": sum(r["acked"] for r in results),
        "duplicate_acks": sum(r["duplicate_acks"] for r in results),
        "send_failures": sum(r["send_failures"] for r in results),
        "expected_deliveries": expected,
        "lost": lost,
        "duplicated": sum(r["duplicates"] for r in results),
        "out_of_order": sum(r["out_of_order"] for r in results),
        "seq_mismatch": seq_mismatch + sum(r["seq_mismatch"] for r in results),
        "stray": stray,
        "deliveries_per_s": sum(r["window_deliveries"] for r in results) / params.duration,
        "latency_ms": {
            "p50": _quantile(latencies_all, 0.5),
            "p90": _quantile(latencies_all, 0.9),
            "p99": _quantile(latencies_all, 0.99),
            "max": latencies_all[-1] if latencies_all else None,
            "n": len(latencies_all),
        },
        "ack_latency_ms": {"p50": _quantile(acks_all, 0.5), "p99": _quantile(acks_all, 0.99)},
        "ping_rtt_ms": {"p50": _quantile(pings_all, 0.5), "p99": _quantile(pings_all, 0.99)},
        # Per second of sending (from t_start): deliveries, delivery p50 and p99, ack p99,
        # ping max, in ms; shows whether a stall is in the event loop (pings late too) or
        # behind it (database, Redis: pings on time, acks late).
        "timeline": timeline,
        "loadgen_cpu_pct": [round(100 * r["cpu_s"] / r["run_s"], 1) for r in results],
        "sender_lag_ms_p99": max(r["sender_lag_ms_p99"] for r in results),
        "sender_lag_ms_max": max(r["sender_lag_ms_max"] for r in results),
        **{key: dict(value) for key, value in counters.items()},
    }


def main() -> None:
    config = json.loads(sys.stdin.readline())
    try:
        import uvloop
    except ImportError:  # the generator is cheaper on uvloop, but works without it
        runner = asyncio.run
    else:
        runner = uvloop.run
    result = runner(child_main(config))
    # The result can be megabytes: it goes to a file, the pipe only says where.
    Path(config["result_path"]).write_text(json.dumps(result))
    print("RESULT " + json.dumps({"path": config["result_path"]}), flush=True)
    os._exit(0)


if __name__ == "__main__":
    main()
