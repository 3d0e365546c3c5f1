"""A relay node is killed with SIGKILL during a video visit.

Real processes: two relay nodes (``python -m relay``) heartbeating into a Redis of
the test's own, a daphne process (the web tier: join tokens, the visit's topic
on the socket), and a Celery worker with its embedded beat, which runs the relay
watchdog every 3 s as in production. The two participants are aiortc peers in
this process, publishing marked video and decoding each other's.

A SIGKILLed node says nothing: its heartbeat stops. The watchdog sees its
registry entry go stale, forgets the room's placement and sends ``visit.rejoin``
on the visit's topic; each participant asks the web tier to join again, gets a
token naming the other node, and media flows there.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Iterator

import httpx
import pytest
import redis
from asgiref.sync import async_to_sync

from consult import visit_services
from relay import testing
from relay.registry import NODES_KEY
from tests.consult.conftest import session_cookie
from tests.factories import PASSWORD, ClinicianFactory, PatientFactory
from tests.faults.chat import ChatClient
from tests.faults.servers import (
    child_env,
    free_port,
    output,
    start_daphne,
    start_relay,
    start_worker,
    stop,
    wait_for,
    wait_listening,
)

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _loopback_ice() -> Iterator[None]:
    """Media stays on loopback, as in tests/relay (the nodes get --ice-host 127.0.0.1)."""
    import aioice.ice

    from relay.config import restrict_ice_hosts

    original = aioice.ice.get_host_addresses
    restrict_ice_hosts(["127.0.0.1"])
    yield
    aioice.ice.get_host_addresses = original


class Participant:
    """One person's side of the call: the web tier's join, then publish and subscribe."""

    def __init__(self, name: str, web: httpx.AsyncClient, auth: dict, visit_id: int) -> None:
        self.name, self.web, self.auth, self.visit_id = name, web, auth, visit_id
        self.pcs: list = []
        self.join: dict = {}
        self.received: testing.Received | None = None

    async def join_and_publish(self) -> dict:
        response = await self.web.post(f"/api/v1/visits/{self.visit_id}/join/", headers=self.auth)
        assert response.status_code == 200, response.text
        self.join = response.json()
        async with httpx.AsyncClient(base_url=self.join["relay"], timeout=10) as relay:
            pc, _ = await testing.publish(
                relay,
                self.join["room"],
                self.join["token"],
                video=testing.MarkerVideoTrack(width=160, height=120, fps=15),
                audio=False,
            )
        self.pcs.append(pc)
        deadline = time.monotonic() + 20
        while pc.connectionState != "connected":
            assert time.monotonic() < deadline, f"{self.name}: publishing never connected"
            await asyncio.sleep(0.05)
        return self.join

    async def watch(self, other: Participant) -> None:
        async with httpx.AsyncClient(base_url=self.join["relay"], timeout=10) as relay:
            pc, _, self.received = await testing.subscribe(
                relay, self.join["room"], other.join["participant"], self.join["token"], audio=False
            )
        self.pcs.append(pc)

    async def hang_up(self) -> None:
        await asyncio.gather(*(pc.close() for pc in self.pcs), return_exceptions=True)
        for task in self.received.tasks if self.received else []:
            task.cancel()
        self.pcs = []


async def _call(port: int, world: dict, nodes: dict, relays: dict) -> dict:
    visit_topic = f"visit.{world['visit_id']}"
    sockets = {
        name: ChatClient(
            port=port, cookie=world["cookies"][name], thread_id=world["thread_id"], name=name
        )
        for name in ("doctor", "patient")
    }
    for sock in sockets.values():
        await sock.connect(watch=visit_topic)
    result: dict = {}
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=20) as web:
        people = {}
        for name in ("doctor", "patient"):
            response = await web.post(
                "/api/v1/auth/token/",
                json={"username": world["usernames"][name], "password": PASSWORD},
            )
            assert response.status_code == 200, response.text
            auth = {"Authorization": f"Token {response.json()['token']}"}
            people[name] = Participant(name, web, auth, world["visit_id"])
        doctor, patient = people["doctor"], people["patient"]
        try:
            # The room is placed on node A, the only live node; then B comes up.
            result["first"] = [await p.join_and_publish() for p in (doctor, patient)]
            relays["b"] = start_relay(nodes["b"]["port"], "relay-b", nodes["redis"])
            await doctor.watch(patient)
            await patient.watch(doctor)
            for p in (doctor, patient):
                assert await p.received.wait_video(5, timeout=20), f"{p.name}: no video on A"
            await asyncio.to_thread(wait_listening, relays["b"], nodes["b"]["port"], "relay node B")

            relays["a"].send_signal(signal.SIGKILL)
            killed_at = time.monotonic()
            deadline = killed_at + 45
            while not all(
                any(e.get("name") == "visit.rejoin" for e in s.events) for s in sockets.values()
            ):
                assert time.monotonic() < deadline, "nobody was told to rejoin"
                await asyncio.sleep(0.1)
            result["told_after"] = time.monotonic() - killed_at
            result["events"] = [
                e for s in sockets.values() for e in s.events if e.get("name") == "visit.rejoin"
            ]

            # What visit.js does on visit.rejoin: drop the old connections, join again.
            for p in (doctor, patient):
                await p.hang_up()
            result["second"] = [await p.join_and_publish() for p in (doctor, patient)]
            await doctor.watch(patient)
            await patient.watch(doctor)
            for p in (doctor, patient):
                assert await p.received.wait_video(5, timeout=20), f"{p.name}: no video on B"
            result["media_after"] = time.monotonic() - killed_at
            result["markers"] = {p.name: len(p.received.markers) for p in (doctor, patient)}
        finally:
            for p in (doctor, patient):
                with contextlib.suppress(Exception):
                    await p.hang_up()
            for sock in sockets.values():
                with contextlib.suppress(Exception):
                    await sock.close()
    return result


def test_a_relay_node_killed_mid_visit_sends_its_participants_to_another_node(
    redis_server, tmp_path
):
    patient, doctor = PatientFactory(), ClinicianFactory()
    visit = visit_services.visit_schedule(
        patient=patient, host=doctor.user, scheduled_start=None, open_now=True
    )
    visit_services.visit_check_in(visit_id=visit.pk, user=patient.user, device_check={})
    visit_services.visit_admit(visit_id=visit.pk, user_id=patient.user.pk, by=doctor.user)
    world = {
        "visit_id": visit.pk,
        "thread_id": visit.thread_id,
        "usernames": {"doctor": doctor.user.username, "patient": patient.user.username},
        "cookies": {"doctor": session_cookie(doctor.user), "patient": session_cookie(patient.user)},
    }
    nodes = {
        "a": {"port": free_port()},
        "b": {"port": free_port()},
        "redis": redis_server.url(0),
    }
    env = child_env(REDIS_URL=redis_server.url(0), RELAY_REQUIRE_REGISTRY="1")
    port = free_port()
    relays = {"a": start_relay(nodes["a"]["port"], "relay-a", nodes["redis"])}
    web = start_daphne(port, env)
    # The watchdog runs where production runs it: beat (embedded here), every 3 s.
    beat = start_worker(
        env, "--pool", "solo", "--beat", "--schedule", str(tmp_path / "beat-schedule")
    )
    logs: dict[str, str] = {}
    try:
        wait_listening(relays["a"], nodes["a"]["port"], "relay node A")
        wait_listening(web, port, "daphne")
        wait_for(lambda: "beat: Starting" in output(beat), 60, "beat to start")
        registry = redis.Redis.from_url(nodes["redis"])
        wait_for(lambda: registry.hexists(NODES_KEY, "relay-a"), 30, "node A to register")
        result = async_to_sync(_call)(port, world, nodes, relays)
    finally:
        logs["beat"] = stop(beat)
        logs["web"] = stop(web)
        for name, relay in relays.items():
            logs[f"relay-{name}"] = stop(relay)

    first_nodes = {join["relay"] for join in result["first"]}
    second_nodes = {join["relay"] for join in result["second"]}
    assert first_nodes == {f"http://127.0.0.1:{nodes['a']['port']}"}
    assert second_nodes == {f"http://127.0.0.1:{nodes['b']['port']}"}
    # Both participants were told, once each, why.
    assert [e["data"] for e in result["events"]] == [
        {"visit": visit.pk, "reason": "relay_node_lost"}
    ] * 2, result["events"]
    assert "relay node relay-a lost" in logs["beat"], logs["beat"][-3000:]
    # Media flows again on node B, both ways, with readable frame markers.
    assert all(count >= 5 for count in result["markers"].values()), result["markers"]
    print(  # the figures, for docs/security.md
        f"told to rejoin {result['told_after']:.1f} s after the kill, "
        f"video again {result['media_after']:.1f} s after it"
    )
