"""The patient's data download: everything the service holds about them, as JSON.

Read-only, across the apps' models (a download has to gather what each app
owns; it writes nothing). The caller, ``privacy.services.patient_data_export``,
has checked that the reader is the patient and audits the download as an
``export``. Files (attachments, snapshots, recordings) are listed, not embedded:
the patient opens them through the pages that already serve them.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from django.db.models import Prefetch, Q
from django.utils import timezone

from privacy.models import ConsentRecord, DataRequest, DataRequestEvent, ProcessingRestriction
from privacy.notices import CURRENT_NOTICE
from telehealth.models import AuditEvent, CareRelationship, PatientProfile

EXPORT_FORMAT = "telehealth.patient-data"
EXPORT_VERSION = 1


def _t(value: datetime | date | None) -> str | None:
    return value.isoformat() if value is not None else None


def _name(user: Any) -> str | None:
    return user.display_name if user is not None else None


def patient_export_build(patient: PatientProfile) -> dict[str, Any]:
    """The whole download as one JSON-ready dict (see docs/privacy.md for its sections)."""
    return {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "generated_at": _t(timezone.now()),
        "profile": _profile(patient),
        "consents": _consents(patient),
        "restrictions": _restrictions(patient),
        "data_requests": _data_requests(patient),
        "appointments": _appointments(patient),
        "referrals": _referrals(patient),
        "visits": _visits(patient),
        "conversations": _conversations(patient),
        "care_relationships": _care_relationships(patient),
        "access_log": _access_log(patient),
    }


def _profile(patient: PatientProfile) -> dict[str, Any]:
    user = patient.user
    commune = patient.home_commune
    return {
        "patient_id": patient.pk,
        "username": user.username,
        "full_name": user.full_name,
        "email": user.email,
        "phone": user.phone,
        "preferred_language": user.preferred_language,
        "date_of_birth": _t(patient.date_of_birth),
        "sex": patient.sex,
        "health_insurance_number": patient.health_insurance_number,
        "home_commune": (
            {"code": commune.code, "name": commune.name, "province": commune.province.name}
            if commune is not None
            else None
        ),
        "address": patient.address,
        "account_created": _t(user.date_joined),
    }


def _consents(patient: PatientProfile) -> dict[str, Any]:
    records = ConsentRecord.objects.filter(patient=patient).select_related("recorded_by")
    return {
        "current_notice_version": CURRENT_NOTICE.version,
        "history": [
            {
                "id": r.pk,
                "decided_at": _t(r.decided_at),
                "recorded_at": _t(r.recorded_at),
                "notice_version": r.notice_version,
                "action": r.action,
                "purposes": r.purposes,
                "given": r.given,
                "withdrawn": r.withdrawn,
                "method": r.method,
                "recorded_by": _name(r.recorded_by),
                "note": r.note,
            }
            for r in records.order_by("decided_at", "id")
        ],
    }


def _restrictions(patient: PatientProfile) -> list[dict[str, Any]]:
    return [
        {
            "reason": r.reason,
            "from": _t(r.starts_at),
            "until": _t(r.ends_at),
            "request_id": r.request_id,
        }
        for r in ProcessingRestriction.objects.filter(patient=patient).order_by("starts_at", "id")
    ]


def _data_requests(patient: PatientProfile) -> list[dict[str, Any]]:
    rows = (
        DataRequest.objects.filter(patient=patient)
        .select_related("handler")
        .prefetch_related(
            Prefetch("events", queryset=DataRequestEvent.objects.select_related("actor"))
        )
        .order_by("created_at", "id")
    )
    return [
        {
            "id": r.pk,
            "kind": r.kind,
            "status": r.status,
            "details": r.details,
            "received_at": _t(r.created_at),
            "respond_by": _t(r.respond_by),
            "due_at": _t(r.due_at),
            "closed_at": _t(r.closed_at),
            "handled_by": _name(r.handler),
            "outcome": r.outcome,
            "result": r.result,
            "history": [
                {
                    "at": _t(e.at),
                    "by": _name(e.actor),
                    "action": e.action,
                    "to_status": e.to_status,
                    "note": e.note,
                }
                for e in r.events.all()
            ],
        }
        for r in rows
    ]


def _appointments(patient: PatientProfile) -> list[dict[str, Any]]:
    from scheduler.models import Appointment

    rows = (
        Appointment.objects.filter(patient=patient)
        .select_related("clinician__user", "clinician__facility")
        .order_by("start", "id")
    )
    return [
        {
            "id": a.pk,
            "start": _t(a.start),
            "end": _t(a.end),
            "mode": a.mode,
            "status": a.status,
            "reason": a.reason,
            "clinician": a.clinician.user.display_name,
            "facility": a.clinician.facility.name,
            "referral_id": a.referral_id,
            "visit_id": a.visit_id,
            "cancelled_at": _t(a.cancelled_at),
            "cancellation_reason": a.cancellation_reason,
        }
        for a in rows
    ]


def _referrals(patient: PatientProfile) -> list[dict[str, Any]]:
    from scheduler.models import CounterReferral, Referral, ReferralEvent

    rows = (
        Referral.objects.filter(patient=patient)
        .select_related(
            "requester",
            "requesting_facility",
            "target_facility",
            "specialty",
            "receiving_clinician",
        )
        .prefetch_related(
            Prefetch("events", queryset=ReferralEvent.objects.select_related("actor"))
        )
        .order_by("created_at", "id")
    )
    counters = {
        c.referral_id: c
        for c in CounterReferral.objects.filter(referral__patient=patient).select_related(
            "author", "from_facility"
        )
    }
    out = []
    for r in rows:
        counter = counters.get(r.pk)
        out.append(
            {
                "id": r.pk,
                "status": r.status,
                "priority": r.priority,
                "specialty": r.specialty.name,
                "reason": r.reason,
                "clinical_summary": r.clinical_summary,
                "requested_by": r.requester.display_name,
                "from_facility": r.requesting_facility.name,
                "to_facility": r.target_facility.name if r.target_facility else None,
                "receiving_clinician": _name(r.receiving_clinician),
                "created_at": _t(r.created_at),
                "accepted_at": _t(r.accepted_at),
                "scheduled_for": _t(r.scheduled_for),
                "completed_at": _t(r.completed_at),
                "status_reason": r.status_reason,
                "care_plan": (
                    {
                        "text": counter.care_plan,
                        "by": counter.author.display_name,
                        "from_facility": counter.from_facility.name,
                        "at": _t(counter.created_at),
                    }
                    if counter is not None
                    else None
                ),
                "history": [
                    {
                        "at": _t(e.at),
                        "by": _name(e.actor),
                        "action": e.action,
                        "to_status": e.to_status,
                        "note": e.note,
                    }
                    for e in r.events.all()
                ],
            }
        )
    return out


def _visits(patient: PatientProfile) -> list[dict[str, Any]]:
    from consult.models import Visit

    rows = (
        Visit.objects.filter(patient=patient)
        .select_related("host")
        .prefetch_related("participants__user", "snapshots", "recordings")
        .order_by("created_at", "id")
    )
    return [
        {
            "id": v.pk,
            "state": v.state,
            "host": v.host.display_name,
            "scheduled_start": _t(v.scheduled_start),
            "started_at": _t(v.started_at),
            "ended_at": _t(v.ended_at),
            "notes": v.notes,
            "summary": v.summary,
            "participants": [
                {
                    "name": p.user.display_name,
                    "role": p.role,
                    "state": p.state,
                    "recording_consent": p.recording_consent,
                }
                for p in v.participants.all()
            ],
            "snapshots": [
                {"id": str(s.pk), "taken_at": _t(s.created_at), "note": s.note}
                for s in v.snapshots.all()
            ],
            "recordings": [
                {"id": str(r.pk), "started_at": _t(r.started_at), "ended_at": _t(r.ended_at)}
                for r in v.recordings.all()
            ],
        }
        for v in rows
    ]


def _conversations(patient: PatientProfile) -> list[dict[str, Any]]:
    """The conversations the patient is in now, with every message they can read there.

    Only threads about this patient, or about no patient: someone who is also a
    doctor is in threads about their own patients, which are not theirs to export."""
    from consult.models import Attachment, Message, Thread

    threads = list(
        Thread.objects.filter(
            Q(patient=patient) | Q(patient__isnull=True),
            participants__user=patient.user,
            participants__left_at__isnull=True,
        ).order_by("created_at", "id")
    )
    messages = (
        Message.objects.filter(thread__in=threads)
        .select_related("sender")
        .prefetch_related(
            Prefetch("attachments", queryset=Attachment.objects.order_by("created_at"))
        )
        .order_by("thread_id", "seq")
    )
    by_thread: dict[int, list[dict[str, Any]]] = {t.pk: [] for t in threads}
    for m in messages:
        by_thread[m.thread_id].append(
            {
                "seq": m.seq,
                "at": _t(m.created_at),
                "from": m.sender.display_name,
                "kind": m.kind,
                "text": m.body,
                "attachments": [
                    {"name": a.name, "type": a.content_type, "size": a.size}
                    for a in m.attachments.all()
                ],
            }
        )
    return [
        {
            "id": t.pk,
            "kind": t.kind,
            "subject": t.subject,
            "opened_at": _t(t.created_at),
            "messages": by_thread[t.pk],
        }
        for t in threads
    ]


def _care_relationships(patient: PatientProfile) -> list[dict[str, Any]]:
    rows = (
        CareRelationship.objects.filter(patient=patient)
        .select_related("member__clinician_profile__facility")
        .order_by("starts_at", "id")
    )
    return [
        {
            "who": r.member.display_name,
            "facility": (
                r.member.clinician_profile.facility.name
                if hasattr(r.member, "clinician_profile")
                else None
            ),
            "kind": r.kind,
            "from": _t(r.starts_at),
            "until": _t(r.ends_at),
        }
        for r in rows
    ]


def _access_log(patient: PatientProfile) -> list[dict[str, Any]]:
    """Who read or changed the record, when and why: the audit log about this patient
    (without others' network addresses, which are their personal data)."""
    rows = AuditEvent.objects.filter(patient=patient).select_related("actor").order_by("at", "id")
    return [
        {
            "at": _t(e.at),
            "who": _name(e.actor) or e.actor_label,
            "action": e.action,
            "what": e.target,
            "why": e.reason,
        }
        for e in rows
    ]
