"""Reads of video visits: participants only; reads of the record are audited.
Recordings: the host and the patient only, every read and refusal audited."""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async
from django.db.models import QuerySet
from django.utils.translation import gettext as _

from consult.models import (
    Visit,
    VisitParticipant,
    VisitRecording,
    VisitRecordingSession,
    VisitSnapshot,
)
from telehealth.audit import audit_record
from telehealth.errors import NotFound
from telehealth.models import AuditEvent, User


def _visible(user: User) -> QuerySet[Visit]:
    # Both conditions in one filter() so they apply to the same participant row: an
    # exclude() over the relation would also hide the visit from everyone else in it
    # as soon as anybody was removed.
    return Visit.objects.filter(
        participants__user=user,
        participants__state__in=[
            state
            for state in VisitParticipant.State.values
            if state != VisitParticipant.State.REMOVED
        ],
    )


def visit_get_for_user(*, user: User, visit_id: int, request: Any = None) -> Visit:
    """The visit with its participants, for its participants. Audited: it carries the
    patient's name, notes and summary."""
    visit = (
        _visible(user).select_related("patient__user", "host").filter(pk=visit_id).first()
        if user.is_authenticated
        else None
    )
    if visit is None:
        raise NotFound(_("No such visit."))
    audit_record(
        actor=user,
        action=AuditEvent.Action.READ,
        target=f"consult.visit:{visit.pk}",
        patient=visit.patient,
        reason=_("video visit"),
        request=request,
    )
    return visit


def visit_list_for_user(*, user: User) -> QuerySet[Visit]:
    return (
        _visible(user)
        .select_related("patient__user", "host")
        .order_by("-scheduled_start", "-created_at")
        .distinct()
    )


def visits_waiting_for_host(*, host: User, visit_ids: list[int]) -> dict[int, list[str]]:
    """Who sits in the waiting room of each of these visits that ``host`` hosts
    (names, in arrival order). Visits hosted by someone else are left out, so a
    caller cannot learn about them by passing their ids. The caller has already
    audited its read of the appointments these visits belong to."""
    rows = (
        VisitParticipant.objects.filter(
            visit_id__in=visit_ids,
            visit__host=host,
            visit__state__in=[Visit.State.WAITING, Visit.State.IN_PROGRESS],
            state=VisitParticipant.State.WAITING,
        )
        .select_related("user")
        .order_by("id")
    )
    waiting: dict[int, list[str]] = {}
    for row in rows:
        waiting.setdefault(row.visit_id, []).append(row.user.display_name)
    return waiting


def visit_participants(*, visit: Visit) -> list[VisitParticipant]:
    return list(visit.participants.select_related("user").order_by("id"))


def snapshot_get_for_user(*, user: User, snapshot_id: Any, request: Any = None) -> VisitSnapshot:
    """A snapshot, for the clinicians of the visit and the person captured. Audited."""
    snapshot = (
        VisitSnapshot.objects.select_related("visit__patient").filter(pk=snapshot_id).first()
        if user.is_authenticated
        else None
    )
    allowed = snapshot is not None and (
        snapshot.subject_id == user.pk
        or VisitParticipant.objects.filter(
            visit_id=snapshot.visit_id,
            user=user,
            role__in=["doctor", "health_worker", "specialist"],
        )
        .exclude(state=VisitParticipant.State.REMOVED)
        .exists()
    )
    if not allowed:
        raise NotFound(_("No such snapshot."))
    audit_record(
        actor=user,
        action=AuditEvent.Action.READ,
        target=f"consult.visit:{snapshot.visit_id}:snapshot:{snapshot.pk}",
        patient=snapshot.visit.patient,
        reason=_("remote examination snapshot"),
        request=request,
    )
    return snapshot


def visit_recording_running(*, visit: Visit) -> VisitRecordingSession | None:
    """The recording running now, if any. Not audited: it tells only whether the
    visit is being recorded, which every participant's page must show."""
    return (
        VisitRecordingSession.objects.filter(visit=visit, ended_at__isnull=True)
        .select_related("started_by")
        .first()
    )


def _may_see_recordings(visit: Visit, user: User) -> bool:
    """The host and the patient; other participants took part but do not get the files."""
    return user.is_authenticated and user.pk in (visit.host_id, visit.patient.user_id)


def visit_recording_get_for_user(
    *, user: User, recording_id: Any, request: Any = None
) -> VisitRecording:
    """A recorded file, for the visit's host and its patient. Every read is audited;
    a refused one is audited as ``denied`` and answered as if there were no such file."""
    recording = (
        VisitRecording.objects.select_related("visit__patient", "participant")
        .filter(pk=recording_id)
        .first()
        if user.is_authenticated
        else None
    )
    if recording is None:
        raise NotFound(_("No such recording."))
    visit = recording.visit
    allowed = _may_see_recordings(visit, user)
    audit_record(
        actor=user,
        action=AuditEvent.Action.READ if allowed else AuditEvent.Action.DENIED,
        target=f"consult.visit:{visit.pk}:recording_file:{recording.pk}",
        patient=visit.patient,
        reason=_("visit recording"),
        request=request,
    )
    if not allowed:
        raise NotFound(_("No such recording."))
    return recording


def visit_recording_list_for_user(
    *, user: User, visit_id: int, request: Any = None
) -> list[VisitRecording]:
    """The visit's recorded files, for its host and its patient. Audited like a read."""
    visit = (
        Visit.objects.select_related("patient").filter(pk=visit_id).first()
        if user.is_authenticated
        else None
    )
    if visit is None:
        raise NotFound(_("No such visit."))
    allowed = _may_see_recordings(visit, user)
    audit_record(
        actor=user,
        action=AuditEvent.Action.READ if allowed else AuditEvent.Action.DENIED,
        target=f"consult.visit:{visit.pk}:recordings",
        patient=visit.patient,
        reason=_("visit recording"),
        request=request,
    )
    if not allowed:
        raise NotFound(_("No such visit."))
    return list(visit.recordings.select_related("participant").order_by("started_at"))


async def may_watch_visit(user: User, topic: str) -> bool:
    """Participants (not removed) may watch ``visit.<id>`` for waiting-room and call events."""
    try:
        visit_id = int(topic.split(".", 1)[1])
    except (IndexError, ValueError):
        return False
    return await database_sync_to_async(
        VisitParticipant.objects.filter(visit_id=visit_id, user=user)
        .exclude(state=VisitParticipant.State.REMOVED)
        .exists,
        thread_sensitive=False,
    )()
