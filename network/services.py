"""Every write of the doctor network. The API, the pages' API calls and the tasks call these.

``check_*`` functions validate what a person asked for (who they are, what they
may do) and then call the matching ``do_*``, which changes state atomically and
re-checks, under the right lock, whatever a concurrent writer could change.
Live notifications are sent after commit (``telehealth.realtime``).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any

import numpy as np
from django.db import IntegrityError, connection, transaction
from django.db.models import Count
from django.utils import timezone
from django.utils.translation import gettext as _

from consult import services as consult_services
from consult.models import Participant, Thread
from network import matching
from network.models import (
    AssignmentProposal,
    AssignmentRun,
    CaseConference,
    MentoringPolicy,
    Mentorship,
    MentorshipEvent,
    PolicyQuota,
)
from network.selectors import (
    GENERALIST_SPECIALTIES,
    Policy,
    clinician_of,
    coordinator_scope,
    may_mentor,
    policy_active,
    referral_link_pairs,
    responder_id,
)
from telehealth.dispatch import send_task_on_commit
from telehealth.errors import AccessDenied, Conflict, DomainError, NotFound
from telehealth.models import (
    ClinicianProfile,
    Facility,
    FacilityLevel,
    PatientProfile,
    Province,
    Specialty,
    User,
)
from telehealth.realtime import notify_user_on_commit, publish_topic_event_on_commit
from telehealth.selectors import patient_access_basis

logger = logging.getLogger(__name__)

ACCEPTED = Mentorship.State.ACCEPTED
REQUESTED = Mentorship.State.REQUESTED


def run_topic(run_id: int) -> str:
    return f"network.run.{run_id}"


# --- Events -----------------------------------------------------------------------------


def _party(clinician: ClinicianProfile) -> dict[str, Any]:
    return {
        "id": clinician.user_id,
        "name": clinician.user.display_name,
        "facility": clinician.facility.name,
        "level": clinician.facility.level,
    }


def _notify(mentorship: Mentorship, name: str, user_ids: Iterable[int]) -> None:
    data = {
        "mentorship": mentorship.pk,
        "state": mentorship.state,
        "mentor": _party(mentorship.mentor),
        "mentee": _party(mentorship.mentee),
        "thread": mentorship.thread_id,
        "end_reason": mentorship.end_reason,
    }
    for user_id in sorted(set(user_ids)):
        notify_user_on_commit(user_id, name=name, data=data)


def _record(mentorship: Mentorship, actor: User | None, note: str = "") -> None:
    MentorshipEvent.objects.create(
        mentorship=mentorship, actor=actor, state=mentorship.state, note=note[:500]
    )


def _locked(mentorship_id: int) -> Mentorship:
    mentorship = (
        Mentorship.objects.select_for_update(of=("self",))
        .select_related("mentor__user", "mentor__facility", "mentee__user", "mentee__facility")
        .filter(pk=mentorship_id)
        .first()
    )
    if mentorship is None:
        raise NotFound(_("No such mentorship."))
    return mentorship


# --- Requests ---------------------------------------------------------------------------


def _accepted_count(*, mentor_id: int, mentee_level: int) -> int:
    return Mentorship.objects.filter(
        mentor_id=mentor_id, mentee_level=mentee_level, state=ACCEPTED
    ).count()


def _check_pair(policy: Policy, mentor: ClinicianProfile, mentee: ClinicianProfile) -> int:
    """The quota the policy gives this pair; refuses pairs it does not allow."""
    if mentor.pk == mentee.pk:
        raise DomainError(_("Nobody can mentor themself."), code="self_mentoring")
    if not (mentor.user.is_active and mentee.user.is_active):
        raise DomainError(_("This account is not active."), code="inactive_user")
    if mentor.kind != ClinicianProfile.Kind.DOCTOR:
        raise DomainError(_("Only doctors can be mentors."), code="not_allowed")
    quota = policy.quota(mentor_level=mentor.facility.level, mentee_level=mentee.facility.level)
    if quota <= 0:
        raise DomainError(
            _("The mentoring policy does not let %(mentor)s staff mentor %(mentee)s staff.")
            % {
                "mentor": FacilityLevel(mentor.facility.level).label,
                "mentee": FacilityLevel(mentee.facility.level).label,
            },
            code="not_allowed",
        )
    return quota


def check_mentorship_request(
    *,
    user: User,
    mentor_user_id: int | None = None,
    mentee_user_id: int | None = None,
    message: str = "",
    source: str = Mentorship.Source.DIRECT,
) -> Mentorship:
    """A clinician asks another to be their mentor (``mentor_user_id``) or their
    mentee (``mentee_user_id``). Exactly one of the two is given."""
    if (mentor_user_id is None) == (mentee_user_id is None):
        raise DomainError(
            _("Name either a mentor or a mentee."),
            code="invalid",
            fields={"mentor": [_("Either this…")], "mentee": [_("…or this.")]},
        )
    if source not in (Mentorship.Source.DIRECT, Mentorship.Source.SUGGESTION):
        raise DomainError(_("Unknown source."), code="invalid", fields={"source": ["?"]})
    me = clinician_of(user)
    if me is None:
        raise AccessDenied(_("Only doctors and health workers have a network."))
    other_id = mentor_user_id if mentor_user_id is not None else mentee_user_id
    other = (
        ClinicianProfile.objects.select_related("user", "facility")
        .filter(user_id=other_id, user__is_active=True)
        .first()
    )
    if other is None:
        raise NotFound(_("No such doctor or health worker."))
    mentor, mentee = (other, me) if mentor_user_id is not None else (me, other)
    return do_mentorship_request(
        mentor=mentor, mentee=mentee, requested_by=user, message=message, source=source
    )


def do_mentorship_request(
    *,
    mentor: ClinicianProfile,
    mentee: ClinicianProfile,
    requested_by: User,
    message: str = "",
    source: str = Mentorship.Source.DIRECT,
) -> Mentorship:
    """Create a request between ``mentor`` and ``mentee``.

    Guarantees: the policy allows the pair; there is at most one live (requested or
    accepted) link per pair (a unique constraint, so racing requests make one); a
    mentor whose places for the mentee's level are all taken is refused at once.
    A request holds no place: the quota is enforced when it is accepted.
    Emits ``mentorship.requested`` to both parties after commit.
    """
    policy = policy_active()
    quota = _check_pair(policy, mentor, mentee)
    level = mentee.facility.level
    with transaction.atomic():
        if Mentorship.objects.filter(
            mentor=mentor, mentee=mentee, state__in=Mentorship.LIVE_STATES
        ).exists():
            raise Conflict(
                _("You are already linked, or a request is waiting."), code="already_linked"
            )
        if _accepted_count(mentor_id=mentor.pk, mentee_level=level) >= quota:
            raise Conflict(
                _("%(name)s has no free place for %(level)s staff.")
                % {"name": mentor.user.display_name, "level": FacilityLevel(level).label},
                code="quota_full",
            )
        try:
            with transaction.atomic():
                mentorship = Mentorship.objects.create(
                    mentor=mentor,
                    mentee=mentee,
                    mentee_level=level,
                    requested_by=requested_by,
                    message=message[:500],
                    source=source,
                )
        except IntegrityError:
            raise Conflict(
                _("You are already linked, or a request is waiting."), code="already_linked"
            ) from None
        _record(mentorship, requested_by, message)
        _notify(mentorship, "mentorship.requested", [mentor.user_id, mentee.user_id])
    return mentorship


def _party_ids(mentorship: Mentorship) -> tuple[int, int]:
    return mentorship.mentor.user_id, mentorship.mentee.user_id


def check_mentorship_answer(
    *, user: User, mentorship_id: int, accept: bool, note: str = ""
) -> Mentorship:
    """The person a request waits for accepts or declines it."""
    mentorship = (
        Mentorship.objects.select_related("mentor", "mentee").filter(pk=mentorship_id).first()
    )
    if mentorship is None or user.pk not in _party_ids(mentorship):
        raise NotFound(_("No such mentorship."))
    if mentorship.state == REQUESTED and responder_id(mentorship) != user.pk:
        raise AccessDenied(_("This request waits for the other person's answer."))
    if accept:
        return do_mentorship_accept(mentorship_id=mentorship_id, accepted_by=user)
    return do_mentorship_decline(mentorship_id=mentorship_id, declined_by=user, note=note)


def do_mentorship_accept(*, mentorship_id: int, accepted_by: User | None) -> Mentorship:
    """Accept a request and open the pair's conversation thread.

    Guarantees: a mentor never holds more accepted mentees of a level than the
    policy's quota through acceptances, even when two race for the last place: the
    mentor's clinician row is locked (``SELECT … FOR NO KEY UPDATE``) and the
    accepted mentorships of that level are counted inside the lock, so the second
    acceptance waits, counts the first, and is refused (``Conflict``, code
    ``quota_full``). Idempotent: accepting an accepted request returns it.
    Emits ``mentorship.accepted`` to both parties after commit.
    """
    with transaction.atomic():
        mentorship = _locked(mentorship_id)
        if mentorship.state == ACCEPTED:
            return mentorship
        if mentorship.state != REQUESTED:
            raise Conflict(_("This request is no longer waiting."), code="not_pending")
        lock_mentor(mentor_id=mentorship.mentor_id)
        policy = policy_active()
        quota = policy.quota(
            mentor_level=mentorship.mentor.facility.level, mentee_level=mentorship.mentee_level
        )
        used = count_accepted_in_lock(
            mentor_id=mentorship.mentor_id, mentee_level=mentorship.mentee_level
        )
        if used >= quota:
            raise Conflict(
                _("%(name)s has no free place for %(level)s staff.")
                % {
                    "name": mentorship.mentor.user.display_name,
                    "level": FacilityLevel(mentorship.mentee_level).label,
                },
                code="quota_full",
            )
        now = timezone.now()
        mentorship.state = ACCEPTED
        mentorship.responded_at = now
        mentorship.thread = consult_services.thread_open(
            kind=Thread.Kind.MENTORSHIP,
            created_by=mentorship.mentor.user,
            participants=[
                (mentorship.mentor.user, Participant.Role.MENTOR),
                (mentorship.mentee.user, Participant.Role.MENTEE),
            ],
            subject=_("Mentoring: %(mentor)s and %(mentee)s")
            % {
                "mentor": mentorship.mentor.user.display_name,
                "mentee": mentorship.mentee.user.display_name,
            },
            context=f"network.mentorship:{mentorship.pk}",
        )
        mentorship.save(update_fields=["state", "responded_at", "thread"])
        _record(mentorship, accepted_by)
        _notify(mentorship, "mentorship.accepted", _party_ids(mentorship))
    return mentorship


def lock_mentor(*, mentor_id: int) -> None:
    """The lock that serialises every acceptance for one mentor: their clinician row,
    ``FOR NO KEY UPDATE`` (other readers and foreign keys to the row are not blocked).
    Hold it until the transaction ends. SQLite serialises writers by itself."""
    ClinicianProfile.objects.select_for_update(no_key=True).filter(pk=mentor_id).values_list(
        "pk", flat=True
    ).first()


def count_accepted_in_lock(*, mentor_id: int, mentee_level: int) -> int:
    """Accepted mentees of a level; call only while holding the mentor's lock."""
    return _accepted_count(mentor_id=mentor_id, mentee_level=mentee_level)


