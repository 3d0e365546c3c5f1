"""Relay node registry in Redis: heartbeats, liveness and room placement.

Layout (the contract with the web tier):

- hash ``relay:nodes``: field = node id, value = JSON
  ``{"id", "url", "rooms", "streams", "cpu", "ts"}`` written by every node
  every :data:`HEARTBEAT_INTERVAL` seconds; a node whose ``ts`` is older than
  :data:`DEAD_AFTER` seconds is dead. A node that shuts down cleanly deletes
  its field at once.
- string ``relay:room:<room>`` = node id: where a room lives. Written with
  ``SET NX`` by :func:`place_room` (web tier), so concurrent placements agree;
  re-placed with a compare-and-set when its node died.

The web tier (Django) imports this module, so it imports only ``redis``,
``json`` and the standard library: no aiortc, no Starlette. Every Redis helper
comes twice: a coroutine for ``redis.asyncio`` clients and a ``*_sync`` twin
for plain ``redis`` clients. ``pick_node`` and ``parse_nodes`` are pure.

When a node dies its rooms' clients lose media (ICE/DTLS fail, the events
stream ends); they ask the web tier to rejoin, the web tier calls
:func:`place_room`, which sees the dead node and places the room on a live
one, and hands out tokens naming the new node. :func:`rooms_on_dead_nodes`
lets the web tier find those rooms and tell their clients proactively.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

NODES_KEY = "relay:nodes"
ROOM_KEY_PREFIX = "relay:room:"
HEARTBEAT_INTERVAL = 2.0
DEAD_AFTER = 6.0
#: Placements expire on their own if nobody touches the room for this long.
PLACEMENT_TTL = 12 * 3600

logger = logging.getLogger(__name__)


class NoRelayAvailable(Exception):
    """No live relay node is registered."""


@dataclass(frozen=True)
class NodeInfo:
    id: str
    url: str
    rooms: int
    streams: int
    cpu: float
    ts: float

    def to_json(self) -> str:
        return json.dumps(
            {
                "id": self.id,
                "url": self.url,
                "rooms": self.rooms,
                "streams": self.streams,
                "cpu": self.cpu,
                "ts": self.ts,
            }
        )

    def alive(self, now: float, dead_after: float = DEAD_AFTER) -> bool:
        return now - self.ts <= dead_after


def room_key(room: str) -> str:
    return ROOM_KEY_PREFIX + room


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes | bytearray) else str(value)


def parse_nodes(raw: Mapping[Any, Any]) -> dict[str, NodeInfo]:
    """``HGETALL relay:nodes`` → ``{node_id: NodeInfo}``; unreadable entries are skipped."""
    nodes: dict[str, NodeInfo] = {}
    for field, value in raw.items():
        try:
            data = json.loads(_text(value))
            node = NodeInfo(
                id=str(data.get("id") or _text(field)),
                url=str(data["url"]),
                rooms=int(data.get("rooms", 0)),
                streams=int(data.get("streams", 0)),
                cpu=float(data.get("cpu", 0.0)),
                ts=float(data["ts"]),
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            logger.warning("ignoring unreadable relay registry entry %r", _text(field))
            continue
        nodes[node.id] = node
    return nodes


def alive_only(
    nodes: Mapping[str, NodeInfo], now: float, dead_after: float = DEAD_AFTER
) -> dict[str, NodeInfo]:
    return {node_id: n for node_id, n in nodes.items() if n.alive(now, dead_after)}


def pick_node(nodes: Iterable[NodeInfo] | Mapping[str, NodeInfo]) -> NodeInfo | None:
    """The least loaded node: fewest streams, then lowest cpu, then rooms, then id."""
    if isinstance(nodes, Mapping):
        nodes = nodes.values()
    candidates = list(nodes)
    if not candidates:
        return None
    return min(candidates, key=lambda n: (n.streams, n.cpu, n.rooms, n.id))


# Compare-and-set: (re)place ARGV[2] only if the key is absent or still holds
# ARGV[1] (the dead node read before); returns the placement now in force.
_CAS_SCRIPT = """
local current = redis.call('GET', KEYS[1])
if (not current) or current == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'EX', tonumber(ARGV[3]))
  return ARGV[2]
