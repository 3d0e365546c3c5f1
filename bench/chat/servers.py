"""The servers under test: how each target is started, watched and stopped.

A *target* is one or more server processes on 127.0.0.1 (two for the scale-out
targets, whose sockets alternate between them so every room spans both and
every message crosses Redis). Each process's resident memory (RSS, children
included) and CPU time are read with psutil, so the benchmark can report
memory per idle connection and how busy the server was.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
HERE = Path(__file__).resolve().parent
ASGI_APP = "telehealth.asgi:application"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class ServerProcess:
    """One server process on 127.0.0.1:``port``, its output in ``log``."""

    command: list[str]
    env: dict[str, str]
    port: int
    log: Path
    popen: subprocess.Popen | None = None
    _cpu_mark: float = 0.0

    def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("wb") as out:
            self.popen = subprocess.Popen(
                self.command, cwd=REPO, env=self.env, stdout=out, stderr=subprocess.STDOUT
            )

    def wait_listening(self, timeout: float = 60.0) -> None:
        """Until the port accepts TCP connections (or the process died, or timeout)."""
        assert self.popen is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                tail = self.log.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{self.command[0]} exited {self.popen.returncode}:\n{tail}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.2)
        raise TimeoutError(f"{' '.join(self.command)} did not listen within {timeout:.0f} s")

    def _processes(self) -> list[psutil.Process]:
        assert self.popen is not None
        try:
            root = psutil.Process(self.popen.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def rss(self) -> int:
        """Resident memory in bytes, the process and its children."""
        total = 0
        for proc in self._processes():
            try:
                total += proc.memory_info().rss
            except psutil.NoSuchProcess:
                pass
        return total

    def cpu_seconds(self) -> float:
        total = 0.0
        for proc in self._processes():
            try:
                times = proc.cpu_times()
                total += times.user + times.system
            except psutil.NoSuchProcess:
                pass
        return total

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (daphne and uvicorn shut down cleanly on it), then SIGKILL."""
        if self.popen is None or self.popen.poll() is not None:
            return
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(5)


@dataclass
class Target:
    """A named way to run the chat: a command per process, extra environment."""

    name: str
    description: str
    command: Callable[[int], list[str]]
    processes: int = 1
    service: bool = True  # False: the bare server (no cookies, no database)
    env: dict[str, str] = field(default_factory=dict)

    def start(self, base_env: dict[str, str], log_dir: Path) -> list[ServerProcess]:
        servers = []
        for k in range(self.processes):
            port = free_port()
            server = ServerProcess(
                command=self.command(port),
                env={**base_env, **self.env},
                port=port,
                log=log_dir / f"{self.name}-{k}.log",
            )
            server.start()
            servers.append(server)
        try:
            for server in servers:
                server.wait_listening()
        except BaseException:
            for server in servers:
                server.stop()
            raise
        return servers


def _daphne(*launch_options: str) -> Callable[[int], list[str]]:
    """daphne as deployed, or through bench/chat/launch.py with remedies applied."""

    def command(port: int) -> list[str]:
        args = ["-b", "127.0.0.1", "-p", str(port), ASGI_APP]
        if not launch_options:
            return [str(BIN / "daphne"), *args]
        return [sys.executable, str(HERE / "launch.py"), *launch_options, "daphne", *args]

    return command


def _uvicorn(*options: str, launch: tuple[str, ...] = ()) -> Callable[[int], list[str]]:
    def command(port: int) -> list[str]:
        args = [
            ASGI_APP, "--host", "127.0.0.1", "--port", str(port), "--lifespan", "off",
            "--no-access-log", "--log-level", "warning", *options,
        ]  # fmt: skip
        if not launch:
            return [str(BIN / "uvicorn"), *args]
        return [sys.executable, str(HERE / "launch.py"), *launch, "uvicorn", *args]

    return command


def _bare(*options: str) -> Callable[[int], list[str]]:
    def command(port: int) -> list[str]:
        return [sys.executable, str(HERE / "bare_server.py"), "--port", str(port), *options]

    return command


GC_LOG = str(REPO / "bench" / "results" / "chat-logs" / "gc.log")
UVICORN_WS = ("--ws", "websockets-sansio")