def do_mentorship_decline(
    *, mentorship_id: int, declined_by: User | None, note: str = ""
) -> Mentorship:
    """Decline a waiting request. Idempotent. Emits ``mentorship.declined`` to both."""
    with transaction.atomic():
        mentorship = _locked(mentorship_id)
        if mentorship.state == Mentorship.State.DECLINED:
            return mentorship
        if mentorship.state != REQUESTED:
            raise Conflict(_("This request is no longer waiting."), code="not_pending")
        mentorship.state = Mentorship.State.DECLINED
        mentorship.responded_at = timezone.now()
        mentorship.end_note = note[:500]
        mentorship.save(update_fields=["state", "responded_at", "end_note"])
        _record(mentorship, declined_by, note)
        _notify(mentorship, "mentorship.declined", _party_ids(mentorship))
    return mentorship


def check_mentorship_end(
    *, user: User, mentorship_id: int, reason: str, note: str = ""
) -> Mentorship:
    """Either party ends an accepted mentorship; the requester withdraws a waiting request."""
    if reason not in Mentorship.EndReason.values:
        raise DomainError(
            _("Choose why it ends."), code="invalid", fields={"reason": [_("Unknown reason.")]}
        )
    mentorship = (
        Mentorship.objects.select_related("mentor", "mentee").filter(pk=mentorship_id).first()
    )
    if mentorship is None or user.pk not in _party_ids(mentorship):
        raise NotFound(_("No such mentorship."))
    if mentorship.state == REQUESTED and responder_id(mentorship) == user.pk:
        raise DomainError(_("Decline the request instead."), code="decline_instead")
    return do_mentorship_end(mentorship_id=mentorship_id, ended_by=user, reason=reason, note=note)


