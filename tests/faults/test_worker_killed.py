"""A Celery worker is killed with SIGKILL in the middle of routing a referral.

Not a pool child that its parent replaces (tests/scheduler/test_tasks.py covers
that): the whole worker, as when its machine dies. Nobody is left to give the
message back. It stays unacknowledged in Redis (acks late) until the broker's
visibility timeout hands it to the next worker, whose routing must then find the
referral still pending, and route it exactly once.
"""

from __future__ import annotations

import signal
import time

import pytest
import redis
from django.db import connection, connections

from scheduler.models import LevelRule, Queue, Referral, RoutingDecision, ServiceLevel
from scheduler.policy import policy_defaults_load
from scheduler.tasks import route_referral
from telehealth.celery import app
from tests.faults.servers import child_env, start_worker, stop, wait_for
from tests.scheduler.conftest import build_network, submitted_referral

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db(transaction=True)]

# Seconds before an unacknowledged message goes back to the queue (60 in production).
VISIBILITY_TIMEOUT = 3


def _worker(env: dict[str, str]):  # type: ignore[no-untyped-def]
    # solo: the task runs in the worker process itself, so SIGKILL kills the
    # process that holds the message; nobody survives to reject or requeue it.
    return start_worker(env, "--pool", "solo", "--without-gossip", "--without-mingle")


def _routing_blocked_on_the_queue_lock() -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock' AND query ILIKE '%%scheduler_queue%%FOR UPDATE%%'"
        )
        return cursor.fetchone()[0] > 0


def test_a_worker_killed_mid_routing_leaves_the_referral_to_the_next_worker_once(redis_server):
    # Earlier transactional tests emptied every table: the routing rules come back first.
    policy_defaults_load(LevelRule=LevelRule, ServiceLevel=ServiceLevel)
    network = build_network()
    referral = submitted_referral(network, route=False)
    app.control.purge()  # the submission's own message went to the suite's broker
    target = Queue.objects.create(
        facility=network.district_near,
        specialty=network.district_near.offerings.get(specialty__code="cardiology").specialty,
    )
    broker = redis.Redis.from_url(redis_server.url(0))
    env = child_env(
        REDIS_URL=redis_server.url(0), CELERY_VISIBILITY_TIMEOUT=str(VISIBILITY_TIMEOUT)
    )
    first = _worker(env)
    second = None
    # Hold the chosen queue's row lock, so the worker stops inside its routing
    # transaction, after it has locked the referral and chosen the queue.
    holder = connections.create_connection("default")
    holder.set_autocommit(False)
    logs = []
    try:
        # The worker has declared its queue: a message sent now is routed to it.
        wait_for(lambda: broker.exists("_kombu.binding.celery"), 60, "the worker to start")
        with holder.cursor() as cursor:
            cursor.execute("SELECT id FROM scheduler_queue WHERE id = %s FOR UPDATE", [target.pk])
        with app.connection_for_write(redis_server.url(0)) as conn:
            route_referral.apply_async((referral.pk,), connection=conn)
        wait_for(_routing_blocked_on_the_queue_lock, 60, "the worker to block mid-routing")

        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        logs.append(stop(first))
        # Acks late: the message was never acknowledged; it waits in Redis.
        assert broker.hlen("unacked") == 1
        holder.rollback()  # the dead worker's transaction now fails and rolls back
        referral.refresh_from_db()
        assert referral.routing_state == "pending"

        second = _worker(env)
        wait_for(
            lambda: Referral.objects.get(pk=referral.pk).routing_state == "routed",
            60,
            "the redelivered task to route the referral",
        )
        # Past another visibility timeout: a second delivery would have come by now.
        time.sleep(VISIBILITY_TIMEOUT + 1)
        wait_for(lambda: broker.hlen("unacked") == 0, 30, "the message to be acknowledged")
    finally:
        holder.close()
        if first.poll() is None:
            first.kill()
        if second is not None:
            logs.append(stop(second))

    decisions = list(RoutingDecision.objects.filter(referral=referral).values("generation"))
    assert decisions == [{"generation": 1}], logs
    referral.refresh_from_db()
    assert (referral.target_facility, referral.ticket_number) == (network.district_near, 1)
    assert referral.route_generation == 1
    target.refresh_from_db()
    assert (target.assigned_today, target.waiting, target.last_ticket) == (1, 1, 1)
    assert "scheduler.route_referral" in logs[-1] and "succeeded" in logs[-1], logs[-1]
