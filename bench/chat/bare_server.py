"""The baseline: a bare `websockets` broadcast server, nothing else.

    .venv/bin/python bench/chat/bare_server.py --port 8765 [--uvloop]

It speaks just enough of docs/protocol.md for the load generator to drive it
exactly like the real service: a ``welcome`` frame on connect; ``subscribe``
(any thread id, no authentication, no database) answered by ``subscribed``;
``send`` answered by an ``ack`` to the sender and a ``message`` frame, with a
per-thread ``seq`` counted in memory, broadcast to every socket subscribed to
the thread (the sender included) with ``websockets.broadcast``, which writes
to each socket's transport at once without awaiting anything.

What it measures, against the real service: the cost of the network, the
websocket framing and the event loop alone, so that the service's ratio to it
says how much authentication, persistence, sequence numbers and the ASGI
server add.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
from collections import defaultdict
from datetime import UTC, datetime
from itertools import count

from websockets.asyncio.server import ServerConnection, broadcast, serve

DUMPS = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


class Rooms:
    """Sockets per thread and each thread's last seq: the whole server state."""

    def __init__(self) -> None:
        self.members: dict[int, set[ServerConnection]] = defaultdict(set)
        self.last_seq: dict[int, int] = defaultdict(int)
        self.ids = count(1)

    async def handle(self, ws: ServerConnection) -> None:
        joined: set[int] = set()
        await ws.send(DUMPS({"type": "welcome", "protocol": 1, "user": {"id": 0, "name": "bare"}}))
        try:
            async for text in ws:
                frame = json.loads(text)
                kind = frame.get("type")
                thread = frame.get("thread")
                if kind == "send":
                    self.publish(ws, frame)
                elif kind == "subscribe":
                    self.members[thread].add(ws)
                    joined.add(thread)
                    await ws.send(
                        DUMPS(
                            {
                                "type": "subscribed",
                                "ref": frame.get("ref"),
                                "thread": thread,
                                "last_seq": self.last_seq[thread],
                            }
                        )
                    )
                elif kind == "ping":
                    await ws.send(DUMPS({"type": "pong", "ref": frame.get("ref")}))
        finally:
            for thread in joined:
                self.members[thread].discard(ws)

    def publish(self, ws: ServerConnection, frame: dict) -> None:
        thread = frame["thread"]
        self.last_seq[thread] += 1
        seq = self.last_seq[thread]
        created_at = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        message = {
            "type": "message",
            "thread": thread,
            "seq": seq,
            "id": next(self.ids),
            "client_id": frame.get("client_id"),
            "sender": {"id": 0, "name": "bare"},
            "kind": "text",
            "body": frame.get("body", ""),
            "attachments": [],
            "created_at": created_at,
        }
        ack = {
            "type": "ack",
            "ref": frame.get("ref"),
            "thread": thread,
            "client_id": message["client_id"],
            "seq": seq,
            "id": message["id"],
            "created_at": created_at,
            "duplicate": False,
        }
        broadcast([ws], DUMPS(ack))
        broadcast(self.members[thread], DUMPS(message))


async def main(host: str, port: int) -> None:
    rooms = Rooms()
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set_result, None)
    async with serve(rooms.handle, host, port, ping_interval=None, max_queue=64, backlog=2048):
        await stop


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop instead of asyncio")
    args = parser.parse_args()
    if args.uvloop:
        import uvloop

        uvloop.run(main("127.0.0.1", args.port))
    else:
        asyncio.run(main("127.0.0.1", args.port))
