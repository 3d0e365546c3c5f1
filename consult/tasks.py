"""Periodic work of consult/. Tasks are thin and idempotent."""

from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings
from django.db import transaction

from consult.models import Visit
from telehealth.realtime import publish_topic_event_on_commit

logger = logging.getLogger(__name__)


@shared_task(name="consult.tasks.visits_relay_watchdog")
def visits_relay_watchdog() -> int:
    """Rooms whose relay node stopped heartbeating: forget the placement and tell the
    visit's participants to rejoin; their next join lands on a live node.

    Idempotent: a room is reported once, because its placement is deleted here
    (compare-and-delete, so a room re-placed meanwhile is left alone).
    """
    if not settings.REDIS_URL:
        return 0
    from consult.media import _redis
    from relay.registry import room_key, rooms_on_dead_nodes_sync

    client = _redis()
    told = 0
    for room, dead_node in rooms_on_dead_nodes_sync(client).items():
        deleted = client.eval(
            "if redis.call('GET', KEYS[1]) == ARGV[1] then "
            "return redis.call('DEL', KEYS[1]) else return 0 end",
            1,
            room_key(room),
            dead_node,
        )
        if not deleted or not room.startswith("visit-"):
            continue
        visit_id = int(room.removeprefix("visit-"))
        live = Visit.objects.filter(
            pk=visit_id, state__in=[Visit.State.WAITING, Visit.State.IN_PROGRESS]
        ).exists()
        if live:
            from consult.visit_services import visit_recording_node_lost

            visit_recording_node_lost(visit_id=visit_id)
            with transaction.atomic():
                publish_topic_event_on_commit(
                    f"visit.{visit_id}",
                    name="visit.rejoin",
                    data={"visit": visit_id, "reason": "relay_node_lost"},
                )
            told += 1
            logger.warning("relay node %s lost; visit %s told to rejoin", dead_node, visit_id)
    return told
