"""Candidate arcs for auto-assignment, built in batch: limited by distance and specialty,
spread over every mentor, and costed by distance, specialty and referral line."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
from django.utils import timezone

from network import matching, selectors
from scheduler.models import Referral
from telehealth.models import Facility, FacilityLevel
from tests.factories import FacilityFactory, PatientFactory, UserFactory, province, specialty

CARDIO, GP, PEDS = 1 << 0, 1 << 1, 1 << 2


def _facilities(referral_links: np.ndarray | None = None) -> matching.Facilities:
    # 0: a central hospital in Hà Nội; 1: one in Huế; 2: a district centre near Hà Nội
    # whose parent is 0; 3: a commune station in Cà Mau, far from both.
    lat = np.array([21.00, 16.46, 21.20, 8.95])
    lon = np.array([105.84, 107.59, 105.70, 105.10])
    extra = {} if referral_links is None else {"referral_links": referral_links}
    return matching.Facilities(
        lat=lat, lon=lon, ancestors=matching.ancestors_of(np.array([-1, -1, 0, -1])), **extra
    )


def _district_mentee_and_two_hospitals() -> tuple[matching.Mentees, matching.Places]:
    """A cardiologist at the district centre (2); cardiology places in Hà Nội (0) and Huế (1)."""
    mentees = matching.Mentees(
        facility=np.array([2]),
        level=np.array([3]),
        specialties=np.array([CARDIO], dtype=np.uint64),
        needs=np.array([CARDIO], dtype=np.uint64),
    )
    places = matching.Places(
        facility=np.array([0, 1]),
        mentee_level=np.array([3, 3]),
        specialties=np.array([CARDIO, CARDIO], dtype=np.uint64),
        free=np.array([4, 4]),
    )
    return mentees, places


def _arc_of(arcs: matching.Arcs) -> dict[tuple[int, int], int]:
    return {
        (int(m), int(p)): i for i, (m, p) in enumerate(zip(arcs.mentee, arcs.place, strict=True))
    }


def test_ancestors_follow_the_referral_line():
    parents = np.array([-1, 0, 1, 2])

    ancestors = matching.ancestors_of(parents)

    assert ancestors[3].tolist() == [2, 1, 0]
    assert ancestors[1].tolist() == [0, -1, -1]


def test_arcs_respect_level_and_distance_and_prefer_the_referral_line():
    facilities = _facilities()
    mentees = matching.Mentees(
        facility=np.array([2, 3]),
        level=np.array([3, 4]),
        specialties=np.array([CARDIO, 0], dtype=np.uint64),
        needs=np.array([CARDIO, GP], dtype=np.uint64),
    )
    places = matching.Places(
        facility=np.array([0, 1, 0]),
        mentee_level=np.array([3, 3, 4]),
        specialties=np.array([CARDIO, CARDIO, GP], dtype=np.uint64),
        free=np.array([4, 4, 2]),
    )

    arcs = matching.build_arcs(
        facilities=facilities, mentees=mentees, places=places, max_distance_km=800, n_specialties=3
    )

    pairs = {
        (int(m), int(p)): i for i, (m, p) in enumerate(zip(arcs.mentee, arcs.place, strict=True))
    }
    # the district doctor reaches both district places (Huế is ~530 km away), never the
    # commune place; the Cà Mau worker is over 800 km from everyone: no arc
    assert set(pairs) == {(0, 0), (0, 1)}
    near, far = pairs[(0, 0)], pairs[(0, 1)]
    assert arcs.on_line[near] and not arcs.on_line[far]
    assert arcs.specialty_match[near] and arcs.specialty_match[far]
    assert arcs.cost[near] == round(arcs.distance_km[near])
    assert arcs.cost[far] == round(arcs.distance_km[far]) + matching.OFF_LINE_KM


def test_facilities_that_exchange_referrals_are_on_the_referral_line():
    # the district centre (id 30) and the Huế hospital (id 20) exchange referrals;
    # a pair naming a facility outside the problem (id 99) is dropped
    ids = np.array([10, 20, 30, 40])
    links = matching.referral_link_keys(facility_ids=ids, pairs=np.array([[20, 30], [30, 99]]))
    mentees, places = _district_mentee_and_two_hospitals()

    with_links = matching.build_arcs(
        facilities=_facilities(links),
        mentees=mentees,
        places=places,
        max_distance_km=800,
        n_specialties=3,
    )
    without = matching.build_arcs(
        facilities=_facilities(),
        mentees=mentees,
        places=places,
        max_distance_km=800,
        n_specialties=3,
    )

    parent, partner = _arc_of(with_links)[(0, 0)], _arc_of(with_links)[(0, 1)]
    # the parent hospital stays on the line; Huế joins it, without the off-line cost
    assert with_links.on_line[parent] and with_links.on_line[partner]
    assert with_links.cost[partner] == round(with_links.distance_km[partner])
    assert not without.on_line[_arc_of(without)[(0, 1)]]
    assert without.cost[_arc_of(without)[(0, 1)]] - with_links.cost[partner] == matching.OFF_LINE_KM


def test_referral_links_are_the_same_whichever_way_they_go():
    ids = np.array([40, 10, 30, 20])  # positions need not follow id order

    forward = matching.referral_link_keys(facility_ids=ids, pairs=np.array([[10, 20], [20, 10]]))
    backward = matching.referral_link_keys(facility_ids=ids, pairs=np.array([[20, 10]]))
    facilities = matching.Facilities(
        lat=np.zeros(4), lon=np.zeros(4), ancestors=np.full((4, 3), -1), referral_links=forward
    )

    assert forward.tolist() == backward.tolist() and len(forward) == 1
    # positions 1 (id 10) and 3 (id 20), asked either way round; 0 and 2 are not linked
    assert matching.linked_by_referrals(
        facilities, np.array([1, 3, 0, 1]), np.array([3, 1, 2, 1])
    ).tolist() == [True, True, False, False]
    assert len(matching.referral_link_keys(facility_ids=ids, pairs=np.zeros((0, 2)))) == 0


def _referrals(source: Facility, target: Facility, *, count: int, days_ago: float) -> None:
    patient, requester = PatientFactory(), UserFactory()
    submitted = timezone.now() - timedelta(days=days_ago)
    Referral.objects.bulk_create(
        Referral(
            patient=patient,
            requester=requester,
            requesting_facility=source,
            target_facility=target,
            specialty=specialty("cardiology"),
            reason="Đau ngực",
            status=Referral.Status.COMPLETED,
            created_at=submitted,
            requested_at=submitted,
        )
        for _ in range(count)
    )


@pytest.mark.django_db
def test_referral_traffic_read_from_the_database_puts_a_pair_on_the_line():
    # given a district centre that refers patients to a far hospital (not its parent),
    # and sent some to a near one, but long ago
    where = province("01")
    centre = FacilityFactory(level=FacilityLevel.DISTRICT, province=where, latitude=21.2)
    near = FacilityFactory(level=FacilityLevel.CENTRAL, province=where, latitude=21.0)
    far = FacilityFactory(level=FacilityLevel.CENTRAL, province=where, latitude=22.0)
    _referrals(centre, far, count=3, days_ago=30)
    _referrals(near, centre, count=2, days_ago=400)
    ids = np.array([centre.pk, near.pk, far.pk])

    # when the problem's facilities get their links from the referrals
    links = matching.referral_link_keys(
        facility_ids=ids, pairs=selectors.referral_link_pairs(facility_ids=ids.tolist())
    )
    arcs = matching.build_arcs(
        facilities=matching.Facilities(
            lat=np.array([21.2, 21.0, 22.0]),
            lon=np.full(3, 105.8),
            ancestors=np.full((3, 3), -1),
            referral_links=links,
        ),
        mentees=matching.Mentees(
            facility=np.array([0]),
            level=np.array([3]),
            specialties=np.array([CARDIO], dtype=np.uint64),
            needs=np.array([CARDIO], dtype=np.uint64),
        ),
        places=matching.Places(
            facility=np.array([1, 2]),
            mentee_level=np.array([3, 3]),
            specialties=np.array([CARDIO, CARDIO], dtype=np.uint64),
            free=np.array([1, 1]),
        ),
        max_distance_km=800,
        n_specialties=3,
    )

    # then the pair with recent traffic is on the line and pays no off-line cost
    arc = _arc_of(arcs)
    assert arcs.on_line[arc[(0, 1)]] and not arcs.on_line[arc[(0, 0)]]
    assert arcs.cost[arc[(0, 1)]] == round(arcs.distance_km[arc[(0, 1)]])
    assert arcs.cost[arc[(0, 0)]] == round(arcs.distance_km[arc[(0, 0)]]) + matching.OFF_LINE_KM


def test_a_mismatched_specialty_costs_more():
    facilities = _facilities()
    mentees = matching.Mentees(
        facility=np.array([2, 2]),
        level=np.array([3, 3]),
        specialties=np.array([PEDS, PEDS], dtype=np.uint64),
        needs=np.array([PEDS, PEDS], dtype=np.uint64),
    )
    places = matching.Places(
        facility=np.array([0, 0]),
        mentee_level=np.array([3, 3]),
        specialties=np.array([PEDS, CARDIO], dtype=np.uint64),
        free=np.array([1, 1]),
    )

    arcs = matching.build_arcs(
        facilities=facilities, mentees=mentees, places=places, max_distance_km=800, n_specialties=3
    )

    cost = {
        (m, p): c
        for m, p, c in zip(
            arcs.mentee.tolist(), arcs.place.tolist(), arcs.cost.tolist(), strict=True
        )
    }
    # both reach the paediatrician; the second also reaches the cardiologist, at a price
    assert (0, 0) in cost and (1, 0) in cost
    assert cost[(1, 1)] - cost[(1, 0)] == matching.MISMATCH_KM


def test_neighbouring_mentees_reach_different_mentors():
    # 40 mentees at one facility, 20 mentors (one place each) at the candidate
    # facility: together the arcs must reach every mentor, or places would go unused.
    facilities = _facilities()
    mentees = matching.Mentees(
        facility=np.full(40, 2),
        level=np.full(40, 3),
        specialties=np.full(40, CARDIO, dtype=np.uint64),
        needs=np.full(40, CARDIO, dtype=np.uint64),
    )
    places = matching.Places(
        facility=np.zeros(20, dtype=np.int64),
        mentee_level=np.full(20, 3),
        specialties=np.full(20, CARDIO, dtype=np.uint64),
        free=np.ones(20, dtype=np.int64),
    )

    arcs = matching.build_arcs(
        facilities=facilities, mentees=mentees, places=places, max_distance_km=800, n_specialties=3
    )

    assert set(arcs.place.tolist()) == set(range(20))
    assert np.bincount(arcs.mentee, minlength=40).max() <= 3  # a few arcs per facility each
    assert len(set(zip(arcs.mentee.tolist(), arcs.place.tolist(), strict=True))) == len(
        arcs
    )  # no duplicates


def test_nobody_to_reach_gives_no_arcs():
    arcs = matching.build_arcs(
        facilities=_facilities(),
        mentees=matching.Mentees(
            facility=np.array([3]),
            level=np.array([4]),
            specialties=np.zeros(1, dtype=np.uint64),
            needs=np.array([GP], dtype=np.uint64),
        ),
        places=matching.Places(
            facility=np.zeros(0, dtype=np.int64),
            mentee_level=np.zeros(0, dtype=np.int64),
            specialties=np.zeros(0, dtype=np.uint64),
            free=np.zeros(0, dtype=np.int64),
        ),
        max_distance_km=800,
        n_specialties=3,
    )

    assert len(arcs) == 0
