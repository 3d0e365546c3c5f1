"""Helpers for the messaging engine's tests: threads, signed-in sockets."""

from __future__ import annotations

import json
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import Client

from consult import services
from consult.models import Thread
from tests.factories import ClinicianFactory, PatientFactory


def session_cookie(user) -> str:
    client = Client()
    client.force_login(user)
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"


class Socket:
    """A test client speaking docs/protocol.md over Channels' communicator."""

    def __init__(self, communicator: WebsocketCommunicator) -> None:
        self.communicator = communicator
        self.welcome: dict[str, Any] | None = None

    async def send(self, frame: dict[str, Any] | str) -> None:
        text = frame if isinstance(frame, str) else json.dumps(frame)
        await self.communicator.send_to(text_data=text)

    async def receive(self, timeout: float = 3, *, skip_presence: bool = True) -> dict[str, Any]:
        """The next frame; presence frames (best effort, any time) are skipped unless asked for."""
        while True:
            frame = json.loads(await self.communicator.receive_from(timeout=timeout))
            if not (skip_presence and frame["type"] == "presence"):
                return frame

    async def receive_until(self, frame_type: str, timeout: float = 3) -> tuple[dict, list[dict]]:
        """Frames up to and including the first of ``frame_type``; returns (it, those before)."""
        before = []
        while True:
            frame = await self.receive(timeout, skip_presence=frame_type != "presence")
            if frame["type"] == frame_type:
                return frame, before
            before.append(frame)

    async def nothing(self, timeout: float = 0.3) -> bool:
        """True if nothing but presence frames arrives within ``timeout``."""
        while not await self.communicator.receive_nothing(timeout=timeout):
            frame = json.loads(await self.communicator.receive_from())
            if frame["type"] != "presence":
                return False
        return True

    async def close(self) -> None:
        await self.communicator.disconnect()


async def open_socket(
    user=None, *, origin: bytes = b"http://testserver", cookie: str | None = None
):
    from telehealth.asgi import application

    headers = [(b"origin", origin), (b"host", b"testserver")]
    if cookie is None and user is not None:
        cookie = await database_sync_to_async(session_cookie)(user)
    if cookie:
        headers.append((b"cookie", cookie.encode()))
    communicator = WebsocketCommunicator(application, "/ws/", headers=headers)
    connected, code = await communicator.connect(timeout=5)
    socket = Socket(communicator)
    if connected and user is not None:
        socket.welcome = await socket.receive()
    return socket, connected, code


@pytest.fixture
def consultation(transactional_db):
    """A consultation of a patient and two doctors: (thread, patient, doctor, colleague)."""
    patient = PatientFactory()
    doctor = ClinicianFactory()
    colleague = ClinicianFactory()
    thread = services.thread_open(
        kind=Thread.Kind.CONSULTATION,
        created_by=doctor.user,
        participants=[(patient.user, "patient"), (colleague.user, "specialist")],
        patient=patient,
        subject="Đau ngực",
    )
    return thread, patient.user, doctor.user, colleague.user
