"""A PostgreSQL connection pool on the web process's event loop, for hot paths.

Django runs every query in a worker thread (``database_sync_to_async``). For a
chat message that costs, per send: a hand-off to the thread pool and back, a
health-check ``SELECT 1`` (``close_old_connections`` at each call with
``CONN_HEALTH_CHECKS``), ``BEGIN``, the statement and ``COMMIT``; and each of
those round trips ends with the worker thread waiting for the GIL, which the
busy event-loop thread holds for up to ``sys.getswitchinterval()`` (5 ms) at a
time. bench/chat_bench.py measured that as the limit of a web process.

A path that is one SQL statement needs none of it: in autocommit a single
statement is its own transaction, so it runs here, on the loop, with psycopg's
async connection, in one round trip. Only such paths use this pool
(``consult.services.message_send_async``); everything else stays on the ORM.
PostgreSQL only: ``async_pool_available()`` says whether it may be used.
"""

from __future__ import annotations

import asyncio
from typing import Any

from django.conf import settings
from django.db import connections


def async_pool_available() -> bool:
    return settings.DATABASE_IS_POSTGRES and settings.TELEHEALTH_ASYNC_HOT_PATHS


def _conninfo() -> str:
    from psycopg.conninfo import make_conninfo

    # Read at first use, not import: the test runner renames the database.
    db = connections["default"].settings_dict
    params: dict[str, Any] = {
        "dbname": db["NAME"],
        "user": db.get("USER") or None,
        "password": db.get("PASSWORD") or None,
        "host": db.get("HOST") or None,
        "port": str(db["PORT"]) if db.get("PORT") else None,
        "application_name": "telehealth-hot-path",
    }
    return make_conninfo(**{key: value for key, value in params.items() if value is not None})


class _LoopPool:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        from psycopg_pool import AsyncConnectionPool

        self.loop = loop
        self.pool = AsyncConnectionPool(
            _conninfo(),
            min_size=1,
            max_size=settings.TELEHEALTH_ASYNC_POOL_SIZE,
            kwargs={"autocommit": True},
            open=False,
            name="telehealth-hot-path",
            # A broken connection is found by the statement that uses it; the caller
            # falls back to the ORM, which reconnects. No check per borrow.
            check=None,
        )
        self.opened = loop.create_task(self.pool.open(wait=False))


_pools: dict[int, _LoopPool] = {}


async def async_pool() -> Any:
    """This event loop's pool (``psycopg_pool.AsyncConnectionPool``, autocommit)."""
    loop = asyncio.get_running_loop()
    entry = _pools.get(id(loop))
    if entry is None or entry.loop is not loop:
        entry = _pools[id(loop)] = _LoopPool(loop)
    await asyncio.shield(entry.opened)
    return entry.pool


def reset_async_pools() -> None:
    """Forget the pools (tests start a new event loop per test)."""
    _pools.clear()
