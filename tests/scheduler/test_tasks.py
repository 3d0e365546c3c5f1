"""The routing tasks in real Celery worker processes: exactly once, and a worker killed
in the middle of routing loses nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
from django.db import connection, connections

from scheduler.models import Queue, Referral, RoutingDecision
from scheduler.tasks import route_referral, route_referrals
from telehealth.celery import app
from tests.integration.test_processes import BIN, ROOT, _child_env, _stop, _wait_for
from tests.scheduler.conftest import build_network, submitted_referral

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def _worker(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [str(BIN / "celery"), "-A", "telehealth", "worker", "--loglevel", "INFO", *args],
        cwd=ROOT,
        env=_child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _purge() -> None:
    """Messages left by earlier runs are not this test's business."""
    app.control.purge()


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def test_two_worker_processes_route_every_referral_exactly_once_despite_duplicates():
    network = build_network({"near": 10, "far": 10, "provincial": 10, "central": 20})
    ids = [submitted_referral(network, route=False).pk for _ in range(30)]
    _purge()
    # Every referral is sent three times: alone, in a batch, and in an overlapping batch.
    for referral_id in ids:
        route_referral.delay(referral_id)
    route_referrals.delay(ids[:20])
    route_referrals.delay(ids[10:])
    worker = _worker("--concurrency", "2")
    try:
        _wait_for(
            lambda: not Referral.objects.filter(routing_state="pending").exists(),
            90,
            "the workers to route every referral",
        )
        time.sleep(1.5)  # let the duplicates arrive and find nothing to do
    finally:
        log = _stop(worker)

    decisions = Counter(RoutingDecision.objects.values_list("referral_id", flat=True))
    assert set(decisions) == set(ids), log
    assert set(decisions.values()) == {1}
    assert Referral.objects.filter(routing_state="routed").count() == 30
    assert sum(q.assigned_today for q in Queue.objects.all()) == 30
    assert "scheduler.route_referrals" in log


@pytest.mark.postgres
@pytest.mark.redis
def test_a_worker_killed_mid_routing_is_redelivered_and_the_referral_routed_once():
    network = build_network()
    referral = submitted_referral(network, route=False)
    target = Queue.objects.create(
        facility=network.district_near,
        specialty=network.district_near.offerings.get(specialty__code="cardiology").specialty,
    )
    _purge()
    # Hold the target queue's row lock from another connection, so the worker stops
    # inside its routing transaction, after it has locked the referral.
    holder = connections.create_connection("default")
    holder.set_autocommit(False)
    with holder.cursor() as cursor:
        cursor.execute("SELECT id FROM scheduler_queue WHERE id = %s FOR UPDATE", [target.pk])
    route_referral.delay(referral.pk)
    worker = _worker("--concurrency", "1", "--pool", "prefork")
    killed = None
    try:

        def routing_is_blocked() -> bool:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock'"
                )
                return cursor.fetchone()[0] > 0

        _wait_for(routing_is_blocked, 60, "the worker to block inside its transaction")
        children = _children(worker.pid)
        assert len(children) == 1
        killed = children[0]
        os.kill(killed, signal.SIGKILL)
        _wait_for(
            lambda: _children(worker.pid) and _children(worker.pid) != [killed],
            30,
            "the worker to start a new pool process",
        )
        time.sleep(1)  # the redelivered task meets the dead connection's lock, or ours
        holder.rollback()  # let the routing through
        _wait_for(
            lambda: Referral.objects.get(pk=referral.pk).routing_state == "routed",
            60,
            "the redelivered task to route the referral",
        )
        time.sleep(1)
    finally:
        holder.close()
        log = _stop(worker)

    assert "WorkerLostError" in log or "SIGKILL" in log, log
    assert RoutingDecision.objects.filter(referral=referral).count() == 1
    referral.refresh_from_db()
    assert referral.target_facility == network.district_near and referral.ticket_number == 1
    target.refresh_from_db()
    assert (target.assigned_today, target.waiting, target.last_ticket) == (1, 1, 1)


