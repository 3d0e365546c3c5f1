"""Property: whatever the interleaving of sends, retries, dropped sockets and reconnects,
every acknowledged message reaches every participant exactly once, in the same order.

The clients here behave as docs/protocol.md asks: they keep the highest seq per
thread, resubscribe with it after a reconnect, and resend unacknowledged messages
with the same client_id.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest
from asgiref.sync import async_to_sync
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consult import services
from consult.models import Message, Thread
from tests.consult.conftest import open_socket, session_cookie
from tests.factories import ClinicianFactory, PatientFactory

pytestmark = pytest.mark.django_db(transaction=True)

PEOPLE = 3
operation = st.tuples(
    st.sampled_from(["send", "send", "send", "retry", "drop", "reconnect", "drain"]),
    st.integers(min_value=0, max_value=PEOPLE - 1),
)


@dataclass
class Client:
    cookie: str
    socket: object = None
    last_seq: int = 0
    seen: list[tuple[int, str]] = field(default_factory=list)
    unacked: dict[str, str] = field(default_factory=dict)
    acked: set[str] = field(default_factory=set)
    sent_count: int = 0


async def _drain(client: Client, thread_id: int, wait: float = 0.02) -> None:
    socket = client.socket
    if socket is None:
        return
    while not await socket.communicator.receive_nothing(timeout=wait):
        output = await socket.communicator.receive_output()
        if output["type"] == "websocket.close":
            client.socket = None
            return
        frame = json.loads(output["text"])
        if frame["type"] == "message" and frame["thread"] == thread_id:
            # The server never sends a seq out of order on a socket.
            assert frame["seq"] == client.last_seq + 1, (frame["seq"], client.last_seq)
            client.last_seq = frame["seq"]
            client.seen.append((frame["seq"], frame["client_id"]))
        elif frame["type"] == "ack":
            client.unacked.pop(frame["client_id"], None)
            client.acked.add(frame["client_id"])


async def _connect(client: Client, thread_id: int) -> None:
    socket, connected, _ = await open_socket(None, cookie=client.cookie)
    assert connected
    await socket.receive()  # welcome
    client.socket = socket
    await socket.send({"type": "subscribe", "thread": thread_id, "after": client.last_seq})
    for client_id, body in client.unacked.items():
        await socket.send(
            {"type": "send", "thread": thread_id, "client_id": client_id, "body": body}
        )


async def _scenario(thread_id: int, clients: list[Client], ops: list[tuple[str, int]]) -> None:
    for client in clients:
        await _connect(client, thread_id)
    for name, who in ops:
        client = clients[who]
        if name == "send":
            client.sent_count += 1
            client_id = f"{who}-{client.sent_count}"
            client.unacked[client_id] = f"tin {client_id}"
            if client.socket is not None:
                await client.socket.send(
                    {
                        "type": "send",
                        "thread": thread_id,
                        "client_id": client_id,
                        "body": f"tin {client_id}",
                    }
                )
        elif name == "retry" and client.socket is not None and (client.unacked or client.acked):
            client_id = next(iter(client.unacked), None) or sorted(client.acked)[-1]
            await client.socket.send(
                {
                    "type": "send",
                    "thread": thread_id,
                    "client_id": client_id,
                    "body": f"tin {client_id}",
                }
            )
        elif name == "drop" and client.socket is not None:
            await client.socket.close()  # acks in flight are lost with it
            client.socket = None
        elif name == "reconnect" and client.socket is None:
            await _connect(client, thread_id)
        await _drain(client, thread_id)
    # Everyone comes back, resends what was never acknowledged, and catches up.
    for client in clients:
        if client.socket is None:
            await _connect(client, thread_id)
    for _ in range(100):
        for client in clients:
            await _drain(client, thread_id, wait=0.05)
        if all(not c.unacked for c in clients) and len({c.last_seq for c in clients}) == 1:
            break
    for client in clients:
        await client.socket.close()


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=st.lists(operation, min_size=4, max_size=24))
def test_every_acknowledged_message_reaches_everyone_once_in_order(ops):
    patient = PatientFactory()
    doctor, colleague = ClinicianFactory(), ClinicianFactory()
    users = [patient.user, doctor.user, colleague.user]
    thread = services.thread_open(
        kind=Thread.Kind.CONSULTATION,
        created_by=doctor.user,
        patient=patient,
        participants=[(patient.user, "patient"), (colleague.user, "specialist")],
    )
    clients = [Client(cookie=session_cookie(user)) for user in users]

    async_to_sync(_scenario)(thread.pk, clients, ops)

    stored = list(
        Message.objects.filter(thread=thread).order_by("seq").values_list("seq", "client_id")
    )
    acknowledged = set().union(*(c.acked for c in clients))
    sent = {f"{who}-{n}" for who, c in enumerate(clients) for n in range(1, c.sent_count + 1)}
    assert [seq for seq, _ in stored] == list(range(1, len(stored) + 1))
    assert sorted(cid for _, cid in stored) == sorted(sent)  # each send stored exactly once
    assert acknowledged == sent
    for client in clients:
        assert client.seen == stored  # exactly once, in the one order