def do_mentorship_end(
    *, mentorship_id: int, ended_by: User | None, reason: str, note: str = ""
) -> Mentorship:
    """End a live mentorship with a reason; its thread closes (history stays readable).

    Idempotent. Emits ``mentorship.ended`` to both parties after commit.
    """
    with transaction.atomic():
        mentorship = _locked(mentorship_id)
        if mentorship.state == Mentorship.State.ENDED:
            return mentorship
        if not mentorship.is_live:
            raise Conflict(_("This mentorship is not active."), code="not_live")
        mentorship.state = Mentorship.State.ENDED
        mentorship.ended_at = timezone.now()
        mentorship.ended_by = ended_by
        mentorship.end_reason = reason
        mentorship.end_note = note[:500]
        mentorship.save(update_fields=["state", "ended_at", "ended_by", "end_reason", "end_note"])
        if mentorship.thread_id is not None:
            consult_services.thread_close(thread_id=mentorship.thread_id, closed_by=None)
        _record(mentorship, ended_by, f"{reason}: {note}" if note else reason)
        _notify(mentorship, "mentorship.ended", _party_ids(mentorship))
    return mentorship


def do_mentorship_requests_expire(*, older_than_days: int = 30) -> int:
    """End requests nobody answered within ``older_than_days`` (reason ``expired``).
    Idempotent; returns how many ended."""
    cutoff = timezone.now() - timedelta(days=older_than_days)
    ids = list(
        Mentorship.objects.filter(state=REQUESTED, requested_at__lt=cutoff).values_list(
            "pk", flat=True
        )
    )
    ended = 0
    for mentorship_id in ids:
        try:
            do_mentorship_end(
                mentorship_id=mentorship_id,
                ended_by=None,
                reason=Mentorship.EndReason.EXPIRED,
            )
            ended += 1
        except Conflict:
            continue  # answered meanwhile
    return ended


# --- Policy -----------------------------------------------------------------------------


def check_policy_replace(
    *,
    user: User,
    name: str,
    quotas: dict[tuple[int, int], int],
    max_distance_km: int,
    note: str = "",
) -> MentoringPolicy:
    """Administrators replace the national policy."""
    if not (user.is_authenticated and user.is_staff):
        raise AccessDenied(_("Only administrators can change the mentoring policy."))
    fields: dict[str, list[str]] = {}
    for (mentor_level, mentee_level), quota in quotas.items():
        if mentor_level not in FacilityLevel.values or mentee_level not in FacilityLevel.values:
            fields["quotas"] = [_("Levels are 1 (central) to 4 (commune).")]
        elif mentor_level >= mentee_level:
            fields["quotas"] = [_("A mentor's level must be above the mentee's.")]
        elif not 0 <= quota <= 100:
            fields["quotas"] = [_("A quota is between 0 and 100.")]
    if not 1 <= max_distance_km <= 3000:
        fields["max_distance_km"] = [_("Between 1 and 3,000 km.")]
    if fields:
        raise DomainError(_("The policy has invalid fields."), code="invalid", fields=fields)
    return do_policy_replace(
        name=name, quotas=quotas, max_distance_km=max_distance_km, created_by=user, note=note
    )


@transaction.atomic
def do_policy_replace(
    *,
    name: str,
    quotas: dict[tuple[int, int], int],
    max_distance_km: int,
    created_by: User | None,
    note: str = "",
) -> MentoringPolicy:
    """Store a new policy and make it the active one; the old one stays as history.

    Existing mentorships are not touched: mentors above a lowered quota show as over
    quota in the coverage report and simply take nobody new.
    """
    MentoringPolicy.objects.select_for_update().filter(is_active=True).update(is_active=False)
    policy = MentoringPolicy.objects.create(
        name=name[:120] or _("Mentoring policy"),
        is_active=True,
        max_distance_km=max_distance_km,
        note=note[:255],
        created_by=created_by,
    )
    PolicyQuota.objects.bulk_create(
        [
            PolicyQuota(policy=policy, mentor_level=a, mentee_level=b, quota=q)
            for (a, b), q in sorted(quotas.items())
            if q > 0
        ]
    )
    return policy


# --- Case conferences -------------------------------------------------------------------


