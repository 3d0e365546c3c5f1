"""Quotas hold under concurrency: two acceptances racing for a mentor's last commune
place, in two real PostgreSQL transactions, cannot both succeed."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection

from network import services
from network.models import Mentorship
from telehealth.errors import Conflict
from telehealth.models import ClinicianProfile, FacilityLevel
from tests.network.conftest import clinician, link

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def _race(monkeypatch) -> tuple[ClinicianProfile, list[str]]:
    # given a central doctor with one of two commune places taken, and two waiting
    # commune requests
    mentor = clinician(FacilityLevel.CENTRAL)
    link(mentor, clinician(FacilityLevel.COMMUNE, kind=ClinicianProfile.Kind.HEALTH_WORKER))
    requests = [
        services.do_mentorship_request(mentor=mentor, mentee=worker, requested_by=worker.user)
        for worker in (
            clinician(FacilityLevel.COMMUNE, kind=ClinicianProfile.Kind.HEALTH_WORKER),
            clinician(FacilityLevel.COMMUNE, kind=ClinicianProfile.Kind.HEALTH_WORKER),
        )
    ]
    # Widen the window between counting and writing, so both transactions are inside
    # it at once unless the lock keeps the second one out.
    counted = services.count_accepted_in_lock

    def slow_count(**kwargs):  # type: ignore[no-untyped-def]
        result = counted(**kwargs)
        time.sleep(0.4)
        return result

    monkeypatch.setattr(services, "count_accepted_in_lock", slow_count)
    start = threading.Barrier(2)
    outcomes: list[str] = []

    def accept(mentorship_id: int) -> None:
        try:
            start.wait()
            services.do_mentorship_accept(mentorship_id=mentorship_id, accepted_by=mentor.user)
            outcomes.append("accepted")
        except Conflict as error:
            outcomes.append(error.code)
        finally:
            connection.close()

    # when the mentor accepts both at the same moment, on two connections
    threads = [threading.Thread(target=accept, args=(r.pk,)) for r in requests]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return mentor, outcomes


def test_two_acceptances_racing_for_the_last_place_cannot_both_succeed(monkeypatch):
    mentor, outcomes = _race(monkeypatch)

    # then one wins and the other is told the places are full
    assert sorted(outcomes) == ["accepted", "quota_full"]
    assert Mentorship.objects.filter(mentor=mentor, state="accepted").count() == 2


def test_without_the_mentor_lock_the_race_would_break_the_quota(monkeypatch):
    # The control: the same race with the lock taken away lets both in, so the test
    # above proves the lock, not luck.
    monkeypatch.setattr(services, "lock_mentor", lambda *, mentor_id: None)

    mentor, outcomes = _race(monkeypatch)

    assert outcomes == ["accepted", "accepted"]
    assert Mentorship.objects.filter(mentor=mentor, state="accepted").count() == 3
