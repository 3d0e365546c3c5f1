"""Every write of a video visit: scheduling, the waiting room, admission, removal,
snapshots, consent, recording, notes. Views and other apps (the scheduler, the network)
call these.

Live changes go to the visit's topic ``visit.<id>`` (watched by its participants)
and to a person's own topic, after commit.

Recording holds one invariant: a recording runs only while every participant still
in the visit (invited, waiting or admitted) has said yes
(:func:`visit_recording_allowed`). Every service that can break it (withdrawn
consent, an invitation, a check-in, an admission) ends the running recording in
the same transaction, and the relay node is told after commit.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _

from consult import media
from consult import services as messaging
from consult.models import (
    Participant,
    Thread,
    Visit,
    VisitParticipant,
    VisitRecording,
    VisitRecordingSession,
    VisitSnapshot,
)
from privacy.models import Purpose
from privacy.selectors import consent_allows, consent_check
from telehealth import services as kernel_services
from telehealth.audit import audit_record
from telehealth.errors import AccessDenied, Conflict, DomainError, NotFound
from telehealth.models import AuditEvent, CareRelationship, PatientProfile, User
from telehealth.realtime import notify_user_on_commit, publish_topic_event_on_commit

OPEN_STATES = (Visit.State.SCHEDULED, Visit.State.WAITING, Visit.State.IN_PROGRESS)
LIVE_STATES = (Visit.State.WAITING, Visit.State.IN_PROGRESS)
SNAPSHOT_TYPES = {"image/jpeg", "image/png", "image/webp"}
MAX_SNAPSHOT_BYTES = 5 * 1024 * 1024
RECORDING_TYPES = {"video/webm", "video/x-matroska"}
#: One participant's file of a long visit (about 700 MB an hour at 720p).
MAX_RECORDING_BYTES = 4 * 1024**3
#: How far a recorded file may run past its recording's stop: the node hears of the
#: stop after commit. Beyond it, the file may hold someone who did not consent.
RECORDING_STOP_GRACE = timedelta(seconds=10)
#: Stops the relay node reports with its uploads (it no longer records the room).
RELAY_STOP_REASONS = ("room-closed", "shutdown")


class RelayTokenRefused(DomainError):
    """A request meant to come from a relay node without a valid node token."""

    status = 401
    code = "invalid_token"


def visit_topic(visit_id: int) -> str:
    return f"visit.{visit_id}"


def participant_ref(user_id: int) -> str:
    """The participant id the relay knows a person by."""
    return f"u-{user_id}"


def _source(visit: Visit) -> str:
    return f"consult.visit:{visit.pk}"


def _locked(visit_id: int) -> Visit:
    visit = (
        Visit.objects.select_for_update()
        .select_related("patient__user")
        .filter(pk=visit_id)
        .first()
    )
    if visit is None:
        raise NotFound(_("No such visit."))
    return visit


def _member(visit: Visit, user: User) -> VisitParticipant:
    return _member_by_id(visit, user.pk)


def _member_by_id(visit: Visit, user_id: int) -> VisitParticipant:
    member = VisitParticipant.objects.filter(visit=visit, user_id=user_id).first()
    if member is None or member.state == VisitParticipant.State.REMOVED:
        raise NotFound(_("No such visit."))
    return member


def _require_host(visit: Visit, user: User) -> None:
    _member(visit, user)
    if visit.host_id != user.pk:
        raise AccessDenied(_("Only the visit's host can do this."))


def _announce(visit: Visit, name: str, data: dict[str, Any]) -> None:
    publish_topic_event_on_commit(
        visit_topic(visit.pk), name=name, data={"visit": visit.pk, **data}
    )


def _role_for(user: User, patient: PatientProfile) -> str:
    if user.pk == patient.user_id:
        return VisitParticipant.Role.PATIENT
    clinician = getattr(user, "clinician_profile", None)
    if clinician is not None:
        return clinician.kind
    return VisitParticipant.Role.FAMILY


def _add(visit: Visit, user: User, role: str, by: User | None) -> VisitParticipant:
    active = VisitParticipant.objects.filter(visit=visit).exclude(
        state__in=[VisitParticipant.State.REMOVED, VisitParticipant.State.LEFT]
    )
    existing = VisitParticipant.objects.filter(visit=visit, user=user).first()
    if existing is not None and existing.state != VisitParticipant.State.REMOVED:
        return existing
    if active.count() >= visit.max_participants:
        raise Conflict(
            _("This visit already has %(n)d participants.") % {"n": visit.max_participants},
            code="visit_full",
        )
    if existing is not None:  # removed people come back only when invited again
        existing.state = VisitParticipant.State.INVITED
        existing.role = role
        existing.removed_at = None
        existing.save(update_fields=["state", "role", "removed_at"])
        member = existing
    else:
        member = VisitParticipant.objects.create(visit=visit, user=user, role=role)
    thread_role = role if role in Participant.Role.values else Participant.Role.MEMBER
    messaging.thread_participant_add(
        thread_id=visit.thread_id, user=user, role=thread_role, added_by=None
    )
    if user.pk != visit.patient.user_id and role != VisitParticipant.Role.FAMILY:
        kernel_services.care_relationship_grant(
            patient=visit.patient,
            member=user,
            kind=CareRelationship.Kind.VISIT,
            source=_source(visit),
            granted_by=by,
            reason=_("invited to a video visit"),
        )
    return member


@transaction.atomic
def visit_schedule(
    *,
    patient: PatientProfile,
    host: User,
    scheduled_start: datetime | None,
    source: str = "",
    participants: Sequence[tuple[User, str]] = (),
    open_now: bool = False,
) -> Visit:
    """Create a visit hosted by a clinician, with its chat thread.

    ``open_now`` opens the waiting room at once (an ad hoc visit, for example
    started from a referral or a mentoring thread). Idempotent for a non-empty
    ``source``: scheduling the same appointment twice returns the same visit.
    """
    if getattr(host, "clinician_profile", None) is None:
        raise AccessDenied(_("Only clinicians can host a visit."))
    if source:
        existing = (
            Visit.objects.filter(source=source).exclude(state__in=[Visit.State.CANCELLED]).first()
        )
        if existing is not None:
            return existing
    # A remote examination is care through the telehealth service: the patient must
    # not have withdrawn it (privacy page); in-person care is untouched.
    consent_check(patient=patient, purpose=Purpose.CARE)
    thread = messaging.thread_open(
        kind=Thread.Kind.VISIT,
        created_by=host,
        participants=[],
        patient=patient,
        subject=_("Video visit"),
    )
    visit = Visit.objects.create(
        patient=patient,
        host=host,
        thread=thread,
        source=source,
        scheduled_start=scheduled_start,
        state=Visit.State.WAITING if open_now else Visit.State.SCHEDULED,
        max_participants=settings.VISIT_MAX_PARTICIPANTS,
    )
    thread.context = _source(visit)
    thread.save(update_fields=["context"])
    host_member = _add(visit, host, _role_for(host, patient), host)
    host_member.state = VisitParticipant.State.ADMITTED
    host_member.admitted_at = timezone.now()
    host_member.save(update_fields=["state", "admitted_at"])
    _add(visit, patient.user, VisitParticipant.Role.PATIENT, host)
    for user, role in participants:
        _add(visit, user, role, host)
    return visit


@transaction.atomic
def visit_open_waiting_room(*, visit_id: int, by: User) -> Visit:
    visit = _locked(visit_id)
    _require_host(visit, by)
    if visit.state == Visit.State.SCHEDULED:
        visit.state = Visit.State.WAITING
        visit.save(update_fields=["state"])
        _announce(visit, "visit.state", {"state": visit.state})
    elif visit.state not in LIVE_STATES:
        raise Conflict(_("This visit is over."), code="visit_over")
    return visit


@transaction.atomic
def visit_check_in(*, visit_id: int, user: User, device_check: dict[str, Any]) -> VisitParticipant:
    """A participant enters the waiting room with the result of their device check.

    Check-in is allowed from 30 minutes before the start; it does not let anyone
    into the media room: only admission does.
    """
    visit = _locked(visit_id)
    member = _member(visit, user)
    if visit.state not in OPEN_STATES:
        raise Conflict(_("This visit is over."), code="visit_over")
    if (
        visit.state == Visit.State.SCHEDULED
        and visit.scheduled_start is not None
        and visit.scheduled_start - timezone.now() > timezone.timedelta(minutes=30)
    ):
        raise Conflict(_("The waiting room opens 30 minutes before the visit."), code="too_early")
    checks = {
        key: device_check.get(key)
        for key in ("camera", "microphone", "connection")
        if key in device_check
    }
    if member.state in (VisitParticipant.State.INVITED, VisitParticipant.State.LEFT):
        member.state = VisitParticipant.State.WAITING
    member.checked_in_at = timezone.now()
    member.device_check = checks
    member.save(update_fields=["state", "checked_in_at", "device_check"])
    _recording_stop_unless_allowed(visit)
    _announce(
        visit,
        "visit.waiting",
        {"user": user.pk, "name": user.display_name, "state": member.state, "device_check": checks},
    )
    return member


@transaction.atomic
def visit_admit(*, visit_id: int, user_id: int, by: User) -> VisitParticipant:
    """The host lets a waiting participant into the media room; the visit starts."""
    visit = _locked(visit_id)
    _require_host(visit, by)
    if visit.state not in LIVE_STATES:
        raise Conflict(_("Open the waiting room first."), code="not_open")
    member = (
        VisitParticipant.objects.select_related("user").filter(visit=visit, user_id=user_id).first()
    )
    if member is None or member.state != VisitParticipant.State.WAITING:
        raise Conflict(_("This person is not in the waiting room."), code="not_waiting")
    member.state = VisitParticipant.State.ADMITTED
    member.admitted_at = timezone.now()
    member.admitted_by = by
    member.save(update_fields=["state", "admitted_at", "admitted_by"])
    _recording_stop_unless_allowed(visit)
    if visit.state == Visit.State.WAITING:
        visit.state = Visit.State.IN_PROGRESS
        visit.started_at = timezone.now()
        visit.save(update_fields=["state", "started_at"])
    _announce(
        visit,
        "visit.admitted",
        {"user": user_id, "name": member.user.display_name, "state": visit.state},
    )
    notify_user_on_commit(user_id, name="visit.admitted", data={"visit": visit.pk})
    return member


@transaction.atomic
def visit_invite(*, visit_id: int, user: User, role: str, by: User) -> VisitParticipant:
    """The host brings someone in: a specialist, an interpreter, a family member."""
    visit = _locked(visit_id)
    _require_host(visit, by)
    if visit.state not in OPEN_STATES:
        raise Conflict(_("This visit is over."), code="visit_over")
    if role not in VisitParticipant.Role.values or role == VisitParticipant.Role.PATIENT:
        raise DomainError(_("Unknown role."), code="invalid", fields={"role": [_("Unknown role.")]})
    if not user.is_active:
        raise DomainError(_("This account is not active."), code="inactive_user")
    member = _add(visit, user, role, by)
    _recording_stop_unless_allowed(visit)
    notify_user_on_commit(
        user.pk, name="visit.invited", data={"visit": visit.pk, "by": by.display_name}
    )
    _announce(visit, "visit.invited", {"user": user.pk, "name": user.display_name, "role": role})
    return member


@transaction.atomic
def visit_remove(*, visit_id: int, user_id: int, by: User) -> None:
    """The host removes a participant: their media is cut on the relay at once, they
    leave the chat, and their access to the patient's record through this visit ends."""
    visit = _locked(visit_id)
    _require_host(visit, by)
    if user_id == visit.host_id:
        raise DomainError(
            _("The host cannot remove themself; end the visit instead."), code="invalid"
        )
    member = (
        VisitParticipant.objects.select_related("user").filter(visit=visit, user_id=user_id).first()
    )
    if member is None or member.state == VisitParticipant.State.REMOVED:
        return
    member.state = VisitParticipant.State.REMOVED
    member.removed_at = timezone.now()
    member.save(update_fields=["state", "removed_at"])
    messaging.thread_participant_remove(thread_id=visit.thread_id, user_id=user_id, removed_by=None)
    kernel_services.care_relationship_end(
        patient=visit.patient,
        member=member.user,
        kind=CareRelationship.Kind.VISIT,
        source=_source(visit),
        ended_by=by,
    )
    room, ref = visit.room, participant_ref(user_id)
    transaction.on_commit(lambda: media.relay_remove_participant(room=room, participant=ref))
    _announce(visit, "visit.removed", {"user": user_id})
    notify_user_on_commit(user_id, name="visit.removed", data={"visit": visit.pk})


