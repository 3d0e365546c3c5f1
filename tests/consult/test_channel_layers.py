"""Every Redis transport loses events in its own way; the sockets repair it.

- The bus (Redis pub/sub, the default) loses what is published while a process's
  subscriber is disconnected.
- channels_redis.core drops a send to a channel that is over capacity, silently.
- channels_redis.pubsub loses what is published while its subscriber is disconnected.
The database is the truth: a socket that sees a gap, or is behind what the
database had a sync interval ago, reads the missing messages from it.
"""

from __future__ import annotations

import asyncio

import pytest
import redis
from channels.db import database_sync_to_async
from django.conf import settings as django_settings

from consult import services
from consult.hub import get_hub
from tests.consult.test_consumers import subscribed

pytestmark = [pytest.mark.redis, pytest.mark.django_db(transaction=True)]


def _send(user, thread, client_id):
    return database_sync_to_async(services.message_send)(
        user=user, thread_id=thread.pk, client_id=client_id, body=client_id
    )


async def _seqs(socket, count):
    return [(await socket.receive(timeout=5))["seq"] for _ in range(count)]


async def test_bus_disconnect_loses_events_but_no_message(consultation, settings):
    assert settings.REALTIME_TRANSPORT == "bus"
    thread, patient, doctor, _ = consultation
    receiver = await subscribed(patient, thread)
    await _send(doctor, thread, "bus-1")
    assert await _seqs(receiver, 1) == [1]

    hub = get_hub()
    assert hub.bus is not None
    # Stall this process's subscriber, as a busy or partitioned process would, and
    # let Redis drop its connection; three messages are published meanwhile.
    hub._tasks[0].cancel()
    redis.Redis.from_url(django_settings.REDIS_URL).client_kill_filter(_type="pubsub")
    events_before = hub.events_received
    for n in range(2, 5):
        await _send(doctor, thread, f"bus-{n}")
    hub._tasks[0] = asyncio.create_task(hub._bus_loop())
    await _send(doctor, thread, "bus-5")  # the first event after the reconnect

    assert await _seqs(receiver, 4) == [2, 3, 4, 5]
    # Redis had no subscriber for 2-4; the socket read them from the database.
    assert hub.events_received - events_before <= 1
    assert await receiver.nothing()
    await receiver.close()


async def test_core_layer_over_capacity_loses_events_but_no_message(consultation, settings):
    settings.REALTIME_TRANSPORT = "core"
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [django_settings.REDIS_URL], "capacity": 2, "expiry": 10},
        }
    }
    thread, patient, doctor, _ = consultation
    receiver = await subscribed(patient, thread)
    hub = get_hub()
    # Stall this process's hub, as a busy process would, while 6 messages are sent.
    hub._tasks[0].cancel()
    for n in range(1, 7):
        await _send(doctor, thread, f"cap-{n}")
    received_by_layer = 0
    while True:
        try:
            await asyncio.wait_for(hub.layer.receive(hub.channel_name), timeout=0.5)
            received_by_layer += 1
        except TimeoutError:
            break
    hub._tasks[0] = asyncio.create_task(hub._receive_loop())
    await _send(doctor, thread, "cap-7")

    assert received_by_layer < 6  # the layer dropped events, silently
    assert await _seqs(receiver, 7) == [1, 2, 3, 4, 5, 6, 7]
    assert await receiver.nothing()
    await receiver.close()


async def test_pubsub_layer_disconnect_loses_events_but_no_message(consultation, settings):
    settings.REALTIME_TRANSPORT = "pubsub"
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [django_settings.REDIS_URL]},
        }
    }
    thread, patient, doctor, _ = consultation
    receiver = await subscribed(patient, thread)
    await _send(doctor, thread, "ps-1")
    assert await _seqs(receiver, 1) == [1]

    hub = get_hub()
    events_before = hub.events_received
    redis.Redis.from_url(django_settings.REDIS_URL).client_kill_filter(_type="pubsub")
    for n in range(2, 5):
        await _send(doctor, thread, f"ps-{n}")
    await asyncio.sleep(0.3)
    lost_by_layer = 3 - (hub.events_received - events_before)
    await hub.sync_once()
    await asyncio.sleep(0.5)
    await hub.sync_once()

    assert lost_by_layer > 0  # published while the subscriber was reconnecting
    assert await _seqs(receiver, 3) == [2, 3, 4]
    assert await receiver.nothing()
    await receiver.close()


async def test_sockets_subscribing_all_at_once_share_one_subscriber_connection(settings):
    """redis-py's ``PubSub.connect`` takes a pool connection whenever it has none yet:
    subscribers racing through it each took one and all but the last leaked, until the
    pool (100) was used up and every publish failed. The bus connects once."""
    from telehealth.realtime import RedisBus

    bus = RedisBus(django_settings.REDIS_URL)
    try:
        outcomes = await asyncio.gather(
            *(bus.subscribe(f"race.{n}") for n in range(150)), return_exceptions=True
        )
        assert [o for o in outcomes if o is not None] == []
        assert len(bus._redis.connection_pool._in_use_connections) == 1  # the subscriber's
        await bus.publish_many([("race.1", {"kind": "probe"})])
    finally:
        await bus.close()
