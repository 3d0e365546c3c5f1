"""The Redis registry (db 2): heartbeats, liveness, least-loaded placement."""

from __future__ import annotations

import asyncio
import json
import sys
import time

import pytest
import redis

from relay import registry
from relay.registry import (
    NODES_KEY,
    Heartbeat,
    NodeInfo,
    NoRelayAvailable,
    nodes_alive,
    pick_node,
    place_room,
    room_key,
)

from .util import REDIS_URL


def _node(node_id: str, streams: int = 0, cpu: float = 0.0, ts: float | None = None) -> NodeInfo:
    return NodeInfo(
        node_id, f"http://{node_id}:8081", 0, streams, cpu, time.time() if ts is None else ts
    )


async def _register(client, *nodes: NodeInfo) -> None:
    for node in nodes:
        await registry.publish_heartbeat(client, node)


def test_registry_imports_neither_aiortc_nor_starlette() -> None:
    import subprocess

    code = (
        "import sys, relay.registry, relay.tokens; "
        "bad = [m for m in ('aiortc', 'starlette', 'av', 'django') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_pick_node_takes_fewest_streams_then_lowest_cpu() -> None:
    nodes = [_node("a", 10, 0.1), _node("b", 4, 0.9), _node("c", 4, 0.2), _node("d", 7, 0.0)]
    assert pick_node(nodes).id == "c"
    assert pick_node({n.id: n for n in nodes}).id == "c"
    assert pick_node([]) is None


async def test_heartbeat_is_visible_with_load(redis_db2) -> None:
    beat = Heartbeat(
        redis_db2, "relay-1", "http://127.0.0.1:8081", lambda: (2, 9, 0.25), interval=0.1
    )
    beat.start()
    await asyncio.sleep(0.35)
    raw = json.loads(await redis_db2.hget(NODES_KEY, "relay-1"))
    assert set(raw) == {"id", "url", "rooms", "streams", "cpu", "ts"}
    assert (raw["id"], raw["rooms"], raw["streams"], raw["cpu"]) == ("relay-1", 2, 9, 0.25)
    assert time.time() - raw["ts"] < 1.0
    assert beat.beats >= 3
    assert set(await nodes_alive(redis_db2)) == {"relay-1"}
    await beat.stop()
    assert await redis_db2.hget(NODES_KEY, "relay-1") is None, "a clean stop unregisters"


async def test_dead_nodes_are_excluded(redis_db2) -> None:
    now = time.time()
    await _register(
        redis_db2,
        _node("fresh", ts=now - 1),
        _node("edge", ts=now - 5.9),
        _node("dead", ts=now - 6.5),
    )
    await redis_db2.hset(NODES_KEY, "garbage", "{not json")
    assert set(await nodes_alive(redis_db2, now)) == {"fresh", "edge"}
    assert set(registry.nodes_alive_sync(redis.Redis.from_url(REDIS_URL), now)) == {"fresh", "edge"}
    assert await registry.prune_dead(redis_db2, now=now + 100, older_than=60) == 3


async def test_place_room_picks_the_least_loaded_and_sticks(redis_db2) -> None:
    await _register(redis_db2, _node("busy", streams=40), _node("idle", streams=3))
    first = await place_room(redis_db2, "visit-42")
    assert first.id == "idle"
    assert (await redis_db2.get(room_key("visit-42"))) == b"idle"
    assert await redis_db2.ttl(room_key("visit-42")) > 0
    # the idle node fills up; the room stays where it is
    await _register(redis_db2, _node("idle", streams=100))
    assert (await place_room(redis_db2, "visit-42")).id == "idle"
    assert (await place_room(redis_db2, "visit-43")).id == "busy"


async def test_concurrent_placements_agree(redis_db2) -> None:
    await _register(redis_db2, *(_node(f"n{i}", streams=5) for i in range(4)))
    placed = await asyncio.gather(*(place_room(redis_db2, "visit-7") for _ in range(20)))
    assert len({n.id for n in placed}) == 1


async def test_a_room_is_replaced_when_its_node_dies(redis_db2) -> None:
    now = time.time()
    await _register(redis_db2, _node("a", streams=1, ts=now), _node("b", streams=5, ts=now))
    assert (await place_room(redis_db2, "visit-42", now=now)).id == "a"
    # a stops beating; 7 s later it is dead and the room moves to b (and stays there)
    later = now + 7
    await _register(redis_db2, _node("b", streams=5, ts=later))
    assert await registry.rooms_on_dead_nodes(redis_db2, later) == {"visit-42": "a"}
    assert (await place_room(redis_db2, "visit-42", now=later)).id == "b"
    assert (await redis_db2.get(room_key("visit-42"))) == b"b"
    assert await registry.rooms_on_dead_nodes(redis_db2, later) == {}
    # concurrent re-placements after a death agree too
    await _register(
        redis_db2, _node("c", streams=0, ts=later + 7), _node("d", streams=0, ts=later + 7)
    )
    placed = await asyncio.gather(
        *(place_room(redis_db2, "visit-42", now=later + 7) for _ in range(10))
    )
    assert len({n.id for n in placed}) == 1 and placed[0].id in {"c", "d"}


async def test_no_live_node_raises(redis_db2) -> None:
    await _register(redis_db2, _node("old", ts=time.time() - 60))
    with pytest.raises(NoRelayAvailable):
        await place_room(redis_db2, "visit-42")


async def test_sync_placement_for_the_web_tier(redis_db2) -> None:
    client = redis.Redis.from_url(REDIS_URL)
    now = time.time()
    await _register(redis_db2, _node("x", streams=2, ts=now), _node("y", streams=1, ts=now))
    assert registry.place_room_sync(client, "visit-9", now=now).id == "y"
    assert registry.place_room_sync(client, "visit-9", now=now).id == "y"
    await _register(redis_db2, _node("x", streams=2, ts=now + 7))
    assert registry.rooms_on_dead_nodes_sync(client, now + 7) == {"visit-9": "y"}
    assert registry.place_room_sync(client, "visit-9", now=now + 7).id == "x"
    client.close()