@transaction.atomic
def visit_leave(*, visit_id: int, user: User) -> None:
    visit = _locked(visit_id)
    member = _member(visit, user)
    if member.state in (VisitParticipant.State.WAITING, VisitParticipant.State.ADMITTED):
        member.state = VisitParticipant.State.LEFT
        member.save(update_fields=["state"])
        _announce(visit, "visit.left", {"user": user.pk})
        if user.pk == visit.host_id:
            # Nobody still in the visit could stop it.
            _recording_end_running(visit, VisitRecordingSession.StopReason.HOST_LEFT)


def visit_join(*, visit_id: int, user: User) -> dict[str, Any]:
    """What a participant needs to connect their media: the relay node, a short-lived
    token for this room and person, and ICE servers. Only admitted participants
    (the host is admitted from the start) of a live visit get one."""
    visit = Visit.objects.filter(pk=visit_id).first()
    if visit is None:
        raise NotFound(_("No such visit."))
    member = _member(visit, user)
    if visit.state not in LIVE_STATES:
        raise Conflict(_("This visit is not open."), code="not_open")
    if member.state != VisitParticipant.State.ADMITTED:
        raise AccessDenied(_("Wait until the doctor admits you."), code="not_admitted")
    node = media.relay_for_room(visit.room)
    ref = participant_ref(user.pk)
    others = [
        {
            "participant": participant_ref(p.user_id),
            "user": p.user_id,
            "name": p.user.display_name,
            "role": p.role,
            "audio_only": p.audio_only,
        }
        for p in VisitParticipant.objects.filter(visit=visit, state=VisitParticipant.State.ADMITTED)
        .exclude(user=user)
        .select_related("user")
    ]
    return {
        "relay": node["url"],
        "room": visit.room,
        "participant": ref,
        "token": media.join_token(
            room=visit.room, participant=ref, caps=["publish", "subscribe"], node=node["id"]
        ),
        "expires_in": settings.RELAY_TOKEN_TTL_SECONDS,
        "ice_servers": media.ice_servers(user_ref=ref),
        "audio_only": member.audio_only,
        "admitted": others,
    }