def check_case_conference_open(
    *,
    user: User,
    subject: str,
    mentee_user_ids: Iterable[int],
    colleague_user_ids: Iterable[int] = (),
    patient: PatientProfile | None = None,
) -> CaseConference:
    """A mentor opens a case conference with some of their mentees and colleagues.

    Mentees must be the mentor's current mentees; colleagues must be doctors. A
    patient may be attached only if the mentor may see that patient (the caller has
    read them through ``patient_get_for_user``; checked again here). Everyone in the
    thread then may see the patient while they stay in it.
    """
    policy = policy_active()
    me = clinician_of(user)
    if me is None or not may_mentor(policy, me):
        raise AccessDenied(_("Only mentors can open a case conference."))
    mentee_ids = set(mentee_user_ids) - {user.pk}
    colleague_ids = set(colleague_user_ids) - {user.pk} - mentee_ids
    if not mentee_ids:
        raise DomainError(
            _("Invite at least one of your mentees."),
            code="invalid",
            fields={"mentee_ids": [_("Required.")]},
        )
    mine = set(
        Mentorship.objects.filter(
            mentor=me, state=ACCEPTED, mentee__user_id__in=mentee_ids
        ).values_list("mentee__user_id", flat=True)
    )
    if mine != mentee_ids:
        raise DomainError(
            _("Some of these people are not your mentees."),
            code="invalid",
            fields={"mentee_ids": [str(pk) for pk in sorted(mentee_ids - mine)]},
        )
    colleagues = list(
        User.objects.filter(
            pk__in=colleague_ids,
            is_active=True,
            clinician_profile__kind=ClinicianProfile.Kind.DOCTOR,
        )
    )
    if len(colleagues) != len(colleague_ids):
        found = {c.pk for c in colleagues}
        raise DomainError(
            _("Colleagues must be doctors."),
            code="invalid",
            fields={"colleague_ids": [str(pk) for pk in sorted(colleague_ids - found)]},
        )
    if patient is not None and patient_access_basis(user=user, patient=patient) is None:
        raise NotFound(_("No such patient."))
    if not subject.strip():
        raise DomainError(
            _("Give the case a subject."), code="invalid", fields={"subject": [_("Required.")]}
        )
    mentees = list(User.objects.filter(pk__in=mentee_ids))
    return do_case_conference_open(
        organiser=user,
        subject=subject.strip(),
        participants=[(u, Participant.Role.MENTEE) for u in mentees]
        + [(u, Participant.Role.DOCTOR) for u in colleagues],
        patient=patient,
    )


@transaction.atomic
def do_case_conference_open(
    *,
    organiser: User,
    subject: str,
    participants: list[tuple[User, str]],
    patient: PatientProfile | None,
) -> CaseConference:
    conference = CaseConference.objects.create(
        organiser=organiser, subject=subject[:200], patient=patient
    )
    conference.thread = consult_services.thread_open(
        kind=Thread.Kind.CASE_CONFERENCE,
        created_by=organiser,
        participants=[(organiser, Participant.Role.MENTOR), *participants],
        subject=subject,
        context=f"network.case_conference:{conference.pk}",
        patient=patient,
    )
    conference.save(update_fields=["thread"])
    data = {"conference": conference.pk, "thread": conference.thread_id, "subject": subject}
    for user, _role in participants:
        notify_user_on_commit(user.pk, name="case_conference.invited", data=data)
    return conference


def _conference_as_organiser(user: User, conference_id: int) -> CaseConference:
    conference = CaseConference.objects.select_for_update().filter(pk=conference_id).first()
    if conference is None or conference.organiser_id != user.pk:
        raise NotFound(_("No such case conference."))
    if conference.state != CaseConference.State.OPEN:
        raise Conflict(_("This case conference has ended."), code="concluded")
    return conference


def check_case_conference_present(
    *, user: User, conference_id: int, body: str, attachment_ids: list[str], client_id: str
) -> CaseConference:
    """The organiser posts the case presentation (text and files uploaded to the thread)."""
    with transaction.atomic():
        conference = _conference_as_organiser(user, conference_id)
        consult_services.message_send(
            user=user,
            thread_id=conference.thread_id,
            client_id=client_id,
            body=body,
            attachment_ids=attachment_ids,
        )
        if conference.presented_at is None:
            conference.presented_at = timezone.now()
            conference.save(update_fields=["presented_at"])
    return conference


def check_case_conference_invite(
    *, user: User, conference_id: int, user_ids: Iterable[int]
) -> CaseConference:
    """The organiser invites more doctors or mentees into the conference."""
    with transaction.atomic():
        conference = _conference_as_organiser(user, conference_id)
        people = list(
            User.objects.filter(pk__in=set(user_ids), is_active=True).select_related(
                "clinician_profile"
            )
        )
        for person in people:
            clinician = getattr(person, "clinician_profile", None)
            if clinician is None:
                raise DomainError(
                    _("%(name)s cannot join this conversation.") % {"name": person.display_name},
                    code="invalid",
                    fields={"user_ids": [str(person.pk)]},
                )
            consult_services.thread_participant_add(
                thread_id=conference.thread_id,
                user=person,
                role=Participant.Role.DOCTOR
                if clinician.kind == ClinicianProfile.Kind.DOCTOR
                else Participant.Role.HEALTH_WORKER,
                added_by=user,
            )
            notify_user_on_commit(
                person.pk,
                name="case_conference.invited",
                data={
                    "conference": conference.pk,
                    "thread": conference.thread_id,
                    "subject": conference.subject,
                },
            )
    return conference


def check_case_conference_conclude(
    *, user: User, conference_id: int, recommendations: str, client_id: str
) -> CaseConference:
    """The organiser records the recommendations; they are posted to the thread, which
    then closes (its history stays readable to the participants)."""
    if not recommendations.strip():
        raise DomainError(
            _("Write the recommendations."),
            code="invalid",
            fields={"recommendations": [_("Required.")]},
        )
    with transaction.atomic():
        conference = _conference_as_organiser(user, conference_id)
        consult_services.message_send(
            user=user,
            thread_id=conference.thread_id,
            client_id=client_id,
            body=_("Recommendations: %(text)s") % {"text": recommendations.strip()},
        )
        conference.state = CaseConference.State.CONCLUDED
        conference.recommendations = recommendations.strip()
        conference.concluded_at = timezone.now()
        conference.save(update_fields=["state", "recommendations", "concluded_at"])
        consult_services.thread_close(thread_id=conference.thread_id, closed_by=None)
    return conference


# --- Auto-assignment ----------------------------------------------------------------------------


