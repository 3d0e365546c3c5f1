"""The realtime socket: delivery, resume, retries, security and bad input (docs/protocol.md)."""

from __future__ import annotations

import asyncio
import json

import pytest
from channels.db import database_sync_to_async

from consult import services
from consult.hub import get_hub
from consult.models import Message
from telehealth.models import AuditEvent
from tests.consult.conftest import open_socket
from tests.factories import ClinicianFactory

pytestmark = pytest.mark.django_db(transaction=True)


async def subscribed(user, thread, after=None):
    socket, connected, _ = await open_socket(user)
    assert connected
    await socket.send({"type": "subscribe", "thread": thread.pk, "after": after})
    frame, replayed = await socket.receive_until("subscribed")
    socket.last_subscribed = frame
    socket.replayed = replayed
    return socket


async def test_the_server_greets_with_the_protocol_version(consultation):
    _, patient, _, _ = consultation

    socket, connected, _ = await open_socket(patient)

    assert connected
    assert socket.welcome["type"] == "welcome"
    assert socket.welcome["protocol"] == 1
    assert socket.welcome["user"]["id"] == patient.pk
    await socket.close()


async def test_anonymous_sockets_are_closed_with_4401():
    socket, connected, _ = await open_socket(None)

    assert connected
    assert (await socket.communicator.receive_output(timeout=3))["code"] == 4401


async def test_a_foreign_origin_is_refused_at_the_handshake(consultation):
    _, patient, _, _ = consultation

    _, connected, _ = await open_socket(patient, origin=b"https://evil.example")

    assert not connected


async def test_a_message_is_acknowledged_with_its_sequence_number_and_delivered(consultation):
    thread, patient, doctor, colleague = consultation
    sender = await subscribed(doctor, thread)
    patient_socket = await subscribed(patient, thread)
    colleague_socket = await subscribed(colleague, thread)

    await sender.send(
        {"type": "send", "thread": thread.pk, "client_id": "m-1", "body": "Chào chị", "ref": "r1"}
    )
    ack, _ = await sender.receive_until("ack")
    at_patient = await patient_socket.receive()
    at_colleague = await colleague_socket.receive()

    assert ack["seq"] == 1 and ack["ref"] == "r1" and ack["duplicate"] is False
    assert at_patient["type"] == at_colleague["type"] == "message"
    assert at_patient["seq"] == 1 and at_patient["body"] == "Chào chị"
    assert at_patient["sender"]["id"] == doctor.pk
    assert await database_sync_to_async(Message.objects.filter(thread=thread).count)() == 1
    for socket in (sender, patient_socket, colleague_socket):
        await socket.close()


async def test_a_retried_send_returns_the_original_and_is_delivered_once(consultation):
    thread, patient, doctor, _ = consultation
    sender = await subscribed(doctor, thread)
    receiver = await subscribed(patient, thread)
    frame = {"type": "send", "thread": thread.pk, "client_id": "retry-me", "body": "Một lần"}

    await sender.send(frame)
    first, _ = await sender.receive_until("ack")
    await sender.send(frame)
    second, _ = await sender.receive_until("ack")
    delivered = await receiver.receive()

    assert (first["seq"], first["duplicate"]) == (1, False)
    assert (second["seq"], second["id"], second["duplicate"]) == (1, first["id"], True)
    assert delivered["seq"] == 1
    assert await receiver.nothing()
    assert await database_sync_to_async(Message.objects.filter(thread=thread).count)() == 1
    await sender.close()
    await receiver.close()


async def test_every_participant_sees_the_same_total_order(consultation):
    thread, patient, doctor, colleague = consultation
    sockets = [await subscribed(u, thread) for u in (patient, doctor, colleague)]

    await asyncio.gather(
        *[
            s.send(
                {"type": "send", "thread": thread.pk, "client_id": f"{i}-{n}", "body": f"{i}:{n}"}
            )
            for n in range(5)
            for i, s in enumerate(sockets)
        ]
    )
    seen = []
    for socket in sockets:
        messages = []
        while len(messages) < 15:
            frame = await socket.receive()
            if frame["type"] == "message":
                messages.append((frame["seq"], frame["body"]))
        seen.append(messages)

    assert seen[0] == seen[1] == seen[2]
    assert [seq for seq, _ in seen[0]] == list(range(1, 16))
    for socket in sockets:
        await socket.close()