TARGETS: dict[str, Target] = {
    t.name: t
    for t in [
        # The baseline.
        Target("bare", "bare `websockets` broadcast server (asyncio)", _bare(), service=False),
        Target("bare-uvloop", "bare `websockets` server on uvloop", _bare("--uvloop"),
               service=False),
        # The service as deployed, on each server.
        Target("daphne", "the service under daphne (the default server)", _daphne()),
        Target("uvicorn", "the service under uvicorn --ws websockets-sansio (uvloop, httptools)",
               _uvicorn(*UVICORN_WS)),
        Target("uvicorn-legacy", "uvicorn --ws websockets (the legacy implementation)",
               _uvicorn("--ws", "websockets")),
        Target("uvicorn-wsproto", "uvicorn --ws wsproto", _uvicorn("--ws", "wsproto")),
        # Scale-out: two processes, every room spanning both.
        Target("daphne-x2", "two daphne processes, sockets alternating, fan-out via Redis",
               _daphne(), processes=2),
        Target("uvicorn-x2", "two uvicorn processes, sockets alternating, fan-out via Redis",
               _uvicorn(*UVICORN_WS), processes=2),
        # The Channels layers the bus replaced, for the choice between them
        # (settings.REALTIME_TRANSPORT).
        Target("daphne-core", "daphne, events through the channels_redis core layer",
               _daphne(), env={"REALTIME_TRANSPORT": "core"}),
        Target("daphne-pubsub", "daphne, events through the channels_redis pub/sub layer",
               _daphne(), env={"REALTIME_TRANSPORT": "pubsub"}),
        Target("daphne-x2-core", "two daphne processes, events through the core layer",
               _daphne(), processes=2, env={"REALTIME_TRANSPORT": "core"}),
        Target("daphne-x2-pubsub", "two daphne processes, events through the pub/sub layer",
               _daphne(), processes=2, env={"REALTIME_TRANSPORT": "pubsub"}),
        # Why daphne is slower, and what helps: one change at a time, then together.
        Target("daphne-nonvx", "daphne with autobahn's NVX C extensions off (AUTOBAHN_USE_NVX=0)",
               _daphne(), env={"AUTOBAHN_USE_NVX": "0"}),
        Target("daphne-uvloop", "daphne, Twisted's asyncio reactor on a uvloop loop",
               _daphne("--uvloop")),
        Target("daphne-eager", "daphne, socket writes attempted at once (not on the next turn)",
               _daphne("--eager-write")),
        Target("daphne-threads32", "daphne, ASGI_THREADS=32 (default pool: min(32, CPUs + 4))",
               _daphne("--threads", "32")),
        Target("daphne-gc-stock", "daphne with CPython's own garbage collection thresholds",
               _daphne(), env={"TELEHEALTH_GC_TUNING": "0"}),
        Target("daphne-orm-send", "daphne, messages stored through the ORM's thread pool",
               _daphne(), env={"TELEHEALTH_ASYNC_HOT_PATHS": "0"}),
        Target("daphne-pool16", "daphne, hot-path pool of 16 connections",
               _daphne(), env={"TELEHEALTH_ASYNC_POOL_SIZE": "16"}),
        Target("daphne-switch1ms", "daphne, GIL switch interval 1 ms (CPython's default: 5 ms)",
               _daphne("--switch-interval", "0.001")),
        Target("daphne-switch05ms", "daphne, GIL switch interval 0.5 ms",
               _daphne("--switch-interval", "0.0005")),
        Target("daphne-gcfreeze", "daphne, gc.freeze() after start-up + gen-0 threshold 50,000",
               _daphne("--gc-freeze")),
        Target("daphne-gclog", f"daphne, generation-2 collections logged to {GC_LOG}",
               _daphne("--gc-log", GC_LOG)),
        Target("daphne-tuned", "daphne + uvloop + eager writes + quiet autobahn + gc.freeze",
               _daphne("--uvloop", "--eager-write", "--quiet-autobahn", "--gc-freeze")),
        Target("uvicorn-gcfreeze", "uvicorn (websockets-sansio) + gc.freeze",
               _uvicorn(*UVICORN_WS, launch=("--gc-freeze",))),
        Target("uvicorn-gclog", f"uvicorn, generation-2 collections logged to {GC_LOG}",
               _uvicorn(*UVICORN_WS, launch=("--gc-log", GC_LOG))),
    ]
}  # fmt: skip


def service_env(database_url: str, redis_url: str, data_dir: Path, debug: bool) -> dict[str, str]:
    """The environment of the service's processes: production-like unless ``debug``."""
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "TELEHEALTH_DATA_DIR": str(data_dir),
        "DJANGO_STATIC_ROOT": str(data_dir / "static"),
        "DJANGO_DEBUG": "1" if debug else "0",
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
    }
    if not debug:  # production mode refuses the development secrets
        env.setdefault("DJANGO_SECRET_KEY", "bench-" + os.urandom(40).hex())
        env.setdefault("RELAY_TOKEN_SECRET", "bench-" + os.urandom(20).hex())
    return env
