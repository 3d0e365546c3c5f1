"""The websocket permission matrix: every client frame type of the realtime protocol
(the consumer's handler table, which docs/protocol.md documents), sent by every
actor of the HTTP matrix about the patient's conversation and topics.

A frame type added to ``RealtimeConsumer.HANDLERS`` without a row here fails
``test_every_frame_type_has_a_case``. Outsiders get the documented error
(``not_found`` for a conversation they are not in, ``forbidden`` for a topic
they may not watch), and nothing from the conversation or the visit reaches
their sockets: no message, read mark, typing indicator, presence or event.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from channels.db import database_sync_to_async

from consult.consumers import RealtimeConsumer
from tests.consult.conftest import Socket, open_socket
from tests.security.world import ACTORS, OUTSIDERS, World, build_world

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis, pytest.mark.postgres]

# The frames each actor sends, in order, with what answers it directly: the type of
# the reply (with the error code), or "-" for none. A participant subscribes first,
# so its typing and read marks are valid. Columns are world.ACTORS without "anon",
# whose socket is closed with 4401 before it can send anything.
SIGNED_IN = [a for a in ACTORS if a != "anon"]
#          patient  other_patient  doctor  unrelated_doctor  mentor  coord_facility  coord_other
PARTICIPANTS_ONLY_REPLY = (
    "{ok} error:not_found {ok} error:not_found error:not_found error:not_found error:not_found"
)


def only_participants(ok: str) -> str:
    return PARTICIPANTS_ONLY_REPLY.format(ok=ok)


def frame_cases(world: World) -> dict[str, list[tuple[dict[str, Any], str]]]:
    thread = world.thread.pk
    station = world.facility.code
    return {
        "subscribe": [
            ({"type": "subscribe", "thread": thread, "after": 0}, only_participants("subscribed")),
        ],
        "typing": [({"type": "typing", "thread": thread}, only_participants("-"))],
        "read": [({"type": "read", "thread": thread, "seq": 1}, only_participants("-"))],
        "send": [
            (
                {"type": "send", "thread": thread, "client_id": str(uuid.uuid4()), "body": "Chào"},
                only_participants("ack"),
            )
        ],
        "presence": [({"type": "presence", "status": "away"}, "- - - - - - -")],
        "watch": [
            # The patient's visit: its participants only.
            (
                {"type": "watch", "topic": f"visit.{world.visit.pk}"},
                "watching error:forbidden watching error:forbidden error:forbidden "
                "error:forbidden error:forbidden",
            ),
            # The board of the doctor's facility: its coordinator only.
            (
                {"type": "watch", "topic": f"board.facility.{station}"},
                "error:forbidden error:forbidden error:forbidden error:forbidden "
                "error:forbidden watching error:forbidden",
            ),
            # Hà Nội's board: a coordinator of one facility does not cover the province.
            (
                {"type": "watch", "topic": "board.province.01"},
                "error:forbidden error:forbidden error:forbidden error:forbidden "
                "error:forbidden error:forbidden error:forbidden",
            ),
            # The other province's auto-assignment run: that province's coordinator.
            (
                {"type": "watch", "topic": f"network.run.{world.run.pk}"},
                "error:forbidden error:forbidden error:forbidden error:forbidden "
                "error:forbidden error:forbidden watching",
            ),
            # Internal topics are not watchable by anyone, the patient included.
            (
                {"type": "watch", "topic": f"t.{thread}"},
                "error:not_found error:not_found error:not_found error:not_found "
                "error:not_found error:not_found error:not_found",
            ),
            (
                {"type": "watch", "topic": f"u.{world.patient.user.pk}"},
                "error:not_found error:not_found error:not_found error:not_found "
                "error:not_found error:not_found error:not_found",
            ),
        ],
        "unwatch": [
            (
                {"type": "unwatch", "topic": f"visit.{world.visit.pk}"},
                " ".join(["unwatched"] * 7),
            )
        ],
        "unsubscribe": [
            ({"type": "unsubscribe", "thread": thread}, " ".join(["unsubscribed"] * 7))
        ],
        "ping": [({"type": "ping"}, " ".join(["pong"] * 7))],
        # "I used the page": keeps the session from going idle; never answered.
        "active": [({"type": "active"}, "- - - - - - -")],
    }


# The frame types frame_cases() covers (its keys; checked against the world's table too).
FRAME_TYPES = {
    "subscribe",
    "typing",
    "read",
    "send",
    "presence",
    "watch",
    "unwatch",
    "unsubscribe",
    "ping",
    "active",
}

# Frames that are fan-out rather than an answer to the frame just sent.
FAN_OUT = {"message", "read", "typing", "presence", "event", "removed"}


async def answer(socket: Socket, frame: dict[str, Any], seen: list[dict]) -> str:
    """Send a frame, then a ping; the direct reply is what came before the pong (a
    consumer handles one frame at a time, so a reply is emitted before the pong)."""
    await socket.send(frame)
    await socket.send({"type": "ping", "ref": "fence"})
    replies: list[str] = []
    while True:
        got = await socket.receive(timeout=5, skip_presence=False)
        seen.append(got)
        if got["type"] == "pong" and got.get("ref") == "fence":
            break
        if got["type"] in FAN_OUT:
            continue
        replies.append(f"error:{got['code']}" if got["type"] == "error" else got["type"])
    if frame["type"] == "ping":
        return "pong"
    return replies[0] if len(replies) == 1 else ("-" if not replies else "+".join(replies))


def test_every_frame_type_has_a_case():
    handled = set(RealtimeConsumer.HANDLERS)
    assert handled == FRAME_TYPES, (
        "Client frame types without a case in tests/security/test_ws_matrix.py: "
        f"{sorted(handled - FRAME_TYPES)}; cases for frame types that no longer exist: "
        f"{sorted(FRAME_TYPES - handled)}"
    )


def test_the_protocol_document_lists_every_frame_type():
    """docs/protocol.md's client → server table and the consumer agree."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "protocol.md").read_text()
    table = text.split("## Client → server frames", 1)[1].split("\n## ", 1)[0]
    documented = set()
    for line in table.splitlines():
        if line.startswith("| `"):
            documented |= set(re.findall(r"`(\w+)`", line.split("|")[1]))
    assert documented == set(RealtimeConsumer.HANDLERS)