async def test_a_reconnecting_client_gets_what_it_missed_in_order_then_live(consultation):
    thread, patient, doctor, _ = consultation
    sender = await subscribed(doctor, thread)
    for n in range(1, 5):
        await sender.send(
            {"type": "send", "thread": thread.pk, "client_id": f"x{n}", "body": f"{n}"}
        )
        await sender.receive_until("ack")

    receiver = await subscribed(patient, thread, after=1)
    await sender.send({"type": "send", "thread": thread.pk, "client_id": "x5", "body": "5"})
    live = await receiver.receive()

    assert [f["seq"] for f in receiver.replayed] == [2, 3, 4]
    assert receiver.last_subscribed["last_seq"] == 4
    assert live["seq"] == 5
    audited = await database_sync_to_async(
        AuditEvent.objects.filter(actor=patient, target__endswith=":replay").exists
    )()
    assert audited
    await sender.close()
    await receiver.close()


async def test_a_client_too_far_behind_is_told_to_refetch(consultation, monkeypatch):
    from consult import consumers

    monkeypatch.setattr(consumers, "REPLAY_LIMIT", 3)
    thread, patient, doctor, _ = consultation
    for n in range(5):
        await database_sync_to_async(services.message_send)(
            user=doctor, thread_id=thread.pk, client_id=f"b{n}", body="…"
        )
    socket, _, _ = await open_socket(patient)

    await socket.send({"type": "subscribe", "thread": thread.pk, "after": 0, "ref": "s"})
    frame = await socket.receive()

    assert frame == {
        "type": "resync_required",
        "ref": "s",
        "thread": thread.pk,
        "after": 0,
        "last_seq": 5,
    }
    await socket.close()


async def test_a_lost_event_is_repaired_from_the_database(consultation, monkeypatch):
    """The transport drops an event (over capacity, Redis disconnect): the socket
    notices the gap at the next message, or at the periodic sync for the last one."""
    from telehealth import realtime

    thread, patient, doctor, _ = consultation
    receiver = await subscribed(patient, thread)
    real_publish = realtime._send
    dropped = []

    async def lossy(items):
        dropped.extend(event["seq"] for _, event in items if event.get("seq") in (2, 4))
        await real_publish([(t, e) for t, e in items if e.get("seq") not in (2, 4)])

    monkeypatch.setattr(realtime, "_send", lossy)
    for n in range(1, 5):
        await database_sync_to_async(services.message_send)(
            user=doctor, thread_id=thread.pk, client_id=f"l{n}", body=str(n)
        )
    got = [(await receiver.receive())["seq"] for _ in range(3)]
    hub = get_hub()
    await hub.sync_once()  # remembers what the database had
    await hub.sync_once()  # seq 4 has now been committed a whole interval: repair
    got.append((await receiver.receive())["seq"])

    assert dropped == [2, 4]
    assert got == [1, 2, 3, 4]
    await receiver.close()


async def test_a_non_participant_cannot_subscribe_or_send(consultation):
    thread, _, _, _ = consultation
    stranger = await database_sync_to_async(lambda: ClinicianFactory().user)()
    socket, _, _ = await open_socket(stranger)

    await socket.send({"type": "subscribe", "thread": thread.pk, "ref": 1})
    refused_subscribe = await socket.receive()
    await socket.send(
        {"type": "send", "thread": thread.pk, "client_id": "z", "body": "hi", "ref": 2}
    )
    refused_send = await socket.receive()

    assert (refused_subscribe["type"], refused_subscribe["code"]) == ("error", "not_found")
    assert (refused_send["code"], refused_send["ref"]) == ("not_found", 2)
    assert await database_sync_to_async(Message.objects.count)() == 0
    await socket.close()


async def test_a_removed_participant_stops_receiving_at_once(consultation):
    thread, _, doctor, colleague = consultation
    host = await subscribed(doctor, thread)
    removed = await subscribed(colleague, thread)

    await database_sync_to_async(services.thread_participant_remove)(
        thread_id=thread.pk, user_id=colleague.pk, removed_by=doctor
    )
    notice, _ = await removed.receive_until("removed")
    await host.send({"type": "send", "thread": thread.pk, "client_id": "after", "body": "riêng"})
    await host.receive_until("ack")
    await removed.send({"type": "send", "thread": thread.pk, "client_id": "x", "body": "?"})
    refused = await removed.receive()

    assert notice == {"type": "removed", "thread": thread.pk}
    assert refused["code"] == "not_found"
    await host.close()
    await removed.close()