end
return current
"""


# --------------------------------------------------------------------------- asyncio


async def nodes_alive(
    redis_client: Any, now: float | None = None, dead_after: float = DEAD_AFTER
) -> dict[str, NodeInfo]:
    """Live nodes by id (``redis.asyncio`` client)."""
    now = time.time() if now is None else now
    return alive_only(parse_nodes(await redis_client.hgetall(NODES_KEY)), now, dead_after)


async def place_room(
    redis_client: Any, room: str, now: float | None = None, ttl: int = PLACEMENT_TTL
) -> NodeInfo:
    """The node for ``room``: its live placement, or the least loaded live node.

    A new placement is written with ``SET NX`` so concurrent callers agree; a
    placement on a dead node is replaced atomically (compare-and-set), so two
    web workers re-placing at once also agree. Raises :class:`NoRelayAvailable`.
    """
    key = room_key(room)
    for _ in range(5):
        nodes = await nodes_alive(redis_client, now)
        current = await redis_client.get(key)
        current = _text(current) if current is not None else None
        if current is not None and current in nodes:
            return nodes[current]
        best = pick_node(nodes)
        if best is None:
            raise NoRelayAvailable("no live relay node")
        if current is None:
            if await redis_client.set(key, best.id, nx=True, ex=ttl):
                return best
        else:
            winner = _text(await redis_client.eval(_CAS_SCRIPT, 1, key, current, best.id, ttl))
            if winner == best.id:
                return best
        # Someone else placed it meanwhile: loop and check that node is alive.
    raise NoRelayAvailable(f"could not agree on a node for room {room!r}")


async def rooms_on_dead_nodes(
    redis_client: Any, now: float | None = None, dead_after: float = DEAD_AFTER
) -> dict[str, str]:
    """``{room: dead_node_id}`` for placements whose node is not alive (SCAN, bounded)."""
    alive = await nodes_alive(redis_client, now, dead_after)
    stale: dict[str, str] = {}
    async for key in redis_client.scan_iter(match=ROOM_KEY_PREFIX + "*", count=500):
        node_id = await redis_client.get(key)
        if node_id is not None and _text(node_id) not in alive:
            stale[_text(key)[len(ROOM_KEY_PREFIX) :]] = _text(node_id)
    return stale


async def publish_heartbeat(redis_client: Any, info: NodeInfo) -> None:
    await redis_client.hset(NODES_KEY, info.id, info.to_json())


async def unregister(redis_client: Any, node_id: str) -> None:
    await redis_client.hdel(NODES_KEY, node_id)


async def prune_dead(redis_client: Any, now: float | None = None, older_than: float = 60.0) -> int:
    """Delete entries of nodes silent for ``older_than`` seconds (housekeeping)."""
    now = time.time() if now is None else now
    nodes = parse_nodes(await redis_client.hgetall(NODES_KEY))
    dead = [n.id for n in nodes.values() if now - n.ts > older_than]
    if dead:
        await redis_client.hdel(NODES_KEY, *dead)
    return len(dead)


class Heartbeat:
    """Publishes this node's load every ``interval`` seconds until stopped.

    ``load`` returns ``(rooms, streams, cpu)``. Redis outages are logged and
    retried at the next beat; the node keeps serving.
    """

    def __init__(
        self,
        redis_client: Any,
        node_id: str,
        url: str,
        load: Callable[[], tuple[int, int, float]],
        interval: float = HEARTBEAT_INTERVAL,
    ) -> None:
        self.redis = redis_client
        self.node_id = node_id
        self.url = url
        self.load = load
        self.interval = interval
        self.beats = 0
        self._task: asyncio.Task[None] | None = None

    def info(self) -> NodeInfo:
        rooms, streams, cpu = self.load()
        return NodeInfo(
            id=self.node_id,
            url=self.url,
            rooms=rooms,
            streams=streams,
            cpu=round(cpu, 4),
            ts=time.time(),
        )

    async def beat(self) -> None:
        await publish_heartbeat(self.redis, self.info())
        self.beats += 1

    async def _run(self) -> None:
        while True:
            try:
                await self.beat()
            except Exception as exc:  # a Redis outage must not kill the node
                logger.warning("relay heartbeat failed: %s", type(exc).__name__)
            await asyncio.sleep(self.interval)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"relay-heartbeat-{self.node_id}")

    async def stop(self, unregister_node: bool = True) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if unregister_node:
            try:
                await unregister(self.redis, self.node_id)
            except Exception as exc:
                logger.warning("relay unregister failed: %s", type(exc).__name__)


# --------------------------------------------------------------------------- sync twins


def nodes_alive_sync(
    redis_client: Any, now: float | None = None, dead_after: float = DEAD_AFTER
) -> dict[str, NodeInfo]:
    """:func:`nodes_alive` for a plain (synchronous) ``redis.Redis`` client."""
    now = time.time() if now is None else now
    return alive_only(parse_nodes(redis_client.hgetall(NODES_KEY)), now, dead_after)


def place_room_sync(
    redis_client: Any, room: str, now: float | None = None, ttl: int = PLACEMENT_TTL
) -> NodeInfo:
    """:func:`place_room` for a plain (synchronous) ``redis.Redis`` client."""
    key = room_key(room)
    for _ in range(5):
        nodes = nodes_alive_sync(redis_client, now)
        current = redis_client.get(key)
        current = _text(current) if current is not None else None
        if current is not None and current in nodes:
            return nodes[current]
        best = pick_node(nodes)
        if best is None:
            raise NoRelayAvailable("no live relay node")
        if current is None:
            if redis_client.set(key, best.id, nx=True, ex=ttl):
                return best
        else:
            winner = _text(redis_client.eval(_CAS_SCRIPT, 1, key, current, best.id, ttl))
            if winner == best.id:
                return best
    raise NoRelayAvailable(f"could not agree on a node for room {room!r}")


def rooms_on_dead_nodes_sync(
    redis_client: Any, now: float | None = None, dead_after: float = DEAD_AFTER
) -> dict[str, str]:
    alive = nodes_alive_sync(redis_client, now, dead_after)
    stale: dict[str, str] = {}
    for key in redis_client.scan_iter(match=ROOM_KEY_PREFIX + "*", count=500):
        node_id = redis_client.get(key)
        if node_id is not None and _text(node_id) not in alive:
            stale[_text(key)[len(ROOM_KEY_PREFIX) :]] = _text(node_id)
    return stale