def visit_published(*, visit_id: int, user: User) -> None:
    """An admitted participant's media is up on the relay: others may subscribe to it."""
    visit = Visit.objects.filter(pk=visit_id).first()
    if visit is None:
        raise NotFound(_("No such visit."))
    member = _member(visit, user)
    if member.state != VisitParticipant.State.ADMITTED or visit.state not in LIVE_STATES:
        raise AccessDenied(_("Wait until the doctor admits you."), code="not_admitted")
    with transaction.atomic():
        _announce(
            visit,
            "visit.published",
            {"participant": participant_ref(user.pk), "user": user.pk, "name": user.display_name},
        )


@transaction.atomic
def visit_set_audio_only(*, visit_id: int, user: User, audio_only: bool) -> VisitParticipant:
    visit = _locked(visit_id)
    member = _member(visit, user)
    member.audio_only = bool(audio_only)
    member.save(update_fields=["audio_only"])
    _announce(visit, "visit.audio_only", {"user": user.pk, "audio_only": member.audio_only})
    return member


@transaction.atomic
def visit_snapshot_notice(*, visit_id: int, by: User, subject_id: int) -> None:
    """Tell the person about to be captured, on their screen, before the capture."""
    visit = _locked(visit_id)
    _require_clinician_in(visit, by)
    _member_by_id(visit, subject_id)
    notify_user_on_commit(
        subject_id, name="visit.snapshot_notice", data={"visit": visit.pk, "by": by.display_name}
    )
    _announce(visit, "visit.snapshot_notice", {"subject": subject_id, "by": by.display_name})


