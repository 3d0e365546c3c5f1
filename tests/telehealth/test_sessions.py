"""Idle and absolute session limits over HTTP (pages and the API), on the websocket,
and the expiry of API tokens (telehealth/session_security.py).

Nothing sleeps through a limit: the tests move the session's stored clocks back."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.sessions.models import Session
from django.test import Client
from django.utils import timezone
from rest_framework.authtoken.models import Token

from telehealth.models import AuditEvent
from telehealth.session_security import SEEN_KEY, STARTED_KEY, session_store
from tests.consult.conftest import open_socket
from tests.factories import PASSWORD, UserFactory

IDLE = settings.SESSION_IDLE_TIMEOUT.total_seconds()
ABSOLUTE = settings.SESSION_ABSOLUTE_TIMEOUT.total_seconds()


def signed_in_client(user) -> tuple[Client, str]:
    client = Client()
    client.force_login(user)
    return client, client.cookies[settings.SESSION_COOKIE_NAME].value


def move_clocks(
    session_key: str, *, seen_ago: float | None = None, started_ago: float | None = None
):
    """Pretend the last use was ``seen_ago`` seconds ago and the sign-in ``started_ago``."""
    store = session_store(session_key)
    now = time.time()
    if seen_ago is not None:
        store[SEEN_KEY] = int(now - seen_ago)
    if started_ago is not None:
        store[STARTED_KEY] = int(now - started_ago)
    store.save()


def stored(session_key: str) -> dict:
    return dict(session_store(session_key).items())


def sign_outs(user) -> list[str]:
    return list(
        AuditEvent.objects.filter(actor=user, action=AuditEvent.Action.SIGN_OUT).values_list(
            "reason", flat=True
        )
    )


# --- HTTP ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_signing_in_starts_both_clocks():
    _client, key = signed_in_client(UserFactory())

    data = stored(key)

    assert abs(data[STARTED_KEY] - time.time()) < 60
    assert data[SEEN_KEY] == data[STARTED_KEY]


@pytest.mark.django_db
def test_a_page_after_the_idle_limit_signs_out_and_goes_to_the_expired_page():
    user = UserFactory()
    client, key = signed_in_client(user)
    move_clocks(key, seen_ago=IDLE + 1)

    response = client.get("/profile/?tab=1")

    assert response.status_code == 302
    assert response["Location"] == "/session-expired/?next=%2Fprofile%2F%3Ftab%3D1"
    assert not Session.objects.filter(session_key=key).exists()
    assert sign_outs(user) == ["session idle timeout"]
    assert client.get("/profile/")["Location"].startswith("/login/")


@pytest.mark.django_db
def test_an_api_call_after_the_absolute_limit_gets_a_401_however_busy_the_session():
    user = UserFactory()
    client, key = signed_in_client(user)
    move_clocks(key, seen_ago=0, started_ago=ABSOLUTE + 1)

    response = client.get("/api/v1/me/")

    assert response.status_code == 401
    assert response.json()["code"] == "session_expired"
    assert not Session.objects.filter(session_key=key).exists()
    assert sign_outs(user) == ["session absolute lifetime reached"]


@pytest.mark.django_db
def test_use_just_inside_the_idle_limit_keeps_the_session_and_is_recorded():
    client, key = signed_in_client(UserFactory())
    move_clocks(key, seen_ago=IDLE - 60)

    assert client.get("/api/v1/me/").status_code == 200
    assert abs(stored(key)[SEEN_KEY] - time.time()) < 60
    assert client.get("/profile/").status_code == 200


@pytest.mark.django_db
def test_use_is_written_at_most_once_per_resolution():
    client, key = signed_in_client(UserFactory())
    move_clocks(key, seen_ago=10)
    before = stored(key)[SEEN_KEY]

    for _ in range(3):
        assert client.get("/api/v1/me/").status_code == 200

    assert stored(key)[SEEN_KEY] == before


@pytest.mark.django_db
def test_a_page_re_reading_itself_in_the_background_is_not_use():
    client, key = signed_in_client(UserFactory())
    move_clocks(key, seen_ago=10 * 60)
    before = stored(key)[SEEN_KEY]

    response = client.get("/profile/", headers={"X-Telehealth-Background": "1"})

    assert response.status_code == 200
    assert stored(key)[SEEN_KEY] == before
    move_clocks(key, seen_ago=IDLE + 1)
    expired = client.get("/profile/", headers={"X-Telehealth-Background": "1"})
    assert expired["Location"].startswith("/session-expired/")


@pytest.mark.django_db
def test_the_expired_page_itself_answers_an_expired_session():
    client, key = signed_in_client(UserFactory())
    move_clocks(key, seen_ago=IDLE + 1)

    response = client.get("/session-expired/?next=/profile/")

    assert response.status_code == 200
    assert b"/login/?next=%2Fprofile%2F" in response.content


# --- API tokens -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_an_api_token_expires_at_the_absolute_limit_and_a_new_one_can_be_had(api_client):
    user = UserFactory(username="tokenuser")
    first = api_client.post(
        "/api/v1/auth/token/", {"username": "tokenuser", "password": PASSWORD}, format="json"
    ).json()["token"]
    Token.objects.filter(key=first).update(
        created=timezone.now() - settings.API_TOKEN_MAX_AGE - timedelta(seconds=1)
    )
    api_client.credentials(HTTP_AUTHORIZATION=f"Token {first}")

    response = api_client.get("/api/v1/me/")

    assert response.status_code == 401
    assert response.json()["code"] == "token_expired"
    assert not Token.objects.filter(key=first).exists()
    api_client.credentials()
    second = api_client.post(
        "/api/v1/auth/token/", {"username": "tokenuser", "password": PASSWORD}, format="json"
    ).json()["token"]
    api_client.credentials(HTTP_AUTHORIZATION=f"Token {second}")
    assert second != first
    assert api_client.get("/api/v1/me/").json()["username"] == user.username


@pytest.mark.django_db
def test_asking_for_a_token_before_it_expires_returns_the_same_one(api_client):
    UserFactory(username="tokenuser2")
    credentials = {"username": "tokenuser2", "password": PASSWORD}

    first = api_client.post("/api/v1/auth/token/", credentials, format="json").json()["token"]
    second = api_client.post("/api/v1/auth/token/", credentials, format="json").json()["token"]

    assert first == second


# --- The websocket -----------------------------------------------------------------------------

socket_db = pytest.mark.django_db(transaction=True)


@pytest.fixture
def quick_socket_checks(settings):
    """Sockets look at their session every 50 ms instead of every 30 s."""
    settings.SESSION_SOCKET_CHECK_SECONDS = 0.05


async def close_code(socket, timeout: float = 5) -> int:
    """Read frames until the server closes the socket; its close code."""
    while True:
        output = await socket.communicator.receive_output(timeout=timeout)
        if output["type"] == "websocket.close":
            return output["code"]


async def socket_for(user):
    _client, key = await database_sync_to_async(signed_in_client)(user)
    socket, connected, _ = await open_socket(None, cookie=f"{settings.SESSION_COOKIE_NAME}={key}")
    assert connected
    assert (await socket.receive())["type"] == "welcome"
    return socket, key


@socket_db
async def test_a_socket_closes_4401_when_its_session_goes_idle(quick_socket_checks):
    user = await database_sync_to_async(UserFactory)()
    socket, key = await socket_for(user)

    await database_sync_to_async(move_clocks)(key, seen_ago=IDLE + 1)

    assert await close_code(socket) == 4401
    assert not await database_sync_to_async(Session.objects.filter(session_key=key).exists)()
    assert await database_sync_to_async(sign_outs)(user) == ["session idle timeout"]


@socket_db
async def test_pushes_and_the_pages_own_frames_do_not_keep_a_socket_alive(quick_socket_checks):
    from telehealth.realtime import publish_now, user_topic

    user = await database_sync_to_async(UserFactory)()
    socket, key = await socket_for(user)
    await database_sync_to_async(move_clocks)(key, seen_ago=IDLE - 120)

    await publish_now(
        user_topic(user.pk),
        {"kind": "event", "frame": {"type": "event", "topic": "user", "name": "x", "data": {}}},
    )
    assert (await socket.receive_until("event"))[0]["name"] == "x"
    await socket.send({"type": "ping", "ref": "p"})
    assert (await socket.receive_until("pong"))[0]["ref"] == "p"
    await socket.send({"type": "presence", "status": "away"})
    await database_sync_to_async(move_clocks)(key, seen_ago=IDLE + 1)

    assert await close_code(socket) == 4401


@socket_db
async def test_what_the_person_sends_on_the_socket_is_use_and_is_recorded(quick_socket_checks):
    user = await database_sync_to_async(UserFactory)()
    socket, key = await socket_for(user)
    await database_sync_to_async(move_clocks)(key, seen_ago=IDLE - 120)

    await socket.send({"type": "active"})

    async def recorded() -> bool:
        for _ in range(100):
            if time.time() - (await database_sync_to_async(stored)(key))[SEEN_KEY] < 60:
                return True
            await asyncio.sleep(0.05)
        return False

    assert await recorded()
    # The same use keeps the pages signed in: the socket and HTTP share one clock.
    client = Client()
    client.cookies[settings.SESSION_COOKIE_NAME] = key
    assert (await database_sync_to_async(client.get)("/api/v1/me/")).status_code == 200
    await socket.close()


@socket_db
async def test_a_socket_closes_4401_at_the_absolute_limit_even_while_used(quick_socket_checks):
    user = await database_sync_to_async(UserFactory)()
    socket, key = await socket_for(user)

    await socket.send({"type": "active"})
    await database_sync_to_async(move_clocks)(key, seen_ago=0, started_ago=ABSOLUTE + 1)

    assert await close_code(socket) == 4401
    assert await database_sync_to_async(sign_outs)(user) == ["session absolute lifetime reached"]


@socket_db
async def test_a_socket_closes_4401_when_its_session_is_deleted_elsewhere(quick_socket_checks):
    user = await database_sync_to_async(UserFactory)()
    socket, key = await socket_for(user)

    await database_sync_to_async(session_store(key).delete)(key)

    assert await close_code(socket) == 4401


@socket_db
async def test_a_socket_closes_4401_when_a_page_finds_the_session_expired(settings):
    """The default check interval: the close comes from the HTTP sign-out's
    session_ended event, not from the socket's own look at the session."""
    user = await database_sync_to_async(UserFactory)()
    socket, key = await socket_for(user)
    await database_sync_to_async(move_clocks)(key, seen_ago=IDLE + 1)
    client = Client()
    client.cookies[settings.SESSION_COOKIE_NAME] = key

    response = await database_sync_to_async(client.get)("/profile/")

    assert response["Location"].startswith("/session-expired/")
    assert await close_code(socket) == 4401


@socket_db
async def test_a_socket_of_an_expired_session_is_refused_at_connect():
    user = await database_sync_to_async(UserFactory)()
    _client, key = await database_sync_to_async(signed_in_client)(user)
    await database_sync_to_async(move_clocks)(key, seen_ago=IDLE + 1)

    socket, connected, _ = await open_socket(None, cookie=f"{settings.SESSION_COOKIE_NAME}={key}")

    assert connected
    assert await close_code(socket) == 4401
    assert await database_sync_to_async(sign_outs)(user) == ["session idle timeout"]
