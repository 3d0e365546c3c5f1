"""Reads of the doctor network: the policy, my network, suggestions, coverage, runs.

Who may read what:
- a clinician reads their own mentorships and public directory data of others
  (name, title, facility, level, specialties, free places);
- a province coordinator reads and manages their province (coverage, runs);
- a facility coordinator reads the coverage of their facility's province (read
  only: the whole province is the unit mentors are planned for) but runs nothing;
- administrators (staff) read and manage the whole country.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from django.db.models import Count, Exists, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.utils.translation import get_language, ngettext
from django.utils.translation import gettext as _

from network.matching import MISMATCH_KM, haversine_km
from network.models import (
    AssignmentProposal,
    AssignmentRun,
    CaseConference,
    MentoringPolicy,
    Mentorship,
)
from scheduler.selectors import referral_traffic_between
from telehealth.errors import AccessDenied, NotFound
from telehealth.models import (
    ClinicianProfile,
    Facility,
    FacilityLevel,
    Province,
    Specialty,
    User,
)

DEFAULT_QUOTAS: Mapping[tuple[int, int], int] = {
    (FacilityLevel.CENTRAL, FacilityLevel.PROVINCIAL): 4,
    (FacilityLevel.CENTRAL, FacilityLevel.DISTRICT): 4,
    (FacilityLevel.CENTRAL, FacilityLevel.COMMUNE): 2,
}
DEFAULT_MAX_DISTANCE_KM = 800
# Specialties a mentee without one (a commune health worker) looks for in a mentor.
GENERALIST_SPECIALTIES = ("general-practice",)
LIVE = Mentorship.LIVE_STATES
ACCEPTED = Mentorship.State.ACCEPTED
REQUESTED = Mentorship.State.REQUESTED


# --- Policy -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Policy:
    id: int | None
    name: str
    quotas: Mapping[tuple[int, int], int]
    max_distance_km: int

    def quota(self, *, mentor_level: int, mentee_level: int) -> int:
        return self.quotas.get((mentor_level, mentee_level), 0)

    def mentor_levels_for(self, mentee_level: int) -> list[int]:
        return sorted(a for (a, b), q in self.quotas.items() if b == mentee_level and q > 0)

    def mentee_levels_for(self, mentor_level: int) -> list[int]:
        return sorted(b for (a, b), q in self.quotas.items() if a == mentor_level and q > 0)

    @property
    def mentor_levels(self) -> list[int]:
        return sorted({a for (a, _b), q in self.quotas.items() if q > 0})

    @property
    def mentee_levels(self) -> list[int]:
        return sorted({b for (_a, b), q in self.quotas.items() if q > 0})


def policy_active() -> Policy:
    """The active policy; the Ministry's default when none is stored (a fresh or flushed
    database), so the rules never disappear with a table."""
    stored = MentoringPolicy.objects.filter(is_active=True).prefetch_related("quotas").first()
    if stored is None:
        return Policy(
            id=None,
            name=_("Ministry of Health default"),
            quotas=dict(DEFAULT_QUOTAS),
            max_distance_km=DEFAULT_MAX_DISTANCE_KM,
        )
    return Policy(
        id=stored.pk,
        name=stored.name,
        quotas={(q.mentor_level, q.mentee_level): q.quota for q in stored.quotas.all()},
        max_distance_km=stored.max_distance_km,
    )


# --- Who is who -------------------------------------------------------------------------


def clinician_of(user: User) -> ClinicianProfile | None:
    if not user.is_authenticated:
        return None
    return (
        ClinicianProfile.objects.select_related("user", "facility__province")
        .filter(user=user, user__is_active=True)
        .first()
    )


def clinician_get(*, user_id: int) -> ClinicianProfile:
    """A clinician by their person's id: public directory data."""
    clinician = (
        ClinicianProfile.objects.select_related("user", "facility__province")
        .prefetch_related("specialties")
        .filter(user_id=user_id, user__is_active=True)
        .first()
    )
    if clinician is None:
        raise NotFound(_("No such doctor or health worker."))
    return clinician


def may_mentor(policy: Policy, clinician: ClinicianProfile) -> bool:
    return clinician.kind == ClinicianProfile.Kind.DOCTOR and bool(
        policy.mentee_levels_for(clinician.facility.level)
    )


def may_be_mentored(policy: Policy, clinician: ClinicianProfile) -> bool:
    return bool(policy.mentor_levels_for(clinician.facility.level))


@dataclass(frozen=True)
class CoordinatorScope:
    national: bool
    read_province_ids: frozenset[int]
    manage_province_ids: frozenset[int]

    @property
    def any(self) -> bool:
        return self.national or bool(self.read_province_ids)

    def may_read(self, province_id: int | None) -> bool:
        return self.national or (province_id is not None and province_id in self.read_province_ids)

    def may_manage(self, province_id: int | None) -> bool:
        if province_id is None:
            return self.national
        return self.national or province_id in self.manage_province_ids


def coordinator_scope(*, user: User) -> CoordinatorScope:
    """What a person may see and run as a coordinator (see the module docstring)."""
    if not user.is_authenticated or not user.is_active:
        return CoordinatorScope(False, frozenset(), frozenset())
    if user.is_staff:
        return CoordinatorScope(True, frozenset(), frozenset())
    read: set[int] = set()
    manage: set[int] = set()
    for province_id, facility_province_id in user.coordinator_assignments.values_list(
        "province_id", "facility__province_id"
    ):
        if province_id is not None:
            read.add(province_id)
            manage.add(province_id)
        elif facility_province_id is not None:
            read.add(facility_province_id)
    return CoordinatorScope(False, frozenset(read), frozenset(manage))


