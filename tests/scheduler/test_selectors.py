"""Reads of referrals for other apps: the traffic between facilities, by direction and window."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from scheduler import selectors
from scheduler.models import Referral
from telehealth.models import Facility
from tests.factories import PatientFactory, specialty
from tests.scheduler.conftest import Network, submitted_referral

pytestmark = pytest.mark.django_db


def referrals_sent(
    network: Network,
    source: Facility,
    target: Facility,
    *,
    count: int = 1,
    days_ago: float = 1,
    status: str = Referral.Status.REQUESTED,
) -> None:
    """``count`` referrals from ``source`` to ``target``, submitted ``days_ago``."""
    patient = PatientFactory()
    submitted = timezone.now() - timedelta(days=days_ago)
    Referral.objects.bulk_create(
        Referral(
            patient=patient,
            requester=network.referrer.user,
            requesting_facility=source,
            target_facility=target,
            specialty=specialty("cardiology"),
            reason="Đau ngực khi gắng sức",
            status=status,
            created_at=submitted,
            requested_at=None if status == Referral.Status.DRAFT else submitted,
        )
        for _ in range(count)
    )


def test_traffic_is_counted_per_direction(network):
    station, near, provincial = network.station, network.district_near, network.provincial
    referrals_sent(network, station, near, count=3)
    referrals_sent(network, near, station, count=1)
    referrals_sent(network, near, provincial, count=2, status=Referral.Status.COMPLETED)

    traffic = selectors.referral_traffic_between(facility_ids=[f.pk for f in network.all])

    assert traffic == {
        (station.pk, near.pk): 3,
        (near.pk, station.pk): 1,
        (near.pk, provincial.pk): 2,
    }


def test_only_referrals_sent_in_the_window_count(network):
    station, near = network.station, network.district_near
    referrals_sent(network, station, near, count=2, days_ago=10)
    referrals_sent(network, station, near, count=5, days_ago=200)
    referrals_sent(network, station, near, count=4, status=Referral.Status.DRAFT)
    ids = [station.pk, near.pk]

    assert selectors.referral_traffic_between(facility_ids=ids) == {(station.pk, near.pk): 2}
    assert selectors.referral_traffic_between(facility_ids=ids, since_days=365) == {
        (station.pk, near.pk): 7
    }
    assert selectors.referral_traffic_between(facility_ids=ids, since_days=5) == {}


def test_only_the_facilities_asked_about_count(network, django_assert_num_queries):
    station, near, far, provincial = (
        network.station,
        network.district_near,
        network.district_far,
        network.provincial,
    )
    referrals_sent(network, station, near, count=2)
    referrals_sent(network, far, provincial, count=3)
    referrals_sent(network, near, provincial, count=1)
    referrals_sent(network, provincial, station, count=4)

    with django_assert_num_queries(1):
        both_ends = selectors.referral_traffic_between(
            facility_ids=[station.pk, near.pk, provincial.pk]
        )
    around_me = selectors.referral_traffic_between(
        facility_ids=[near.pk, far.pk, provincial.pk], around=station.pk
    )

    # far is not in play: its referrals are left out
    assert both_ends == {
        (station.pk, near.pk): 2,
        (near.pk, provincial.pk): 1,
        (provincial.pk, station.pk): 4,
    }
    # around the station: only the pairs it is part of
    assert around_me == {(station.pk, near.pk): 2, (provincial.pk, station.pk): 4}
    assert selectors.referral_traffic_between(facility_ids=[station.pk]) == {}


def test_a_submitted_and_routed_referral_counts_toward_where_it_went(network):
    referral = submitted_referral(network)

    traffic = selectors.referral_traffic_between(facility_ids=[f.pk for f in network.all])

    assert referral.target_facility_id is not None
    assert traffic == {(network.station.pk, referral.target_facility_id): 1}