def check_assignment_run_create(
    *, user: User, province: Province | None, max_distance_km: int | None = None
) -> AssignmentRun:
    """A coordinator asks for an optimisation of their province (staff: of the country)."""
    scope = coordinator_scope(user=user)
    if not scope.may_manage(province.pk if province else None):
        raise AccessDenied(
            _("Only administrators can run the whole country.")
            if province is None
            else _("This province is outside your scope.")
        )
    if max_distance_km is not None and not 10 <= max_distance_km <= 3000:
        raise DomainError(
            _("Between 10 and 3,000 km."), code="invalid", fields={"max_distance_km": ["10–3000"]}
        )
    return do_assignment_run_create(
        created_by=user, province=province, max_distance_km=max_distance_km
    )


@transaction.atomic
def do_assignment_run_create(
    *, created_by: User, province: Province | None, max_distance_km: int | None = None
) -> AssignmentRun:
    """Store a queued run and start its task after commit."""
    from network.tasks import assignment_run_execute

    policy = policy_active()
    run = AssignmentRun.objects.create(
        province=province,
        policy_id=policy.id,
        max_distance_km=max_distance_km or policy.max_distance_km,
        created_by=created_by,
    )

    # With the broker down the run stays queued: the sweeper (assignment_runs_sweep,
    # every minute) sends its task once the broker is back.
    send_task_on_commit(
        assignment_run_execute, run.pk, what=f"task of auto-assignment run {run.pk}"
    )
    return run


#: A run "running" this long without finishing has a dead worker: it may be claimed again.
STALE_RUN_SECONDS = 15 * 60
#: A run still queued after this long lost its task (the broker was away when it was
#: created, or the message was lost); the sweeper sends it again.
QUEUED_RUN_GRACE_SECONDS = 120
#: An apply task that keeps dying (an error, not a lost message) is sent this many
#: times in all; then the run says why it stopped and the sweeper leaves it.
MAX_APPLY_RESENDS = 5


def do_assignment_runs_sweep(*, now: Any = None) -> list[int]:
    """Send again the task of runs that never ran: queued for longer than the grace
    period, or running with a worker that died (``STALE_RUN_SECONDS``). Executing is
    idempotent (``_claim``), so a run whose message was only slow runs once. Runs
    being applied whose apply task has not been seen for the grace period get theirs
    again (applying is idempotent per proposal). Beat: every minute."""
    from django.db.models import Q

    from network.tasks import assignment_run_apply, assignment_run_execute

    now = now or timezone.now()
    run_ids = list(
        AssignmentRun.objects.filter(
            Q(
                state=AssignmentRun.State.QUEUED,
                created_at__lt=now - timedelta(seconds=QUEUED_RUN_GRACE_SECONDS),
            )
            | Q(
                state=AssignmentRun.State.RUNNING,
                started_at__lt=now - timedelta(seconds=STALE_RUN_SECONDS),
            )
        )
        .order_by("created_at")
        .values_list("pk", flat=True)[:20]
    )
    for run_id in run_ids:
        logger.warning("auto-assignment run %s never ran: sending its task again", run_id)
        assignment_run_execute.delay(run_id)
    stalled = list(
        AssignmentRun.objects.filter(
            state=AssignmentRun.State.APPLYING, apply_resends__lt=MAX_APPLY_RESENDS
        )
        .filter(
            Q(applying_seen_at__isnull=True)
            | Q(applying_seen_at__lt=now - timedelta(seconds=QUEUED_RUN_GRACE_SECONDS))
        )
        .order_by("created_at")
        .values_list("pk", "applied_by_id", "created_by_id", "apply_resends")[:20]
    )
    for run_id, applied_by_id, created_by_id, resends in stalled:
        # Seen now: the next sweep leaves it to this task for the grace period.
        if resends + 1 == MAX_APPLY_RESENDS:
            AssignmentRun.objects.filter(pk=run_id).update(
                applying_seen_at=now,
                apply_resends=resends + 1,
                error=f"applying stopped: its task was sent {MAX_APPLY_RESENDS} times",
            )
            logger.error(
                "auto-assignment run %s: applying stopped after %s resends; look at the "
                "worker's log",
                run_id,
                resends,
            )
            continue
        logger.warning("auto-assignment run %s stopped applying: sending its task again", run_id)
        AssignmentRun.objects.filter(pk=run_id).update(
            applying_seen_at=now, apply_resends=resends + 1
        )
        assignment_run_apply.delay(run_id, applied_by_id or created_by_id)
    return run_ids + [row[0] for row in stalled if row[3] + 1 < MAX_APPLY_RESENDS]


def _progress(run_id: int, progress: int, stage: str, **fields: Any) -> None:
    AssignmentRun.objects.filter(pk=run_id).update(progress=progress, stage=stage, **fields)
    publish_topic_event_on_commit(
        run_topic(run_id),
        name="assignment.progress",
        data={"run": run_id, "progress": progress, "stage": stage, "state": fields.get("state")},
    )


def _claim(run_id: int) -> bool:
    """Move a queued run (or one whose worker died long ago) to running."""
    with transaction.atomic():
        run = AssignmentRun.objects.select_for_update().filter(pk=run_id).first()
        if run is None:
            return False
        stale = (
            run.state == AssignmentRun.State.RUNNING
            and run.started_at is not None
            and (timezone.now() - run.started_at).total_seconds() > STALE_RUN_SECONDS
        )
        if run.state != AssignmentRun.State.QUEUED and not stale:
            return False
        run.state = AssignmentRun.State.RUNNING
        run.started_at = timezone.now()
        run.save(update_fields=["state", "started_at"])
    return True


def do_assignment_run_execute(*, run_id: int) -> AssignmentRun | None:
    """Compute and store the optimal proposals of a run. Idempotent: a run that is not
    queued (already done, or running elsewhere) is left alone; the proposals are
    replaced and the run finished in one transaction.

    Reads the network into numpy arrays, builds the candidate arcs in batch
    (``network.matching``), solves the transportation problem with OR-Tools' min-cost
    flow and, on the same arcs, the greedy baseline, then stores the proposals with
    ``bulk_create``. Progress is saved and published on ``network.run.<id>``.
    """
    if not _claim(run_id):
        return None
    run = AssignmentRun.objects.get(pk=run_id)
    try:
        return _execute(run)
    except Exception as error:
        logger.exception("auto-assignment run %s failed", run_id)
        _progress(
            run_id,
            100,
            "failed",
            state=AssignmentRun.State.FAILED,
            error=str(error)[:500],
            finished_at=timezone.now(),
        )
        raise


