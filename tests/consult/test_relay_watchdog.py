"""A relay node dies: its rooms are re-placed and the visit's participants told to rejoin."""

import json
import time

import pytest
import redis
from django.conf import settings

from consult import media
from consult import visit_services as services
from consult.tasks import visits_relay_watchdog
from relay.registry import NODES_KEY, room_key

pytestmark = [pytest.mark.redis, pytest.mark.django_db]


def _node(client, node_id, *, age):
    info = {
        "id": node_id,
        "url": f"http://127.0.0.1:9/{node_id}",
        "rooms": 0,
        "streams": 0,
        "cpu": 0.0,
        "ts": time.time() - age,
    }
    client.hset(NODES_KEY, node_id, json.dumps(info))


@pytest.fixture
def registry():
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.delete(NODES_KEY)
    yield client
    client.delete(NODES_KEY)
    for key in client.scan_iter(match=room_key("*")):
        client.delete(key)


def test_rooms_on_a_dead_node_move_and_the_visit_is_told(
    registry, patient, doctor, monkeypatch, django_capture_on_commit_callbacks
):
    from telehealth import realtime

    told = []
    monkeypatch.setattr(realtime, "publish_on_commit", lambda topic, event: told.append(topic))
    visit = services.visit_schedule(
        patient=patient, host=doctor.user, scheduled_start=None, open_now=True
    )
    _node(registry, "relay-a", age=0)
    assert media.relay_for_room(visit.room)["id"] == "relay-a"
    _node(registry, "relay-a", age=60)  # stopped heartbeating
    _node(registry, "relay-b", age=0)

    first = visits_relay_watchdog()
    second = visits_relay_watchdog()

    assert (first, second) == (1, 0)
    assert told == [f"visit.{visit.pk}"]
    assert media.relay_for_room(visit.room)["id"] == "relay-b"