def scope_province(*, user: User, code: str | None, manage: bool = False) -> Province | None:
    """The province a coordinator asks about (None: the whole country), if they may."""
    scope = coordinator_scope(user=user)
    if not scope.any:
        raise AccessDenied(_("Only coordinators can see coverage and auto-assignment."))
    if manage and not (scope.national or scope.manage_province_ids):
        raise AccessDenied(
            _("Only province coordinators and administrators can run auto-assignment.")
        )
    if not code:
        if scope.national:
            return None
        provinces = scope.manage_province_ids if manage else scope.read_province_ids
        if len(provinces) == 1:
            return Province.objects.get(pk=next(iter(provinces)))
        raise AccessDenied(_("Choose one of your provinces."))
    province = Province.objects.filter(code=code).first()
    if province is None:
        raise NotFound(_("No province with this code."))
    allowed = scope.may_manage(province.pk) if manage else scope.may_read(province.pk)
    if not allowed:
        raise AccessDenied(_("This province is outside your scope."))
    return province


# --- Mentorships ------------------------------------------------------------------------


def _mentorship_query() -> QuerySet[Mentorship]:
    return Mentorship.objects.select_related(
        "mentor__user",
        "mentor__facility__province",
        "mentee__user",
        "mentee__facility__province",
        "requested_by",
    )


def mentorship_get_for_user(*, user: User, mentorship_id: int) -> Mentorship:
    """A mentorship, for its two parties and for coordinators of either side's province.

    ``NotFound`` for everyone else, without telling whether it exists.
    """
    mentorship = _mentorship_query().filter(pk=mentorship_id).first()
    if mentorship is None or not user.is_authenticated:
        raise NotFound(_("No such mentorship."))
    if user.pk in (mentorship.mentor.user_id, mentorship.mentee.user_id):
        return mentorship
    scope = coordinator_scope(user=user)
    if scope.may_read(mentorship.mentor.facility.province_id) or scope.may_read(
        mentorship.mentee.facility.province_id
    ):
        return mentorship
    raise NotFound(_("No such mentorship."))


def mentorship_list_for_user(*, user: User, states: Iterable[str] | None = None):  # type: ignore[no-untyped-def]
    """My mentorships, as mentor or mentee, newest first, history included."""
    query = _mentorship_query().filter(Q(mentor__user=user) | Q(mentee__user=user))
    if states:
        query = query.filter(state__in=list(states))
    return query


def responder_id(mentorship: Mentorship) -> int:
    """Who answers a request: the mentee when the mentor asked; otherwise (the mentee
    or a coordinator asked) the mentor, whose places are being taken."""
    if mentorship.requested_by_id == mentorship.mentor.user_id:
        return mentorship.mentee.user_id
    return mentorship.mentor.user_id


def accepted_counts(*, mentor_ids: Iterable[int]) -> dict[tuple[int, int], dict[str, int]]:
    """{(mentor, mentee level): {"accepted": n, "requested": n}} for the given mentors."""
    counts: dict[tuple[int, int], dict[str, int]] = defaultdict(lambda: {ACCEPTED: 0, REQUESTED: 0})
    rows = (
        Mentorship.objects.filter(mentor_id__in=list(mentor_ids), state__in=LIVE)
        .values_list("mentor_id", "mentee_level", "state")
        .annotate(n=Count("id"))
        .order_by()
    )
    for mentor_id, level, state, n in rows:
        counts[(mentor_id, level)][state] = n
    return counts


@dataclass
class Gauge:
    mentee_level: int
    quota: int
    accepted: int
    requested: int

    @property
    def free(self) -> int:
        return max(0, self.quota - self.accepted)

    @property
    def over(self) -> int:
        return max(0, self.accepted - self.quota)


@dataclass
class NetworkOverview:
    me: ClinicianProfile | None
    policy: Policy
    can_mentor: bool
    can_be_mentored: bool
    gauges: list[Gauge]
    mentorships: list[Mentorship]


def network_overview(*, user: User) -> NetworkOverview:
    """My network: live and recent mentorships on both sides, and my quota gauges."""
    policy = policy_active()
    me = clinician_of(user)
    if me is None:
        return NetworkOverview(None, policy, False, False, [], [])
    mentorships = list(mentorship_list_for_user(user=user)[:300])
    gauges = []
    if may_mentor(policy, me):
        counts = accepted_counts(mentor_ids=[me.pk])
        levels = sorted(
            set(policy.mentee_levels_for(me.facility.level))
            | {level for (_m, level) in counts if counts[(_m, level)][ACCEPTED]}
        )
        for level in levels:
            row = counts.get((me.pk, level), {ACCEPTED: 0, REQUESTED: 0})
            gauges.append(
                Gauge(
                    mentee_level=level,
                    quota=policy.quota(mentor_level=me.facility.level, mentee_level=level),
                    accepted=row[ACCEPTED],
                    requested=row[REQUESTED],
                )
            )
    return NetworkOverview(
        me=me,
        policy=policy,
        can_mentor=may_mentor(policy, me),
        can_be_mentored=may_be_mentored(policy, me),
        gauges=gauges,
        mentorships=mentorships,
    )