def _require_clinician_in(visit: Visit, user: User) -> None:
    member = _member(visit, user)
    if member.role not in (
        VisitParticipant.Role.DOCTOR,
        VisitParticipant.Role.HEALTH_WORKER,
        VisitParticipant.Role.SPECIALIST,
    ):
        raise AccessDenied(_("Only the examining clinicians can do this."))


@transaction.atomic
def visit_snapshot_store(
    *, visit_id: int, by: User, subject_id: int, image: UploadedFile, note: str = ""
) -> VisitSnapshot:
    """Keep a still frame of ``subject``'s video in the visit record (private storage).

    The subject is notified on screen first (``visit_snapshot_notice`` from the
    examining doctor's page) and again when it is stored. Only JPEG, PNG and
    WebP images, sniffed from the content, up to 5 MB.
    """
    visit = _locked(visit_id)
    if visit.state != Visit.State.IN_PROGRESS:
        raise Conflict(_("Snapshots are taken during the visit."), code="not_in_progress")
    _require_clinician_in(visit, by)
    subject = _member_by_id(visit, subject_id)
    if subject.state != VisitParticipant.State.ADMITTED:
        raise Conflict(_("This person is not in the visit."), code="not_admitted")
    if image.size is None or image.size > MAX_SNAPSHOT_BYTES:
        raise DomainError(_("Snapshots can be at most 5 MB."), code="too_large")
    head = image.read(512)
    image.seek(0)
    content_type = messaging._sniff(head)
    if content_type not in SNAPSHOT_TYPES:
        raise DomainError(_("A snapshot is a JPEG, PNG or WebP image."), code="unsupported_type")
    snapshot = VisitSnapshot(
        visit=visit,
        subject_id=subject_id,
        captured_by=by,
        content_type=content_type,
        size=image.size,
        note=note[:255],
    )
    snapshot.file.save(f"{hashlib.sha256(head).hexdigest()[:12]}", image, save=False)
    snapshot.save()
    audit_record(
        actor=by,
        action=AuditEvent.Action.CREATE,
        target=f"consult.visit:{visit.pk}:snapshot:{snapshot.pk}",
        patient=visit.patient,
        reason=_("remote examination snapshot"),
    )
    notify_user_on_commit(
        subject_id, name="visit.snapshot_taken", data={"visit": visit.pk, "by": by.display_name}
    )
    return snapshot


