"""Two real web processes share the load through Redis: a message sent by a client
of process A reaches a client of process B, in order, exactly once. Process B runs
under daphne (the default) or uvicorn (the measured alternative, README)."""

from __future__ import annotations

import asyncio
import json
import subprocess

import pytest
import websockets
from asgiref.sync import async_to_sync

from consult import services
from consult.models import Thread
from tests.consult.conftest import session_cookie
from tests.factories import ClinicianFactory, PatientFactory
from tests.integration.test_processes import BIN, ROOT, _child_env, _free_port, _stop, _wait_for

pytestmark = [pytest.mark.slow, pytest.mark.redis, pytest.mark.django_db(transaction=True)]


SERVERS = {
    "daphne": lambda port: [
        str(BIN / "daphne"), "-b", "127.0.0.1", "-p", str(port), "telehealth.asgi:application"
    ],
    "uvicorn": lambda port: [
        str(BIN / "uvicorn"), "--host", "127.0.0.1", "--port", str(port),
        "--ws", "websockets-sansio", "--no-access-log", "telehealth.asgi:application",
    ],
}  # fmt: skip


def _start_web(port: int, server: str = "daphne") -> subprocess.Popen:
    return subprocess.Popen(
        SERVERS[server](port),
        cwd=ROOT,
        env=_child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


async def _conversation(ports, cookies, thread_id, count):
    async def connect(port, cookie):
        ws = await websockets.connect(
            f"ws://127.0.0.1:{port}/ws/",
            additional_headers={"Cookie": cookie, "Origin": f"http://127.0.0.1:{port}"},
        )
        assert json.loads(await ws.recv())["type"] == "welcome"
        await ws.send(json.dumps({"type": "subscribe", "thread": thread_id, "after": 0}))
        while json.loads(await ws.recv())["type"] != "subscribed":
            pass
        return ws

    sender = await connect(ports[0], cookies[0])
    receiver = await connect(ports[1], cookies[1])
    for n in range(count):
        await sender.send(
            json.dumps(
                {"type": "send", "thread": thread_id, "client_id": f"a-{n}", "body": f"từ A {n}"}
            )
        )
    got = []
    async with asyncio.timeout(20):
        while len(got) < count:
            frame = json.loads(await receiver.recv())
            if frame["type"] == "message":
                got.append((frame["seq"], frame["body"]))
    await sender.close()
    await receiver.close()
    return got


@pytest.mark.parametrize("second", ["daphne", "uvicorn"])
def test_a_message_sent_on_one_process_reaches_a_client_of_another(second):
    patient, doctor = PatientFactory(), ClinicianFactory()
    thread = services.thread_open(
        kind=Thread.Kind.CONSULTATION,
        created_by=doctor.user,
        participants=[(patient.user, "patient")],
        patient=patient,
    )
    cookies = [session_cookie(doctor.user), session_cookie(patient.user)]
    ports = [_free_port(), _free_port()]
    webs = [_start_web(ports[0]), _start_web(ports[1], second)]
    try:
        for port in ports:
            _wait_for(lambda p=port: _listening(p), 30, f"web process on {port}")
        got = async_to_sync(_conversation)(ports, cookies, thread.pk, 20)
    finally:
        logs = [_stop(web) for web in webs]

    assert got == [(n + 1, f"từ A {n}") for n in range(20)], logs
