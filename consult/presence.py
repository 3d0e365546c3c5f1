"""Who is online: best effort, expiring on its own.

Each socket writes its own entry with an expiry and refreshes it while it
lives; a person is online if any of their sockets says so, away if the
freshest say away, offline when every entry has expired or gone. Redis holds
the entries when REDIS_URL is set (shared by every web process); otherwise a
dict in this process (the embedded default has one web process).
"""

from __future__ import annotations

import time
from typing import Protocol

from django.conf import settings

TTL_SECONDS = 75
STATUSES = ("online", "away")


def _combine(entries: dict[str, tuple[str, float]], now: float) -> str:
    live = [status for status, expires in entries.values() if expires > now]
    if "online" in live:
        return "online"
    if live:
        return "away"
    return "offline"


class PresenceStore(Protocol):
    async def set(self, user_id: int, socket_id: str, status: str) -> None: ...

    async def clear(self, user_id: int, socket_id: str) -> None: ...

    async def status_of(self, user_ids: list[int]) -> dict[int, str]: ...


class LocalPresence:
    def __init__(self) -> None:
        self._entries: dict[int, dict[str, tuple[str, float]]] = {}

    async def set(self, user_id: int, socket_id: str, status: str) -> None:
        self._entries.setdefault(user_id, {})[socket_id] = (status, time.time() + TTL_SECONDS)

    async def clear(self, user_id: int, socket_id: str) -> None:
        self._entries.get(user_id, {}).pop(socket_id, None)

    async def status_of(self, user_ids: list[int]) -> dict[int, str]:
        now = time.time()
        return {uid: _combine(self._entries.get(uid, {}), now) for uid in user_ids}


class RedisPresence:
    def __init__(self, url: str) -> None:
        import redis.asyncio as redis

        self._redis = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)

    @staticmethod
    def _key(user_id: int) -> str:
        return f"th:presence:{user_id}"

    async def set(self, user_id: int, socket_id: str, status: str) -> None:
        key = self._key(user_id)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hset(key, socket_id, f"{status}|{time.time() + TTL_SECONDS:.0f}")
            pipe.expire(key, TTL_SECONDS)
            await pipe.execute()

    async def clear(self, user_id: int, socket_id: str) -> None:
        await self._redis.hdel(self._key(user_id), socket_id)

    async def status_of(self, user_ids: list[int]) -> dict[int, str]:
        if not user_ids:
            return {}
        async with self._redis.pipeline(transaction=False) as pipe:
            for uid in user_ids:
                pipe.hgetall(self._key(uid))
            rows = await pipe.execute()
        now = time.time()
        result = {}
        for uid, row in zip(user_ids, rows, strict=True):
            entries = {}
            for socket_id, value in row.items():
                status, _, expires = value.decode().partition("|")
                entries[socket_id.decode()] = (status, float(expires or 0))
            result[uid] = _combine(entries, now)
        return result


_stores: dict[str, PresenceStore] = {}


def presence_store() -> PresenceStore:
    """The store of this process and event loop (an asyncio Redis client belongs to one loop)."""
    import asyncio

    key = f"{settings.REDIS_URL or 'local'}:{id(asyncio.get_running_loop())}"
    store = _stores.get(key)
    if store is None:
        store = RedisPresence(settings.REDIS_URL) if settings.REDIS_URL else LocalPresence()
        _stores[key] = store
    return store


def reset_presence() -> None:
    _stores.clear()
