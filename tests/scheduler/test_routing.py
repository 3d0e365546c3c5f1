"""Choosing the target facility: level rules, distance, capacity, queue wait, emergencies,
tickets from the daily counter, the no-slot worklist, and exactly-once routing."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db.models import Count

from scheduler import services
from scheduler.models import Queue, Referral, RoutingDecision
from scheduler.policy import local_today
from tests.factories import ClinicianFactory, FacilityFactory
from tests.scheduler.conftest import build_network, place, submitted_referral

pytestmark = pytest.mark.django_db


def test_a_routine_referral_goes_to_the_nearest_district_centre_with_its_reasons(network):
    referral = submitted_referral(network)

    assert referral.routing_state == "routed"
    assert referral.target_facility == network.district_near
    assert referral.ticket_number == 1
    decision = RoutingDecision.objects.get(referral=referral)
    assert decision.outcome == "assigned"
    assert decision.reasons["facility"] == "TTYT-GAN"
    assert decision.reasons["level"] == 3
    assert decision.reasons["rule"].startswith("level 4 → 3")
    assert 9 < decision.reasons["distance_km"] < 11
    assert decision.reasons["remaining_today"] == 2
    assert "accept_by" in decision.reasons


def test_the_lowest_level_wins_over_a_nearer_higher_one(db):
    network = build_network()
    # Move the provincial hospital next door: a district centre 10 km away still wins.
    network.provincial.latitude, network.provincial.longitude = place(1).values()
    network.provincial.save()

    referral = submitted_referral(network)

    assert referral.target_facility == network.district_near


def test_when_the_nearest_is_full_the_next_of_the_same_level_takes_it(network):
    first, second = submitted_referral(network), submitted_referral(network)
    third = submitted_referral(network)

    assert [first.target_facility, second.target_facility] == [network.district_near] * 2
    assert third.target_facility == network.district_far
    passed = RoutingDecision.objects.get(referral=third).reasons["passed_over"]
    assert passed[0] == {
        "facility": "TTYT-GAN",
        "level": 3,
        "distance_km": 10.0,
        "why": "full today",
    }


def test_only_when_no_district_can_serve_does_it_go_up_a_level(db):
    network = build_network({"near": 1, "far": 0})

    targets = [submitted_referral(network).target_facility for _ in range(3)]

    assert targets == [network.district_near, network.provincial, network.provincial]


def test_tickets_count_per_queue_and_day_from_the_counter_row(network):
    referrals = [submitted_referral(network) for _ in range(4)]

    near = Queue.objects.get(facility=network.district_near, specialty__code="cardiology")
    far = Queue.objects.get(facility=network.district_far, specialty__code="cardiology")
    assert [r.ticket_number for r in referrals] == [1, 2, 1, 2]
    assert (near.day, near.last_ticket, near.assigned_today, near.waiting) == (
        local_today(),
        2,
        2,
        2,
    )
    assert (far.last_ticket, far.assigned_today) == (2, 2)


def test_a_new_day_restarts_the_numbering_machine(network):
    yesterday = local_today() - timedelta(days=1)
    earlier = submitted_referral(network)
    Referral.objects.filter(pk=earlier.pk).update(queue_day=yesterday)
    queue = Queue.objects.get(facility=network.district_near)
    queue.day = yesterday
    queue.save()

    referral = submitted_referral(network)

    queue.refresh_from_db()
    assert referral.ticket_number == 1
    assert (queue.last_ticket, queue.assigned_today) == (1, 1)


def test_the_queue_wait_pushes_to_a_less_busy_facility_of_the_same_level(db):
    network = build_network({"near": 100, "far": 100})
    Queue.objects.create(
        facility=network.district_near,
        specialty=network.district_near.offerings.get(specialty__code="cardiology").specialty,
        waiting=200,  # two days of waiting at 100 a day: worth 50 km
    )

    referral = submitted_referral(network)

    assert referral.target_facility == network.district_far
    reasons = RoutingDecision.objects.get(referral=referral).reasons
    assert reasons["waiting"] == 0


def test_an_emergency_goes_to_the_nearest_capable_facility_whatever_its_level(
    db, django_capture_on_commit_callbacks, monkeypatch
):
    from scheduler import tasks

    network = build_network()
    network.central.latitude, network.central.longitude = place(2).values()
    network.central.save()
    queued = []
    monkeypatch.setattr(tasks.route_referral, "delay", queued.append)

    with django_capture_on_commit_callbacks(execute=True):
        referral = submitted_referral(network, priority="emergency", route=False)

    # Routed inline on submission, before any task: the nearest is the central hospital.
    referral.refresh_from_db()
    assert referral.routing_state == "routed"
    assert referral.target_facility == network.central
    assert RoutingDecision.objects.get(referral=referral).reasons["rule"].startswith("emergency")
    assert queued == [referral.pk]  # the task still runs, and finds nothing to do


def test_an_emergency_is_taken_over_capacity_rather_than_left_waiting(db):
    network = build_network({"near": 0, "far": 0, "provincial": 0, "central": 0})

    referral = submitted_referral(network, priority="emergency")

    assert referral.routing_state == "routed"
    assert referral.target_facility == network.district_near
    assert RoutingDecision.objects.get(referral=referral).reasons["over_capacity"] is True


def test_with_no_capacity_anywhere_a_referral_lands_on_the_no_slot_worklist(db):
    network = build_network({"near": 0, "far": 0, "provincial": 0, "central": 0})

    referral = submitted_referral(network, priority="urgent")

    assert referral.routing_state == "no_slot"
    assert referral.target_facility is None
    assert referral.contact_due_at is not None
    minutes = (referral.contact_due_at - referral.requested_at).total_seconds() / 60
    assert minutes == pytest.approx(30)  # the urgent contact deadline of the policy table
    decision = RoutingDecision.objects.get(referral=referral)
    assert decision.outcome == "no_slot"
    assert "full today" in decision.reasons["why"]


def test_a_specialty_nobody_offers_is_reported_as_such(network):
    referral = submitted_referral(network, specialty="psychiatry")

    assert referral.routing_state == "no_slot"
    reasons = RoutingDecision.objects.get(referral=referral).reasons
    assert reasons["why"].startswith("no facility of an allowed level offers")


def test_routing_twice_assigns_once(network):
    referral = submitted_referral(network)

    again = services.referral_route(referral_id=referral.pk)
    report = services.referral_route_many(referral_ids=[referral.pk, referral.pk])

    assert again.generation == 1
    assert report.skipped == [referral.pk]
    assert RoutingDecision.objects.filter(referral=referral).count() == 1
    assert Queue.objects.get(facility=network.district_near).assigned_today == 1


def test_a_batch_fills_queues_in_priority_order_without_overfilling(db):
    network = build_network({"near": 2, "far": 0, "provincial": 0, "central": 0})
    routine = [submitted_referral(network, route=False) for _ in range(3)]
    urgent = submitted_referral(network, priority="urgent", route=False)

    report = services.referral_route_many(referral_ids=[r.pk for r in [*routine, urgent]])

    assert len(report.assigned) == 2 and len(report.no_slot) == 2
    urgent.refresh_from_db()
    assert urgent.target_facility == network.district_near  # urgent first in the batch
    assert Queue.objects.get(facility=network.district_near).assigned_today == 2
    tickets = Referral.objects.filter(ticket_number__isnull=False).values("queue", "ticket_number")
    assert tickets.annotate(n=Count("id")).filter(n__gt=1).count() == 0


def test_the_origin_facility_itself_is_never_a_target(db):
    network = build_network()
    network.station.offerings.create(
        specialty=network.district_near.offerings.get(specialty__code="cardiology").specialty,
        daily_referral_capacity=10,
    )

    referral = submitted_referral(network)

    assert referral.target_facility == network.district_near


def test_a_facility_beyond_the_rules_distance_is_not_a_candidate(db):
    network = build_network({"near": 0})
    network.district_far.latitude, network.district_far.longitude = place(70).values()
    network.district_far.save()

    referral = submitted_referral(network)

    assert referral.target_facility == network.provincial  # 70 km > 60 km for level 4 → 3


def test_new_facilities_are_seen_without_restarting(network):
    submitted_referral(network)
    submitted_referral(network)
    nearer = FacilityFactory(code="TTYT-MOI", level=3, offers={"cardiology": 5}, **place(12))

    referral = submitted_referral(network)

    assert referral.target_facility == nearer


def test_a_facility_created_within_the_index_ttl_routes_without_waiting(monkeypatch):
    # given a router that has just loaded the network and would trust it for a minute
    from dataclasses import replace

    from scheduler import routing
    from telehealth.models import ClinicianProfile, FacilityLevel

    monkeypatch.setattr(routing, "INDEX_TTL_SECONDS", 60.0)
    network = build_network()
    routing.network_index()
    # when a commune station opened a moment ago refers a patient straight away
    newcomer = FacilityFactory(
        level=FacilityLevel.COMMUNE, province=network.station.province, **place(1)
    )
    worker = ClinicianFactory(facility=newcomer, kind=ClinicianProfile.Kind.HEALTH_WORKER)
    referral = submitted_referral(replace(network, referrer=worker))
    # then the router learned of the station and routed the referral
    assert referral.routing_state == "routed"
    assert referral.target_facility == network.district_near
