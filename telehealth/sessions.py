"""Sessions in the database, cached in Redis, that keep working while Redis is down.

Django's ``cached_db`` store already reads the database when the cache read
fails, but then raises when it writes the session back to the cache, so every
signed-in request (and every websocket handshake) failed while Redis was down,
although the database, the one source of truth, had the session. Here a failed
cache read or write falls back to the database and is logged (one line: an
outage is expected, not a bug).

Deleting is left strict on purpose: sign-out deletes the database row, then the
cached copy; if the cache cannot be reached the request fails (503) instead of
pretending to sign out while a copy that a returning Redis would serve survives.
"""

from __future__ import annotations

import logging
from typing import Any

from django.contrib.sessions.backends.cached_db import SessionStore as CachedDBStore

logger = logging.getLogger(__name__)


class SessionStore(CachedDBStore):
    def load(self) -> dict[str, Any]:
        try:
            data = self._cache.get(self.cache_key)
        except Exception as error:
            logger.warning("session cache unreachable (%s); reading the database", error)
            data = None
            cache_up = False
        else:
            cache_up = True
        if data is not None:
            return data
        row = self._get_session_from_db()
        if not row:
            return {}
        data = self.decode(row.session_data)
        if cache_up:
            try:
                self._cache.set(self.cache_key, data, self.get_expiry_age(expiry=row.expire_date))
            except Exception as error:
                logger.warning("session cache unreachable (%s); not cached", error)
        return data

    async def aload(self) -> dict[str, Any]:
        from asgiref.sync import sync_to_async

        return await sync_to_async(self.load)()

    def exists(self, session_key: str | None) -> bool:
        if not session_key:
            return False
        try:
            if (self.cache_key_prefix + session_key) in self._cache:
                return True
        except Exception as error:
            logger.warning("session cache unreachable (%s); checking the database", error)
        return super(CachedDBStore, self).exists(session_key)

    async def aexists(self, session_key: str | None) -> bool:
        from asgiref.sync import sync_to_async

        return await sync_to_async(self.exists)(session_key)

    def save(self, must_create: bool = False) -> None:
        # The database row is written first (the truth); the cached copy is best effort.
        # Django logs a failed cache write with a traceback on every request while
        # Redis is away; one line, as for reads, unless it is not an outage.
        super(CachedDBStore, self).save(must_create)
        try:
            self._cache.set(self.cache_key, self._session, self.get_expiry_age())
        except Exception as error:
            from telehealth.errors import is_service_unavailable

            logger.warning(
                "session cache unreachable (%s); saved in the database only",
                error,
                exc_info=not is_service_unavailable(error),
            )

    async def asave(self, must_create: bool = False) -> None:
        from asgiref.sync import sync_to_async

        await sync_to_async(self.save)(must_create)
