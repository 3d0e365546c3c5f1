"""Writes of the mentoring graph: requests, answers, ends, quotas, policy, history, events."""

from __future__ import annotations

import pytest

from consult.models import Participant, Thread
from network import services
from network.models import MentoringPolicy, Mentorship, MentorshipEvent
from network.selectors import policy_active
from telehealth.errors import AccessDenied, Conflict, DomainError, NotFound
from telehealth.models import ClinicianProfile, FacilityLevel
from tests.network.conftest import clinician, link

pytestmark = pytest.mark.django_db


def test_a_mentee_asks_and_the_mentor_is_told(central, district, notifications):
    # when a district doctor asks a central doctor to mentor them
    mentorship = services.check_mentorship_request(
        user=district.user, mentor_user_id=central.user_id, message="Xin thầy hướng dẫn"
    )

    # then a request waits for the mentor, at the district level's quota
    assert mentorship.state == Mentorship.State.REQUESTED
    assert mentorship.mentee_level == FacilityLevel.DISTRICT
    assert mentorship.requested_by == district.user
    # and both are told live (the mentor to answer, the mentee's other devices)
    assert {(uid, name) for uid, name, _ in notifications} == {
        (central.user_id, "mentorship.requested"),
        (district.user_id, "mentorship.requested"),
    }
    assert notifications[0][2]["mentorship"] == mentorship.pk


def test_a_mentor_may_ask_a_mentee_too(central, commune_worker):
    mentorship = services.check_mentorship_request(
        user=central.user, mentee_user_id=commune_worker.user_id
    )

    assert mentorship.mentor == central and mentorship.mentee == commune_worker
    assert mentorship.mentee_level == FacilityLevel.COMMUNE


def test_accepting_opens_the_pairs_conversation(central, provincial, notifications):
    # given a request from the mentee
    mentorship = services.check_mentorship_request(
        user=provincial.user, mentor_user_id=central.user_id
    )
    # when the mentor accepts
    accepted = services.check_mentorship_answer(
        user=central.user, mentorship_id=mentorship.pk, accept=True
    )

    # then it is accepted with a mentorship thread of the two
    assert accepted.state == Mentorship.State.ACCEPTED
    thread = Thread.objects.get(pk=accepted.thread_id)
    assert thread.kind == Thread.Kind.MENTORSHIP
    assert thread.context == f"network.mentorship:{mentorship.pk}"
    roles = dict(thread.participants.values_list("user_id", "role"))
    assert roles == {
        central.user_id: Participant.Role.MENTOR,
        provincial.user_id: Participant.Role.MENTEE,
    }
    assert ("mentorship.accepted") in {name for _, name, _ in notifications}


def test_only_the_person_asked_may_answer(central, district):
    mentorship = services.check_mentorship_request(
        user=district.user, mentor_user_id=central.user_id
    )

    with pytest.raises(AccessDenied):
        services.check_mentorship_answer(
            user=district.user, mentorship_id=mentorship.pk, accept=True
        )
    stranger = clinician(FacilityLevel.CENTRAL)
    with pytest.raises(NotFound):
        services.check_mentorship_answer(
            user=stranger.user, mentorship_id=mentorship.pk, accept=True
        )


def test_accepting_twice_changes_nothing(central, district):
    mentorship = link(central, district)

    again = services.do_mentorship_accept(mentorship_id=mentorship.pk, accepted_by=central.user)

    assert again.thread_id == mentorship.thread_id
    assert Thread.objects.filter(kind=Thread.Kind.MENTORSHIP).count() == 1
    assert mentorship.events.filter(state=Mentorship.State.ACCEPTED).count() == 1


def test_declining_keeps_the_history(central, district, notifications):
    mentorship = services.check_mentorship_request(
        user=district.user, mentor_user_id=central.user_id
    )

    services.check_mentorship_answer(
        user=central.user, mentorship_id=mentorship.pk, accept=False, note="Đang quá tải"
    )

    mentorship.refresh_from_db()
    assert mentorship.state == Mentorship.State.DECLINED
    assert list(mentorship.events.values_list("state", flat=True)) == ["requested", "declined"]
    assert "mentorship.declined" in {name for _, name, _ in notifications}
    # and a new request may be made later
    services.check_mentorship_request(user=district.user, mentor_user_id=central.user_id)


def test_ending_needs_a_reason_and_closes_the_conversation(central, district, notifications):
    mentorship = link(central, district)

    with pytest.raises(DomainError):
        services.check_mentorship_end(user=district.user, mentorship_id=mentorship.pk, reason="")
    ended = services.check_mentorship_end(
        user=district.user, mentorship_id=mentorship.pk, reason="completed", note="Đã xong"
    )

    assert ended.state == Mentorship.State.ENDED
    assert ended.end_reason == "completed" and ended.ended_by == district.user
    assert Thread.objects.get(pk=mentorship.thread_id).is_closed
    assert [e.state for e in MentorshipEvent.objects.filter(mentorship=mentorship)] == [
        "requested",
        "accepted",
        "ended",
    ]
    assert "mentorship.ended" in {name for _, name, _ in notifications}


def test_the_requester_withdraws_but_the_person_asked_declines(central, district):
    mentorship = services.check_mentorship_request(
        user=district.user, mentor_user_id=central.user_id
    )

    with pytest.raises(DomainError) as refused:
        services.check_mentorship_end(
            user=central.user, mentorship_id=mentorship.pk, reason="withdrawn"
        )
    withdrawn = services.check_mentorship_end(
        user=district.user, mentorship_id=mentorship.pk, reason="withdrawn"
    )

    assert refused.value.code == "decline_instead"
    assert withdrawn.state == Mentorship.State.ENDED