@transaction.atomic
def visit_recording_consent(*, visit_id: int, user: User, consent: bool) -> VisitParticipant:
    """Record one participant's yes or no to recording; withdrawing is a no, and
    stops a running recording at once (``visit.recording_stopped``)."""
    visit = _locked(visit_id)
    member = _member(visit, user)
    member.recording_consent = bool(consent)
    member.recording_consent_at = timezone.now()
    member.save(update_fields=["recording_consent", "recording_consent_at"])
    audit_record(
        actor=user,
        action=AuditEvent.Action.UPDATE,
        target=f"consult.visit:{visit.pk}:recording_consent:{bool(consent)}",
        patient=visit.patient,
        reason=_("recording consent"),
    )
    _announce(visit, "visit.recording_consent", {"user": user.pk, "consent": bool(consent)})
    _recording_stop_unless_allowed(visit)
    return member


@transaction.atomic
def visit_recording_ask(*, visit_id: int, by: User) -> list[int]:
    """The host asks everyone in the visit who has not said yes to recording yet.

    Nothing is recorded and no consent changes: the pages of the people asked show
    them a yes/no prompt (``visit.recording_asked`` with their user ids), and their
    answer goes through :func:`visit_recording_consent`. Host only, while the visit
    is open or in progress. Returns the ids asked (empty: everyone already agreed).
    """
    visit = _locked(visit_id)
    _require_host(visit, by)
    if visit.state not in LIVE_STATES:
        raise Conflict(
            _("A visit can be recorded only while it is in progress."), code="not_in_progress"
        )
    # The patient's standing answer first: nobody is asked for a recording they refused.
    consent_check(patient=visit.patient, purpose=Purpose.RECORDING)
    asked = list(
        _members_in_visit(visit)
        .exclude(recording_consent=True)
        .exclude(user=by)
        .order_by("id")
        .values_list("user_id", flat=True)
    )
    if asked:
        _announce(visit, "visit.recording_asked", {"by": by.display_name, "users": asked})
    return asked


def _members_in_visit(visit: Visit) -> QuerySet[VisitParticipant]:
    return VisitParticipant.objects.filter(visit=visit).exclude(
        state__in=[VisitParticipant.State.REMOVED, VisitParticipant.State.LEFT]
    )


def visit_recording_allowed(*, visit: Visit) -> bool:
    """True only if every participant still in the visit said yes, and the patient's
    consent to recording (``privacy``) is in force and not restricted."""
    members = _members_in_visit(visit)
    return (
        members.exists()
        and not members.exclude(recording_consent=True).exists()
        and consent_allows(patient=visit.patient_id, purpose=Purpose.RECORDING)
    )


# --- Recording ---------------------------------------------------------------------------


def _running_recording(visit: Visit) -> VisitRecordingSession | None:
    return (
        VisitRecordingSession.objects.select_for_update()
        .filter(visit=visit, ended_at__isnull=True)
        .first()
    )


def _recording_end(
    visit: Visit,
    session: VisitRecordingSession,
    reason: str,
    *,
    by: User | None = None,
    tell_relay: bool = True,
) -> None:
    """End ``session`` now (the visit's row is locked by the caller); the node is
    told after commit to finish the files, which it then uploads."""
    session.ended_at = timezone.now()
    session.stop_reason = reason
    session.save(update_fields=["ended_at", "stop_reason"])
    audit_record(
        actor=by,
        action=AuditEvent.Action.UPDATE,
        target=f"consult.visit:{visit.pk}:recording:{session.pk}:stopped",
        patient=visit.patient,
        reason=_("visit recording stopped"),
    )
    _announce(
        visit,
        "visit.recording_stopped",
        {
            "recording": str(session.pk),
            "reason": reason,
            "reason_label": session.get_stop_reason_display(),
        },
    )
    if tell_relay:
        room, recording_id = visit.room, str(session.pk)
        transaction.on_commit(lambda: media.relay_recording_stop(room=room, recording=recording_id))


