"""Chat benchmark: the real websocket service against a bare `websockets` server.

    .venv/bin/python bench/chat_bench.py                   # 1,000 sockets, rooms of 4, 550 msg/s
    .venv/bin/python bench/chat_bench.py --issue-profile   # the issue's 200 sockets, 50 rooms,
                                                           # 800 msg/s
    .venv/bin/python bench/chat_bench.py --rates 100,550 --targets bare,daphne,daphne-tuned,uvicorn
    .venv/bin/python bench/chat_bench.py --list            # every target
    .venv/bin/python bench/chat_bench.py --profile         # + py-spy of each service process

In one run, every target gets the same load from the same generator
(``bench/chat/loadgen.py``: several OS processes, so that it is not the
bottleneck; its own CPU use and how late it sent are reported):

- ``bare``: a bare `websockets` broadcast server (``bench/chat/bare_server.py``),
  the baseline: framing, network and event loop, nothing else;
- ``daphne`` (the default server), ``uvicorn``, and the scale-out ``daphne-x2``:
  the real service (``telehealth.asgi``: session authentication and origin
  check at connect, every message stored in PostgreSQL with its sequence
  number, published through Redis to each web process's hub and fanned out to
  the thread's sockets), against a scratch PostgreSQL database and a Redis
  database of its own, in production mode (``DJANGO_DEBUG=0``);
- the other targets (``--list``) are the variants measured to find out why
  daphne is slower and what helps (``bench/chat/launch.py``).

The load: ``--sockets`` signed-in sockets, ``--room-size`` to a thread (each
person is a participant of one thread and subscribes to it); a share
``--sender-share`` of each room sends, together ``--rates`` messages/s at a
fixed (open-loop) rate, for ``--warmup`` + ``--duration`` seconds, then
``--drain`` seconds for the last deliveries. Every message goes to every socket
of its thread, the sender's included: deliveries/s = rate × room size.

Each target runs as: start the server(s); open and close a few sockets (lazy
start-up); read RSS; connect every socket; wait until the server's CPU settles
(the connection storm's backlog, reported as ``settle s``); read RSS again
(memory per idle connection = the difference / sockets); send; drain; stop.

Reported per target and rate: sockets connected; messages sent/s; deliveries/s
in the measured window; delivery latency (receive − send time: median, p90,
p99, max; warm-up excluded); the sender's ack round trip (includes the database
write); lost deliveries (a socket of the thread never got the message by the
end of the drain), duplicated and out-of-order ones; errors and early closes;
server RSS and KB per idle socket; server CPU over the run (100 % = one core);
a ``ping`` round trip (no database: the event loop's responsiveness); the ratio
to the bare server at the same rate of throughput and of median and p99
latency; and a per-second timeline (delivery p99 / ack p99 / slowest ping).
Everything goes to ``bench/results/chat_bench.json``, server logs to
``bench/results/chat-logs/``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))


def ensure_requirements() -> None:
    """Install bench/requirements-bench.txt when a package of it is missing (`make bench`
    installs only the service's requirements)."""
    import importlib.util

    needed = ("websockets", "uvicorn", "uvloop", "wsproto", "psutil")
    if all(importlib.util.find_spec(name) for name in needed):
        return
    print("installing bench/requirements-bench.txt ...", flush=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "-r",
         str(HERE / "requirements-bench.txt")],
        check=True,
    )  # fmt: skip


ensure_requirements()

from chat import fixtures, loadgen  # noqa: E402
from chat.servers import TARGETS, ServerProcess, Target, service_env  # noqa: E402