def test_one_live_link_per_pair(central, district):
    services.check_mentorship_request(user=district.user, mentor_user_id=central.user_id)

    with pytest.raises(Conflict) as refused:
        services.check_mentorship_request(user=central.user, mentee_user_id=district.user_id)

    assert refused.value.code == "already_linked"


@pytest.mark.parametrize(
    ("mentor_level", "mentee_level"),
    [
        (FacilityLevel.PROVINCIAL, FacilityLevel.DISTRICT),  # not in the default policy
        (FacilityLevel.DISTRICT, FacilityLevel.PROVINCIAL),  # upside down
        (FacilityLevel.CENTRAL, FacilityLevel.CENTRAL),  # same level
    ],
)
def test_the_policy_decides_who_is_upper_level(mentor_level, mentee_level):
    mentor, mentee = clinician(mentor_level), clinician(mentee_level)

    with pytest.raises(DomainError) as refused:
        services.check_mentorship_request(user=mentee.user, mentor_user_id=mentor.user_id)

    assert refused.value.code == "not_allowed"


def test_health_workers_are_mentees_never_mentors(commune_worker):
    other = clinician(FacilityLevel.COMMUNE, kind=ClinicianProfile.Kind.HEALTH_WORKER)

    with pytest.raises(DomainError):
        services.do_mentorship_request(mentor=commune_worker, mentee=other, requested_by=other.user)


def test_the_commune_quota_is_two(central):
    # given a central doctor with two commune mentees
    for _ in range(2):
        link(central, clinician(FacilityLevel.COMMUNE, kind=ClinicianProfile.Kind.HEALTH_WORKER))
    third = clinician(FacilityLevel.COMMUNE, kind=ClinicianProfile.Kind.HEALTH_WORKER)

    # then a third commune request is refused at once
    with pytest.raises(Conflict) as refused:
        services.check_mentorship_request(user=third.user, mentor_user_id=central.user_id)

    assert refused.value.code == "quota_full"
    # but a district place is still free
    link(central, clinician(FacilityLevel.DISTRICT))


def test_a_waiting_request_cannot_be_accepted_over_quota(central):
    # given three commune requests waiting for a mentor with two commune places
    workers = [
        clinician(FacilityLevel.COMMUNE, kind=ClinicianProfile.Kind.HEALTH_WORKER) for _ in range(3)
    ]
    requests = [
        services.do_mentorship_request(mentor=central, mentee=w, requested_by=w.user)
        for w in workers
    ]
    # when the mentor accepts all three
    for request in requests[:2]:
        services.do_mentorship_accept(mentorship_id=request.pk, accepted_by=central.user)
    with pytest.raises(Conflict) as refused:
        services.do_mentorship_accept(mentorship_id=requests[2].pk, accepted_by=central.user)

    # then the third stays waiting and the quota holds
    assert refused.value.code == "quota_full"
    assert Mentorship.objects.filter(mentor=central, state="accepted").count() == 2
    requests[2].refresh_from_db()
    assert requests[2].state == Mentorship.State.REQUESTED


def test_a_mentee_may_have_several_mentors(district):
    first, second = clinician(FacilityLevel.CENTRAL), clinician(FacilityLevel.CENTRAL)

    link(first, district)
    link(second, district)

    assert Mentorship.objects.filter(mentee=district, state="accepted").count() == 2


def test_a_new_policy_keeps_existing_links_and_adds_upper_levels(central, provincial, district):
    # given two accepted district mentees under the default policy
    link(central, district)
    link(central, clinician(FacilityLevel.DISTRICT))
    # when the policy lowers the central → district quota to one and lets provincial
    # doctors mentor district staff
    services.do_policy_replace(
        name="Thí điểm",
        quotas={(1, 2): 4, (1, 3): 1, (1, 4): 2, (2, 3): 3},
        max_distance_km=500,
        created_by=None,
    )

    # then nothing is cut, the old policy stays as history, and the new rules apply
    assert Mentorship.objects.filter(mentor=central, state="accepted").count() == 2
    assert MentoringPolicy.objects.filter(is_active=True).count() == 1
    assert MentoringPolicy.objects.count() == 2
    with pytest.raises(Conflict):
        services.check_mentorship_request(
            user=central.user, mentee_user_id=clinician(FacilityLevel.DISTRICT).user_id
        )
    services.check_mentorship_request(user=district.user, mentor_user_id=provincial.user_id)
    assert policy_active().quota(mentor_level=2, mentee_level=3) == 3


def test_only_administrators_change_the_policy(central):
    with pytest.raises(AccessDenied):
        services.check_policy_replace(
            user=central.user, name="x", quotas={(1, 2): 9}, max_distance_km=100
        )


def test_a_policy_refuses_a_lower_level_mentoring_a_higher(admin_user):
    with pytest.raises(DomainError) as refused:
        services.check_policy_replace(
            user=admin_user, name="sai", quotas={(3, 2): 2}, max_distance_km=100
        )

    assert "quotas" in refused.value.fields


def test_unanswered_requests_expire(central, district):
    from datetime import timedelta

    from django.utils import timezone

    old = services.check_mentorship_request(user=district.user, mentor_user_id=central.user_id)
    Mentorship.objects.filter(pk=old.pk).update(requested_at=timezone.now() - timedelta(days=40))
    fresh = services.check_mentorship_request(
        user=clinician(FacilityLevel.DISTRICT).user, mentor_user_id=central.user_id
    )

    assert services.do_mentorship_requests_expire(older_than_days=30) == 1
    assert services.do_mentorship_requests_expire(older_than_days=30) == 0
    old.refresh_from_db()
    fresh.refresh_from_db()
    assert old.state == Mentorship.State.ENDED and old.end_reason == "expired"
    assert fresh.state == Mentorship.State.REQUESTED
