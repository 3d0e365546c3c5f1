"""Under real concurrency (PostgreSQL, several connections): a referral is routed exactly
once, tickets are unique, capacity holds; a slot is booked at most once."""

from __future__ import annotations

import threading
from collections import Counter

import pytest
from django.db import connection

from scheduler import services
from scheduler.models import Queue, Referral, RoutingDecision
from tests.scheduler.conftest import build_network, submitted_referral

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def _in_threads(count: int, work) -> list:
    barrier = threading.Barrier(count)
    results: list = [None] * count
    errors: list = []

    def run(n: int) -> None:
        try:
            barrier.wait()
            results[n] = work(n)
        except Exception as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    return results


def test_four_workers_routing_the_same_referrals_route_each_exactly_once():
    network = build_network({"near": 10, "far": 10, "provincial": 10, "central": 5})
    ids = [submitted_referral(network, route=False).pk for _ in range(40)]

    # Overlapping batches: each referral is in two workers' batches, and every worker
    # competes for the same queue rows.
    batches = [[ids[(n * 10 + k) % 40] for k in range(20)] for n in range(4)]
    assert Counter(i for batch in batches for i in batch) == {i: 2 for i in ids}

    reports = _in_threads(4, lambda n: services.referral_route_many(referral_ids=batches[n]))

    decisions = Counter(RoutingDecision.objects.values_list("referral_id", flat=True))
    assert set(decisions) == set(ids) and set(decisions.values()) == {1}
    assigned = sum(len(r.assigned) for r in reports)
    no_slot = sum(len(r.no_slot) for r in reports)
    assert (assigned, no_slot) == (35, 5)  # capacity 35 in all
    for queue in Queue.objects.all():
        routed = Referral.objects.filter(queue=queue, routing_state="routed")
        assert queue.assigned_today == routed.count() == queue.last_ticket
        assert sorted(routed.values_list("ticket_number", flat=True)) == list(
            range(1, queue.last_ticket + 1)
        )
    assert not Referral.objects.filter(routing_state="pending").exists()


def test_two_patients_booking_the_same_slot_at_once_get_one_appointment():
    from datetime import timedelta

    from django.utils import timezone

    from scheduler import appointment_services
    from scheduler.models import Appointment, Slot
    from telehealth.errors import Conflict
    from tests.factories import ClinicianFactory, PatientFactory
    from tests.scheduler.conftest import weekly_schedule

    schedule = weekly_schedule(ClinicianFactory())
    appointment_services.slots_generate(schedule_id=schedule.pk)
    slot = Slot.objects.filter(
        schedule=schedule, start__gt=timezone.now() + timedelta(hours=3)
    ).first()
    patients = [PatientFactory() for _ in range(4)]

    def book(n: int) -> str:
        try:
            appointment_services.appointment_book(
                by=patients[n].user, slot_id=slot.pk, mode="in_person"
            )
        except Conflict as exc:
            return exc.code
        return "booked"

    outcomes = _in_threads(4, book)

    assert sorted(outcomes) == ["booked", "slot_taken", "slot_taken", "slot_taken"]
    assert Appointment.objects.filter(slot=slot, status="booked").count() == 1
    assert Slot.objects.get(pk=slot.pk).status == "busy"
