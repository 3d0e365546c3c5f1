"""Reads of the network: my overview, the graph, suggestions with reasons, coverage."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone, translation

from network import selectors, services
from scheduler.models import Referral
from telehealth.errors import AccessDenied
from telehealth.models import ClinicianProfile, Facility, FacilityLevel
from tests.factories import (
    CoordinatorFactory,
    FacilityFactory,
    PatientFactory,
    UserFactory,
    province,
    specialty,
)
from tests.network.conftest import clinician, link

pytestmark = pytest.mark.django_db


def test_the_default_policy_is_the_ministrys():
    policy = selectors.policy_active()

    assert policy.id is not None  # stored by the data migration
    assert policy.quotas == {(1, 2): 4, (1, 3): 4, (1, 4): 2}
    assert policy.mentor_levels_for(FacilityLevel.COMMUNE) == [FacilityLevel.CENTRAL]
    assert policy.mentee_levels_for(FacilityLevel.PROVINCIAL) == []


def test_my_overview_shows_gauges_by_level(central, district):
    link(central, district)
    services.do_mentorship_request(
        mentor=central,
        mentee=(worker := clinician(FacilityLevel.COMMUNE, kind="health_worker")),
        requested_by=worker.user,
    )

    overview = selectors.network_overview(user=central.user)

    gauges = {g.mentee_level: (g.accepted, g.requested, g.quota) for g in overview.gauges}
    assert gauges == {2: (0, 0, 4), 3: (1, 0, 4), 4: (0, 1, 2)}
    assert overview.can_mentor and not overview.can_be_mentored
    assert len(overview.mentorships) == 2


def test_the_graph_reaches_two_steps_out(central, district, provincial):
    link(central, district)
    link(central, provincial)
    other_mentor = clinician(FacilityLevel.CENTRAL)
    link(other_mentor, district)

    graph = selectors.network_graph(user=provincial.user)

    rings = {n["id"]: n["ring"] for n in graph["nodes"]}
    assert rings[provincial.user_id] == 0
    assert rings[central.user_id] == 1
    assert rings[district.user_id] == 2  # my mentor's other mentee
    assert other_mentor.user_id not in rings  # three steps away
    assert len(graph["edges"]) == 2


# --- Suggestions ------------------------------------------------------------------------


def test_mentor_suggestions_rank_specialty_distance_and_free_places():
    # given a cardiologist at a district centre in Hà Nội
    me = clinician(FacilityLevel.DISTRICT, specialties=("cardiology",), name="Bác sĩ Huyện")
    hanoi, hue = province("01"), province("46")
    near_cardio = clinician(FacilityLevel.CENTRAL, specialties=("cardiology",), name="Tim Hà Nội")
    near_other = clinician(FacilityLevel.CENTRAL, specialties=("dermatology",), name="Da Hà Nội")
    far_cardio = clinician(
        FacilityLevel.CENTRAL,
        specialties=("cardiology",),
        province_code="46",
        name="Tim Huế",
    )
    full = clinician(
        FacilityLevel.CENTRAL,
        specialties=("cardiology",),
        facility=near_cardio.facility,
        name="Tim đầy chỗ",
    )
    for _ in range(4):
        link(full, clinician(FacilityLevel.DISTRICT))
    assert hanoi != hue

    result = selectors.suggestion_list(user=me.user, role="mentor")

    names = [s.name for s in result.results]
    # then the nearby cardiologist comes first; a full mentor is never suggested
    assert names[0] == "Tim Hà Nội"
    assert "Tim đầy chỗ" not in names
    assert set(names) >= {"Da Hà Nội", "Tim Huế"}
    first = result.results[0]
    assert first.shared_specialties == ["cardiology"]
    assert first.free_places == 4 and first.quota == 4
    assert near_other and far_cardio


def test_each_suggestion_says_why_in_vietnamese():
    me = clinician(FacilityLevel.DISTRICT, specialties=("cardiology",))
    clinician(FacilityLevel.CENTRAL, specialties=("cardiology",))

    with translation.override("vi"):
        reason = selectors.suggestion_list(user=me.user, role="mentor").results[0].reason

    assert "Cùng chuyên khoa" in reason or "cùng chuyên khoa" in reason
    assert "km" in reason


def test_the_referral_line_counts_in_the_ranking():
    # two equal central doctors equally far; one works at the hospital my centre refers to
    where = province("01")
    hub = FacilityFactory(
        level=FacilityLevel.CENTRAL, province=where, latitude=21.1, longitude=105.8
    )
    other = FacilityFactory(
        level=FacilityLevel.CENTRAL, province=where, latitude=21.1, longitude=105.8
    )
    centre = FacilityFactory(level=FacilityLevel.DISTRICT, province=where, parent=hub)
    me = clinician(FacilityLevel.DISTRICT, facility=centre)
    on_line = clinician(FacilityLevel.CENTRAL, facility=hub, name="Tuyến trên")
    clinician(FacilityLevel.CENTRAL, facility=other, name="Nơi khác")

    result = selectors.suggestion_list(user=me.user, role="mentor")

    assert result.results[0].name == "Tuyến trên"
    assert result.results[0].on_referral_line
    assert on_line


def referrals_sent(source: Facility, target: Facility, *, count: int, days_ago: float = 7) -> None:
    """``count`` submitted referrals from ``source`` to ``target``."""
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
            status=Referral.Status.ACCEPTED,
            created_at=submitted,
            requested_at=submitted,
        )
        for _ in range(count)
    )


def two_equal_hospitals() -> tuple[Facility, Facility]:
    where = province("01")
    return tuple(  # type: ignore[return-value]
        FacilityFactory(level=FacilityLevel.CENTRAL, province=where, latitude=21.1, longitude=105.8)
        for _ in range(2)
    )


def test_referral_traffic_links_facilities_in_the_ranking():
    # given two equal central doctors equally far; my centre exchanges referrals with one
    partner, other = two_equal_hospitals()
    centre = FacilityFactory(level=FacilityLevel.DISTRICT, province=province("01"))
    me = clinician(FacilityLevel.DISTRICT, facility=centre)
    clinician(FacilityLevel.CENTRAL, facility=other, name="Nơi khác")
    clinician(FacilityLevel.CENTRAL, facility=partner, name="Hay chuyển tuyến")
    referrals_sent(centre, partner, count=9)
    referrals_sent(partner, centre, count=3)  # counter-direction counts too
    referrals_sent(centre, other, count=5, days_ago=400)  # too long ago

    # when I ask for mentors, in English and in Vietnamese
    with translation.override("en"):
        result = selectors.suggestion_list(user=me.user, role="mentor")
    with translation.override("vi"):
        reason_vi = selectors.suggestion_list(user=me.user, role="mentor").results[0].reason

    # then the partner hospital's doctor comes first, and the reason says why
    first, second = result.results[:2]
    assert (first.name, second.name) == ("Hay chuyển tuyến", "Nơi khác")
    assert first.referrals == 12 and first.on_referral_line
    assert second.referrals == 0 and not second.on_referral_line
    assert first.score > second.score
    assert "12 referrals between your facilities in the last 6 months" in first.reason
    assert "on your referral line" not in first.reason  # no parent link: not claimed
    assert "12 lượt chuyển tuyến giữa hai cơ sở trong 6 tháng qua" in reason_vi


def test_more_referral_traffic_ranks_higher():
    busy, quiet = two_equal_hospitals()
    centre = FacilityFactory(level=FacilityLevel.DISTRICT, province=province("01"))
    me = clinician(FacilityLevel.DISTRICT, facility=centre)
    clinician(FacilityLevel.CENTRAL, facility=quiet, name="Ít")
    clinician(FacilityLevel.CENTRAL, facility=busy, name="Nhiều")
    referrals_sent(centre, quiet, count=1)
    referrals_sent(centre, busy, count=20)

    with translation.override("en"):
        results = selectors.suggestion_list(user=me.user, role="mentor").results

    assert [s.name for s in results[:2]] == ["Nhiều", "Ít"]
    assert "1 referral between your facilities in the last 6 months" in results[1].reason


def test_mentee_suggestions_count_referral_traffic_too(central):
    # two equal commune stations equally far from my hospital; one refers patients to it
    where = province("01")
    sending, silent = (
        FacilityFactory(
            level=FacilityLevel.COMMUNE,
            province=where,
            latitude=central.facility.latitude + 0.1,
            longitude=central.facility.longitude,
        )
        for _ in range(2)
    )
    clinician(FacilityLevel.COMMUNE, kind="health_worker", facility=silent, name="Im lặng")
    clinician(FacilityLevel.COMMUNE, kind="health_worker", facility=sending, name="Gửi bệnh nhân")
    referrals_sent(sending, central.facility, count=4)

    with translation.override("en"):
        results = selectors.suggestion_list(user=central.user, role="mentee").results

    assert results[0].name == "Gửi bệnh nhân" and results[0].referrals == 4
    assert "4 referrals between your facilities" in results[0].reason


def test_mentee_suggestions_prefer_people_without_a_mentor(central):
    where = province("01")
    station = FacilityFactory(level=FacilityLevel.COMMUNE, province=where)
    lonely = clinician(
        FacilityLevel.COMMUNE, kind="health_worker", facility=station, name="Chưa có"
    )
    mentored = clinician(
        FacilityLevel.COMMUNE, kind="health_worker", facility=station, name="Đã có"
    )
    link(clinician(FacilityLevel.CENTRAL), mentored)

    result = selectors.suggestion_list(user=central.user, role="mentee")

    names = [s.name for s in result.results]
    assert names.index("Chưa có") < names.index("Đã có")
    assert result.results[0].mentors == 0
    assert lonely


def test_people_already_linked_with_me_are_not_suggested(central, district):
    services.do_mentorship_request(mentor=central, mentee=district, requested_by=district.user)

    result = selectors.suggestion_list(user=district.user, role="mentor")

    assert central.user_id not in [s.user_id for s in result.results]


def test_a_level_nobody_mentors_gets_an_explanation(central):
    result = selectors.suggestion_list(user=central.user, role="mentor")

    assert result.results == [] and result.detail


def test_only_clinicians_have_suggestions(coordinator):
    with pytest.raises(AccessDenied):
        selectors.suggestion_list(user=coordinator)


# --- Coverage ---------------------------------------------------------------------------


def test_coverage_is_derived_per_facility_and_specialty(central):
    where = province("01")
    station = FacilityFactory(level=FacilityLevel.COMMUNE, province=where)
    covered = clinician(FacilityLevel.COMMUNE, facility=station, specialties=("internal-medicine",))
    clinician(FacilityLevel.COMMUNE, facility=station, specialties=("pediatrics",))
    link(central, covered)

    summary = selectors.coverage_summary(rows=selectors.coverage_rows(province=where))

    facility = next(f for f in summary["facilities"] if f["code"] == station.code)
    assert (facility["mentees"], facility["covered"], facility["coverage"]) == (2, 1, 0.5)
    specialties = {s["code"]: s for s in facility["specialties"]}
    assert specialties["internal-medicine"]["covered"] == 1
    assert specialties["pediatrics"]["covered"] == 0
    nobody = [p["name"] for p in summary["no_mentor"]]
    assert covered.user.display_name not in nobody
    # a central doctor with one place used of ten is under quota
    assert central.user.display_name in [p["name"] for p in summary["under_quota"]]
    overall = {s["code"]: s for s in summary["specialties"]}
    assert overall["internal-medicine"]["matched"] == 1  # the mentor shares it


def test_a_lowered_quota_is_reported_over_quota_not_cut(central):
    for _ in range(3):
        link(central, clinician(FacilityLevel.DISTRICT))
    services.do_policy_replace(
        name="Giảm", quotas={(1, 2): 4, (1, 3): 1, (1, 4): 2}, max_distance_km=800, created_by=None
    )

    summary = selectors.coverage_summary(rows=selectors.coverage_rows(province=province("01")))

    over = [p for p in summary["over_quota"] if p["user_id"] == central.user_id]
    assert over and over[0]["used"] == {"3": 3} and over[0]["quota"]["3"] == 1
    assert summary["totals"]["over"] == 1


def test_coordinators_see_their_province_only():
    province_coordinator = CoordinatorFactory(province=province("01")).user
    facility = FacilityFactory(province=province("79"))
    facility_coordinator = CoordinatorFactory(province=None, facility=facility).user

    scope = selectors.coordinator_scope(user=province_coordinator)
    facility_scope = selectors.coordinator_scope(user=facility_coordinator)

    assert scope.may_read(province("01").pk) and scope.may_manage(province("01").pk)
    assert not scope.may_read(province("79").pk) and not scope.national
    # a facility coordinator reads their facility's province, and runs nothing
    assert facility_scope.may_read(province("79").pk)
    assert not facility_scope.may_manage(province("79").pk)
    with pytest.raises(AccessDenied):
        selectors.scope_province(user=province_coordinator, code="79")
    assert selectors.scope_province(user=province_coordinator, code=None) == province("01")


def test_mentors_of_a_mentee_count_once_per_person(central, district):
    link(central, district)
    link(clinician(FacilityLevel.CENTRAL), district)

    rows = [r for r in selectors.coverage_rows(province=None) if r.clinician_id == district.pk]

    assert len(rows) == 1 and rows[0].mentors == 2 and rows[0].status == "covered"
    assert ClinicianProfile.objects.count() >= 3
