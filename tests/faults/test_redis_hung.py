"""Redis stops answering (SIGSTOP: connections stay open, nothing comes back, as with
a Redis stuck on a slow disk or behind a network that drops packets) during a live
conversation on a real daphne process that uses it as cache, bus and broker.

A dead Redis refuses connections at once; a hung one answers nothing, and a client
without a timeout waits for ever. Here every Redis client of the web process gives
up after a bounded time: signed-in pages and the API keep answering (sessions come
from the database after the cache read times out), messages are still accepted,
acknowledged and delivered (the hub's comparison with the database), and once Redis
answers again everything goes on by itself.
"""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from asgiref.sync import async_to_sync

from consult import services
from consult.models import Message, Thread
from tests.consult.conftest import session_cookie
from tests.factories import ClinicianFactory, PatientFactory
from tests.faults.chat import ChatClient
from tests.faults.servers import child_env, free_port, start_daphne, stop, wait_listening

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db(transaction=True)]

#: A request still waiting after this long is taken as hung (it takes about 1-2 s:
#: the cache's timeout, once or twice; the figures are printed, not asserted).
HUNG = 30


async def _timed(call) -> tuple[int, float]:  # type: ignore[no-untyped-def]
    started = time.monotonic()
    try:
        response = await call()
    except httpx.TimeoutException:
        return 0, time.monotonic() - started
    return response.status_code, time.monotonic() - started


async def _scenario(world: dict, port: int, redis_server) -> dict:  # type: ignore[no-untyped-def]
    doctor = ChatClient(
        port=port, cookie=world["cookies"]["doctor"], thread_id=world["thread_id"], name="doctor"
    )
    patient = ChatClient(
        port=port, cookie=world["cookies"]["patient"], thread_id=world["thread_id"], name="patient"
    )
    for client in (doctor, patient):
        await client.connect()
    hung: dict[str, tuple[int, float]] = {}
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=HUNG) as web:
        cookie = {"Cookie": world["cookies"]["patient"]}
        await doctor.send("before", "trước")

        redis_server.pause()
        hung["page"] = await _timed(lambda: web.get("/", headers=cookie))
        hung["api"] = await _timed(lambda: web.get("/api/v1/threads/", headers=cookie))
        started = time.monotonic()
        for n in range(3):
            await doctor.send(f"hung-{n}", f"khi Redis treo {n}", timeout=60)
        hung["acks"] = (200, time.monotonic() - started)
        await patient.wait_for_seq(4, timeout=60)
        hung["delivered"] = (200, time.monotonic() - started)

        redis_server.resume()
        await doctor.send("after", "sau")
        await patient.wait_for_seq(5, timeout=30)
    await asyncio.sleep(1)  # anything sent twice would arrive by now
    for client in (doctor, patient):
        await client.close()
    return {"hung": hung, "clients": (doctor, patient)}


def test_a_hung_redis_slows_requests_down_but_stops_nothing(redis_server):
    patient, doctor = PatientFactory(), ClinicianFactory()
    thread = services.thread_open(
        kind=Thread.Kind.CONSULTATION,
        created_by=doctor.user,
        participants=[(patient.user, "patient")],
        patient=patient,
    )
    world = {
        "thread_id": thread.pk,
        "cookies": {
            "doctor": session_cookie(doctor.user),
            "patient": session_cookie(patient.user),
        },
    }
    port = free_port()
    web = start_daphne(port, child_env(REDIS_URL=redis_server.url(0)))
    try:
        wait_listening(web, port, f"daphne on {port}")
        result = async_to_sync(_scenario)(world, port, redis_server)
    finally:
        redis_server.resume()
        log = stop(web)

    hung = result["hung"]
    print("\nhung Redis: " + ", ".join(f"{k} {v[1]:.1f} s" for k, v in hung.items()))
    for name in ("page", "api"):
        status, seconds = hung[name]
        assert status == 200, (name, status, seconds, log[-3000:])  # 0: no answer at all
    rows = list(Message.objects.filter(thread_id=thread.pk).order_by("seq").values_list("seq"))
    seqs = [seq for (seq,) in rows]
    assert seqs == [1, 2, 3, 4, 5]
    for client in result["clients"]:
        assert client.received == seqs, (client.name, client.received)
    assert "Traceback" not in log, log[-5000:]
