"""Redis is killed (SIGKILL) and restarted, empty, during a live conversation between
clients of two real daphne processes that share it as channel layer, cache and broker.

While Redis is down: messages are still accepted and acknowledged (PostgreSQL
stores them; the publish after commit fails quietly) and still delivered (each
process's hub compares its sockets with the database every few seconds); signed-in
people stay signed in (sessions live in the database; the cache is only a
cache); a socket can reconnect and resume; the endpoints that cannot work
without Redis answer 503 with a JSON error. After the restart everything
recovers by itself: the hubs join their channel-layer groups again in the new,
empty Redis, and those endpoints answer 200 again.
"""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from asgiref.sync import async_to_sync

from consult import services, visit_services
from consult.models import Message, Thread
from scheduler.models import LevelRule, Referral, ServiceLevel
from scheduler.policy import policy_defaults_load
from tests.consult.conftest import session_cookie
from tests.factories import PASSWORD, ClinicianFactory, PatientFactory
from tests.faults.chat import ChatClient
from tests.faults.servers import child_env, free_port, start_daphne, stop, wait_listening
from tests.scheduler.conftest import build_network, patient_of

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db(transaction=True)]

PER_PHASE = 8  # messages per sender before, during and after the outage


async def _token(http: httpx.AsyncClient, username: str) -> dict[str, str]:
    response = await http.post(
        "/api/v1/auth/token/", json={"username": username, "password": PASSWORD}
    )
    assert response.status_code == 200, response.text
    return {"Authorization": f"Token {response.json()['token']}"}


async def _send_many(client: ChatClient, prefix: str, count: int) -> None:
    for n in range(count):
        await client.send(f"{client.name}-{prefix}-{n}", f"{client.name} {prefix} {n}")
        await asyncio.sleep(0.02)


async def _until_ok(call, timeout: float = 30) -> httpx.Response:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        response = await call()
        if response.status_code < 500 or time.monotonic() > deadline:
            return response
        await asyncio.sleep(0.3)


async def _scenario(world: dict, ports: list[int], redis_server) -> dict:  # type: ignore[no-untyped-def]
    thread_id = world["thread_id"]
    doctor = ChatClient(
        port=ports[0], cookie=world["cookies"]["doctor"], thread_id=thread_id, name="doctor"
    )
    colleague = ChatClient(
        port=ports[0], cookie=world["cookies"]["colleague"], thread_id=thread_id, name="colleague"
    )
    patient = ChatClient(
        port=ports[1], cookie=world["cookies"]["patient"], thread_id=thread_id, name="patient"
    )
    clients = [doctor, colleague, patient]
    for client in clients:
        await client.connect()
    down: dict[str, httpx.Response] = {}
    up: dict[str, httpx.Response] = {}
    async with (
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{ports[0]}", timeout=20) as web_a,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{ports[1]}", timeout=20) as web_b,
    ):
        doctor_auth = await _token(web_a, world["doctor_username"])
        referrer_auth = await _token(web_b, world["referrer_username"])

        # Before: both sides talk.
        await asyncio.gather(
            _send_many(doctor, "before", PER_PHASE), _send_many(patient, "before", PER_PHASE)
        )

        redis_server.kill()
        # During the outage: the conversation goes on, a socket is lost and comes back,
        # and a send whose ack was lost with its socket is retried with its client id.
        await colleague.drop()
        await patient.send_and_lose_the_ack("patient-lost-ack", "ack lost")
        await asyncio.gather(
            _send_many(doctor, "during", PER_PHASE),
            patient.send("patient-lost-ack", "ack lost"),
            colleague.connect(timeout=30),
        )
        await _send_many(patient, "during", PER_PHASE)
        down["token"] = await web_a.post(
            "/api/v1/auth/token/",
            json={"username": world["doctor_username"], "password": PASSWORD},
        )
        down["join"] = await web_a.post(
            f"/api/v1/visits/{world['visit_id']}/join/", headers=doctor_auth
        )
        down["message"] = await web_b.post(
            f"/api/v1/threads/{thread_id}/messages/",
            json={"client_id": "api-during", "body": "gửi qua API khi Redis ngừng"},
            headers=doctor_auth,
        )
        down["threads"] = await web_b.get(
            "/api/v1/threads/", headers={"Cookie": world["cookies"]["patient"]}
        )
        down["referral"] = await web_b.post(
            "/api/v1/referrals/",
            json={
                "patient_id": world["referral_patient_id"],
                "specialty": "cardiology",
                "reason": "Đau ngực khi gắng sức",
                "submit": True,
            },
            headers=referrer_auth,
        )

        redis_server.start()  # the same port, nothing in it
        # After: the endpoints recover by themselves, the conversation goes on.
        up["token"] = await _until_ok(
            lambda: web_a.post(
                "/api/v1/auth/token/",
                json={"username": world["doctor_username"], "password": PASSWORD},
            )
        )
        up["join"] = await _until_ok(
            lambda: web_a.post(f"/api/v1/visits/{world['visit_id']}/join/", headers=doctor_auth)
        )
        await patient.drop()
        await asyncio.gather(
            _send_many(doctor, "after", PER_PHASE),
            _send_many(patient, "after", PER_PHASE),
        )
        # Live events cross processes again (typing is never repaired from the
        # database, so only a channel layer that works again can carry it).
        deadline = time.monotonic() + 30
        while doctor.typing_from.count(world["patient_user_id"]) == 0 or not patient.typing_from:
            assert time.monotonic() < deadline, "typing never crossed processes after the restart"
            await patient.typing()
            await doctor.typing()
            await asyncio.sleep(0.3)

    last_seq = max(max(c.acks.values()) for c in (doctor, patient))
    last_seq = max(last_seq, down["message"].json()["seq"])
    for client in clients:
        await client.wait_for_seq(last_seq, timeout=30)
    await asyncio.sleep(1)  # anything sent twice would arrive by now
    for client in clients:
        await client.close()
    return {"clients": clients, "down": down, "up": up}