RESULTS = HERE / "results"
DEFAULT_TARGETS = "bare,daphne,uvicorn,daphne-x2"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = parser.add_argument
    add(
        "--targets",
        default=DEFAULT_TARGETS,
        help=f"comma-separated, run in this order (default {DEFAULT_TARGETS}); see --list",
    )
    add("--list", action="store_true", help="list the targets and exit")
    add("--sockets", type=int, default=1000)
    add("--room-size", type=int, default=4)
    add(
        "--rates",
        default="550",
        help="messages/s, all senders together; several: one run each (default 550)",
    )
    add(
        "--sender-share",
        type=float,
        default=0.5,
        help="share of each room's sockets that send (default 0.5)",
    )
    add("--warmup", type=float, default=5.0, help="seconds of sending not counted (default 5)")
    add("--duration", type=float, default=20.0, help="measured seconds (default 20)")
    add(
        "--drain",
        type=float,
        default=5.0,
        help="seconds after the last send before a missing delivery counts as lost (default 5)",
    )
    add("--body-chars", type=int, default=100)
    add("--procs", type=int, default=3, help="load-generator processes (default 3)")
    add(
        "--connect-concurrency",
        type=int,
        default=16,
        help="handshakes in flight per generator process (default 16)",
    )
    add(
        "--settle-max",
        type=float,
        default=30.0,
        help="longest wait for the server to go idle after the connections (default 30 s)",
    )
    add(
        "--issue-profile",
        action="store_true",
        help="the issue's load: 200 sockets, rooms of 4, 800 msg/s, every socket sends",
    )
    add(
        "--deflate",
        action="store_true",
        help="clients offer permessage-deflate, as browsers do (default: off)",
    )
    add(
        "--repeat",
        type=int,
        default=1,
        help="run everything this many times, interleaved; the table shows medians",
    )
    add(
        "--profile",
        action="store_true",
        help="py-spy each service process while it is sending; print where the time goes",
    )
    add(
        "--syscalls",
        action="store_true",
        help="count system calls per message in each server process (Linux perf)",
    )
    add("--debug", action="store_true", help="run the service with DJANGO_DEBUG=1")
    add(
        "--database-url",
        default=os.environ.get(
            "BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/bench_chat"
        ),
    )
    add(
        "--redis-url",
        default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/11"),
        help="a Redis database for the benchmark only (default db 11)",
    )
    add("--keep", action="store_true", help="keep the scratch database")
    add("--output", type=Path, default=RESULTS / "chat_bench.json")
    args = parser.parse_args(argv)  # fmt: skip
    if args.issue_profile:
        args.sockets, args.room_size, args.rates, args.sender_share = 200, 4, "800", 1.0
    args.rates = [float(rate) for rate in str(args.rates).split(",") if rate.strip()]
    for url in (args.database_url, args.redis_url):
        if "@127.0.0.1:" not in url and "//127.0.0.1:" not in url:
            parser.error(f"only 127.0.0.1 targets: {url}")
    args.targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    unknown = [t for t in args.targets if t not in TARGETS]
    if unknown:
        parser.error(f"unknown targets {unknown}; known: {', '.join(TARGETS)}")
    return args


# --- Setup ---------------------------------------------------------------------------


def clean_redis(redis_url: str, patterns: tuple[str, ...] = ("asgi*", "th:presence:*")) -> None:
    """Forget, in the benchmark's own Redis database, the channel-layer state (groups of
    dead processes, undelivered events) and presence entries of earlier targets."""
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        for pattern in patterns:
            keys = list(client.scan_iter(match=pattern, count=1000))
            for start in range(0, len(keys), 1000):
                client.delete(*keys[start : start + 1000])
    finally:
        client.close()


def socket_specs(
    target: Target, servers: list[ServerProcess], people: list[fixtures.Person], args
) -> list[dict[str, Any]]:
    """One spec per socket: its server (alternating for scale-out), thread, cookie, role."""
    senders_per_room = max(1, round(args.sender_share * args.room_size))
    specs = []
    for i in range(args.sockets):
        server = servers[i % len(servers)]
        spec = {
            "i": i,
            "url": f"ws://127.0.0.1:{server.port}/ws/",
            "sender": i % args.room_size < senders_per_room,
        }
        if target.service:
            spec["thread"] = people[i].thread_id
            spec["cookie"] = people[i].cookie
        else:
            spec["thread"] = i // args.room_size + 1
        specs.append(spec)
    return specs


async def warm_up_server(specs: list[dict[str, Any]], n: int = 8) -> None:
    """Open and close a few sockets so lazy start-up (the hub, the thread pool, database
    connections) is not counted as the memory of the idle connections."""
    stats = loadgen.Stats()
    sockets = [loadgen.Socket(spec, stats, deflate=False) for spec in specs[:n]]
    await loadgen.open_all(sockets, concurrency=n, timeout=30)
    await asyncio.gather(*(s.close() for s in sockets))