async def test_signing_out_closes_that_sessions_sockets(consultation):
    from django.test import AsyncClient

    from tests.factories import PASSWORD

    _, patient, _, _ = consultation
    client = AsyncClient()
    await database_sync_to_async(patient.set_password)(PASSWORD)
    await database_sync_to_async(patient.save)()
    await client.post("/login/", {"username": patient.username, "password": PASSWORD})
    cookie = f"sessionid={client.cookies['sessionid'].value}"
    socket, connected, _ = await open_socket(None, cookie=cookie)
    assert connected
    await socket.receive()  # welcome

    await client.post("/logout/")

    assert (await socket.communicator.receive_output(timeout=3))["code"] == 4401


async def test_malformed_frames_get_error_frames_and_the_socket_stays_usable(consultation):
    thread, patient, _, _ = consultation
    socket = await subscribed(patient, thread)

    answers = []
    for bad in [
        "not json",
        "[1, 2]",
        '{"type": "dance"}',
        '{"type": "send", "thread": "x"}',
        json.dumps({"type": "send", "thread": thread.pk, "body": "no client id"}),
        json.dumps({"type": "send", "thread": thread.pk, "client_id": "big", "body": "a" * 9000}),
    ]:
        await socket.send(bad)
        answers.append(await socket.receive())
    await socket.send({"type": "ping", "ref": "still-there"})
    pong = await socket.receive()

    assert [a["code"] for a in answers] == [
        "bad_json",
        "bad_json",
        "unknown_type",
        "invalid",
        "invalid",
        "too_large",
    ]
    assert "client_id" in answers[4]["fields"]
    assert pong == {"type": "pong", "ref": "still-there"}
    await socket.close()


async def test_an_oversized_frame_is_refused(consultation):
    thread, patient, _, _ = consultation
    socket = await subscribed(patient, thread)

    await socket.send("x" * (70 * 1024))

    assert (await socket.receive())["code"] == "too_large"
    await socket.close()


async def test_flooding_is_rate_limited_then_closed_as_abuse(consultation, monkeypatch):
    from consult import consumers

    monkeypatch.setattr(consumers, "ABUSE_STRIKES", 5)
    thread, patient, _, _ = consultation
    socket = await subscribed(patient, thread)

    codes = []
    for _ in range(60):
        await socket.send({"type": "ping"})
    while True:
        output = await socket.communicator.receive_output(timeout=3)
        if output["type"] == "websocket.close":
            close_code = output["code"]
            break
        frame = json.loads(output["text"])
        codes.append(frame.get("code"))

    assert "rate_limited" in codes
    assert close_code == 4008


async def test_read_marks_reach_the_users_other_devices(consultation):
    thread, patient, doctor, _ = consultation
    await database_sync_to_async(services.message_send)(
        user=doctor, thread_id=thread.pk, client_id="r1", body="Kết quả xét nghiệm"
    )
    phone = await subscribed(patient, thread, after=1)
    laptop = await subscribed(patient, thread, after=1)
    assert phone.last_subscribed["unread"] == 1

    await phone.send({"type": "read", "thread": thread.pk, "seq": 1})
    on_laptop = await laptop.receive()

    assert on_laptop == {"type": "read", "thread": thread.pk, "user": patient.pk, "seq": 1}
    await phone.close()
    await laptop.close()


async def test_typing_reaches_the_others_but_not_the_typist(consultation):
    thread, patient, doctor, _ = consultation
    typist = await subscribed(doctor, thread)
    watcher = await subscribed(patient, thread)

    await typist.send({"type": "typing", "thread": thread.pk})
    frame = await watcher.receive()

    assert frame["type"] == "typing" and frame["user"]["id"] == doctor.pk
    assert frame["expires_in"] > 0
    assert await typist.nothing()
    await typist.close()
    await watcher.close()


async def test_presence_goes_online_away_offline(consultation):
    thread, patient, doctor, _ = consultation
    watcher = await subscribed(patient, thread)
    doctor_socket, _, _ = await open_socket(doctor)
    online, _ = await watcher.receive_until("presence")

    await doctor_socket.send({"type": "presence", "status": "away"})
    away, _ = await watcher.receive_until("presence")
    await doctor_socket.close()
    offline, _ = await watcher.receive_until("presence")

    assert [f["status"] for f in (online, away, offline)] == ["online", "away", "offline"]
    assert online["user"] == doctor.pk
    await watcher.close()