def _recording_end_running(visit: Visit, reason: str, by: User | None = None) -> None:
    running = _running_recording(visit)
    if running is not None:
        _recording_end(visit, running, reason, by=by)


def _recording_stop_unless_allowed(visit: Visit) -> None:
    """Keep the invariant: no recording while someone in the visit has not said yes."""
    running = _running_recording(visit)
    if running is not None and not visit_recording_allowed(visit=visit):
        _recording_end(visit, running, VisitRecordingSession.StopReason.CONSENT)


@transaction.atomic
def visit_recording_start(*, visit_id: int, by: User) -> VisitRecordingSession:
    """The host starts recording the whole visit (every participant's audio and video).

    Refused (``Conflict``, code ``consent_missing``, naming who has not said yes)
    unless every participant still in the visit consented, and outside an
    in-progress visit. Idempotent: a running recording is returned as it is.
    Takes the visit's row lock. Emits ``visit.recording_started`` after commit,
    then asks the room's relay node to record; if the node cannot, the recording
    ends at once (reason ``relay``, ``visit.recording_stopped``). Audited.
    """
    visit = _locked(visit_id)
    _require_host(visit, by)
    if visit.state != Visit.State.IN_PROGRESS:
        raise Conflict(
            _("A visit can be recorded only while it is in progress."), code="not_in_progress"
        )
    running = _running_recording(visit)
    if running is not None:
        return running
    # The patient's standing decision first (``privacy``: withdrawn on the privacy
    # page, or held back by a restriction), then everyone's yes in this visit.
    consent_check(patient=visit.patient, purpose=Purpose.RECORDING)
    missing = list(
        _members_in_visit(visit)
        .exclude(recording_consent=True)
        .select_related("user")
        .order_by("id")
    )
    if missing:
        names = ", ".join(m.user.display_name for m in missing)
        raise Conflict(
            _("Everyone in the visit must agree to the recording first. Not yet: %(names)s.")
            % {"names": names},
            code="consent_missing",
            fields={"consent": [m.user.display_name for m in missing]},
        )
    session = VisitRecordingSession.objects.create(visit=visit, started_by=by)
    audit_record(
        actor=by,
        action=AuditEvent.Action.CREATE,
        target=f"consult.visit:{visit.pk}:recording:{session.pk}",
        patient=visit.patient,
        reason=_("visit recording started"),
    )
    _announce(
        visit,
        "visit.recording_started",
        {
            "recording": str(session.pk),
            "by": by.display_name,
            "started_at": session.started_at.isoformat(),
        },
    )
    visit_pk, room, recording_id = visit.pk, visit.room, str(session.pk)
    upload_url = media.recording_upload_url(visit_id=visit.pk)

    def tell_relay() -> None:
        if not media.relay_recording_start(
            room=room, recording=recording_id, upload_url=upload_url
        ):
            visit_recording_relay_stopped(visit_id=visit_pk, recording_id=recording_id)

    transaction.on_commit(tell_relay)
    return session


@transaction.atomic
def visit_recordings_stop_for_patient(*, patient_id: int, by: User | None) -> int:
    """The patient's consent to recording is gone (withdrawn, or a restriction): end
    every running recording of their visits now (reason ``consent``; the nodes are
    told after commit). What was recorded before stays: a withdrawal does not reach
    back. Takes each visit's row lock. Returns how many recordings ended."""
    visit_ids = list(
        VisitRecordingSession.objects.filter(visit__patient_id=patient_id, ended_at__isnull=True)
        .order_by("visit_id")
        .values_list("visit_id", flat=True)
    )
    for visit_id in visit_ids:
        _recording_end_running(_locked(visit_id), VisitRecordingSession.StopReason.CONSENT, by=by)
    return len(visit_ids)


@transaction.atomic
def visit_recording_stop(*, visit_id: int, by: User) -> VisitRecordingSession | None:
    """The host stops the running recording (none running: nothing happens).
    Emits ``visit.recording_stopped``; the node finishes and uploads the files."""
    visit = _locked(visit_id)
    _require_host(visit, by)
    running = _running_recording(visit)
    if running is not None:
        _recording_end(visit, running, VisitRecordingSession.StopReason.STOPPED, by=by)
    return running


