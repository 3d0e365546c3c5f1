"""Candidate mentor-mentee pairs and their costs, built with numpy in batch.

No database here: ``network.services`` reads the rows into arrays, this module
turns them into the arcs of a transportation problem, and
``telehealth.assignment.solve_transportation`` solves it.

Cost of a pair, in "kilometre equivalents": the distance between their
facilities, plus ``MISMATCH_KM`` when they share no specialty, plus
``OFF_LINE_KM`` when the mentor's facility is not on the mentee's referral line:
neither in the chain of parent facilities a patient is referred up, nor a
facility that exchanged referrals with the mentee's lately
(``Facilities.referral_links``, read by ``network.selectors.referral_link_pairs``).
So a matching specialist 300 km further away is worth the same as a non-matching
one next door.

Candidates are limited by distance and specialty, so the problem stays small at
national size: each mentee gets arcs to the ``near_facilities`` nearest mentor
facilities within ``max_distance_km``, and at each of them to a few mentors who
share a specialty (or, for someone without one, practise general medicine) plus
one who may not. Mentors at a facility are picked in rotation, so neighbouring
mentees reach different mentors and together can reach every free place.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

MISMATCH_KM = 300
OFF_LINE_KM = 100
# Unserved demand costs more than any chain of reassignments that would serve it,
# so the optimum first serves as many mentees as possible, then minimises cost.
UNMET_COST = 1_000_000
EARTH_RADIUS_KM = 6371.0


def haversine_km(lat_a, lon_a, lat_b, lon_b) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Great-circle distances in km between every a and every b: shape (len(a), len(b))."""
    lat_a = np.radians(np.asarray(lat_a, dtype=float))[:, None]
    lon_a = np.radians(np.asarray(lon_a, dtype=float))[:, None]
    lat_b = np.radians(np.asarray(lat_b, dtype=float))[None, :]
    lon_b = np.radians(np.asarray(lon_b, dtype=float))[None, :]
    half_chord = (
        np.sin((lat_b - lat_a) / 2) ** 2
        + np.cos(lat_a) * np.cos(lat_b) * np.sin((lon_b - lon_a) / 2) ** 2
    )
    return 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(half_chord, 0.0, 1.0)))


def _no_links() -> np.ndarray:
    return np.zeros(0, dtype=np.int64)


@dataclass(frozen=True)
class Facilities:
    """Every facility, by position: coordinates, up to three referral ancestors (-1: none)
    and the pairs that exchange referrals (``referral_link_keys``; none by default)."""

    lat: np.ndarray
    lon: np.ndarray
    ancestors: np.ndarray  # (f, 3) positions of parent, grandparent, great-grandparent
    referral_links: np.ndarray = field(default_factory=_no_links)  # sorted pair keys


@dataclass(frozen=True)
class Mentees:
    facility: np.ndarray  # facility position
    level: np.ndarray
    specialties: np.ndarray  # bit mask of specialty positions
    needs: np.ndarray  # specialties looked for in a mentor: their own, else general practice


@dataclass(frozen=True)
class Places:
    """Supply nodes: one per (mentor, mentee level) with free places."""

    facility: np.ndarray
    mentee_level: np.ndarray
    specialties: np.ndarray  # the mentor's bit mask
    free: np.ndarray  # free places, > 0


@dataclass(frozen=True)
class Arcs:
    mentee: np.ndarray
    place: np.ndarray
    cost: np.ndarray
    distance_km: np.ndarray
    specialty_match: np.ndarray
    on_line: np.ndarray

    def __len__(self) -> int:
        return len(self.cost)


def ancestors_of(parent: np.ndarray, depth: int = 3) -> np.ndarray:
    """Positions of each facility's ancestors from an array of parent positions (-1: none)."""
    parent = np.asarray(parent, dtype=np.int64)
    result = np.full((len(parent), depth), -1, dtype=np.int64)
    current = parent
    for step in range(depth):
        result[:, step] = current
        has = current >= 0
        following = np.full_like(current, -1)
        following[has] = parent[current[has]]
        current = following
    return result


def _pair_key(a: np.ndarray, b: np.ndarray, n_facilities: int) -> np.ndarray:
    """One key per unordered pair of facility positions: the same for (a, b) and (b, a)."""
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    return np.minimum(a, b) * n_facilities + np.maximum(a, b)


