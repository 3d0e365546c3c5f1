"""A backing service that is down is answered 503 (retry), never 500.

One rule, ``telehealth.errors.is_service_unavailable``, used by the API's exception
handler, the pages' middleware and the socket; sessions survive a cache that is
down. tests/faults proves the same against real servers that are really killed.
"""

from __future__ import annotations

import socket

import psycopg
import pytest
import redis
from django.contrib.auth.models import AnonymousUser
from django.db import IntegrityError, OperationalError
from kombu.exceptions import OperationalError as BrokerError

from telehealth.api.errors import exception_handler
from telehealth.errors import is_service_unavailable
from telehealth.unavailable import ServiceUnavailableMiddleware


def _wrapped(outer: type[Exception], cause: Exception) -> Exception:
    """``outer`` raised from ``cause``, as Django wraps a driver's error."""
    try:
        try:
            raise cause
        except Exception as inner:
            raise outer(str(inner)) from inner
    except Exception as error:
        return error


@pytest.mark.parametrize(
    ("error", "down"),
    [
        (redis.exceptions.ConnectionError("Error 111 connecting"), True),
        (redis.exceptions.TimeoutError("Timeout reading from socket"), True),
        (BrokerError("Error 111 connecting to localhost:6379"), True),
        (_wrapped(OperationalError, psycopg.OperationalError("connection refused")), True),
        (_wrapped(RuntimeError, redis.exceptions.ConnectionError("closed")), True),
        (_wrapped(OperationalError, psycopg.errors.UndefinedTable("no table")), False),
        (_wrapped(IntegrityError, psycopg.errors.UniqueViolation("duplicate")), False),
        (redis.exceptions.ResponseError("WRONGTYPE"), False),
        (ValueError("a bug"), False),
    ],
)
def test_only_an_unreachable_service_counts_as_down(error, down):
    assert is_service_unavailable(error) is down


def test_the_api_answers_503_with_a_json_error_and_retry_after():
    response = exception_handler(redis.exceptions.ConnectionError("Error 111"), {})

    assert response.status_code == 503
    assert response.data["code"] == "unavailable" and response.data["detail"]
    assert response["Retry-After"] == "5"


@pytest.mark.django_db
def test_a_page_answers_503_and_an_api_path_json(rf):
    middleware = ServiceUnavailableMiddleware(lambda request: None)
    page = rf.get("/consult/")
    page.user = AnonymousUser()
    api = rf.get("/api/v1/threads/")

    page_response = middleware.process_exception(page, BrokerError("Error 111"))
    api_response = middleware.process_exception(api, redis.exceptions.ConnectionError("x"))

    assert page_response.status_code == 503 and b"<html" in page_response.content.lower()
    assert api_response.status_code == 503 and b'"unavailable"' in api_response.content
    assert middleware.process_exception(page, ValueError("a bug")) is None


def _dead_redis_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"redis://127.0.0.1:{port}/0"  # nothing listens there


@pytest.mark.django_db
def test_sessions_are_read_from_the_database_while_the_cache_is_down(settings):
    from telehealth.sessions import SessionStore

    settings.SESSION_ENGINE = "telehealth.sessions"
    store = SessionStore()
    store["_auth_user_id"] = "7"
    store.create()
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": _dead_redis_url(),
        }
    }

    again = SessionStore(store.session_key)

    assert again["_auth_user_id"] == "7"
    assert again.exists(store.session_key)
    again["seen"] = True
    again.save()  # written to the database; the cache write is skipped
    assert SessionStore(store.session_key)["seen"] is True
    # Signing out stays strict: a copy a returning Redis would still serve must go too.
    with pytest.raises(redis.exceptions.ConnectionError):
        again.delete()
