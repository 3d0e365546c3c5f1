"""A chat client that behaves as docs/protocol.md asks of one, over a real websocket.

It keeps the highest seq it has, resumes with ``subscribe after=<that seq>`` when
its socket is lost, and retries a ``send`` with the same ``client_id`` until it
is acknowledged (after an ``unavailable`` error, a lost ack or a lost socket).
It records every ``message`` frame the server sends, duplicates and all, so a
test can check the server's promise: each seq once, in order, on every client.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

import websockets


class ChatClient:
    def __init__(self, *, port: int, cookie: str, thread_id: int, name: str) -> None:
        self.port = port
        self.cookie = cookie
        self.thread_id = thread_id
        self.name = name
        self.received: list[int] = []  # every message frame's seq, in arrival order
        self.last_seq = 0
        self.acks: dict[str, int] = {}  # client_id → seq
        self.unavailable = 0  # `unavailable` errors answered to this client
        self.duplicates: list[str] = []  # sends acknowledged as already stored
        self.connections = 0
        self.typing_from: list[int] = []
        self.events: list[dict[str, Any]] = []
        self._ws: Any = None
        self._reader: asyncio.Task | None = None
        self._waiters: dict[str, asyncio.Future] = {}
        self._closed = asyncio.Event()

    # --- connection -------------------------------------------------------------------

    async def connect(self, *, timeout: float = 60, watch: str | None = None) -> None:
        """Connect (retrying with a short backoff) and subscribe after the last seq."""
        deadline = time.monotonic() + timeout
        delay = 0.2
        while True:
            try:
                await self._open(watch)
                return
            except (TimeoutError, OSError, websockets.exceptions.WebSocketException):
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 1.5, 1.0)

    async def _open(self, watch: str | None) -> None:
        ws = await websockets.connect(
            f"ws://127.0.0.1:{self.port}/ws/",
            additional_headers={"Cookie": self.cookie, "Origin": f"http://127.0.0.1:{self.port}"},
            open_timeout=5,
        )
        try:
            welcome = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert welcome["type"] == "welcome", welcome
        except BaseException:
            await ws.close()
            raise
        self._ws = ws
        self._closed.clear()
        self.connections += 1
        self._reader = asyncio.create_task(self._read(ws))
        try:
            ref = f"sub-{self.connections}"
            answer = await self._request(
                {"type": "subscribe", "thread": self.thread_id, "after": self.last_seq, "ref": ref},
                ref,
                timeout=10,
            )
            self._expect(answer, "subscribed")
            if watch:
                ref = f"watch-{self.connections}"
                answer = await self._request({"type": "watch", "topic": watch, "ref": ref}, ref, 10)
                self._expect(answer, "watching")
        except BaseException:
            await ws.close()
            raise

    def _expect(self, answer: dict[str, Any], kind: str) -> None:
        if answer.get("type") == "error" and answer.get("code") == "unavailable":
            self.unavailable += 1
            raise ConnectionError("the server is briefly unavailable")
        assert answer["type"] == kind, answer

    async def drop(self) -> None:
        """Lose the socket, as a phone losing its network does."""
        ws = self._ws
        if ws is not None:
            await ws.close()
        await self._closed.wait()

    async def close(self) -> None:
        await self.drop()

    async def _read(self, ws: Any) -> None:
        try:
            async for raw in ws:
                frame = json.loads(raw)
                kind = frame.get("type")
                if kind == "message" and frame.get("thread") == self.thread_id:
                    self.received.append(frame["seq"])
                    self.last_seq = max(self.last_seq, frame["seq"])
                elif kind == "typing":
                    self.typing_from.append(frame["user"]["id"])
                elif kind == "event":
                    self.events.append(frame)
                ref = frame.get("ref")
                if ref is not None and kind in ("ack", "error", "subscribed", "watching"):
                    waiter = self._waiters.pop(str(ref), None)
                    if waiter is not None and not waiter.done():
                        waiter.set_result(frame)
        except websockets.exceptions.ConnectionClosed:
            pass
        finally:
            if self._ws is ws:
                self._ws = None
            for waiter in self._waiters.values():
                if not waiter.done():
                    waiter.set_exception(ConnectionError("socket lost"))
            self._waiters.clear()
            self._closed.set()

    async def _request(self, frame: dict[str, Any], ref: str, timeout: float) -> dict[str, Any]:
        if self._ws is None:
            raise ConnectionError("not connected")
        waiter = asyncio.get_running_loop().create_future()
        self._waiters[ref] = waiter
        await self._ws.send(json.dumps(frame))
        try:
            return await asyncio.wait_for(waiter, timeout)
        finally:
            self._waiters.pop(ref, None)

    # --- protocol -------------------------------------------------------------------------

    async def send(self, client_id: str, body: str, *, timeout: float = 60) -> int:
        """Send until acknowledged, always with the same client_id; returns the seq."""
        deadline = time.monotonic() + timeout
        while True:
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name}: {client_id} never acknowledged")
            try:
                if self._ws is None:
                    await self.connect(timeout=max(1.0, deadline - time.monotonic()))
                answer = await self._request(
                    {
                        "type": "send",
                        "thread": self.thread_id,
                        "client_id": client_id,
                        "body": body,
                        "ref": client_id,
                    },
                    client_id,
                    timeout=5,
                )
            except (TimeoutError, OSError, websockets.exceptions.WebSocketException):
                await asyncio.sleep(0.2)
                continue
            if answer["type"] == "ack":
                self.acks[client_id] = answer["seq"]
                if answer.get("duplicate"):
                    self.duplicates.append(client_id)
                return answer["seq"]
            assert answer.get("code") == "unavailable", answer
            self.unavailable += 1
            await asyncio.sleep(0.2)

    async def send_and_lose_the_ack(self, client_id: str, body: str) -> None:
        """Send, then lose the socket before the ack can arrive (a phone going into a
        tunnel): the client cannot know whether the message was stored."""
        assert self._ws is not None
        frame = {"type": "send", "thread": self.thread_id, "client_id": client_id, "body": body}
        await self._ws.send(json.dumps(frame))
        await self.drop()

    async def typing(self) -> None:
        if self._ws is not None:
            await self._ws.send(json.dumps({"type": "typing", "thread": self.thread_id}))

    async def wait_for_seq(self, seq: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while self.last_seq < seq:
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name} has seq {self.last_seq}, not {seq}")
            if self._ws is None:
                with contextlib.suppress(OSError, websockets.exceptions.WebSocketException):
                    await self.connect(timeout=max(1.0, deadline - time.monotonic()))
            await asyncio.sleep(0.05)