def _execute(run: AssignmentRun) -> AssignmentRun:
    from telehealth.assignment import greedy_transportation, solve_transportation

    timings: dict[str, float] = {}
    started = time.perf_counter()
    clock = started
    policy = policy_active()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[name] = round(now - clock, 3)
        clock = now

    _progress(run.pk, 5, "read")
    problem = read_problem(policy=policy, province_id=run.province_id)
    lap("read")
    _progress(run.pk, 25, "arcs")
    arcs = matching.build_arcs(
        facilities=problem.facilities,
        mentees=problem.mentees,
        places=problem.places,
        max_distance_km=run.max_distance_km,
        n_specialties=problem.n_specialties,
    )
    lap("arcs")
    _progress(run.pk, 40, "solve")
    demand = np.ones(len(problem.mentee_ids), dtype=np.int64)
    solution = solve_transportation(
        demand=demand,
        supply=problem.places.free,
        arc_demand=arcs.mentee,
        arc_supply=arcs.place,
        arc_cost=arcs.cost,
        unmet_cost=matching.UNMET_COST,
    )
    lap("solve")
    _progress(run.pk, 70, "greedy")
    greedy = greedy_transportation(
        demand=demand,
        supply=problem.places.free,
        arc_demand=arcs.mentee,
        arc_supply=arcs.place,
        arc_cost=arcs.cost,
    )
    lap("greedy")
    _progress(run.pk, 85, "store")
    chosen = np.flatnonzero(solution.flow > 0)
    with transaction.atomic():
        locked = AssignmentRun.objects.select_for_update().get(pk=run.pk)
        if locked.state != AssignmentRun.State.RUNNING:
            return locked
        AssignmentProposal.objects.filter(run=locked).delete()
        _store_proposals(
            run_id=run.pk,
            rows=zip(
                problem.place_mentor_ids[arcs.place[chosen]].tolist(),
                problem.mentee_ids[arcs.mentee[chosen]].tolist(),
                problem.mentees.level[arcs.mentee[chosen]].tolist(),
                arcs.cost[chosen].tolist(),
                np.round(arcs.distance_km[chosen], 1).tolist(),
                arcs.specialty_match[chosen].tolist(),
                arcs.on_line[chosen].tolist(),
                strict=True,
            ),
        )
        lap("store")
        timings["total"] = round(time.perf_counter() - started, 3)
        locked.state = AssignmentRun.State.PROPOSED
        locked.progress = 100
        locked.stage = "done"
        locked.finished_at = timezone.now()
        locked.mentees = len(problem.mentee_ids)
        locked.mentors = len(set(problem.place_mentor_ids.tolist()))
        locked.places = int(problem.places.free.sum())
        locked.arcs = len(arcs)
        locked.assigned = len(chosen)
        locked.cost = solution.cost
        locked.greedy_assigned = int((greedy.flow > 0).sum())
        locked.greedy_cost = greedy.cost
        locked.timings = timings
        locked.save()
        publish_topic_event_on_commit(
            run_topic(run.pk),
            name="assignment.progress",
            data={"run": run.pk, "progress": 100, "stage": "done", "state": locked.state},
        )
        notify_user_on_commit(
            locked.created_by_id,
            name="assignment.proposed",
            data={"run": run.pk, "assigned": locked.assigned, "mentees": locked.mentees},
        )
    return locked


_PROPOSAL_FIELDS = (
    "run",
    "mentor",
    "mentee",
    "mentee_level",
    "cost",
    "distance_km",
    "specialty_match",
    "on_referral_line",
    "status",
    "note",
)


def _store_proposals(*, run_id: int, rows: Iterable[tuple]) -> None:
    """Insert a run's proposals in one go: COPY on PostgreSQL (a national run stores
    about 20,000 rows; COPY takes a tenth of the time of INSERTs), ``bulk_create``
    elsewhere. Call inside the transaction that finishes the run."""
    status = AssignmentProposal.Status.PROPOSED
    if connection.vendor == "postgresql":
        from psycopg import sql

        meta = AssignmentProposal._meta
        columns = sql.SQL(", ").join(
            sql.Identifier(meta.get_field(name).column) for name in _PROPOSAL_FIELDS
        )
        statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
            sql.Identifier(meta.db_table), columns
        )
        with connection.cursor() as cursor, cursor.cursor.copy(statement) as copy:
            for row in rows:
                copy.write_row((run_id, *row, status, ""))
        return
    AssignmentProposal.objects.bulk_create(
        [
            AssignmentProposal(
                run_id=run_id,
                mentor_id=mentor,
                mentee_id=mentee,
                mentee_level=level,
                cost=cost,
                distance_km=km,
                specialty_match=match,
                on_referral_line=on_line,
                status=status,
            )
            for mentor, mentee, level, cost, km, match, on_line in rows
        ],
        batch_size=5000,
    )


class Problem:
    """The network read into arrays: who needs a mentor, who has free places, where."""

    def __init__(
        self,
        *,
        facilities: matching.Facilities,
        mentees: matching.Mentees,
        places: matching.Places,
        mentee_ids: np.ndarray,
        place_mentor_ids: np.ndarray,
        n_specialties: int,
    ) -> None:
        self.facilities = facilities
        self.mentees = mentees
        self.places = places
        self.mentee_ids = mentee_ids
        self.place_mentor_ids = place_mentor_ids
        self.n_specialties = n_specialties


