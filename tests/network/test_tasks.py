"""National auto-assignment: a Celery job that proposes, a coordinator who reviews, and
requests sent for the accepted proposals. Runs eagerly on a small seeded network."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from network import services, tasks
from network.matching import UNMET_COST
from network.models import AssignmentProposal, AssignmentRun, Mentorship
from network.selectors import policy_active
from telehealth.errors import AccessDenied, NotFound
from telehealth.models import ClinicianProfile, Province
from telehealth.seeding import network_seed
from tests.factories import CoordinatorFactory, province

pytestmark = pytest.mark.django_db

SMALL = {
    "seed": 11,
    "facilities": 150,
    "doctors": 220,
    "health_workers": None,
    "patients": 0,
    "coordinators": 0,
}


@pytest.fixture
def seeded(db):
    return network_seed(**SMALL)


@pytest.fixture
def admin(django_user_model):
    return django_user_model.objects.create(username="qt", is_staff=True)


def _start(user, province_obj=None, **kwargs):  # type: ignore[no-untyped-def]
    return services.check_assignment_run_create(user=user, province=province_obj, **kwargs)


def test_a_national_run_proposes_an_optimal_assignment_within_quotas(
    seeded, admin, celery_eager, django_capture_on_commit_callbacks
):
    # when an administrator starts a national run (the task runs after commit)
    with django_capture_on_commit_callbacks(execute=True):
        run = _start(admin)
    run.refresh_from_db()

    # then it is ready for review, with its figures and timings
    assert run.state == AssignmentRun.State.PROPOSED and run.progress == 100
    assert run.assigned == run.proposals.count() > 0
    assert 0 < run.coverage <= 1
    assert set(run.timings) >= {"read", "arcs", "solve", "greedy", "store", "total"}
    # and no mentee gets two mentors, no mentor more than their places of a level
    proposals = list(run.proposals.select_related("mentor__facility"))
    assert len({p.mentee_id for p in proposals}) == len(proposals)
    policy = policy_active()
    per_place = Counter((p.mentor_id, p.mentee_level) for p in proposals)
    levels = dict(
        ClinicianProfile.objects.filter(pk__in=[m for m, _ in per_place]).values_list(
            "pk", "facility__level"
        )
    )
    for (mentor_id, level), n in per_place.items():
        assert n <= policy.quota(mentor_level=levels[mentor_id], mentee_level=level)
    # and the optimum serves at least as many as the greedy baseline, for no more cost
    assert run.assigned >= run.greedy_assigned
    unserved = run.mentees - run.assigned
    greedy_unserved = run.mentees - run.greedy_assigned
    assert run.cost + UNMET_COST * unserved <= run.greedy_cost + UNMET_COST * greedy_unserved


def test_the_optimum_fills_every_place_it_can_reach(seeded, admin, celery_eager):
    # given the default policy, commune places are scarcer than commune staff
    run = _start(admin)
    tasks.assignment_run_execute(run.pk)
    run.refresh_from_db()

    by_level = Counter(run.proposals.values_list("mentee_level", flat=True))
    problem = services.read_problem(policy=policy_active(), province_id=None)
    free = {
        level: int(problem.places.free[problem.places.mentee_level == level].sum())
        for level in (2, 3, 4)
    }
    need = {level: int((problem.mentees.level == level).sum()) for level in (2, 3, 4)}
    for level in (2, 3, 4):
        # every mentee served while places last, every place used while mentees last
        # (the seeded network is compact enough that distance never stops it)
        assert by_level[level] == min(free[level], need[level])


def test_running_the_task_twice_has_the_effect_of_running_it_once(seeded, admin, celery_eager):
    run = _start(admin)
    tasks.assignment_run_execute(run.pk)
    first = sorted(run.proposals.values_list("mentor_id", "mentee_id"))

    assert tasks.assignment_run_execute(run.pk) is None
    assert sorted(run.proposals.values_list("mentor_id", "mentee_id")) == first


def test_a_province_run_proposes_mentors_for_that_provinces_staff_only(seeded, celery_eager):
    hanoi = province("01")
    coordinator = CoordinatorFactory(province=hanoi).user

    run = _start(coordinator, hanoi)
    tasks.assignment_run_execute(run.pk)

    mentee_provinces = set(run.proposals.values_list("mentee__facility__province__code", flat=True))
    assert mentee_provinces == {"01"}


def test_clinicians_with_a_mentor_or_a_waiting_request_are_left_alone(seeded, admin, celery_eager):
    mentee = ClinicianProfile.objects.filter(facility__level=3).order_by("pk").first()
    mentor = ClinicianProfile.objects.filter(facility__level=1).order_by("pk").first()
    services.do_mentorship_request(mentor=mentor, mentee=mentee, requested_by=mentee.user)

    run = _start(admin)
    tasks.assignment_run_execute(run.pk)

    assert not run.proposals.filter(mentee=mentee).exists()


def test_coordinators_run_their_own_province_only(seeded):
    coordinator = CoordinatorFactory(province=province("01")).user
    facility_coordinator = CoordinatorFactory(
        province=None, facility=ClinicianProfile.objects.first().facility
    ).user

    with pytest.raises(AccessDenied):
        _start(coordinator)  # the whole country
    with pytest.raises(AccessDenied):
        _start(coordinator, Province.objects.get(code="79"))
    with pytest.raises(AccessDenied):
        _start(facility_coordinator, Province.objects.get(code="01"))


def test_reviewed_proposals_are_applied_as_requests(
    seeded, admin, celery_eager, django_capture_on_commit_callbacks
):
    # given a finished run, with two proposals rejected and the rest accepted
    run = _start(admin)
    tasks.assignment_run_execute(run.pk)
    rejected = list(run.proposals.order_by("pk").values_list("pk", flat=True)[:2])
    services.check_proposals_review(
        user=admin, run_id=run.pk, decision="reject", proposal_ids=rejected
    )
    services.check_proposals_review(user=admin, run_id=run.pk, decision="accept")

    # when the administrator applies them (a task, after commit)
    with django_capture_on_commit_callbacks(execute=True):
        services.check_assignment_apply(user=admin, run_id=run.pk)
    run.refresh_from_db()

    # then every accepted proposal became a request through the normal service
    assert run.state == AssignmentRun.State.APPLIED
    applied = run.proposals.filter(status=AssignmentProposal.Status.APPLIED)
    assert applied.count() == run.assigned - 2
    requests = Mentorship.objects.filter(source=Mentorship.Source.AUTO)
    assert requests.count() == run.assigned - 2
    assert set(requests.values_list("state", flat=True)) == {Mentorship.State.REQUESTED}
    assert requests.first().requested_by == admin
    assert not requests.filter(
        mentee__in=run.proposals.filter(pk__in=rejected).values("mentee")
    ).exists()
    # and applying again changes nothing
    services.do_assignment_apply(run_id=run.pk, applied_by_id=admin.pk)
    assert Mentorship.objects.filter(source=Mentorship.Source.AUTO).count() == run.assigned - 2


def test_a_proposal_overtaken_by_events_is_skipped_with_the_reason(seeded, admin, celery_eager):
    run = _start(admin)
    tasks.assignment_run_execute(run.pk)
    proposal = run.proposals.order_by("pk").first()
    # meanwhile the mentee asked that same mentor themself
    services.do_mentorship_request(
        mentor=proposal.mentor, mentee=proposal.mentee, requested_by=proposal.mentee.user
    )
    services.check_proposals_review(
        user=admin, run_id=run.pk, decision="accept", proposal_ids=[proposal.pk]
    )
    AssignmentRun.objects.filter(pk=run.pk).update(state=AssignmentRun.State.APPLYING)

    services.do_assignment_apply(run_id=run.pk, applied_by_id=admin.pk)

    proposal.refresh_from_db()
    assert proposal.status == AssignmentProposal.Status.SKIPPED
    assert proposal.note


def test_a_run_of_another_province_is_invisible(seeded, celery_eager):
    hanoi_coordinator = CoordinatorFactory(province=province("01")).user
    saigon_coordinator = CoordinatorFactory(province=province("79")).user
    run = _start(hanoi_coordinator, province("01"))

    with pytest.raises(NotFound):
        services.check_proposals_review(user=saigon_coordinator, run_id=run.pk, decision="accept")


def test_progress_is_published_on_the_runs_topic(seeded, admin, celery_eager, monkeypatch):
    events: list[tuple[str, str, dict]] = []
    monkeypatch.setattr(
        services,
        "publish_topic_event_on_commit",
        lambda topic, *, name, data: events.append((topic, name, data)),
    )
    run = _start(admin)

    tasks.assignment_run_execute(run.pk)

    progress = [d["progress"] for topic, name, d in events if topic == f"network.run.{run.pk}"]
    assert progress == sorted(progress) and progress[-1] == 100
    assert {d["stage"] for _, _, d in events} >= {"read", "arcs", "solve", "greedy", "done"}


def test_a_failing_run_says_so(seeded, admin, celery_eager, monkeypatch):
    def broken(**kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("solver exploded")

    monkeypatch.setattr(services.matching, "build_arcs", broken)
    run = _start(admin)

    with pytest.raises(RuntimeError):
        tasks.assignment_run_execute(run.pk)

    run.refresh_from_db()
    assert run.state == AssignmentRun.State.FAILED
    assert "solver exploded" in run.error


def test_the_problem_is_read_as_arrays(seeded):
    problem = services.read_problem(policy=policy_active(), province_id=None)

    assert len(problem.mentee_ids) == ClinicianProfile.objects.filter(facility__level__gt=1).count()
    assert (
        problem.places.free.sum()
        == 10 * ClinicianProfile.objects.filter(facility__level=1, kind="doctor").count()
    )
    assert problem.mentees.needs.dtype == np.uint64 and (problem.mentees.needs != 0).all()


def test_a_run_puts_facilities_that_exchange_referrals_on_the_referral_line(admin, celery_eager):
    from datetime import timedelta

    from django.utils import timezone

    from scheduler.models import Referral
    from telehealth.models import FacilityLevel
    from tests.factories import FacilityFactory, PatientFactory, UserFactory, specialty
    from tests.network.conftest import clinician

    # given a district cardiologist 22 km from one central cardiologist and 33 km from
    # another, whose hospital the district centre refers patients to
    where = province("01")
    centre = FacilityFactory(
        level=FacilityLevel.DISTRICT, province=where, latitude=21.2, longitude=105.8
    )
    near = FacilityFactory(
        level=FacilityLevel.CENTRAL, province=where, latitude=21.0, longitude=105.8
    )
    far = FacilityFactory(
        level=FacilityLevel.CENTRAL, province=where, latitude=21.5, longitude=105.8
    )
    mentee = clinician(FacilityLevel.DISTRICT, facility=centre, specialties=("cardiology",))
    clinician(FacilityLevel.CENTRAL, facility=near, specialties=("cardiology",))
    partner = clinician(FacilityLevel.CENTRAL, facility=far, specialties=("cardiology",))
    sent = timezone.now() - timedelta(days=20)
    Referral.objects.bulk_create(
        Referral(
            patient=PatientFactory(),
            requester=UserFactory(),
            requesting_facility=centre,
            target_facility=far,
            specialty=specialty("cardiology"),
            reason="x",
            status=Referral.Status.COMPLETED,
            requested_at=sent,
            created_at=sent,
        )
        for _ in range(2)
    )

    run = _start(admin)
    tasks.assignment_run_execute(run.pk)

    proposal = AssignmentProposal.objects.get(run=run, mentee=mentee)
    assert proposal.mentor_id == partner.pk and proposal.on_referral_line


def test_runs_whose_task_was_lost_are_run_by_the_sweeper(seeded, admin, celery_eager):
    # given a run created while the broker was away (its task never sent), one whose
    # worker died mid-run, one just created and one running now
    from datetime import timedelta

    from django.utils import timezone

    lost, dead, fresh, running = (_start(admin) for _ in range(4))
    long_ago = timezone.now() - timedelta(hours=1)
    AssignmentRun.objects.filter(pk=lost.pk).update(created_at=long_ago)
    AssignmentRun.objects.filter(pk=dead.pk).update(
        created_at=long_ago, state=AssignmentRun.State.RUNNING, started_at=long_ago
    )
    AssignmentRun.objects.filter(pk=running.pk).update(
        created_at=long_ago, state=AssignmentRun.State.RUNNING, started_at=timezone.now()
    )
    # when the sweeper runs (beat, every minute)
    swept = tasks.assignment_runs_sweep()
    # then the lost and the dead runs were run, once each; the others are left alone
    assert sorted(swept) == sorted([lost.pk, dead.pk])
    states = dict(AssignmentRun.objects.values_list("pk", "state"))
    assert states[lost.pk] == states[dead.pk] == AssignmentRun.State.PROPOSED
    assert states[fresh.pk] == AssignmentRun.State.QUEUED
    assert states[running.pk] == AssignmentRun.State.RUNNING
    assert tasks.assignment_runs_sweep() == []


def _accepted_and_applying(admin):  # type: ignore[no-untyped-def]
    """A finished run with every proposal accepted, marked applying by ``admin``."""
    run = _start(admin)
    tasks.assignment_run_execute(run.pk)
    services.check_proposals_review(user=admin, run_id=run.pk, decision="accept")
    services.check_assignment_apply(user=admin, run_id=run.pk)  # its task: not sent
    run.refresh_from_db()
    return run


def test_a_run_whose_apply_task_was_lost_is_applied_by_the_sweeper(seeded, admin, celery_eager):
    # given a run being applied whose apply task was lost (never sent: no on-commit here)
    from datetime import timedelta

    from django.utils import timezone

    run = _accepted_and_applying(admin)
    assert run.state == AssignmentRun.State.APPLYING and run.applied_by == admin
    # when the sweeper runs within the grace period, it waits for the task
    assert services.do_assignment_runs_sweep() == []
    # and after it, it sends the task again, which applies every proposal in the name
    # of the person who asked
    later = timezone.now() + timedelta(seconds=services.QUEUED_RUN_GRACE_SECONDS + 1)
    assert services.do_assignment_runs_sweep(now=later) == [run.pk]
    run.refresh_from_db()
    assert run.state == AssignmentRun.State.APPLIED
    requests = Mentorship.objects.filter(source=Mentorship.Source.AUTO)
    assert requests.count() == run.assigned > 0
    assert set(requests.values_list("requested_by", flat=True)) == {admin.pk}
    assert services.do_assignment_runs_sweep(now=later) == []


def test_an_apply_task_that_keeps_dying_is_sent_a_few_times_then_left_with_why(
    seeded, admin, celery_eager, monkeypatch
):
    from datetime import timedelta

    from django.utils import timezone

    # given a run being applied whose every apply task dies without a trace
    run = _accepted_and_applying(admin)
    sent = []
    monkeypatch.setattr(tasks.assignment_run_apply, "delay", lambda *a: sent.append(a))
    grace = timedelta(seconds=services.QUEUED_RUN_GRACE_SECONDS + 1)
    # when the sweeper runs, minute after minute
    swept = [
        services.do_assignment_runs_sweep(now=timezone.now() + grace * (n + 1))
        for n in range(services.MAX_APPLY_RESENDS + 2)
    ]
    # then the task went out a few times, then the run says why it stopped
    resent = services.MAX_APPLY_RESENDS - 1
    assert swept == [[run.pk]] * resent + [[]] * 3
    assert sent == [(run.pk, admin.pk)] * resent
    run.refresh_from_db()
    assert run.state == AssignmentRun.State.APPLYING and "applying stopped" in run.error


def test_two_apply_tasks_of_one_run_send_each_request_once(
    seeded, admin, celery_eager, monkeypatch
):
    # given a run being applied, and a second apply task of it (the sweeper's) that
    # does all the work after the first has read its list of accepted proposals
    run = _accepted_and_applying(admin)
    seen = services._applying_seen

    def the_other_task_runs_now(run_id: int) -> None:
        monkeypatch.setattr(services, "_applying_seen", seen)
        services.do_assignment_apply(run_id=run_id, applied_by_id=admin.pk)

    monkeypatch.setattr(services, "_applying_seen", the_other_task_runs_now)
    # when the first task goes on with its list
    services.do_assignment_apply(run_id=run.pk, applied_by_id=admin.pk)
    # then every proposal was applied once: none sent twice, none marked skipped
    statuses = Counter(run.proposals.values_list("status", flat=True))
    assert statuses == {AssignmentProposal.Status.APPLIED: run.assigned}
    assert Mentorship.objects.filter(source=Mentorship.Source.AUTO).count() == run.assigned


def test_a_run_started_while_the_broker_is_down_is_created_and_swept_up_later(
    seeded, admin, monkeypatch, celery_eager, django_capture_on_commit_callbacks
):
    # given a broker that refuses the task
    from kombu.exceptions import OperationalError

    def refuse(*args, **kwargs):
        raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(tasks.assignment_run_execute, "delay", refuse)
    # when a coordinator starts a run
    with django_capture_on_commit_callbacks(execute=True):
        run = _start(admin)
    # then it is stored, queued, and the sweeper's to run once the broker is back
    run.refresh_from_db()
    assert run.state == AssignmentRun.State.QUEUED
    monkeypatch.undo()
    from datetime import timedelta

    from django.utils import timezone

    later = timezone.now() + timedelta(seconds=services.QUEUED_RUN_GRACE_SECONDS + 1)
    assert services.do_assignment_runs_sweep(now=later) == [run.pk]
    run.refresh_from_db()
    assert run.state == AssignmentRun.State.PROPOSED