# --- The neighbourhood graph ------------------------------------------------------------

GRAPH_MAX_NODES = 60


def _person_node(clinician: ClinicianProfile, ring: int, role: str) -> dict[str, Any]:
    return {
        "id": clinician.user_id,
        "name": clinician.user.display_name,
        "level": clinician.facility.level,
        "kind": clinician.kind,
        "facility": clinician.facility.name,
        "ring": ring,
        "role": role,
    }


def network_graph(*, user: User) -> dict[str, Any]:
    """My neighbourhood, two steps out: me; my mentors and mentees; their other mentors
    and mentees. Live links only, at most ``GRAPH_MAX_NODES`` people."""
    me = clinician_of(user)
    if me is None:
        return {"nodes": [], "edges": []}
    nodes: dict[int, dict[str, Any]] = {me.user_id: _person_node(me, 0, "me")}
    edges: list[dict[str, Any]] = []
    seen_edges: set[int] = set()

    def add_links(links: Iterable[Mentorship], ring: int) -> list[int]:
        reached = []
        for link in links:
            if link.pk in seen_edges:
                continue
            for person, role in ((link.mentor, "mentor"), (link.mentee, "mentee")):
                if person.user_id not in nodes:
                    if len(nodes) >= GRAPH_MAX_NODES:
                        break
                    nodes[person.user_id] = _person_node(person, ring, role)
                    reached.append(person.pk)
            else:
                seen_edges.add(link.pk)
                edges.append(
                    {
                        "source": link.mentor.user_id,
                        "target": link.mentee.user_id,
                        "state": link.state,
                        "id": link.pk,
                    }
                )
        return reached

    first = _mentorship_query().filter(Q(mentor=me) | Q(mentee=me), state__in=LIVE)
    ring_one = add_links(first, 1)
    if ring_one:
        second = (
            _mentorship_query()
            .filter(Q(mentor_id__in=ring_one) | Q(mentee_id__in=ring_one), state=ACCEPTED)
            .exclude(Q(mentor=me) | Q(mentee=me))
            .order_by("-requested_at")[: GRAPH_MAX_NODES * 2]
        )
        add_links(second, 2)
    return {"nodes": list(nodes.values()), "edges": edges}


# --- Suggestions ------------------------------------------------------------------------

SUGGESTION_FACILITIES = 12  # nearest mentor facilities looked at
SUGGESTION_MENTEE_FACILITIES = 30  # nearest facilities of mentees looked at
# Referral traffic between two facilities links them when it falls in this window;
# the bonus grows with its logarithm up to REFERRALS_FULL_BONUS referrals.
REFERRAL_WINDOW_DAYS = 180
REFERRALS_FULL_BONUS = 50


@dataclass
class Suggestion:
    user_id: int
    name: str
    title: str
    kind: str
    facility_code: str
    facility_name: str
    level: int
    province: str
    specialties: list[str]
    distance_km: float
    shared_specialties: list[str]
    free_places: int | None
    quota: int | None
    load: int
    mentors: int | None
    on_referral_line: bool  # on the parent chain, or the facilities exchange referrals
    colleagues_linked: int
    score: float
    reason: str = ""
    referrals: int = 0  # exchanged between the two facilities in REFERRAL_WINDOW_DAYS
    parent_line: bool = False  # one facility is among the other's referral ancestors


@dataclass
class SuggestionResult:
    role: str  # what the suggested people would be to me: "mentor" or "mentee"
    level: int | None
    results: list[Suggestion] = field(default_factory=list)
    detail: str = ""


def _ancestors(facility_ids: Iterable[int]) -> dict[int, set[int]]:
    rows = Facility.objects.filter(pk__in=list(facility_ids)).values_list(
        "id", "parent_id", "parent__parent_id", "parent__parent__parent_id"
    )
    return {row[0]: {a for a in row[1:] if a is not None} for row in rows}


def _specialties_of(clinician_ids: list[int]) -> dict[int, set[int]]:
    through = ClinicianProfile.specialties.through
    result: dict[int, set[int]] = defaultdict(set)
    for clinician_id, specialty_id in through.objects.filter(
        clinicianprofile_id__in=clinician_ids
    ).values_list("clinicianprofile_id", "specialty_id"):
        result[clinician_id].add(specialty_id)
    return result


def _display(full_name: str, first: str, last: str, username: str) -> str:
    return full_name or f"{first} {last}".strip() or username


def _generalist_ids() -> set[int]:
    return set(
        Specialty.objects.filter(code__in=GENERALIST_SPECIALTIES).values_list("id", flat=True)
    )


def suggestion_list(*, user: User, role: str | None = None, limit: int = 10) -> SuggestionResult:
    """Ranked people to ask: mentors for me (``role="mentor"``) or mentees for me
    (``role="mentee"``); by default whichever applies, mentors first.

    Ranked by specialty match, distance between facilities, the mentor's free places
    and current load (or, for mentees, whether they have a mentor yet), and links
    between the facilities (the referral line, the referrals they exchanged in the
    last six months, colleagues already linked). Each comes with the reason in
    words. Nothing is precomputed: it reads the nearest facilities of the right
    levels, then their staff in one indexed query (match, load and links counted by
    the database), and ranks them with numpy.
    """
    policy = policy_active()
    me = clinician_of(user)
    if me is None:
        raise AccessDenied(_("Only doctors and health workers have a network."))
    if role is None:
        role = "mentor" if may_be_mentored(policy, me) else "mentee"
    if role == "mentor":
        if not may_be_mentored(policy, me):
            return SuggestionResult(role, None, [], _("Nobody mentors your level."))
        return _suggest_mentors(policy=policy, me=me, limit=limit)
    if not may_mentor(policy, me):
        return SuggestionResult(role, None, [], _("Your level does not mentor others."))
    return _suggest_mentees(policy=policy, me=me, limit=limit)