def read_problem(*, policy: Policy, province_id: int | None) -> Problem:
    """Read what auto-assignment needs with a few flat queries (no model instances).

    Mentees: active clinicians at a mentee level with no live link as mentee (in the
    province, if given). Places: each active doctor at a mentor level (anywhere: the
    central hospitals serve every province) and mentee level, the quota minus
    accepted and waiting links, when above zero.
    """
    facility_rows = list(
        Facility.objects.values_list("id", "latitude", "longitude", "parent_id").order_by("id")
    )
    fac_ids = np.array([r[0] for r in facility_rows], dtype=np.int64)
    position = {int(f): i for i, f in enumerate(fac_ids)}
    parent = np.array([position.get(r[3], -1) if r[3] else -1 for r in facility_rows])
    facilities = matching.Facilities(
        lat=np.array([r[1] for r in facility_rows], dtype=float),
        lon=np.array([r[2] for r in facility_rows], dtype=float),
        ancestors=matching.ancestors_of(parent),
    )
    specialty_ids = list(Specialty.objects.order_by("id").values_list("id", flat=True))
    if len(specialty_ids) > 64:
        raise DomainError("More than 64 specialties: widen the specialty masks.")
    bit = {sid: i for i, sid in enumerate(specialty_ids)}
    generalist_mask = 0
    for sid in Specialty.objects.filter(code__in=GENERALIST_SPECIALTIES).values_list(
        "id", flat=True
    ):
        generalist_mask |= 1 << bit[sid]

    mentee_levels = policy.mentee_levels
    mentor_levels = policy.mentor_levels
    candidates = ClinicianProfile.objects.filter(user__is_active=True)
    mentee_query = candidates.filter(facility__level__in=mentee_levels).exclude(
        pk__in=Mentorship.objects.filter(state__in=Mentorship.LIVE_STATES).values("mentee_id")
    )
    if province_id is not None:
        mentee_query = mentee_query.filter(facility__province_id=province_id)
    mentee_rows = np.array(
        list(mentee_query.values_list("id", "facility_id", "facility__level").order_by("id")),
        dtype=np.int64,
    ).reshape(-1, 3)
    mentor_rows = np.array(
        list(
            candidates.filter(facility__level__in=mentor_levels, kind=ClinicianProfile.Kind.DOCTOR)
            .values_list("id", "facility_id", "facility__level")
            .order_by("id")
        ),
        dtype=np.int64,
    ).reshape(-1, 3)

    # Facilities that exchanged referrals lately are on one referral line too.
    in_play = np.union1d(mentee_rows[:, 1], mentor_rows[:, 1]).tolist()
    facilities = dataclasses.replace(
        facilities,
        referral_links=matching.referral_link_keys(
            facility_ids=fac_ids, pairs=referral_link_pairs(facility_ids=in_play)
        ),
    )

    masks = _specialty_masks(levels=sorted(set(mentee_levels) | set(mentor_levels)), bit=bit)

    def mask_of(ids: np.ndarray) -> np.ndarray:
        return np.array([masks.get(int(i), 0) for i in ids], dtype=np.uint64)

    mentee_masks = mask_of(mentee_rows[:, 0])
    needs = np.where(mentee_masks != 0, mentee_masks, np.uint64(generalist_mask))

    used: dict[tuple[int, int], int] = {}
    for mentor_id, level, n in (
        Mentorship.objects.filter(state__in=Mentorship.LIVE_STATES)
        .values_list("mentor_id", "mentee_level")
        .annotate(n=Count("id"))
        .order_by()
    ):
        used[(mentor_id, level)] = n
    place_mentor, place_fac, place_level, place_free = [], [], [], []
    for mentor_id, facility_id, mentor_level in mentor_rows.tolist():
        for mentee_level in policy.mentee_levels_for(mentor_level):
            free = policy.quota(mentor_level=mentor_level, mentee_level=mentee_level) - used.get(
                (mentor_id, mentee_level), 0
            )
            if free > 0:
                place_mentor.append(mentor_id)
                place_fac.append(position[facility_id])
                place_level.append(mentee_level)
                place_free.append(free)
    place_mentor_ids = np.array(place_mentor, dtype=np.int64)
    return Problem(
        facilities=facilities,
        mentees=matching.Mentees(
            facility=np.array([position[f] for f in mentee_rows[:, 1].tolist()], dtype=np.int64),
            level=mentee_rows[:, 2].copy(),
            specialties=mentee_masks,
            needs=needs,
        ),
        places=matching.Places(
            facility=np.array(place_fac, dtype=np.int64),
            mentee_level=np.array(place_level, dtype=np.int64),
            specialties=np.array([masks.get(m, 0) for m in place_mentor], dtype=np.uint64),
            free=np.array(place_free, dtype=np.int64),
        ),
        mentee_ids=mentee_rows[:, 0].copy(),
        place_mentor_ids=place_mentor_ids,
        n_specialties=max(len(specialty_ids), 1),
    )


def _specialty_masks(*, levels: list[int], bit: dict[int, int]) -> dict[int, int]:
    through = ClinicianProfile.specialties.through
    masks: dict[int, int] = {}
    for clinician_id, specialty_id in through.objects.filter(
        clinicianprofile__facility__level__in=levels
    ).values_list("clinicianprofile_id", "specialty_id"):
        masks[clinician_id] = masks.get(clinician_id, 0) | (1 << bit[specialty_id])
    return masks


# --- Reviewing and applying proposals ---------------------------------------------------


def _run_for_manager(user: User, run_id: int, *, lock: bool = False) -> AssignmentRun:
    query = AssignmentRun.objects.select_for_update() if lock else AssignmentRun.objects
    run = query.filter(pk=run_id).first()
    if run is None or not coordinator_scope(user=user).may_manage(run.province_id):
        raise NotFound(_("No such auto-assignment run."))
    return run