def test_submitting_enqueues_the_routing_task_after_commit_and_repeats_are_no_ops(celery_eager):
    network = build_network()

    referral = submitted_referral(network, route=False)  # the task ran eagerly on commit

    referral.refresh_from_db()
    assert referral.routing_state == "routed"
    assert route_referral.delay(referral.pk).get() == "skipped"
    assert route_referrals.delay([referral.pk]).get()["skipped"] == 1
    assert RoutingDecision.objects.filter(referral=referral).count() == 1


def test_the_beat_tasks_run_their_services(celery_eager, monkeypatch):
    from datetime import timedelta

    from django.utils import timezone

    from scheduler import tasks
    from scheduler.models import Slot
    from tests.factories import ClinicianFactory, PatientFactory
    from tests.scheduler.conftest import weekly_schedule

    network = build_network({"near": 0, "far": 0, "provincial": 0, "central": 0})
    stuck = submitted_referral(network, route=False)  # on the no-slot worklist
    doctor = ClinicianFactory()
    schedule = weekly_schedule(doctor)
    assert tasks.generate_slots.delay().get() >= 1
    slot = Slot.objects.filter(
        schedule=schedule, start__gt=timezone.now() + timedelta(minutes=6)
    ).order_by("start")[0]
    from scheduler import appointment_services

    patient = PatientFactory()
    appointment_services.appointment_book(by=patient.user, slot_id=slot.pk, mode="video")
    future = timezone.now() + timedelta(days=30)
    monkeypatch.setattr(timezone, "now", lambda: future)

    escalated = tasks.escalate_overdue.delay().get()
    no_shows = tasks.mark_no_shows.delay().get()

    assert escalated["worklist_overdue"] == 1
    assert no_shows == {"noshow": 1, "fulfilled": 0}
    assert tasks.retry_no_slot.delay().get() == 0
    assert tasks.reoptimise.delay().get() == 0
    assert tasks.expire_offers.delay().get() == 0
    assert tasks.route_sweep.delay().get() == 0
    stuck.refresh_from_db()
    assert (stuck.routing_state, stuck.escalation_level) == ("no_slot", 1)


def test_reminder_task_sends_in_the_patients_language(celery_eager, monkeypatch):
    from datetime import timedelta

    from django.utils import timezone

    from scheduler import appointment_services, tasks
    from scheduler.models import AppointmentReminder, Slot
    from tests.factories import ClinicianFactory, PatientFactory
    from tests.scheduler.conftest import weekly_schedule

    schedule = weekly_schedule(ClinicianFactory(user__full_name="BS. Minh"))
    appointment_services.slots_generate(schedule_id=schedule.pk)
    slot = Slot.objects.filter(start__gt=timezone.now() + timedelta(hours=30)).order_by("start")[0]
    patient = PatientFactory(user__preferred_language="vi")
    appointment_services.appointment_book(by=patient.user, slot_id=slot.pk, mode="video")
    at = slot.start - timedelta(minutes=10)
    monkeypatch.setattr(timezone, "now", lambda: at)

    sent = tasks.send_reminders.delay().get()

    assert sent == 1  # the fifteen-minute one (the day-before time has passed unsent)
    reminder = AppointmentReminder.objects.get()
    assert reminder.kind == "fifteen_minutes"
    assert reminder.text.startswith("Buổi khám qua video với BS. Minh bắt đầu sau 15 phút")


def test_every_periodic_scheduler_job_is_on_the_beat_schedule():
    # given the Celery app's beat schedule
    from telehealth.celery import app

    scheduled = {entry["task"] for entry in app.conf.beat_schedule.values()}
    # then every sweep the scheduler relies on runs by itself
    assert {
        "scheduler.route_sweep",
        "scheduler.escalate_overdue",
        "scheduler.retry_no_slot",
        "scheduler.reoptimise",
        "scheduler.send_reminders",
        "scheduler.mark_no_shows",
        "scheduler.expire_offers",
        "scheduler.generate_slots",
    } <= scheduled


def test_long_sweeps_are_not_redelivered_while_they_still_run():
    # given the broker hands an unacknowledged task to another worker after 60 s
    from scheduler import tasks

    # then the periodic sweeps acknowledge on start; routing acknowledges when done
    for sweep in (tasks.reoptimise, tasks.generate_slots, tasks.send_reminders):
        assert sweep.acks_late is False
    assert tasks.route_referrals.acks_late is True
