"""``python -m relay`` as a real process: registry, events stream, clean shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from relay import testing
from relay.registry import NODES_KEY
from relay.tokens import DEV_SECRET, issue_token

from .util import REDIS_URL, eventually

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAY_")}
    env["PYTHONPATH"] = str(ROOT)
    return env


def test_the_node_refuses_to_start_without_a_secret() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "relay", "--port", "1"],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "RELAY_TOKEN_SECRET" in result.stderr


async def _events(http: httpx.AsyncClient, token: str, into: list[dict]) -> None:
    async with http.stream(
        "GET", "/rooms/visit-42/events", headers={"Authorization": f"Bearer {token}"}
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                into.append(json.loads(line[6:]))


async def test_a_node_process_registers_serves_and_leaves_cleanly(redis_db2) -> None:
    port = _free_port()
    process = subprocess.Popen(
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
            "relay-proc",
            "--redis-url",
            REDIS_URL,
            "--ice-host",
            "127.0.0.1",
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    events: list[dict] = []
    pc = None
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:

            async def up() -> bool:
                with contextlib.suppress(httpx.HTTPError):
                    return (await http.get("/health")).status_code == 200
                return False

            deadline = time.monotonic() + 20
            while not await up():
                assert process.poll() is None and time.monotonic() < deadline, "no start"
                await asyncio.sleep(0.1)
            health = (await http.get("/health")).json()
            assert health["node"] == "relay-proc"

            entry = await redis_db2.hget(NODES_KEY, "relay-proc")
            assert entry is not None
            assert json.loads(entry)["url"] == f"http://127.0.0.1:{port}"

            token = issue_token(DEV_SECRET, room="visit-42", sub="bob", caps=["subscribe"])
            reader = asyncio.ensure_future(_events(http, token, events))
            assert await eventually(lambda: events and events[0]["type"] == "hello")

            pc, _location = await testing.publish(
                http,
                "visit-42",
                issue_token(DEV_SECRET, room="visit-42", sub="alice", caps=["publish"]),
                video=testing.MarkerVideoTrack(),
            )
            assert await eventually(lambda: pc.connectionState == "connected")
            assert await eventually(lambda: any(e["type"] == "publisher-joined" for e in events))
            assert (await http.get("/health")).json()["streams"] == 2

            process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(reader, timeout=10)
            assert events[-1]["type"] == "rejoin", events
            assert await eventually(lambda: process.poll() is not None, timeout=15)
            assert process.returncode == 0
            assert await eventually(lambda: pc.connectionState == "closed", timeout=10), (
                "the node closed the publisher's connection on the way out"
            )
            assert await redis_db2.hget(NODES_KEY, "relay-proc") is None
    finally:
        if pc is not None:
            await pc.close()
        if process.poll() is None:
            process.kill()
        output = process.stdout.read().decode() if process.stdout else ""
        process.wait(timeout=10)
    assert "v=0" not in output and "a=candidate" not in output, "SDP must never be logged"


async def test_the_server_wakes_once_a_second_yet_stops_at_once_on_a_signal() -> None:
    import uvicorn

    from relay.__main__ import RelayServer

    class Node:
        shutting_down = False

        def begin_shutdown(self) -> None:
            self.shutting_down = True

    node = Node()
    server = RelayServer(uvicorn.Config(app=None), node)
    server.TICK_SECONDS = 60.0  # only a signal can end the loop within the test
    server.loop = asyncio.get_running_loop()
    ticks = []
    on_tick = server.on_tick

    async def counted(counter: int) -> bool:
        ticks.append(counter)
        return await on_tick(counter)

    server.on_tick = counted
    loop_task = asyncio.ensure_future(server.main_loop())
    assert await eventually(lambda: ticks == [0])
    server.handle_exit(signal.SIGTERM, None)
    await asyncio.wait_for(loop_task, timeout=10)
    assert node.shutting_down and server.should_exit
    assert ticks == [0, 600], "uvicorn's tick counter advanced by a whole interval"