async def wait_until_idle(servers: list[ServerProcess], longest: float) -> float:
    """Seconds until every server used < 10 % of a core over two 0.5 s windows in a row."""
    started = time.monotonic()
    calm = 0
    while time.monotonic() - started < longest and calm < 2:
        before = [s.cpu_seconds() for s in servers]
        await asyncio.sleep(0.5)
        busiest = max(s.cpu_seconds() - b for s, b in zip(servers, before, strict=True)) / 0.5
        calm = calm + 1 if busiest < 0.10 else 0
    return time.monotonic() - started


async def sample_hub_backlog(redis_url: str, every: float, into: list[tuple[float, int]]) -> None:
    """Until cancelled: the events waiting in Redis for the web processes' hubs (the
    channel layer's per-process queues, ``asgihub.*``), every ``every`` seconds. A
    growing number means the hubs receive events more slowly than they are published."""
    import redis.asyncio as redis

    client = redis.Redis.from_url(redis_url)
    try:
        while True:
            waiting = 0
            async for key in client.scan_iter(match="asgihub.*", count=1000):
                waiting += await client.zcard(key)
            into.append((time.time(), waiting))
            await asyncio.sleep(every)
    finally:
        await client.aclose()


def cpu_by_process() -> dict[int, tuple[str, float]]:
    """CPU seconds so far of every process on the machine, with its name."""
    import psutil

    seen = {}
    for proc in psutil.process_iter(["name", "cpu_times"]):
        times = proc.info["cpu_times"]
        if times is not None:
            seen[proc.pid] = (proc.info["name"] or "?", times.user + times.system)
    return seen


def foreign_cpu_pct(before: dict, after: dict, ours: set[int], seconds: float) -> float:
    """CPU used during the run by processes that are neither the benchmark's (this one,
    its servers, its generators) nor PostgreSQL and Redis: other people's work on a
    shared machine, in % of one core. A large value makes that run's numbers suspect."""
    busy = 0.0
    for pid, (name, cpu) in after.items():
        if pid in ours or name.startswith(("postgres", "redis")):
            continue
        busy += cpu - before.get(pid, (name, 0.0))[1]  # all of it if it started meanwhile
    return 100 * busy / seconds


def our_pids() -> set[int]:
    import psutil

    me = psutil.Process()
    return {me.pid, *(child.pid for child in me.children(recursive=True))}


# --- Profiling -----------------------------------------------------------------------

SAMPLES_PER_S = 200  # py-spy's sampling rate

# Where a sample's time goes: the first component (in this order) with a frame
# containing one of its needles. Frames look like ``func (package/module.py)``.
COMPONENTS: list[tuple[str, tuple[str, ...]]] = [
    ("ORM: message_send (thread pool)", ("message_send (",)),
    ("ORM: other queries (thread pool)", ("DatabaseSyncToAsync.thread_handler",)),
    ("publish: channels_redis group_send", ("publish_now (", "group_send (")),
    ("hub: channel-layer receive", ("RedisChannelLayer.receive", "_clean_receive_backup")),
    ("hub: fan-out to local sockets", ("Hub.dispatch",)),
    ("hub: sync with the database / catch-up", ("sync_once", "hub_resync", "_catch_up")),
    ("presence (Redis)", ("RedisPresence", "_heartbeat_loop", "_set_presence")),
    ("consumer → server: sending frames", ("_write_loop", "handle_reply")),
    ("consumer: handling received frames", ("RealtimeConsumer.receive", "websocket_receive")),
    ("server: socket read + frame parsing", (
        "doRead (", "dataReceived", "processData", "data_received",
        "websockets_sansio_impl.py", "websockets_impl.py", "wsproto_impl.py")),
    ("daphne: periodic checkers", ("timeout_checker", "application_checker")),
    ("thread-pool hand-off", ("ThreadPoolExecutor", "_worker (", "SyncToAsync")),
    ("event loop / reactor itself", ("_run_once", "run_forever", "AsyncioSelectorReactor",
                                     "callWithLogger", "Runner.run")),
]  # fmt: skip