def _leaks(frames: list[dict], world: World) -> list[str]:
    problems = []
    for frame in frames:
        text = json.dumps(frame, ensure_ascii=False)
        if any(secret in text for secret in world.secrets):
            problems.append(f"names the patient or their data: {text[:200]}")
        if frame.get("type") in ("message", "typing", "read") and frame.get("thread") == (
            world.thread.pk
        ):
            problems.append(f"a frame of the patient's conversation: {text[:200]}")
        if frame.get("type") == "event" and str(frame.get("topic", "")).startswith("visit."):
            problems.append(f"an event of the patient's visit: {text[:200]}")
        if frame.get("type") == "presence" and frame.get("user") == world.patient.user.pk:
            problems.append(f"the patient's presence: {text[:200]}")
    return problems


async def test_every_frame_type_for_every_actor():
    from consult import visit_services
    from consult.models import Message

    world = await database_sync_to_async(build_world)(recording=False)
    cases = frame_cases(world)
    assert set(cases) == FRAME_TYPES

    # Anonymous: closed with 4401 before any frame.
    socket, connected, _ = await open_socket(None)
    assert connected
    assert (await socket.communicator.receive_output(timeout=3))["code"] == 4401

    # The patient listens to their conversation throughout: the positive control.
    listener, connected, _ = await open_socket(world.users["patient"])
    assert connected
    await listener.send({"type": "subscribe", "thread": world.thread.pk, "after": None})
    await listener.receive_until("subscribed")
    await listener.send({"type": "watch", "topic": f"visit.{world.visit.pk}"})
    await listener.receive_until("watching")

    sockets: dict[str, Socket] = {}
    seen: dict[str, list[dict]] = {actor: [] for actor in SIGNED_IN}
    messages_before = await database_sync_to_async(
        Message.objects.filter(thread=world.thread).count
    )()
    problems: list[str] = []
    for actor in SIGNED_IN:
        socket, connected, _ = await open_socket(world.users[actor])
        assert connected, actor
        sockets[actor] = socket
    for frame_type, rows in cases.items():
        for frame, expect in rows:
            expected = dict(zip(SIGNED_IN, expect.split(), strict=True))
            for actor in SIGNED_IN:
                if frame_type == "send":
                    frame = {**frame, "client_id": str(uuid.uuid4())}
                got = await answer(sockets[actor], frame, seen[actor])
                if got != expected[actor]:
                    problems.append(f"{frame} as {actor}: expected {expected[actor]}, got {got}")
                if frame_type in ("unsubscribe",) and actor in ("patient", "doctor"):
                    # Back on the conversation for the rest of the session.
                    await sockets[actor].send(
                        {"type": "subscribe", "thread": world.thread.pk, "after": None}
                    )
                    await sockets[actor].receive_until("subscribed")

    # Outsiders' sends stored nothing; the two participants' sends are there.
    messages_after = await database_sync_to_async(
        Message.objects.filter(thread=world.thread).count
    )()
    assert messages_after == messages_before + 2

    # Now the doctor writes and the visit announces something: the patient hears both,
    # nobody outside does.
    await sockets["doctor"].send(
        {
            "type": "send",
            "thread": world.thread.pk,
            "client_id": str(uuid.uuid4()),
            "body": world.secrets[1] + " 2",
        }
    )
    await database_sync_to_async(visit_services.visit_set_audio_only)(
        visit_id=world.visit.pk, user=world.users["doctor"], audio_only=True
    )
    got, _ = await listener.receive_until("event", timeout=5)
    assert got["topic"] == f"visit.{world.visit.pk}"
    for actor in SIGNED_IN:
        while not await sockets[actor].communicator.receive_nothing(timeout=0.5):
            seen[actor].append(json.loads(await sockets[actor].communicator.receive_from()))
    for actor in OUTSIDERS:
        if actor == "anon":
            continue
        problems += [f"{actor}: {p}" for p in _leaks(seen[actor], world)]
    received = [f for f in seen["patient"] if f.get("type") == "message"]
    assert received, "the patient's own socket got the doctor's message"

    for socket in [listener, *sockets.values()]:
        await socket.close()
    assert not problems, "\n".join(problems)