def test_redis_killed_and_restarted_during_a_live_chat_between_two_processes(redis_server):
    network = build_network()
    policy_defaults_load(LevelRule=LevelRule, ServiceLevel=ServiceLevel)
    referral_patient = patient_of(network.referrer)
    patient, doctor, colleague = PatientFactory(), ClinicianFactory(), ClinicianFactory()
    thread = services.thread_open(
        kind=Thread.Kind.CONSULTATION,
        created_by=doctor.user,
        participants=[(patient.user, "patient"), (colleague.user, "specialist")],
        patient=patient,
    )
    visit = visit_services.visit_schedule(
        patient=patient, host=doctor.user, scheduled_start=None, open_now=True
    )
    world = {
        "thread_id": thread.pk,
        "visit_id": visit.pk,
        "doctor_username": doctor.user.username,
        "referrer_username": network.referrer.user.username,
        "referral_patient_id": referral_patient.pk,
        "patient_user_id": patient.user.pk,
        "cookies": {
            "doctor": session_cookie(doctor.user),
            "colleague": session_cookie(colleague.user),
            "patient": session_cookie(patient.user),
        },
    }
    ports = [free_port(), free_port()]
    env = child_env(REDIS_URL=redis_server.url(0))
    webs = [start_daphne(port, env) for port in ports]
    try:
        for web, port in zip(webs, ports, strict=True):
            wait_listening(web, port, f"daphne on {port}")
        result = async_to_sync(_scenario)(world, ports, redis_server)
    finally:
        logs = [stop(web) for web in webs]

    down, up = result["down"], result["up"]
    # Redis down: what needs it answers 503 with a JSON error, never 500 ...
    for name in ("token", "join"):
        assert down[name].status_code == 503, (name, down[name].text, logs)
        assert down[name].json()["code"] == "unavailable"
        assert down[name].headers["Retry-After"]
    # ... and what does not, works: a message is stored, a session still signs in,
    # a referral is submitted (the sweeper routes it once the broker is back).
    assert down["message"].status_code == 201, down["message"].text
    assert down["threads"].status_code == 200, down["threads"].text
    assert down["referral"].status_code == 201, down["referral"].text
    assert Referral.objects.get(pk=down["referral"].json()["id"]).routing_state == "pending"
    # Redis back: the same endpoints recover without a restart of the web processes.
    assert up["token"].status_code == 200, up["token"].text
    assert up["join"].status_code == 200, up["join"].text

    rows = list(
        Message.objects.filter(thread_id=thread.pk).order_by("seq").values_list("seq", "client_id")
    )
    seqs = [seq for seq, _ in rows]
    assert seqs == list(range(1, len(rows) + 1))
    client_ids = [client_id for _, client_id in rows]
    assert len(client_ids) == len(set(client_ids))
    for client in result["clients"]:
        # Every acknowledged message is stored once under its client id ...
        stored = dict((client_id, seq) for seq, client_id in rows)
        assert all(stored[cid] == seq for cid, seq in client.acks.items())
        # ... and delivered to every participant exactly once, in order.
        assert client.received == seqs, (client.name, client.received, seqs)
    _doctor, colleague_socket, patient_socket = result["clients"]
    assert colleague_socket.connections == 2  # reconnected while Redis was down
    assert patient_socket.connections == 3  # after the lost ack, and after the restart
    assert client_ids.count("patient-lost-ack") == 1