@transaction.atomic
def visit_recording_relay_stopped(*, visit_id: int, recording_id: str) -> None:
    """The relay node does not (or no longer) record: end the recording so no page
    shows a recording that is not happening. Idempotent."""
    visit = _locked(visit_id)
    running = _running_recording(visit)
    if running is not None and str(running.pk) == str(recording_id):
        _recording_end(visit, running, VisitRecordingSession.StopReason.RELAY, tell_relay=False)


@transaction.atomic
def visit_recording_node_lost(*, visit_id: int) -> VisitRecordingSession | None:
    """The room's relay node died: whatever it was recording is gone with it. End the
    running recording (if any) so no page shows one; the host may start a new one
    once everyone has rejoined. Idempotent."""
    visit = _locked(visit_id)
    running = _running_recording(visit)
    if running is not None:
        _recording_end(visit, running, VisitRecordingSession.StopReason.RELAY, tell_relay=False)
    return running


def visit_recording_upload_check(
    *, visit_id: int, authorization: str | None, content_length: int | None
) -> Any:
    """Before an upload's body is read: the request must carry a relay node's
    recording-upload token for this visit's room, announcing a file within limits.
    Returns the token's claims; raises ``RelayTokenRefused`` (401) otherwise."""
    from relay.tokens import TokenError

    try:
        claims = media.recording_upload_claims(authorization)
    except TokenError as error:
        raise RelayTokenRefused(error.detail, code=error.code) from None
    visit = Visit.objects.filter(pk=visit_id).only("pk").first()
    if visit is None or claims.room != visit.room:
        raise RelayTokenRefused(_("This token is for another visit."), code="wrong_room")
    if claims.size > MAX_RECORDING_BYTES or (content_length or 0) > MAX_RECORDING_BYTES + 65536:
        raise DomainError(_("This recording is too large."), code="too_large")
    return claims


def _sniff_recording(head: bytes) -> str | None:
    import filetype

    kind = filetype.guess(head)
    return kind.mime if kind is not None and kind.mime in RECORDING_TYPES else None


def _epoch(value: float) -> datetime:
    return datetime.fromtimestamp(value, tz=UTC)


@transaction.atomic
def visit_recording_store(
    *, visit_id: int, claims: Any, upload: UploadedFile
) -> tuple[VisitRecording, bool]:
    """Keep a file a relay node recorded, in private storage; returns (it, whether new).

    ``claims`` come from :func:`visit_recording_upload_check`. The file must be
    what the node's token describes (size, SHA-256), WebM or Matroska by its
    content, belong to a recording of this visit and a participant of it, and
    must not run past its recording's stop by more than ``RECORDING_STOP_GRACE``
    (it could hold someone who did not consent: refused, and the node deletes
    it). Idempotent on the node's file id (a retried upload). Takes the visit's
    row lock. Audited; the host and the patient hear ``visit.recording_saved``.
    A stop the node reports (its shutdown, its room closed) ends the recording.
    """
    visit = _locked(visit_id)
    if claims.room != visit.room:
        raise RelayTokenRefused(_("This token is for another visit."), code="wrong_room")
    try:
        session_id, file_id = uuid.UUID(claims.recording), uuid.UUID(claims.file)
        participant_id = int(claims.participant.removeprefix("u-"))
        started, ended = _epoch(claims.started_at), _epoch(claims.ended_at)
    except (ValueError, OverflowError, OSError):
        raise DomainError(_("The recording is not described correctly."), code="invalid") from None
    session = (
        VisitRecordingSession.objects.select_for_update().filter(pk=session_id, visit=visit).first()
    )
    if session is None:
        raise NotFound(_("No such recording."))
    existing = VisitRecording.objects.filter(pk=file_id).first()
    if existing is not None:
        if existing.visit_id == visit.pk and existing.sha256 == claims.sha256:
            return existing, False
        raise Conflict(_("Another file was stored under this id."), code="duplicate")
    if not VisitParticipant.objects.filter(visit=visit, user_id=participant_id).exists():
        raise DomainError(_("This person is not in the visit."), code="not_participant")
    if started < session.started_at - RECORDING_STOP_GRACE or (
        session.ended_at is not None and ended > session.ended_at + RECORDING_STOP_GRACE
    ):
        raise Conflict(
            _("This file runs outside the time the visit was being recorded."),
            code="outside_recording",
        )
    if upload.size is None or upload.size > MAX_RECORDING_BYTES:
        raise DomainError(_("This recording is too large."), code="too_large")
    if upload.size != claims.size:
        raise DomainError(_("The file is not the one described."), code="size_mismatch")
    head = upload.read(8192)
    upload.seek(0)
    content_type = _sniff_recording(head)
    if content_type is None:
        raise DomainError(_("A recording is a WebM or Matroska file."), code="unsupported_type")
    digest = hashlib.sha256()
    for chunk in upload.chunks():
        digest.update(chunk)
    upload.seek(0)
    if digest.hexdigest() != claims.sha256:
        raise DomainError(_("The file is not the one described."), code="digest_mismatch")
    recording = VisitRecording(
        id=file_id,
        visit=visit,
        session=session,
        participant_id=participant_id,
        content_type=content_type,
        size=upload.size,
        sha256=claims.sha256,
        started_at=started,
        ended_at=ended,
    )
    recording.file.save(file_id.hex, upload, save=False)
    recording.save()
    audit_record(
        actor=None,
        action=AuditEvent.Action.CREATE,
        target=f"consult.visit:{visit.pk}:recording_file:{recording.pk}",
        patient=visit.patient,
        reason=_("visit recording stored"),
    )
    if claims.reason in RELAY_STOP_REASONS and session.ended_at is None:
        _recording_end(visit, session, VisitRecordingSession.StopReason.RELAY, tell_relay=False)
    for user_id in {visit.host_id, visit.patient.user_id}:
        notify_user_on_commit(
            user_id,
            name="visit.recording_saved",
            data={"visit": visit.pk, "recording": str(recording.pk)},
        )
    return recording, True