class Profiler:
    """``py-spy record --gil`` on each service process while the generator sends.

    Only samples of the thread holding the GIL are kept, so the shares say where the
    process's Python time goes, and samples / (rate × seconds) how much of the time
    the GIL was held at all: near 100 % means the process is bound by one core's worth
    of Python, whatever the number of cores.
    """

    def __init__(self, target: Target, servers: list[ServerProcess], seconds: float) -> None:
        self.target, self.servers, self.seconds = target, servers, int(seconds)
        self.procs: list[tuple[subprocess.Popen, Path]] = []

    def start(self) -> None:
        py_spy = Path(sys.executable).parent / "py-spy"
        if not py_spy.exists():
            py_spy = Path(shutil.which("py-spy") or "py-spy")
        for k, server in enumerate(self.servers):
            assert server.popen is not None
            out = RESULTS / f"chat-pyspy-{self.target.name}-{k}.txt"
            command = [
                str(py_spy), "record", "--pid", str(server.popen.pid),
                "--rate", str(SAMPLES_PER_S), "--duration", str(self.seconds),
                "--format", "raw", "--output", str(out), "--nonblocking", "--gil",
            ]  # fmt: skip
            proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self.procs.append((proc, out))

    def finish(self) -> dict[str, Any]:
        report: dict[str, Any] = {}
        for proc, out in self.procs:
            try:
                proc.wait(self.seconds + 30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if out.exists():
                summary = summarise_stacks(out)
                summary["gil_held_pct"] = round(
                    100 * summary["samples"] / (SAMPLES_PER_S * self.seconds), 1
                )
                report[out.name] = summary
        return report


SYSCALLS = ("epoll_ctl", "epoll_wait", "epoll_pwait", "sendto", "recvfrom", "write", "read",
            "writev", "sendmsg", "futex")  # fmt: skip


class SyscallCounter:
    """``perf stat`` of chosen system calls in each service process while it is sending:
    how many each message costs (``epoll_ctl`` shows Twisted registering and
    unregistering sockets for writability around every write; ``futex`` the hand-offs
    between the event loop and the thread pool)."""

    def __init__(self, target: Target, servers: list[ServerProcess], seconds: float) -> None:
        self.target, self.servers, self.seconds = target, servers, int(seconds)
        self.procs: list[tuple[subprocess.Popen, Path]] = []

    def start(self) -> None:
        perf = shutil.which("perf")
        if perf is None:
            print("    (perf not found: no system call counts)", flush=True)
            return
        events = ",".join(f"syscalls:sys_enter_{name}" for name in SYSCALLS)
        for k, server in enumerate(self.servers):
            assert server.popen is not None
            out = RESULTS / f"chat-perf-{self.target.name}-{k}.csv"
            command = [perf, "stat", "-x,", "-o", str(out), "-e", events,
                       "-p", str(server.popen.pid), "--", "sleep", str(self.seconds)]  # fmt: skip
            proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self.procs.append((proc, out))

    def finish(self, messages: int) -> dict[str, float]:
        """System calls per message sent in the window, all processes of the target."""
        counts: Counter = Counter()
        for proc, out in self.procs:
            try:
                proc.wait(self.seconds + 30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if not out.exists():
                continue
            for line in out.read_text().splitlines():
                fields = line.split(",")
                if len(fields) > 2 and fields[2].startswith("syscalls:sys_enter_"):
                    if fields[0].strip().isdigit():
                        counts[fields[2].removeprefix("syscalls:sys_enter_")] += int(fields[0])
        return {name: round(n / max(1, messages), 1) for name, n in counts.most_common()}


def summarise_stacks(collapsed: Path, n: int = 25) -> dict[str, Any]:
    """Shares of samples per component, per function (self) and per function (inclusive),
    from py-spy's collapsed stacks."""
    own: Counter = Counter()
    inclusive: Counter = Counter()
    components: Counter = Counter()
    total = 0
    for line in collapsed.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [_short(f) for f in stack.split(";") if f]
        frames = [f for f in frames if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        samples = int(count)
        total += samples
        component = next(
            (name for name, needles in COMPONENTS if any(n in f for f in frames for n in needles)),
            "other",
        )
        components[component] += samples
        own[frames[-1]] += samples
        for frame in set(frames):
            inclusive[frame] += samples
    if not total:
        return {"samples": 0}

    def share(counter: Counter, most: int | None = n) -> list[tuple[str, float]]:
        return [(key, round(100 * c / total, 1)) for key, c in counter.most_common(most)]

    return {
        "samples": total,
        "components_pct": share(components, None),
        "self_pct": share(own),
        "inclusive_pct": share(inclusive),
    }


def _short(frame: str) -> str:
    """``func (/long/path/site-packages/pkg/mod.py:123)`` → ``func (pkg/mod.py)``."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "python3.11/", str(REPO) + "/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{name} ({path})" if path else name


# --- One target at one rate ----------------------------------------------------------


async def run_target(
    target: Target, rate: float, people: list[fixtures.Person], args, env: dict[str, str]
) -> dict[str, Any]:
    """Start the target's servers, drive the load, measure memory and CPU, stop them."""
    if target.service:
        clean_redis(args.redis_url)
    servers = target.start(env, RESULTS / "chat-logs")
    profiler = None
    counter = None
    marks: dict[str, Any] = {}
    try:
        specs = socket_specs(target, servers, people, args)
        await warm_up_server(specs)
        await asyncio.sleep(1.0)
        rss_before = sum(s.rss() for s in servers)

        async def on_ready(_ready: list[dict]) -> None:
            nonlocal profiler, counter
            marks["settle_s"] = await wait_until_idle(servers, args.settle_max)
            marks["rss_idle"] = sum(s.rss() for s in servers)
            marks["cpu"] = sum(s.cpu_seconds() for s in servers)
            marks["t"] = time.monotonic()
            marks["ours"] = our_pids()
            marks["machine"] = cpu_by_process()
            if args.profile and target.service:
                profiler = Profiler(target, servers, 1 + args.warmup + args.duration)
                profiler.start()
                marks["ours"] |= {proc.pid for proc, _ in profiler.procs}
            if args.syscalls:
                counter = SyscallCounter(target, servers, 1 + args.warmup + args.duration)
                counter.start()
                marks["ours"] |= {proc.pid for proc, _ in counter.procs}

        params = loadgen.LoadParams(
            rate=rate, warmup=args.warmup, duration=args.duration, drain=args.drain,
            body_chars=args.body_chars, procs=args.procs, deflate=args.deflate,
            connect_concurrency=args.connect_concurrency,
        )  # fmt: skip
        backlog: list[tuple[float, int]] = []
        sampler = asyncio.create_task(sample_hub_backlog(args.redis_url, 1.0, backlog))
        try:
            result = await loadgen.run_load(specs, params, on_ready=on_ready)
        finally:
            sampler.cancel()
        cpu = sum(s.cpu_seconds() for s in servers) - marks["cpu"]
        wall = time.monotonic() - marks["t"]
        ours = marks["ours"] | our_pids()
        foreign = foreign_cpu_pct(marks["machine"], cpu_by_process(), ours, wall)
        rss_after = sum(s.rss() for s in servers)
        crashed = [s.log.name for s in servers if s.popen and s.popen.poll() is not None]
    finally:
        for server in servers:
            server.stop()
    result.update(
        target=target.name,
        description=target.description,
        rate=rate,
        service=target.service,
        processes=target.processes,
        settle_s=marks["settle_s"],
        rss_before_mb=rss_before / 2**20,
        rss_idle_mb=marks["rss_idle"] / 2**20,
        rss_after_mb=rss_after / 2**20,
        kb_per_idle_socket=(marks["rss_idle"] - rss_before) / 1024 / max(1, result["sockets"]),
        # [second from t_start, events waiting in Redis for the hubs], while sending
        hub_backlog=[
            [round(t - result["t_start"]), n]
            for t, n in backlog
            if 0 <= t - result["t_start"] <= args.warmup + args.duration + args.drain
        ],
        server_cpu_pct=100 * cpu / wall,
        others_cpu_pct=foreign,
        server_crashed=crashed,
    )
    if profiler is not None:
        result["profile"] = profiler.finish()
    if counter is not None:
        result["syscalls_per_message"] = counter.finish(result["sent"])
    return result


# --- Report --------------------------------------------------------------------------


def _fmt(value: float | None, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over repeated runs of one target and rate (the run itself when not repeated)."""
    if len(runs) == 1:
        return runs[0]
    merged = dict(runs[-1])
    for key in ("deliveries_per_s", "sent_per_s", "kb_per_idle_socket", "server_cpu_pct",
                "rss_before_mb", "rss_idle_mb", "rss_after_mb", "settle_s",
                "others_cpu_pct"):  # fmt: skip
        merged[key] = statistics.median(r[key] for r in runs)
    for key in ("latency_ms", "ack_latency_ms", "ping_rtt_ms"):
        merged[key] = {
            q: statistics.median(r[key][q] or 0 for r in runs) for q in runs[0][key] if q != "n"
        }
    for key in ("lost", "duplicated", "out_of_order", "send_failures"):
        merged[key] = sum(r[key] for r in runs)
    merged["runs"] = len(runs)
    return merged


def print_table(results: list[dict[str, Any]], args) -> None:
    header = (
        f"{'target':<17}{'rate':>5}{'socks':>6}{'sent/s':>7}{'deliv/s':>8}{'p50 ms':>8}"
        f"{'p90 ms':>8}{'p99 ms':>8}{'max ms':>8}{'ack p50':>8}{'ping p99':>9}{'lost':>7}"
        f"{'dup':>4}{'ooo':>4}{'settle s':>9}{'RSS0 MB':>8}{'RSS1 MB':>8}{'KB/sock':>8}"
        f"{'srv CPU':>8}{'others':>7}{'thr/bare':>9}{'p50/bare':>9}{'p99/bare':>9}"
    )
    print(
        f"\nchat benchmark: {args.sockets} sockets, rooms of {args.room_size}, sender share "
        f"{args.sender_share:g}, {args.warmup:g} s warm-up + {args.duration:g} s measured + "
        f"{args.drain:g} s drain, {args.procs} generator processes, {os.cpu_count()} CPUs"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        bare = next((b for b in results if b["target"] == "bare" and b["rate"] == r["rate"]), None)
        lat = r["latency_ms"]
        ratios = ["-", "-", "-"]
        if bare and bare["deliveries_per_s"] and bare["latency_ms"]["p50"]:
            ratios = [
                _fmt(r["deliveries_per_s"] / bare["deliveries_per_s"], ".2f"),
                _fmt((lat["p50"] or 0) / bare["latency_ms"]["p50"], ".0f"),
                _fmt((lat["p99"] or 0) / bare["latency_ms"]["p99"], ".0f"),
            ]
        print(
            f"{r['target']:<17}{r['rate']:>5.0f}{r['sockets']:>6}{r['sent_per_s']:>7.0f}"
            f"{r['deliveries_per_s']:>8.0f}{_fmt(lat['p50']):>8}{_fmt(lat['p90']):>8}"
            f"{_fmt(lat['p99']):>8}{_fmt(lat['max'], '.0f'):>8}"
            f"{_fmt(r['ack_latency_ms']['p50']):>8}{_fmt(r['ping_rtt_ms']['p99']):>9}"
            f"{r['lost']:>7}{r['duplicated']:>4}{r['out_of_order']:>4}{r['settle_s']:>9.1f}"
            f"{r['rss_before_mb']:>8.0f}{r['rss_idle_mb']:>8.0f}{r['kb_per_idle_socket']:>8.1f}"
            f"{r['server_cpu_pct']:>7.0f}%{r['others_cpu_pct']:>6.0f}%"
            f"{ratios[0]:>9}{ratios[1]:>9}{ratios[2]:>9}"
        )
    print()
    for r in results:
        notes = []
        for key in ("connect_failures", "errors", "closed_early"):
            if r.get(key):
                notes.append(f"{key} {r[key]}")
        for key in ("duplicate_acks", "send_failures", "seq_mismatch", "stray"):
            if r.get(key):
                notes.append(f"{key} {r[key]}")
        if r.get("server_crashed"):
            notes.append(f"server exited early: {r['server_crashed']}")
        notes.append(
            f"generator CPU {r['loadgen_cpu_pct']} % of a core, send lag p99 "
            f"{r['sender_lag_ms_p99']:.1f} ms"
        )
        print(f"  {r['target']} @ {r['rate']:g}: {r['description']}; " + "; ".join(notes))
    print("\nper second of sending (warm-up excluded): delivery p99 / ack p99 / slowest ping, ms")
    for r in results:
        cells = " ".join(
            f"{_fmt(p99, '.0f')}/{_fmt(ack, '.0f')}/{_fmt(ping, '.0f')}"
            for _, _, _, p99, ack, ping in r.get("timeline", [])
        )
        print(f"  {r['target']:<17}{r['rate']:>5.0f}  {cells}")
    print("\nevents waiting in Redis for the hubs, per second from the first send:")
    for r in results:
        if r.get("service") and r.get("hub_backlog"):
            cells = " ".join(str(n) for _, n in r["hub_backlog"])
            print(f"  {r['target']:<17}{r['rate']:>5.0f}  {cells}")
    for r in results:
        if r.get("syscalls_per_message"):
            calls = ", ".join(f"{k} {v:g}" for k, v in r["syscalls_per_message"].items())
            print(f"\nsystem calls per message, {r['target']} @ {r['rate']:g}: {calls}")
    for r in results:
        for name, prof in (r.get("profile") or {}).items():
            print(
                f"\npy-spy --gil {name} @ {r['rate']:g} msg/s: {prof.get('samples', 0)} samples, "
                f"GIL held {prof.get('gil_held_pct', 0)} % of the time; by component:"
            )
            for component, pct in prof.get("components_pct", []):
                print(f"  {pct:5.1f} %  {component}")
            print("  top functions, self time:")
            for frame, pct in prof.get("self_pct", [])[:12]:
                print(f"  {pct:5.1f} %  {frame}")


# --- Main ----------------------------------------------------------------------------


async def main_async(args) -> list[dict[str, Any]]:
    env = service_env(args.database_url, args.redis_url, RESULTS / "chat-data", args.debug)
    people: list[fixtures.Person] = []
    if any(TARGETS[name].service for name in args.targets):
        print(f"setting up {args.database_url} ({args.sockets} people) ...", flush=True)
        # The same settings as the servers': sessions are signed with the secret key.
        os.environ.update(env)
        fixtures.recreate_database(args.database_url, env)
        clean_redis(args.redis_url, ("asgi*", "th:*"))  # also earlier runs' cached sessions
        fixtures.setup_django()
        people = await asyncio.to_thread(fixtures.make_people, args.sockets, args.room_size)
    runs: dict[tuple[str, float], list[dict[str, Any]]] = {}
    try:
        for repeat in range(args.repeat):
            for rate in args.rates:
                for name in args.targets:
                    print(f"[{repeat + 1}/{args.repeat}] {name} @ {rate:g} msg/s ...", flush=True)
                    result = await run_target(TARGETS[name], rate, people, args, env)
                    lat = result["latency_ms"]
                    print(
                        f"    {result['deliveries_per_s']:.0f} deliveries/s, p50 "
                        f"{_fmt(lat['p50'])} ms, p99 {_fmt(lat['p99'])} ms, lost "
                        f"{result['lost']}, duplicated {result['duplicated']}",
                        flush=True,
                    )
                    runs.setdefault((name, rate), []).append(result)
    finally:
        if people and not args.keep:
            await asyncio.to_thread(fixtures.drop_database, args.database_url)
    return [summarise(runs[key]) for key in runs]


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.list:
        for target in TARGETS.values():
            print(f"{target.name:<17} {target.description}")
        return
    RESULTS.mkdir(parents=True, exist_ok=True)
    results = asyncio.run(main_async(args))
    print_table(results, args)
    payload = {
        "benchmark": "chat",
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "cpus": os.cpu_count(),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "results": results,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(payload, indent=2, ensure_ascii=False))
    print(f"\nwritten {args.output}")


if __name__ == "__main__":
    main()
