"""Real servers for the fault tests, and the project's processes pointed at them.

The shared PostgreSQL (5432) and Redis (6379) serve everybody's tests and are never
touched here. Each test starts its own throwaway Redis (``redis-server`` as a
subprocess) or PostgreSQL cluster (Debian's ``initdb``/``pg_ctl``, run as the
``postgres`` OS user, since ``initdb`` refuses root), and kills or restarts that.
The project's processes (daphne, Celery workers, relay nodes) are started as in
``tests/integration``, pointed at these servers through their environment.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.integration.test_processes import BIN, ROOT, _child_env, _free_port, _wait_for

PG_BIN = Path(os.environ.get("TELEHEALTH_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))

__all__ = [
    "BIN",
    "PG_BIN",
    "ROOT",
    "PostgresCluster",
    "RedisServer",
    "child_env",
    "free_port",
    "listening",
    "missing",
    "output",
    "start_daphne",
    "start_relay",
    "start_worker",
    "stop",
    "wait_for",
    "wait_listening",
]

free_port = _free_port
wait_for = _wait_for


def missing(what: str) -> None:
    """Skip locally; in CI (services required) a missing server binary is a failure."""
    if os.environ.get("TELEHEALTH_TEST_REQUIRE_SERVICES") == "1":
        pytest.fail(f"fault tests need {what} (TELEHEALTH_TEST_REQUIRE_SERVICES=1)")
    pytest.skip(f"fault tests need {what}")


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def child_env(**overrides: str) -> dict[str, str]:
    """The environment of a project process: the test database and data folder, plus
    ``overrides`` (REDIS_URL, DATABASE_URL, …)."""
    env = _child_env()
    env.update(overrides)
    return env


# --- Redis ------------------------------------------------------------------------------


class RedisServer:
    """A throwaway ``redis-server`` on a free port, no persistence: killing it loses
    everything, as a crashed or replaced Redis would."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.process: subprocess.Popen | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
                "--dir",
                str(self.workdir),
                "--loglevel",
                "warning",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(self.ping, 10, f"redis-server on {self.port}")

    def ping(self) -> bool:
        import redis

        try:
            return bool(redis.Redis(port=self.port, socket_connect_timeout=0.5).ping())
        except redis.exceptions.ConnectionError:
            return False

    def pause(self) -> None:
        """SIGSTOP: the server hangs; connections stay open and nothing answers."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL: no shutdown, no save; every client's connection breaks."""
        self.resume()  # a stopped process takes SIGKILL too, but let it go cleanly
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)
        wait_for(lambda: not listening(self.port), 10, "the killed redis-server's port to close")


# --- PostgreSQL ---------------------------------------------------------------------------


class PostgresCluster:
    """A throwaway PostgreSQL cluster on 127.0.0.1 with trust authentication."""

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="th-faults-pg-"))
        self.data = self.dir / "data"
        shutil.chown(self.dir, "postgres", "postgres")

    def _as_postgres(self, *args: str, timeout: float = 60) -> str:
        result = subprocess.run(
            ["runuser", "-u", "postgres", "--", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            cwd=self.dir,
        )
        if result.returncode != 0:
            raise AssertionError(f"{args[0]} failed: {result.stdout}\n{result.stderr}")
        return result.stdout

    def init(self) -> None:
        self._as_postgres(
            str(PG_BIN / "initdb"),
            "-D",
            str(self.data),
            "--auth=trust",
            "--username=postgres",
            "--encoding=UTF8",
            "--no-sync",
        )

    def start(self) -> None:
        self._pg_ctl("start")

    def restart(self) -> None:
        """``pg_ctl restart -m fast``: every backend is terminated, open transactions
        roll back, and the server is back when this returns."""
        self._pg_ctl("restart", "-m", "fast")

    def _pg_ctl(self, action: str, *extra: str) -> None:
        options = (
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        self._as_postgres(
            str(PG_BIN / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.dir / "server.log"),
            "-w",
            "-t",
            "60",
            "-o",
            options,
            action,
            *extra,
        )

    def copy_database(self, source: dict, dbname: str) -> None:
        """A copy of ``source`` (a Django settings dict: the test database, with the
        rows the test made) as ``dbname`` in this cluster, with pg_dump/pg_restore."""
        dump = subprocess.run(
            [
                str(PG_BIN / "pg_dump"),
                "-h",
                source["HOST"] or "127.0.0.1",
                "-p",
                str(source["PORT"] or 5432),
                "-U",
                source["USER"] or "postgres",
                "-Fc",
                "-d",
                source["NAME"],
            ],
            capture_output=True,
            check=True,
            timeout=120,
            env={**os.environ, "PGPASSWORD": source.get("PASSWORD") or ""},
        ).stdout
        target = ["-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres"]
        subprocess.run(
            [str(PG_BIN / "createdb"), *target, dbname], check=True, capture_output=True, timeout=60
        )
        subprocess.run(
            [str(PG_BIN / "pg_restore"), *target, "-d", dbname, "--no-owner", "--exit-on-error"],
            input=dump,
            check=True,
            capture_output=True,
            timeout=300,
        )

    def postmaster_pid(self) -> int:
        return int((self.data / "postmaster.pid").read_text().split()[0])

    def url(self, dbname: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{dbname}"

    def dsn(self, dbname: str) -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname={dbname}"

    def destroy(self) -> None:
        with contextlib.suppress(AssertionError, subprocess.TimeoutExpired):
            self._as_postgres(
                str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"
            )
        shutil.rmtree(self.dir, ignore_errors=True)


# --- The project's processes ----------------------------------------------------------------


def _spawn(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    """Output goes to a file, not a pipe: a process that logs a lot while a server
    is down would otherwise block on a full pipe that nobody reads until the end."""
    log = tempfile.NamedTemporaryFile(  # closed by stop()
        prefix="th-faults-", suffix=".log", delete=False
    )
    process = subprocess.Popen(args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    process.log_file = log  # type: ignore[attr-defined]
    return process


def output(process: subprocess.Popen) -> str:
    log = process.log_file  # type: ignore[attr-defined]
    return Path(log.name).read_text(errors="replace")


def stop(process: subprocess.Popen, *, kill: bool = False) -> str:
    """Stop (SIGTERM, or SIGKILL) the process; returns what it wrote."""
    if process.poll() is None:
        if kill:
            process.kill()
        else:
            process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)
    text = output(process)
    log = process.log_file  # type: ignore[attr-defined]
    log.close()
    Path(log.name).unlink(missing_ok=True)
    return text


def start_daphne(port: int, env: dict[str, str]) -> subprocess.Popen:
    process = _spawn(
        [str(BIN / "daphne"), "-b", "127.0.0.1", "-p", str(port), "telehealth.asgi:application"],
        env,
    )
    return process


def start_worker(env: dict[str, str], *args: str) -> subprocess.Popen:
    return _spawn(
        [str(BIN / "celery"), "-A", "telehealth", "worker", "--loglevel", "INFO", *args], env
    )


def start_relay(port: int, node_id: str, redis_url: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAY_")}
    env["PYTHONPATH"] = str(ROOT)
    return _spawn(
        [
            sys.executable,
            "-m",
            "relay",
            "--dev",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--node-id",
            node_id,
            "--redis-url",
            redis_url,
            "--ice-host",
            "127.0.0.1",
            "--log-level",
            "warning",
        ],
        env,
    )


def wait_listening(process: subprocess.Popen, port: int, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not listening(port):
        if process.poll() is not None:
            raise AssertionError(f"{what} exited ({process.returncode}):\n{output(process)}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)