@transaction.atomic
def visit_notes_update(*, visit_id: int, by: User, notes: str) -> Visit:
    visit = _locked(visit_id)
    _require_clinician_in(visit, by)
    if len(notes) > 20000:
        raise DomainError(_("Notes are at most 20,000 characters."), code="too_large")
    visit.notes = notes
    visit.save(update_fields=["notes"])
    audit_record(
        actor=by,
        action=AuditEvent.Action.UPDATE,
        target=f"consult.visit:{visit.pk}:notes",
        patient=visit.patient,
        reason=_("visit notes"),
    )
    return visit


@transaction.atomic
def visit_end(*, visit_id: int, by: User, summary: str = "") -> Visit:
    """The host ends the visit with a summary. Invited specialists, interpreters and
    family lose the access the visit gave them; the patient's own doctor keeps theirs."""
    visit = _locked(visit_id)
    _require_host(visit, by)
    if visit.state not in OPEN_STATES:
        raise Conflict(_("This visit is over."), code="visit_over")
    if len(summary) > 20000:
        raise DomainError(_("The summary is at most 20,000 characters."), code="too_large")
    visit.state = Visit.State.ENDED
    visit.ended_at = timezone.now()
    visit.summary = summary
    visit.save(update_fields=["state", "ended_at", "summary"])
    _recording_end_running(visit, VisitRecordingSession.StopReason.VISIT_ENDED, by=by)
    for member in (
        VisitParticipant.objects.filter(visit=visit)
        .exclude(user_id__in=[visit.host_id, visit.patient.user_id])
        .select_related("user")
    ):
        kernel_services.care_relationship_end(
            patient=visit.patient,
            member=member.user,
            kind=CareRelationship.Kind.VISIT,
            source=_source(visit),
            ended_by=by,
        )
    audit_record(
        actor=by,
        action=AuditEvent.Action.UPDATE,
        target=f"consult.visit:{visit.pk}:ended",
        patient=visit.patient,
        reason=_("end-of-visit summary"),
    )
    _announce(visit, "visit.state", {"state": visit.state})
    return visit


@transaction.atomic
def visit_cancel(*, visit_id: int, by: User, no_show: bool = False) -> Visit:
    visit = _locked(visit_id)
    _require_host(visit, by)
    if visit.state not in (Visit.State.SCHEDULED, Visit.State.WAITING):
        raise Conflict(
            _("Only a visit that has not started can be cancelled."), code="already_started"
        )
    visit.state = Visit.State.NO_SHOW if no_show else Visit.State.CANCELLED
    visit.ended_at = timezone.now()
    visit.save(update_fields=["state", "ended_at"])
    _recording_end_running(visit, VisitRecordingSession.StopReason.VISIT_ENDED, by=by)
    _announce(visit, "visit.state", {"state": visit.state})
    return visit
