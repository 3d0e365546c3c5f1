"""One exception family for domain rules, translated to HTTP or websocket errors in one place."""

from __future__ import annotations


class DomainError(Exception):
    """A rule of the service said no. ``code`` is stable and machine-readable."""

    status = 400
    code = "invalid"

    def __init__(self, message: str, *, code: str | None = None, fields: dict | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.fields = fields or {}


class NotFound(DomainError):
    status = 404
    code = "not_found"


class AccessDenied(DomainError):
    """The user may not see or do this. Views answer 404 where existence itself is private."""

    status = 403
    code = "forbidden"


class Conflict(DomainError):
    status = 409
    code = "conflict"


# PostgreSQL error classes meaning "the connection is gone", not "the query is wrong":
# 08 connection exception, 57P01 admin shutdown, 57P02 crash shutdown, 57P03 cannot
# connect now (starting up or shutting down).
_CONNECTION_SQLSTATES = ("08", "57P01", "57P02", "57P03")


def is_service_unavailable(exc: BaseException) -> bool:
    """True when a backing service is down or unreachable: Redis (cache, channel layer,
    relay registry), the Celery broker, or the database connection. That is answered
    503 with "try again", in one place per edge (``telehealth.api.errors`` for the API,
    ``telehealth.unavailable`` for pages, the consumer's ``unavailable`` frame), never
    500: the request was fine and a retry will succeed once the service is back.
    Bugs and bad queries are not matched, so they still fail loudly."""
    import redis.exceptions
    from django.db import InterfaceError, OperationalError
    from kombu.exceptions import OperationalError as BrokerError

    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(
            current,
            redis.exceptions.ConnectionError | redis.exceptions.TimeoutError | BrokerError,
        ):
            return True
        if isinstance(current, InterfaceError):
            return True  # Django's "connection already closed"
        if isinstance(current, OperationalError) and _lost_database(current.__cause__):
            return True
        current = current.__cause__ or current.__context__
    return False


def _lost_database(cause: BaseException | None) -> bool:
    try:
        import psycopg
    except ImportError:  # the embedded default (SQLite) has no server to lose
        return False
    if not isinstance(cause, psycopg.OperationalError):
        return False
    sqlstate = getattr(cause, "sqlstate", None)
    # No SQLSTATE: the client library lost or could not open the connection.
    return sqlstate is None or sqlstate.startswith(_CONNECTION_SQLSTATES)
