"""Candidate arcs for auto-assignment, built in batch: limited by distance and specialty,
spread over every mentor, and costed by distance, specialty and referral line."""

from __future__ import annotations

import numpy as np

from network import matching

CARDIO, GP, PEDS = 1 << 0, 1 << 1, 1 << 2


def _facilities() -> matching.Facilities:
    # 0: a central hospital in Hà Nội; 1: one in Huế; 2: a district centre near Hà Nội
    # whose parent is 0; 3: a commune station in Cà Mau, far from both.
    lat = np.array([21.00, 16.46, 21.20, 8.95])
    lon = np.array([105.84, 107.59, 105.70, 105.10])
    return matching.Facilities(
        lat=lat, lon=lon, ancestors=matching.ancestors_of(np.array([-1, -1, 0, -1]))
    )


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