def _nearest_facilities(
    *, me: ClinicianProfile, levels: list[int], count: int, max_km: float
) -> tuple[list[int], dict[int, float], dict[int, set[int]], dict[int, int]]:
    """The ``count`` nearest active facilities of ``levels`` within ``max_km`` (or the
    nearest few when none is): ids, distances, referral ancestors and levels."""
    rows = list(
        Facility.objects.filter(level__in=levels, is_active=True)
        .exclude(pk=me.facility_id)
        .values_list(
            "id",
            "latitude",
            "longitude",
            "parent_id",
            "parent__parent_id",
            "parent__parent__parent_id",
            "level",
        )
    )
    if not rows:
        return [], {}, {}, {}
    km = haversine_km(
        [me.facility.latitude],
        [me.facility.longitude],
        [r[1] for r in rows],
        [r[2] for r in rows],
    )[0]
    order = np.argsort(km, kind="stable")
    chosen = [int(i) for i in order[: count * 2] if km[i] <= max_km][:count]
    if not chosen:  # nobody within reach: still show the nearest few
        chosen = [int(i) for i in order[: max(3, count // 4)]]
    ids = [rows[i][0] for i in chosen]
    return (
        ids,
        {rows[i][0]: float(km[i]) for i in chosen},
        {rows[i][0]: {a for a in rows[i][3:6] if a is not None} for i in chosen},
        {rows[i][0]: rows[i][6] for i in chosen},
    )


def _facility_links(
    *, me: ClinicianProfile, other_facilities: list[int], me_as: str
) -> dict[int, int]:
    """Accepted mentorships already joining my facility to each of the others."""
    colleagues = ClinicianProfile.objects.filter(facility_id=me.facility_id).values("id")
    if me_as == "mentee":
        query = Mentorship.objects.filter(
            state=ACCEPTED, mentee_id__in=colleagues, mentor__facility_id__in=other_facilities
        ).values_list("mentor__facility_id")
    else:
        query = Mentorship.objects.filter(
            state=ACCEPTED, mentor_id__in=colleagues, mentee__facility_id__in=other_facilities
        ).values_list("mentee__facility_id")
    return dict(query.annotate(n=Count("id")).order_by())


def _referral_traffic(*, me: ClinicianProfile, other_facilities: list[int]) -> dict[int, int]:
    """Referrals exchanged, both directions together, between my facility and each of
    the others in the last ``REFERRAL_WINDOW_DAYS`` (one indexed query in scheduler)."""
    traffic = referral_traffic_between(
        facility_ids=other_facilities, since_days=REFERRAL_WINDOW_DAYS, around=me.facility_id
    )
    exchanged: dict[int, int] = defaultdict(int)
    for (source, target), n in traffic.items():
        if source == me.facility_id:
            exchanged[target] += n
        elif target == me.facility_id:
            exchanged[source] += n
    return exchanged


def referral_link_pairs(*, facility_ids: Iterable[int]) -> np.ndarray:
    """Pairs of facility ids (shape (k, 2)) that exchanged referrals in the last
    ``REFERRAL_WINDOW_DAYS``, both among ``facility_ids``: for auto-assignment, where
    such a pair is on the referral line (``matching.referral_link_keys`` turns them
    into positions). One query, whatever the number of facilities."""
    traffic = referral_traffic_between(facility_ids=facility_ids, since_days=REFERRAL_WINDOW_DAYS)
    return np.array(list(traffic), dtype=np.int64).reshape(-1, 2)


def _count(*, state: str, **conditions: Any) -> Coalesce:
    """Per candidate row: how many mentorships in ``state`` match ``conditions``
    (which use ``OuterRef``); one group, since the state is fixed."""
    return Coalesce(
        Subquery(
            Mentorship.objects.filter(state=state, **conditions)
            .order_by()
            .values("state")
            .annotate(n=Count("id"))
            .values("n")[:1]
        ),
        0,
    )


_DETAIL_FIELDS = (
    "id",
    "user_id",
    "user__full_name",
    "user__first_name",
    "user__last_name",
    "user__username",
    "title",
    "kind",
    "facility__code",
    "facility__name",
    "facility__level",
    "facility__province__name",
)
# Candidate rows are narrow (ranking needs only these); names are read for the chosen.
_ID, _FACILITY, _MATCH, _A, _B = range(5)


def _suggest_mentors(*, policy: Policy, me: ClinicianProfile, limit: int) -> SuggestionResult:
    level = me.facility.level
    facility_ids, km, _lines, levels = _nearest_facilities(
        me=me,
        levels=policy.mentor_levels_for(level),
        count=SUGGESTION_FACILITIES,
        max_km=policy.max_distance_km,
    )
    mine = _specialties_of([me.pk]).get(me.pk) or _generalist_ids()
    through = ClinicianProfile.specialties.through
    rows = list(
        ClinicianProfile.objects.filter(
            facility_id__in=facility_ids, kind=ClinicianProfile.Kind.DOCTOR, user__is_active=True
        )
        .exclude(pk__in=Mentorship.objects.filter(mentee=me, state__in=LIVE).values("mentor_id"))
        .annotate(
            match=Exists(
                through.objects.filter(clinicianprofile_id=OuterRef("pk"), specialty_id__in=mine)
            ),
            accepted=_count(mentor_id=OuterRef("pk"), state=ACCEPTED, mentee_level=level),
            requested=_count(mentor_id=OuterRef("pk"), state=REQUESTED, mentee_level=level),
        )
        .values_list("id", "facility_id", "match", "accepted", "requested")
    )
    if not rows:
        return SuggestionResult("mentor", level, [], _("No mentors found near you."))
    my_line = _ancestors([me.facility_id]).get(me.facility_id, set())
    links = _facility_links(me=me, other_facilities=facility_ids, me_as="mentee")
    traffic = _referral_traffic(me=me, other_facilities=facility_ids)

    quota = np.array(
        [policy.quota(mentor_level=levels[r[_FACILITY]], mentee_level=level) for r in rows]
    )
    accepted = np.array([r[_A] for r in rows])
    requested = np.array([r[_B] for r in rows])
    distance = np.array([km[r[_FACILITY]] for r in rows])
    match = np.array([r[_MATCH] for r in rows], dtype=bool)
    parent_line = np.array([r[_FACILITY] in my_line for r in rows], dtype=bool)
    referrals = np.array([traffic.get(r[_FACILITY], 0) for r in rows], dtype=np.int64)
    linked = np.array([links.get(r[_FACILITY], 0) for r in rows])
    free = np.maximum(quota - accepted, 0)
    score = _score(
        match=match,
        distance=distance,
        max_km=policy.max_distance_km,
        availability=np.where(quota > 0, free / np.maximum(quota, 1), 0.0),
        load=(accepted + requested) / np.maximum(quota, 1),
        parent_line=parent_line,
        referrals=referrals,
        linked=linked,
    )
    score = np.where(free > 0, score, -np.inf)  # a full mentor cannot take me
    chosen = [int(i) for i in np.argsort(-score, kind="stable")[:limit] if np.isfinite(score[i])]
    return _result(
        "mentor",
        level,
        rows,
        chosen,
        mine,
        distance,
        parent_line,
        referrals,
        linked,
        score,
        quota=quota,
        free=free,
        load=accepted + requested,
        mentors=None,
    )


def _suggest_mentees(*, policy: Policy, me: ClinicianProfile, limit: int) -> SuggestionResult:
    my_level = me.facility.level
    counts = accepted_counts(mentor_ids=[me.pk])
    open_levels = [
        lvl
        for lvl in policy.mentee_levels_for(my_level)
        if counts.get((me.pk, lvl), {}).get(ACCEPTED, 0)
        < policy.quota(mentor_level=my_level, mentee_level=lvl)
    ]
    if not open_levels:
        return SuggestionResult("mentee", None, [], _("Your places are all taken."))
    facility_ids, km, lines, _levels = _nearest_facilities(
        me=me,
        levels=open_levels,
        count=SUGGESTION_MENTEE_FACILITIES,
        max_km=policy.max_distance_km,
    )
    mine = _specialties_of([me.pk]).get(me.pk, set())
    # Someone without a specialty (a commune health worker) looks for a generalist.
    generalist_me = bool(mine & _generalist_ids())
    through = ClinicianProfile.specialties.through
    rows = list(
        ClinicianProfile.objects.filter(
            facility_id__in=facility_ids,
            kind__in=[ClinicianProfile.Kind.DOCTOR, ClinicianProfile.Kind.HEALTH_WORKER],
            user__is_active=True,
        )
        .exclude(pk__in=Mentorship.objects.filter(mentor=me, state__in=LIVE).values("mentee_id"))
        .annotate(
            match=Exists(
                through.objects.filter(clinicianprofile_id=OuterRef("pk"), specialty_id__in=mine)
            ),
            has_specialty=Exists(through.objects.filter(clinicianprofile_id=OuterRef("pk"))),
            mentors=_count(mentee_id=OuterRef("pk"), state=ACCEPTED),
        )
        .values_list("id", "facility_id", "match", "has_specialty", "mentors")
    )
    if not rows:
        return SuggestionResult("mentee", None, [], _("Nobody to mentor near you."))
    links = _facility_links(me=me, other_facilities=facility_ids, me_as="mentor")
    traffic = _referral_traffic(me=me, other_facilities=facility_ids)

    distance = np.array([km[r[_FACILITY]] for r in rows])
    match = np.array([r[_MATCH] or (generalist_me and not r[_A]) for r in rows], dtype=bool)
    parent_line = np.array(
        [me.facility_id in lines.get(r[_FACILITY], set()) for r in rows], dtype=bool
    )
    referrals = np.array([traffic.get(r[_FACILITY], 0) for r in rows], dtype=np.int64)
    linked = np.array([links.get(r[_FACILITY], 0) for r in rows])
    has = np.array([r[_B] for r in rows])
    score = _score(
        match=match,
        distance=distance,
        max_km=policy.max_distance_km,
        availability=(has == 0).astype(float),
        load=np.minimum(has, 3) / 3,
        parent_line=parent_line,
        referrals=referrals,
        linked=linked,
    )
    chosen = [int(i) for i in np.argsort(-score, kind="stable")[:limit]]
    return _result(
        "mentee",
        None,
        rows,
        chosen,
        mine,
        distance,
        parent_line,
        referrals,
        linked,
        score,
        quota=None,
        free=None,
        load=has,
        mentors=has,
    )


def _score(
    *,
    match: np.ndarray,
    distance: np.ndarray,
    max_km: float,
    availability: np.ndarray,
    load: np.ndarray,
    parent_line: np.ndarray,
    referrals: np.ndarray,
    linked: np.ndarray,
) -> np.ndarray:
    """Higher is better. A shared specialty is worth ``MISMATCH_KM`` of distance, as in
    auto-assignment; free places, the referral line and existing links break ties.

    Facilities are on one referral line when one is the other's parent (up to three
    steps) or when they exchanged referrals in the window, as in auto-assignment;
    referral traffic adds a bonus growing with its logarithm, full at
    ``REFERRALS_FULL_BONUS``, so a facility that sends a patient a week outranks
    one that sent one, and neither outweighs a shared specialty."""
    on_line = parent_line | (referrals > 0)
    volume = np.minimum(np.log1p(referrals) / np.log1p(REFERRALS_FULL_BONUS), 1.0)
    return (
        -distance / MISMATCH_KM
        + match * 1.0
        + availability * 0.5
        - load * 0.25
        + on_line * 0.35
        + volume * 0.3
        + np.minimum(linked, 5) / 5 * 0.2
        - (distance > max_km) * 1.0
    )


def _result(
    role: str,
    level: int | None,
    rows: list[tuple],
    chosen: list[int],
    mine: set[int],
    distance: np.ndarray,
    parent_line: np.ndarray,
    referrals: np.ndarray,
    linked: np.ndarray,
    score: np.ndarray,
    *,
    quota: np.ndarray | None,
    free: np.ndarray | None,
    load: np.ndarray,
    mentors: np.ndarray | None,
) -> SuggestionResult:
    """The chosen rows as suggestions; specialties are read for these few only."""
    ids = [rows[i][_ID] for i in chosen]
    specs = _specialties_of(ids)
    details = {
        row[0]: row
        for row in ClinicianProfile.objects.filter(pk__in=ids).values_list(*_DETAIL_FIELDS)
    }
    generalist = _generalist_ids() if role == "mentee" else set()
    codes, labels = {}, {}
    for pk, code, name_vi, name_en in Specialty.objects.values_list(
        "id", "code", "name_vi", "name_en"
    ):
        codes[pk] = code
        labels[pk] = name_en if (get_language() or "vi").startswith("en") else name_vi
    results = []
    for i in chosen:
        row = details[rows[i][_ID]]
        theirs = specs.get(row[0], set())
        shared = mine & (theirs or generalist) if role == "mentee" else mine & theirs
        suggestion = Suggestion(
            user_id=row[1],
            name=_display(row[2], row[3], row[4], row[5]),
            title=row[6],
            kind=row[7],
            facility_code=row[8],
            facility_name=row[9],
            level=row[10],
            province=row[11],
            specialties=sorted(codes[s] for s in theirs),
            distance_km=round(float(distance[i]), 1),
            shared_specialties=sorted(codes[s] for s in shared),
            free_places=int(free[i]) if free is not None else None,
            quota=int(quota[i]) if quota is not None else None,
            load=int(load[i]),
            mentors=int(mentors[i]) if mentors is not None else None,
            on_referral_line=bool(parent_line[i] or referrals[i] > 0),
            colleagues_linked=int(linked[i]),
            score=round(float(score[i]), 3),
            referrals=int(referrals[i]),
            parent_line=bool(parent_line[i]),
        )
        suggestion.reason = suggestion_reason(
            suggestion, shared_labels=sorted(labels[s] for s in shared), mentee_level=level
        )
        results.append(suggestion)
    return SuggestionResult(role, level, results)


def suggestion_reason(
    suggestion: Suggestion, *, shared_labels: list[str], mentee_level: int | None
) -> str:
    """Why this person is suggested, in the reader's language."""
    parts = []
    if shared_labels:
        parts.append(_("same specialty: %(names)s") % {"names": ", ".join(shared_labels)})
    else:
        parts.append(_("a different specialty"))
    parts.append(_("%(km)d km away") % {"km": round(suggestion.distance_km)})
    if suggestion.free_places is not None and suggestion.quota:
        parts.append(
            _("%(free)d of %(quota)d places free for %(level)s staff")
            % {
                "free": suggestion.free_places,
                "quota": suggestion.quota,
                "level": FacilityLevel(mentee_level).label if mentee_level else "",
            }
        )
    if suggestion.mentors is not None:
        parts.append(
            _("has no mentor yet")
            if suggestion.mentors == 0
            else _("already has %(n)d mentor(s)") % {"n": suggestion.mentors}
        )
    if suggestion.parent_line:
        parts.append(_("on your referral line"))
    if suggestion.referrals:
        parts.append(
            ngettext(
                "%(n)d referral between your facilities in the last %(months)d months",
                "%(n)d referrals between your facilities in the last %(months)d months",
                suggestion.referrals,
            )
            % {"n": suggestion.referrals, "months": REFERRAL_WINDOW_DAYS // 30}
        )
    if suggestion.colleagues_linked:
        parts.append(
            _("%(n)d colleague(s) of your facilities already linked")
            % {"n": suggestion.colleagues_linked}
        )
    return " · ".join(parts)


# --- Coverage ---------------------------------------------------------------------------


@dataclass
class CoverageRow:
    """One clinician in a coverage report."""

    clinician_id: int
    user_id: int
    name: str
    kind: str
    facility_code: str
    facility_name: str
    level: int
    province_code: str
    province_name: str
    specialties: list[str]
    role: str  # "mentee" or "mentor" (a provincial doctor may be both: two rows)
    mentors: int = 0  # accepted mentors (mentee rows)
    matched_mentors: int = 0  # of them, sharing a specialty
    used: dict[int, int] = field(default_factory=dict)  # mentee level -> accepted (mentor rows)
    quota: dict[int, int] = field(default_factory=dict)

    @property
    def status(self) -> str:
        if self.role == "mentee":
            return "covered" if self.mentors else "no_mentor"
        if any(self.used.get(lvl, 0) > q for lvl, q in self.quota.items()) or any(
            n and lvl not in self.quota for lvl, n in self.used.items()
        ):
            return "over_quota"
        if any(self.used.get(lvl, 0) < q for lvl, q in self.quota.items()):
            return "under_quota"
        return "full"


def coverage_rows(
    *,
    province: Province | None,
    facility_code: str | None = None,
    specialty_code: str | None = None,
) -> list[CoverageRow]:
    """Every mentee and mentor in scope, with their accepted links. Derived each time."""
    policy = policy_active()
    mentee_levels = policy.mentee_levels
    mentor_levels = policy.mentor_levels
    base = ClinicianProfile.objects.filter(user__is_active=True)
    if province is not None:
        base = base.filter(facility__province=province)
    if facility_code:
        base = base.filter(facility__code=facility_code)
    if specialty_code:
        base = base.filter(specialties__code=specialty_code)
    people = list(
        base.filter(
            Q(facility__level__in=mentee_levels)
            | Q(facility__level__in=mentor_levels, kind=ClinicianProfile.Kind.DOCTOR)
        )
        .values_list(
            "id",
            "user_id",
            "user__full_name",
            "user__first_name",
            "user__last_name",
            "user__username",
            "kind",
            "facility__code",
            "facility__name",
            "facility__level",
            "facility__province__code",
            "facility__province__name",
        )
        .order_by("facility__province__code", "facility__code", "id")
        .distinct()
    )
    ids = [p[0] for p in people]
    codes = dict(Specialty.objects.values_list("id", "code"))
    specs: dict[int, set[int]] = defaultdict(set)
    through = ClinicianProfile.specialties.through
    for chunk in _chunks(ids, 20000):
        for cid, sid in through.objects.filter(clinicianprofile_id__in=chunk).values_list(
            "clinicianprofile_id", "specialty_id"
        ):
            specs[cid].add(sid)
    mentors_of: dict[int, list[int]] = defaultdict(list)
    used: dict[int, dict[int, int]] = defaultdict(dict)
    accepted = Mentorship.objects.filter(state=ACCEPTED)
    if province is not None:
        accepted = accepted.filter(
            Q(mentee__facility__province=province) | Q(mentor__facility__province=province)
        )
    for mentor_id, mentee_id, level in accepted.values_list(
        "mentor_id", "mentee_id", "mentee_level"
    ):
        mentors_of[mentee_id].append(mentor_id)
        used[mentor_id][level] = used[mentor_id].get(level, 0) + 1
    mentor_specs = _specialties_of([m for ms in mentors_of.values() for m in ms if m not in specs])
    generalist = _generalist_ids()
    rows = []
    for p in people:
        cid, level, kind = p[0], p[9], p[6]
        common = dict(
            clinician_id=cid,
            user_id=p[1],
            name=_display(p[2], p[3], p[4], p[5]),
            kind=kind,
            facility_code=p[7],
            facility_name=p[8],
            level=level,
            province_code=p[10],
            province_name=p[11],
            specialties=sorted(codes[s] for s in specs.get(cid, ())),
        )
        if level in mentee_levels:
            needs = specs.get(cid) or generalist
            my_mentors = mentors_of.get(cid, [])
            matched = sum(
                1 for m in my_mentors if needs & (specs.get(m) or mentor_specs.get(m, set()))
            )
            rows.append(
                CoverageRow(
                    **common, role="mentee", mentors=len(my_mentors), matched_mentors=matched
                )
            )
        if level in mentor_levels and kind == ClinicianProfile.Kind.DOCTOR:
            quota = {
                lvl: policy.quota(mentor_level=level, mentee_level=lvl)
                for lvl in policy.mentee_levels_for(level)
            }
            rows.append(CoverageRow(**common, role="mentor", used=used.get(cid, {}), quota=quota))
    return rows


def _chunks(items: list[int], size: int) -> Iterable[list[int]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def coverage_summary(*, rows: list[CoverageRow], list_limit: int = 200) -> dict[str, Any]:
    """Totals by province, facility and specialty; who has no mentor; who is over or
    under quota. Over-quota mentors are reported, never cut."""

    def bucket() -> dict[str, Any]:
        return {
            "mentees": 0,
            "covered": 0,
            "mentors": 0,
            "places": 0,
            "used": 0,
            "over": 0,
            "under": 0,
        }

    totals = bucket()
    provinces: dict[str, dict[str, Any]] = {}
    facilities: dict[str, dict[str, Any]] = {}
    specialties: dict[str, dict[str, Any]] = defaultdict(
        lambda: {"mentees": 0, "covered": 0, "matched": 0}
    )
    no_mentor, over, under = [], [], []
    for row in rows:
        province = provinces.setdefault(
            row.province_code, {"code": row.province_code, "name": row.province_name, **bucket()}
        )
        facility = facilities.setdefault(
            row.facility_code,
            {
                "code": row.facility_code,
                "name": row.facility_name,
                "level": row.level,
                "province": row.province_code,
                **bucket(),
                "specialties": defaultdict(lambda: {"mentees": 0, "covered": 0}),
            },
        )
        for target in (totals, province, facility):
            if row.role == "mentee":
                target["mentees"] += 1
                target["covered"] += bool(row.mentors)
            else:
                target["mentors"] += 1
                target["places"] += sum(row.quota.values())
                target["used"] += sum(row.used.values())
                target["over"] += row.status == "over_quota"
                target["under"] += row.status == "under_quota"
        if row.role == "mentee":
            for code in row.specialties or ["(none)"]:
                specialties[code]["mentees"] += 1
                specialties[code]["covered"] += bool(row.mentors)
                specialties[code]["matched"] += bool(row.matched_mentors)
                facility["specialties"][code]["mentees"] += 1
                facility["specialties"][code]["covered"] += bool(row.mentors)
            if not row.mentors and len(no_mentor) < list_limit:
                no_mentor.append(_row_out(row))
        elif row.status == "over_quota" and len(over) < list_limit:
            over.append(_row_out(row))
        elif row.status == "under_quota" and len(under) < list_limit:
            under.append(_row_out(row))
    for target in [totals, *provinces.values(), *facilities.values()]:
        target["coverage"] = _ratio(target["covered"], target["mentees"])
        target["places_used"] = _ratio(target["used"], target["places"])
    for facility in facilities.values():
        facility["specialties"] = [
            {"code": code, **value} for code, value in sorted(facility["specialties"].items())
        ]
    names = dict(Specialty.objects.values_list("code", "name_vi"))
    names_en = dict(Specialty.objects.values_list("code", "name_en"))
    label = names_en if (get_language() or "vi").startswith("en") else names
    return {
        "totals": totals,
        "provinces": sorted(provinces.values(), key=lambda p: p["code"]),
        "facilities": sorted(facilities.values(), key=lambda f: (f["coverage"] or 0, f["code"])),
        "specialties": [
            {
                "code": code,
                "name": label.get(code, _("no specialty")),
                **value,
                "coverage": _ratio(value["covered"], value["mentees"]),
            }
            for code, value in sorted(specialties.items())
        ],
        "no_mentor": no_mentor,
        "over_quota": over,
        "under_quota": under,
    }


def _row_out(row: CoverageRow) -> dict[str, Any]:
    return {
        "user_id": row.user_id,
        "name": row.name,
        "kind": row.kind,
        "facility": row.facility_name,
        "facility_code": row.facility_code,
        "level": row.level,
        "province": row.province_code,
        "specialties": row.specialties,
        "mentors": row.mentors,
        "used": {str(k): v for k, v in sorted(row.used.items())},
        "quota": {str(k): v for k, v in sorted(row.quota.items())},
    }


# --- Runs and case conferences ----------------------------------------------------------


def run_get_for_user(*, user: User, run_id: int) -> AssignmentRun:
    """A run, for those who may manage its scope (its province's coordinators, staff)."""
    run = AssignmentRun.objects.select_related("province", "created_by").filter(pk=run_id).first()
    if run is None or not coordinator_scope(user=user).may_manage(run.province_id):
        raise NotFound(_("No such auto-assignment run."))
    return run


def run_list_for_user(*, user: User) -> QuerySet[AssignmentRun]:
    scope = coordinator_scope(user=user)
    query = AssignmentRun.objects.select_related("province", "created_by")
    if scope.national:
        return query
    return query.filter(province_id__in=scope.manage_province_ids)


def proposal_list(*, run: AssignmentRun, status: str | None = None) -> QuerySet[AssignmentProposal]:
    query = run.proposals.select_related(
        "mentor__user",
        "mentor__facility__province",
        "mentee__user",
        "mentee__facility__province",
    ).order_by("id")
    return query.filter(status=status) if status else query


def case_conference_get_for_user(*, user: User, conference_id: int) -> CaseConference:
    """A case conference, for the participants of its thread."""
    from consult.selectors import thread_get_for_user

    conference = (
        CaseConference.objects.select_related("organiser", "patient__user", "thread")
        .filter(pk=conference_id)
        .first()
    )
    if conference is None or conference.thread_id is None:
        raise NotFound(_("No such case conference."))
    thread_get_for_user(user=user, thread_id=conference.thread_id)  # raises NotFound
    return conference


def case_conference_list_for_user(*, user: User) -> QuerySet[CaseConference]:
    return (
        CaseConference.objects.filter(
            thread__participants__user=user, thread__participants__left_at__isnull=True
        )
        .select_related("organiser", "thread")
        .distinct()
    )
