"""How a target facility is chosen: the level rules, distance, capacity and queue wait.

Pure choosing, no writes: ``scheduler.services.referral_route`` asks this module
for a choice and does the assignment under locks. The network (facilities,
what they offer, the level rules) is loaded once per process into numpy arrays
and reloaded when its fingerprint changes (a facility, an offering, a capacity
or a rule changed), so a worker ranks candidates without a query per referral.

Ranking. For a referral from facility O for specialty S, the candidates are the
active facilities offering S at a level the rules allow from O's level, within
the rule's distance (except emergencies), other than O. Each has a static cost

    preference × LEVEL_STEP_KM + distance_km

so any facility of a preferred (lower) level beats any of a less preferred one:
the lowest level that can serve wins. The dynamic cost adds the queue wait,
``min(waiting / capacity, MAX_WAIT_DAYS) × WAIT_KM_PER_DAY``, and a candidate
with no capacity left today is passed over. Emergencies take the nearest
capable facility (distance only), with capacity if any has it, else the
nearest anyway: an emergency never waits on a worklist while a facility can
take it.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
from django.db import connection

from telehealth.seeding import haversine_km

LEVEL_STEP_KM = 10_000.0
WAIT_KM_PER_DAY = 25.0
MAX_WAIT_DAYS = 20.0
# Candidates ranked and cached per (origin, specialty, emergency); deeper lists are
# computed on demand when all of these are full or excluded.
TOP_CANDIDATES = 24
_RANKED_CACHE_SIZE = 50_000
_RANKED_FULL_CACHE_SIZE = 5_000


@dataclass(frozen=True)
class Candidate:
    facility_id: int
    static_cost: float
    distance_km: float
    preference: int
    capacity: int


@dataclass(frozen=True)
class Ranked:
    """Candidates for one (origin, specialty, emergency), best static cost first."""

    items: list[Candidate]
    complete: bool  # False when cut at TOP_CANDIDATES


@dataclass
class NetworkIndex:
    fingerprint: tuple
    ids: np.ndarray
    position: dict[int, int]
    codes: list[str]
    levels: np.ndarray
    latitudes: np.ndarray
    longitudes: np.ndarray
    province_ids: np.ndarray
    # specialty id -> (facility positions, daily capacity)
    offerings: dict[int, tuple[np.ndarray, np.ndarray]]
    # from level -> {to level: (preference, max km or None)}
    rules: dict[int, dict[int, tuple[int, float | None]]]
    # Facilities with a coordinator of their own: their board topic has listeners.
    watched: frozenset[int] = frozenset()
    # (facility id, specialty id) -> daily referral capacity
    capacities: dict[tuple[int, int], int] = field(default_factory=dict)
    _ranked: OrderedDict = field(default_factory=OrderedDict)
    _ranked_full: OrderedDict = field(default_factory=OrderedDict)
    _distance_rows: dict[int, np.ndarray] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _distances_from(self, origin: int) -> np.ndarray:
        """Distances (km) from one facility to every facility; computed once per origin."""
        row = self._distance_rows.get(origin)
        if row is None:
            row = haversine_km(
                self.latitudes[[origin]], self.longitudes[[origin]], self.latitudes, self.longitudes
            )[0]
            self._distance_rows[origin] = row
        return row

    def code(self, facility_id: int) -> str:
        return self.codes[self.position[facility_id]]

    def level(self, facility_id: int) -> int:
        return int(self.levels[self.position[facility_id]])

    def capacity(self, facility_id: int, specialty_id: int) -> int:
        return self.capacities.get((facility_id, specialty_id), 0)

    def ranked(self, origin_id: int, specialty_id: int, emergency: bool, *, full: bool = False):
        """Allowed candidates by static cost: the first ``TOP_CANDIDATES``, or all (``full``).

        Both are cached (least recently used out); full lists, needed only when
        the first candidates are all full, in a smaller cache.
        """
        key = (origin_id, specialty_id, emergency)
        cache, size = (
            (self._ranked_full, _RANKED_FULL_CACHE_SIZE)
            if full
            else (self._ranked, _RANKED_CACHE_SIZE)
        )
        with self._lock:
            hit = cache.get(key)
            if hit is not None:
                cache.move_to_end(key)
                return hit
        ranked = self._rank(
            origin_id, specialty_id, emergency, limit=None if full else TOP_CANDIDATES
        )
        with self._lock:
            cache[key] = ranked
            if len(cache) > size:
                cache.popitem(last=False)
        return ranked

    def _rank(
        self, origin_id: int, specialty_id: int, emergency: bool, limit: int | None
    ) -> Ranked:
        empty = Ranked(items=[], complete=True)
        origin = self.position.get(origin_id)
        offered = self.offerings.get(specialty_id)
        if origin is None or offered is None:
            return empty
        positions, capacities = offered
        rules = self.rules.get(int(self.levels[origin]), {})
        if not rules:
            return empty
        levels = self.levels[positions]
        preference = np.full(len(positions), -1, dtype=np.int64)
        max_km = np.full(len(positions), np.inf)
        for to_level, (pref, km) in rules.items():
            at = levels == to_level
            preference[at] = pref
            if km is not None and not emergency:
                max_km[at] = km
        distances = self._distances_from(origin)[positions]
        allowed = (preference >= 0) & (distances <= max_km) & (positions != origin)
        if not allowed.any():
            return empty
        distances = distances[allowed]
        preference = preference[allowed]
        chosen = positions[allowed]
        costs = distances if emergency else preference * LEVEL_STEP_KM + distances
        order = np.argsort(costs, kind="stable")
        complete = limit is None or len(order) <= limit
        if limit is not None:
            order = order[:limit]
        return Ranked(
            items=[
                Candidate(
                    facility_id=fid, static_cost=cost, distance_km=km, preference=pref, capacity=cap
                )
                for fid, cost, km, pref, cap in zip(
                    self.ids[chosen[order]].tolist(),
                    costs[order].tolist(),
                    distances[order].tolist(),
                    preference[order].tolist(),
                    capacities[allowed][order].tolist(),
                    strict=True,
                )
            ],
            complete=complete,
        )


_index: NetworkIndex | None = None
_index_lock = threading.Lock()
_index_checked = 0.0
# How long a process trusts its copy of the network without asking the database
# whether it changed: a new facility or capacity is used within this time.
INDEX_TTL_SECONDS = 1.0

_FINGERPRINT_SQL = (
    "SELECT (SELECT COUNT(*) FROM telehealth_facilityspecialty),"
    " (SELECT COALESCE(MAX(id), 0) FROM telehealth_facilityspecialty),"
    " (SELECT COALESCE(SUM(daily_referral_capacity * (specialty_id + facility_id)), 0)"
    "   FROM telehealth_facilityspecialty),"
    " (SELECT COUNT(*) FROM telehealth_facility WHERE is_active),"
    " (SELECT COALESCE(MAX(id), 0) FROM telehealth_facility),"
    " (SELECT COALESCE(SUM(level * id + latitude + longitude), 0) FROM telehealth_facility"
    "   WHERE is_active),"
    " (SELECT COUNT(*) FROM scheduler_levelrule),"
    " (SELECT COUNT(*) FROM telehealth_coordinatorassignment WHERE facility_id IS NOT NULL),"
    " (SELECT COALESCE(MAX(id), 0) FROM telehealth_coordinatorassignment),"
    " (SELECT COALESCE(SUM(id * 7 + preference * 13 + from_level * 17 + to_level * 19"
    "   + COALESCE(max_distance_km, -1)), 0) FROM scheduler_levelrule)"
)


def _fingerprint() -> tuple:
    with connection.cursor() as cursor:
        cursor.execute(_FINGERPRINT_SQL)
        return tuple(cursor.fetchone())


def network_index_reset() -> None:
    """Forget the loaded network (tests; the fingerprint normally notices changes)."""
    global _index
    _index = None


def network_index(*, facility_ids: Iterable[int] = ()) -> NetworkIndex:
    """The network as arrays, reloaded when facilities, offerings or rules change.

    A fingerprint query (a few milliseconds on the national network) at most
    every ``INDEX_TTL_SECONDS``; callers ask once per batch, not per referral.
    ``facility_ids`` are facilities the caller is about to look up: one the
    loaded index does not know (created within the last second) forces the
    fingerprint check at once instead of failing the lookup.
    """
    global _index, _index_checked
    current = _index
    now = time.monotonic()
    fresh = now - _index_checked < INDEX_TTL_SECONDS
    if current is not None and fresh and all(f in current.position for f in facility_ids):
        return current
    fingerprint = _fingerprint()
    _index_checked = now
    if current is not None and current.fingerprint == fingerprint:
        return current
    with _index_lock:
        if _index is not None and _index.fingerprint == fingerprint:
            return _index
        _index = _load(fingerprint)
        return _index


def _load(fingerprint: tuple) -> NetworkIndex:
    from scheduler.models import LevelRule
    from telehealth.models import CoordinatorAssignment, Facility, FacilitySpecialty

    rows = list(
        Facility.objects.filter(is_active=True)
        .order_by("id")
        .values_list("id", "code", "level", "latitude", "longitude", "province_id")
    )
    ids = np.array([r[0] for r in rows], dtype=np.int64)
    position = {int(fid): i for i, fid in enumerate(ids)}
    by_specialty: dict[int, tuple[list[int], list[int]]] = {}
    capacities: dict[tuple[int, int], int] = {}
    for facility_id, specialty_id, capacity in FacilitySpecialty.objects.values_list(
        "facility_id", "specialty_id", "daily_referral_capacity"
    ):
        at = position.get(facility_id)
        if at is None:
            continue
        capacities[(facility_id, specialty_id)] = capacity
        entry = by_specialty.setdefault(specialty_id, ([], []))
        entry[0].append(at)
        entry[1].append(capacity)
    rules: dict[int, dict[int, tuple[int, float | None]]] = {}
    for rule in LevelRule.objects.all():
        rules.setdefault(rule.from_level, {})[rule.to_level] = (
            rule.preference,
            rule.max_distance_km,
        )
    return NetworkIndex(
        fingerprint=fingerprint,
        ids=ids,
        position=position,
        codes=[r[1] for r in rows],
        levels=np.array([r[2] for r in rows], dtype=np.int64),
        latitudes=np.array([r[3] for r in rows], dtype=float),
        longitudes=np.array([r[4] for r in rows], dtype=float),
        province_ids=np.array([r[5] for r in rows], dtype=np.int64),
        offerings={
            s: (np.array(p, dtype=np.int64), np.array(c, dtype=np.int64))
            for s, (p, c) in by_specialty.items()
        },
        rules=rules,
        capacities=capacities,
        watched=frozenset(
            CoordinatorAssignment.objects.filter(facility__isnull=False).values_list(
                "facility_id", flat=True
            )
        ),
    )


# --- Choosing -----------------------------------------------------------------------


@dataclass
class QueueState:
    """What the chooser needs to know about a queue right now."""

    remaining: int
    waiting: int
    queue_id: int | None = None


@dataclass
class Choice:
    facility_id: int | None
    reasons: dict
    distance_km: float | None = None
    over_capacity: bool = False


def wait_penalty_km(waiting: int, capacity: int) -> float:
    return min(waiting / max(capacity, 1), MAX_WAIT_DAYS) * WAIT_KM_PER_DAY


def candidates(
    index: NetworkIndex,
    *,
    origin_id: int,
    specialty_id: int,
    emergency: bool,
    excluded: set[int],
    full: bool = False,
) -> tuple[list[Candidate], bool]:
    """Allowed candidates minus the excluded ones; and whether the list is complete."""
    ranked = index.ranked(origin_id, specialty_id, emergency, full=full)
    if not excluded:
        return ranked.items, ranked.complete
    return [c for c in ranked.items if c.facility_id not in excluded], ranked.complete


def choose(
    index: NetworkIndex,
    *,
    origin_id: int,
    emergency: bool,
    options: list[Candidate],
    state: dict[int, QueueState],
    excluded: set[int],
    complete: bool,
) -> Choice:
    """The best candidate with capacity left, with the reasons a coordinator reads.

    ``state`` maps facility id to its queue's state for this specialty; a
    facility missing from it has its full capacity and nobody waiting.
    """
    origin_level = index.level(origin_id)
    best: tuple[float, Candidate, QueueState] | None = None
    passed_over: list[dict] = []
    for option in options:
        queue = state.get(option.facility_id) or QueueState(remaining=option.capacity, waiting=0)
        if best is not None and option.static_cost >= best[0]:
            break  # the wait only adds to the static cost: nothing further can win
        if queue.remaining <= 0:
            if len(passed_over) < 3:
                passed_over.append(
                    {
                        "facility": index.code(option.facility_id),
                        "level": index.level(option.facility_id),
                        "distance_km": round(option.distance_km, 1),
                        "why": "full today",
                    }
                )
            continue
        cost = option.static_cost
        if not emergency:
            cost += wait_penalty_km(queue.waiting, option.capacity)
        if best is None or cost < best[0]:
            best = (cost, option, queue)
    if best is None and emergency and options:
        nearest = options[0]
        queue = state.get(nearest.facility_id) or QueueState(remaining=0, waiting=0)
        return Choice(
            facility_id=nearest.facility_id,
            distance_km=nearest.distance_km,
            over_capacity=True,
            reasons={
                "rule": "emergency: nearest capable facility",
                "facility": index.code(nearest.facility_id),
                "level": index.level(nearest.facility_id),
                "distance_km": round(nearest.distance_km, 1),
                "remaining_today": queue.remaining,
                "waiting": queue.waiting,
                "over_capacity": True,
                "passed_over": passed_over,
                "considered": len(options),
                "excluded": sorted(index.code(f) for f in excluded if f in index.position),
            },
        )
    if best is None:
        return Choice(
            facility_id=None,
            reasons={
                "why": (
                    "no facility of an allowed level offers this specialty within reach"
                    if not options
                    else f"all {len(options)} facilities within reach are full today"
                ),
                "from_level": origin_level,
                "considered": len(options),
                "complete": complete,
                "passed_over": passed_over,
                "excluded": sorted(index.code(f) for f in excluded if f in index.position),
            },
        )
    cost, option, queue = best
    to_level = index.level(option.facility_id)
    rule = index.rules.get(origin_level, {}).get(to_level)
    return Choice(
        facility_id=option.facility_id,
        distance_km=option.distance_km,
        reasons={
            "rule": (
                "emergency: nearest capable facility"
                if emergency
                else f"level {origin_level} → {to_level}, preference {option.preference}"
                + (f", within {rule[1]:g} km" if rule and rule[1] else "")
            ),
            "facility": index.code(option.facility_id),
            "level": to_level,
            "distance_km": round(option.distance_km, 1),
            "remaining_today": queue.remaining,
            "waiting": queue.waiting,
            "wait_days": round(queue.waiting / max(option.capacity, 1), 2),
            "cost": round(cost, 1),
            "passed_over": passed_over,
            "considered": len(options),
            "excluded": sorted(index.code(f) for f in excluded if f in index.position),
        },
    )