def check_proposals_review(
    *,
    user: User,
    run_id: int,
    decision: str,
    proposal_ids: list[int] | None = None,
) -> int:
    """Accept or reject proposals (``proposal_ids``; None: every one still proposed).
    Only while the run waits for review. Returns how many changed."""
    statuses = {
        "accept": AssignmentProposal.Status.ACCEPTED,
        "reject": AssignmentProposal.Status.REJECTED,
    }
    if decision not in statuses:
        raise DomainError(
            _("Accept or reject."), code="invalid", fields={"decision": ["accept|reject"]}
        )
    with transaction.atomic():
        run = _run_for_manager(user, run_id, lock=True)
        if run.state != AssignmentRun.State.PROPOSED:
            raise Conflict(_("This run is not waiting for review."), code="not_reviewable")
        query = run.proposals.filter(
            status__in=[
                AssignmentProposal.Status.PROPOSED,
                AssignmentProposal.Status.ACCEPTED,
                AssignmentProposal.Status.REJECTED,
            ]
        )
        if proposal_ids is not None:
            query = query.filter(pk__in=proposal_ids)
        else:
            query = query.filter(status=AssignmentProposal.Status.PROPOSED)
        return query.update(status=statuses[decision])


def check_assignment_apply(*, user: User, run_id: int) -> AssignmentRun:
    """Start turning the accepted proposals into mentorship requests (a task)."""
    from network.tasks import assignment_run_apply

    with transaction.atomic():
        run = _run_for_manager(user, run_id, lock=True)
        if run.state == AssignmentRun.State.APPLYING:
            return run
        if run.state != AssignmentRun.State.PROPOSED:
            raise Conflict(_("This run is not waiting for review."), code="not_reviewable")
        if not run.proposals.filter(status=AssignmentProposal.Status.ACCEPTED).exists():
            raise DomainError(_("Accept some proposals first."), code="nothing_accepted")
        run.state = AssignmentRun.State.APPLYING
        run.applied_by = user
        run.applying_seen_at = timezone.now()
        run.save(update_fields=["state", "applied_by", "applying_seen_at"])
        send_task_on_commit(
            assignment_run_apply,
            run.pk,
            user.pk,
            what=f"apply task of auto-assignment run {run.pk}",
        )
    return run


def assignment_apply_progress(*, run_id: int, percent: int) -> None:
    """Publish how far applying has come (best effort; the run's state is the truth)."""
    publish_topic_event_on_commit(
        run_topic(run_id),
        name="assignment.applying",
        data={"run": run_id, "progress": percent, "state": AssignmentRun.State.APPLYING},
    )


def _applying_seen(run_id: int) -> None:
    AssignmentRun.objects.filter(pk=run_id, state=AssignmentRun.State.APPLYING).update(
        applying_seen_at=timezone.now()
    )


def _apply_one(proposal: AssignmentProposal, applied_by: User) -> None:
    """One accepted proposal → a mentorship request (or skipped, with why), its row
    locked and its status read again: another task of the run may have taken it."""
    with transaction.atomic():
        still_accepted = (
            AssignmentProposal.objects.select_for_update()
            .filter(pk=proposal.pk, status=AssignmentProposal.Status.ACCEPTED)
            .exists()
        )
        if not still_accepted:
            return
        try:
            with transaction.atomic():
                mentorship = do_mentorship_request(
                    mentor=proposal.mentor,
                    mentee=proposal.mentee,
                    requested_by=applied_by,
                    source=Mentorship.Source.AUTO,
                )
        except DomainError as error:
            proposal.status = AssignmentProposal.Status.SKIPPED
            proposal.note = error.message[:255]
            proposal.save(update_fields=["status", "note"])
        else:
            proposal.status = AssignmentProposal.Status.APPLIED
            proposal.mentorship = mentorship
            proposal.save(update_fields=["status", "mentorship"])


def do_assignment_apply(
    *, run_id: int, applied_by_id: int, on_progress: Callable[[int], None] | None = None
) -> AssignmentRun:
    """Send a mentorship request for every accepted proposal, through the same service
    as a person's request (so the policy, one-link-per-pair and full quotas are
    checked). A proposal that can no longer be applied is marked skipped with why.

    Idempotent and resumable: only proposals still ``accepted`` are processed, each
    in its own transaction with its row locked and its status read again, so a re-run
    after a crash continues where it stopped and two tasks of one run (the sweeper's
    and a slow original) never send one request twice. While it works it marks the
    run seen (``applying_seen_at``) for the sweeper.
    """
    run = AssignmentRun.objects.get(pk=run_id)
    if run.state not in (AssignmentRun.State.APPLYING, AssignmentRun.State.APPLIED):
        return run
    applied_by = User.objects.get(pk=applied_by_id)
    pending = list(
        run.proposals.filter(status=AssignmentProposal.Status.ACCEPTED)
        .select_related("mentor__user", "mentor__facility", "mentee__user", "mentee__facility")
        .order_by("id")
    )
    _applying_seen(run_id)
    for done, proposal in enumerate(pending, start=1):
        _apply_one(proposal, applied_by)
        if done % 200 == 0 or done == len(pending):
            _applying_seen(run_id)
            if on_progress is not None:
                on_progress(int(done * 100 / len(pending)))
    with transaction.atomic():
        run = AssignmentRun.objects.select_for_update().get(pk=run_id)
        if run.state == AssignmentRun.State.APPLYING:
            run.state = AssignmentRun.State.APPLIED
            run.applied_at = timezone.now()
            run.save(update_fields=["state", "applied_at"])
            publish_topic_event_on_commit(
                run_topic(run.pk),
                name="assignment.applied",
                data={"run": run.pk, "state": run.state},
            )
    return run


__all__ = [
    "assignment_apply_progress",
    "check_assignment_apply",
    "check_assignment_run_create",
    "check_case_conference_conclude",
    "check_case_conference_invite",
    "check_case_conference_open",
    "check_case_conference_present",
    "check_mentorship_answer",
    "check_mentorship_end",
    "check_mentorship_request",
    "check_policy_replace",
    "check_proposals_review",
    "do_assignment_apply",
    "do_assignment_run_create",
    "do_assignment_run_execute",
    "do_assignment_runs_sweep",
    "do_mentorship_accept",
    "do_mentorship_decline",
    "do_mentorship_end",
    "do_mentorship_request",
    "do_mentorship_requests_expire",
    "do_policy_replace",
    "lock_mentor",
    "read_problem",
    "run_topic",
]
