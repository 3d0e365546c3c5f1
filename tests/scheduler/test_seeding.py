"""scheduler/seeding.py: a fresh `make run` has doctors to book and a referral on the board."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command

from scheduler.appointment_selectors import bookable_clinicians
from scheduler.models import Referral, Slot
from scheduler.selectors import board_get
from telehealth.models import User


@pytest.fixture
def demo_network(db, settings):
    settings.DEBUG = True
    out = StringIO()
    call_command("seed_network", demo_only=True, stdout=out)
    return out.getvalue()


def test_the_demo_doctors_take_bookings_after_seeding(demo_network):
    # given a freshly seeded demo network
    bookable = {c.user.username for c in bookable_clinicians()}
    # then every demo doctor offers free slots a patient can book
    for username in (
        "demo.doctor.central",
        "demo.doctor.provincial",
        "demo.doctor.district",
        "demo.doctor.commune",
    ):
        assert username in bookable
        assert Slot.objects.filter(
            schedule__clinician__user__username=username, status=Slot.Status.FREE
        ).exists()
    assert "doctors' availability published" in demo_network


def test_the_demo_coordinator_sees_the_demo_referral_on_the_board(demo_network):
    # given a freshly seeded demo network
    referral = Referral.objects.get(requester__username="demo.healthworker")
    # then the referral was submitted and routed (a queue, or the no-slot worklist)
    assert referral.status == Referral.Status.REQUESTED
    assert referral.routing_state in {"routed", "no_slot"}
    # and the Hà Nội coordinator's board lists it
    coordinator = User.objects.get(username="demo.coordinator")
    board = board_get(user=coordinator, province_code="01")
    assert referral.pk in {row.pk for row in board["referrals"]}


def test_seeding_again_adds_no_schedules_or_referrals(demo_network, settings):
    # given a seeded network
    slots = Slot.objects.count()
    # when seeding again
    call_command("seed_network", demo_only=True, stdout=StringIO())
    # then nothing new was created
    assert Slot.objects.count() == slots
    assert Referral.objects.count() == 1
