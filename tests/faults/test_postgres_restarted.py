"""PostgreSQL is restarted (``pg_ctl restart -m fast``) while clients send messages
over the REST API and over the socket, to a real daphne process.

Every backend is terminated mid-conversation. While the database is away the
API answers 503 (retry), never 500, and the socket answers ``unavailable``; the
clients retry with the same client ids. Once the server is back, the next
request succeeds at once: persistent connections are health-checked
(``CONN_HEALTH_CHECKS``) and replaced, not handed to a request broken. Nothing
is stored twice, and every participant receives every message once, in order.
"""

from __future__ import annotations

import asyncio
import time

import httpx
import psycopg
import pytest
from asgiref.sync import async_to_sync
from django.db import connection

from consult import services
from consult.models import Thread
from tests.consult.conftest import session_cookie
from tests.factories import PASSWORD, ClinicianFactory, PatientFactory
from tests.faults.chat import ChatClient
from tests.faults.servers import child_env, free_port, start_daphne, stop, wait_listening

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db(transaction=True)]

PER_SENDER = 40
RESTART_AFTER = 12  # acknowledged messages before the restart


async def _conversation(port, cluster, thread_id, doctor, cookies):
    patient = ChatClient(port=port, cookie=cookies["patient"], thread_id=thread_id, name="patient")
    colleague = ChatClient(
        port=port, cookie=cookies["colleague"], thread_id=thread_id, name="colleague"
    )
    await patient.connect()
    await colleague.connect()
    api_calls: list[tuple[float, int | str]] = []  # (sent at, status or error)
    restart: dict[str, float] = {}
    acked: dict[str, int] = {}

    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
        response = await http.post(
            "/api/v1/auth/token/", json={"username": doctor.username, "password": PASSWORD}
        )
        assert response.status_code == 200, response.text
        auth = {"Authorization": f"Token {response.json()['token']}"}

        async def api_sender() -> None:
            for n in range(PER_SENDER):
                client_id = f"api-{n}"
                while True:
                    sent_at = time.monotonic()
                    try:
                        response = await http.post(
                            f"/api/v1/threads/{thread_id}/messages/",
                            json={"client_id": client_id, "body": f"Bác sĩ {n}"},
                            headers=auth,
                        )
                    except httpx.TransportError as error:
                        api_calls.append((sent_at, type(error).__name__))
                        await asyncio.sleep(0.2)
                        continue
                    api_calls.append((sent_at, response.status_code))
                    if response.status_code in (200, 201):
                        acked[client_id] = response.json()["seq"]
                        break
                    await asyncio.sleep(0.2)
                await asyncio.sleep(0.03)

        async def socket_sender() -> None:
            for n in range(PER_SENDER):
                client_id = f"ws-{n}"
                acked[client_id] = await patient.send(client_id, f"Bệnh nhân {n}")
                await asyncio.sleep(0.03)

        async def restarter() -> None:
            while len(acked) < RESTART_AFTER:
                await asyncio.sleep(0.01)
            restart["pid_before"] = cluster.postmaster_pid()
            restart["began"] = time.monotonic()
            await asyncio.to_thread(cluster.restart)
            restart["done"] = time.monotonic()
            restart["pid_after"] = cluster.postmaster_pid()

        await asyncio.gather(api_sender(), socket_sender(), restarter())
    last_seq = max(acked.values())
    await patient.wait_for_seq(last_seq)
    await colleague.wait_for_seq(last_seq)
    await asyncio.sleep(1)  # anything sent twice would arrive by now
    await patient.close()
    await colleague.close()
    return patient, colleague, api_calls, restart, acked


def test_requests_after_a_postgres_restart_succeed_and_retries_store_nothing_twice(
    postgres_cluster, redis_server
):
    patient, doctor, colleague = PatientFactory(), ClinicianFactory(), ClinicianFactory()
    thread = services.thread_open(
        kind=Thread.Kind.CONSULTATION,
        created_by=doctor.user,
        participants=[(patient.user, "patient"), (colleague.user, "specialist")],
        patient=patient,
    )
    cookies = {"patient": session_cookie(patient.user), "colleague": session_cookie(colleague.user)}
    postgres_cluster.copy_database(connection.settings_dict, "telehealth")
    port = free_port()
    web = start_daphne(
        port,
        child_env(
            DATABASE_URL=postgres_cluster.url("telehealth"),
            REDIS_URL=redis_server.url(0),
            DATABASE_CONN_MAX_AGE="60",
        ),
    )
    try:
        wait_listening(web, port, "daphne")
        socket_patient, socket_colleague, api_calls, restart, acked = async_to_sync(_conversation)(
            port, postgres_cluster, thread.pk, doctor.user, cookies
        )
    finally:
        log = stop(web)

    assert restart["pid_after"] != restart["pid_before"], "PostgreSQL really restarted"
    # While the database was away: 503 (retry), never a 500.
    assert {status for _, status in api_calls} <= {200, 201, 503}, (api_calls, log[-3000:])
    # Once it is back, the very next request succeeds: no broken connection is reused.
    after = [status for sent_at, status in api_calls if sent_at > restart["done"]]
    assert after and set(after) <= {201}, (after, log[-3000:])

    with psycopg.connect(postgres_cluster.dsn("telehealth")) as db:
        rows = db.execute(
            "SELECT seq, client_id FROM consult_message WHERE thread_id = %s ORDER BY seq",
            [thread.pk],
        ).fetchall()
    seqs = [seq for seq, _ in rows]
    client_ids = [client_id for _, client_id in rows]
    ours = sorted(c for c in client_ids if c.startswith(("api-", "ws-")))
    # Every message stored exactly once, whatever the retries.
    assert ours == sorted(
        [f"api-{n}" for n in range(PER_SENDER)] + [f"ws-{n}" for n in range(PER_SENDER)]
    )
    assert seqs == list(range(1, len(rows) + 1))
    assert {client_id: seq for seq, client_id in rows if client_id in acked} == acked
    # Every participant received every message once, in order, across the restart.
    for client in (socket_patient, socket_colleague):
        assert client.received == seqs, (client.name, client.received)