def referral_link_keys(*, facility_ids: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """``Facilities.referral_links`` from pairs of facility ids that exchanged referrals
    (shape (k, 2), either direction). ``facility_ids`` gives each position's id; pairs
    with a facility not in it are dropped. Sorted, unique: looked up with searchsorted."""
    facility_ids = np.asarray(facility_ids, dtype=np.int64)
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    if not len(pairs) or not len(facility_ids):
        return _no_links()
    order = np.argsort(facility_ids, kind="stable")
    sorted_ids = facility_ids[order]
    where = np.minimum(np.searchsorted(sorted_ids, pairs), len(sorted_ids) - 1)
    known = (sorted_ids[where] == pairs).all(axis=1)
    positions = order[where[known]]
    return np.unique(_pair_key(positions[:, 0], positions[:, 1], len(facility_ids)))


def linked_by_referrals(facilities: Facilities, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Whether each (a[i], b[i]) pair of facility positions exchanged referrals."""
    links = facilities.referral_links
    if not len(links):
        return np.zeros(len(a), dtype=bool)
    key = _pair_key(a, b, len(facilities.lat))
    where = np.minimum(np.searchsorted(links, key), len(links) - 1)
    return links[where] == key


def _bits(mask: np.ndarray, n_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Explode bit masks into (row, bit) pairs."""
    mask = np.asarray(mask, dtype=np.uint64)
    bit_values = np.left_shift(np.uint64(1), np.arange(n_bits, dtype=np.uint64))
    rows, bits = np.nonzero((mask[:, None] & bit_values[None, :]) != 0)
    return rows, bits


def _segments(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Sort ``keys``; return (order, unique keys, start of each, length of each)."""
    order = np.argsort(keys, kind="stable")
    unique, starts, counts = np.unique(keys[order], return_index=True, return_counts=True)
    return order, unique, starts, counts


def _pick(
    *,
    pair_mentee: np.ndarray,
    pair_key: np.ndarray,
    rotation: np.ndarray,
    keys: np.ndarray,
    members: np.ndarray,
    per_key: int,
) -> tuple[np.ndarray, np.ndarray]:
    """For each (mentee, key) pair, up to ``per_key`` members of the key's segment, in
    rotation. ``members`` lists place indices grouped by ``keys`` (sorted)."""
    order, unique, starts, counts = _segments(keys)
    sorted_members = members[order]
    if not len(unique):
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    where = np.minimum(np.searchsorted(unique, pair_key), len(unique) - 1)
    found = unique[where] == pair_key
    pair_mentee, where, rotation = pair_mentee[found], where[found], rotation[found]
    out_mentee, out_place = [], []
    for step in range(per_key):
        length = counts[where]
        ok = length > step
        offset = (rotation[ok] + step) % length[ok]
        out_mentee.append(pair_mentee[ok])
        out_place.append(sorted_members[starts[where[ok]] + offset])
    if not out_mentee:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return np.concatenate(out_mentee), np.concatenate(out_place)


def build_arcs(
    *,
    facilities: Facilities,
    mentees: Mentees,
    places: Places,
    max_distance_km: float,
    n_specialties: int,
    near_facilities: int = 8,
    per_facility_match: int = 2,
    per_facility_any: int = 1,
) -> Arcs:
    """The candidate arcs, each (mentee, place) at most once, with their costs."""
    arc_mentee: list[np.ndarray] = []
    arc_place: list[np.ndarray] = []
    for level in np.unique(mentees.level):
        mentee_idx = np.flatnonzero(mentees.level == level)
        place_idx = np.flatnonzero(places.mentee_level == level)
        if not len(mentee_idx) or not len(place_idx):
            continue
        # Facility to facility first: a few thousand mentee facilities by a few dozen
        # (or hundred) mentor facilities, rather than every person by every person.
        mentee_fac, mentee_fac_pos = np.unique(mentees.facility[mentee_idx], return_inverse=True)
        place_fac, place_fac_pos = np.unique(places.facility[place_idx], return_inverse=True)
        distance = haversine_km(
            facilities.lat[mentee_fac],
            facilities.lon[mentee_fac],
            facilities.lat[place_fac],
            facilities.lon[place_fac],
        )
        k = min(near_facilities, len(place_fac))
        nearest = np.argsort(distance, axis=1, kind="stable")[:, :k]  # (mentee facilities, k)
        near_ok = np.take_along_axis(distance, nearest, axis=1) <= max_distance_km

        # (mentee, candidate mentor facility) pairs.
        rows = np.repeat(np.arange(len(mentee_idx)), k)
        cand = nearest[mentee_fac_pos].reshape(-1)
        keep = near_ok[mentee_fac_pos].reshape(-1)
        rows, cand = rows[keep], cand[keep]
        rotation = rows.astype(np.int64)

        # One of any specialty at each candidate facility.
        m, p = _pick(
            pair_mentee=rows,
            pair_key=cand,
            rotation=rotation,
            keys=place_fac_pos,
            members=np.arange(len(place_idx)),
            per_key=per_facility_any,
        )
        arc_mentee.append(mentee_idx[m])
        arc_place.append(place_idx[p])

        # A few who share a specialty the mentee looks for, at each candidate facility.
        place_rows, place_bits = _bits(places.specialties[place_idx], n_specialties)
        need_rows, need_bits = _bits(mentees.needs[mentee_idx], n_specialties)
        if len(place_rows) and len(need_rows):
            keys = place_fac_pos[place_rows].astype(np.int64) * n_specialties + place_bits
            # Pairs (mentee, facility) crossed with the mentee's needs.
            by_mentee_start = np.searchsorted(need_rows, rows, side="left")
            by_mentee_end = np.searchsorted(need_rows, rows, side="right")
            n_needs = by_mentee_end - by_mentee_start
            pair_of = np.repeat(np.arange(len(rows)), n_needs)
            need_of = np.repeat(by_mentee_start, n_needs) + (
                np.arange(n_needs.sum()) - np.repeat(np.cumsum(n_needs) - n_needs, n_needs)
            )
            pair_key = cand[pair_of].astype(np.int64) * n_specialties + need_bits[need_of]
            m, p = _pick(
                pair_mentee=rows[pair_of],
                pair_key=pair_key,
                rotation=rotation[pair_of],
                keys=keys,
                members=place_rows,
                per_key=per_facility_match,
            )
            arc_mentee.append(mentee_idx[m])
            arc_place.append(place_idx[p])

    if not arc_mentee:
        empty = np.zeros(0, dtype=np.int64)
        return Arcs(
            empty, empty, empty, empty.astype(float), empty.astype(bool), empty.astype(bool)
        )
    mentee_all = np.concatenate(arc_mentee)
    place_all = np.concatenate(arc_place)
    key = mentee_all * len(places.free) + place_all
    _, first = np.unique(key, return_index=True)
    mentee_all, place_all = mentee_all[first], place_all[first]

    mentee_facility = mentees.facility[mentee_all]
    place_facility = places.facility[place_all]
    distance_km = _pairwise_km(facilities, mentee_facility, place_facility)
    match = (mentees.needs[mentee_all] & places.specialties[place_all]) != 0
    parent_line = (facilities.ancestors[mentee_facility] == place_facility[:, None]).any(axis=1)
    on_line = parent_line | linked_by_referrals(facilities, mentee_facility, place_facility)
    cost = (
        np.rint(distance_km).astype(np.int64)
        + np.where(match, 0, MISMATCH_KM)
        + np.where(on_line, 0, OFF_LINE_KM)
    )
    return Arcs(
        mentee=mentee_all,
        place=place_all,
        cost=cost,
        distance_km=distance_km,
        specialty_match=match,
        on_line=on_line,
    )


def _pairwise_km(facilities: Facilities, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    lat_a, lon_a = np.radians(facilities.lat[a]), np.radians(facilities.lon[a])
    lat_b, lon_b = np.radians(facilities.lat[b]), np.radians(facilities.lon[b])
    half_chord = (
        np.sin((lat_b - lat_a) / 2) ** 2
        + np.cos(lat_a) * np.cos(lat_b) * np.sin((lon_b - lon_a) / 2) ** 2
    )
    return 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(half_chord, 0.0, 1.0)))
