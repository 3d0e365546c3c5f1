"""Reads of privacy/: may this patient's data be used for this purpose, and who sees
which data request.

``consent_allows`` is what other apps call before processing that needs consent.
The rule: the patient's latest decision (``ConsentRecord``) must include the
purpose, and, for every purpose but care itself, no restriction may be active.
A patient who never answered the notice has not consented (Decree 356/2025 asks
for consent that is given, never presumed): the seed, the test factories and
imports record an answer for the patients they create.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import Case, Exists, F, OuterRef, Prefetch, Q, QuerySet, When
from django.db.models.functions import Least
from django.utils import formats, timezone
from django.utils.translation import gettext as _

from privacy.models import ConsentRecord, DataRequest, ProcessingRestriction, Purpose
from telehealth.audit import audit_record
from telehealth.errors import Conflict, NotFound
from telehealth.models import AuditEvent, CareRelationship, PatientProfile, User
from telehealth.selectors import CoordinatorScope, coordinator_scope

#: Purposes a restriction holds back. Care itself goes on: stopping it could harm the
#: patient, and the medical record is kept by law whatever the patient asks.
RESTRICTABLE = frozenset(p for p in Purpose.values if p != Purpose.CARE)


class ConsentRequired(Conflict):
    """Processing that needs the patient's consent, without it. HTTP 409."""

    code = "consent_required"


@dataclass(frozen=True)
class ConsentStatus:
    purpose: str
    allowed: bool
    #: "given", "not_given" (answered without it, or withdrew it), "never" (no answer
    #: yet) or "restricted" (given, but a restriction holds it back).
    state: str
    decided_at: datetime | None
    notice_version: str


def _active_restrictions(patient_id: Any) -> QuerySet[ProcessingRestriction]:
    now = timezone.now()
    return ProcessingRestriction.objects.filter(patient_id=patient_id, starts_at__lte=now).filter(
        Q(ends_at__isnull=True) | Q(ends_at__gt=now)
    )


def consent_status(*, patient: PatientProfile | int, purpose: str) -> ConsentStatus:
    """The state of one purpose for one patient, in one indexed query (the latest
    decision, with whether a restriction is active)."""
    if purpose not in Purpose.values:
        raise ValueError(f"unknown purpose {purpose!r}")
    patient_id = patient.pk if isinstance(patient, PatientProfile) else patient
    row = (
        ConsentRecord.objects.filter(patient_id=patient_id)
        .order_by("-decided_at", "-id")
        .annotate(restricted=Exists(_active_restrictions(OuterRef("patient_id"))))
        .values_list("purposes", "decided_at", "notice_version", "restricted")
        .first()
    )
    if row is None:
        return ConsentStatus(purpose, False, "never", None, "")
    purposes, decided_at, version, restricted = row
    if purpose not in purposes:
        return ConsentStatus(purpose, False, "not_given", decided_at, version)
    if restricted and purpose in RESTRICTABLE:
        return ConsentStatus(purpose, False, "restricted", decided_at, version)
    return ConsentStatus(purpose, True, "given", decided_at, version)


def consent_allows(*, patient: PatientProfile | int, purpose: str) -> bool:
    """May the patient's data be processed for ``purpose`` now? One indexed query."""
    return consent_status(patient=patient, purpose=purpose).allowed


def consent_check(*, patient: PatientProfile, purpose: str) -> None:
    """Raise ``ConsentRequired`` (409) with a message a clinician can act on unless
    ``consent_allows``. The error names the purpose and, after a withdrawal, when."""
    status = consent_status(patient=patient, purpose=purpose)
    if status.allowed:
        return
    label = Purpose(purpose).label
    if status.state == "restricted":
        message = _(
            "The patient has asked to restrict the processing of their data, so “%(purpose)s” "
            "is not possible while the restriction lasts."
        ) % {"purpose": label}
        code = "processing_restricted"
    elif status.state == "never":
        message = _(
            "The patient has not answered the privacy notice, so “%(purpose)s” is not "
            "possible yet. They can agree on their “My data & privacy” page, or a health "
            "worker can record their signed paper form."
        ) % {"purpose": label}
        code = "consent_not_given"
    else:
        withdrawn_at = consent_withdrawn_at(patient=patient, purpose=purpose)
        if withdrawn_at is not None:
            message = _(
                "The patient withdrew their consent to “%(purpose)s” on %(date)s, so this is "
                "not possible. Only the patient can give it again."
            ) % {
                "purpose": label,
                "date": formats.date_format(timezone.localtime(withdrawn_at), "d/m/Y H:i"),
            }
            code = "consent_withdrawn"
        else:
            message = _(
                "The patient has not agreed to “%(purpose)s”, so this is not possible. Only "
                "the patient can agree to it."
            ) % {"purpose": label}
            code = "consent_not_given"
    raise ConsentRequired(message, code=code, fields={"purpose": [purpose]})


def consent_withdrawn_at(*, patient: PatientProfile, purpose: str) -> datetime | None:
    """When the patient last withdrew ``purpose`` (None: they never gave it)."""
    for withdrawn, decided_at in ConsentRecord.objects.filter(patient=patient).values_list(
        "withdrawn", "decided_at"
    ):
        if purpose in withdrawn:
            return decided_at
    return None


def consent_current(*, patient: PatientProfile) -> ConsentRecord | None:
    """The decision in force (None: the patient never answered)."""
    return (
        ConsentRecord.objects.filter(patient=patient)
        .select_related("recorded_by")
        .order_by("-decided_at", "-id")
        .first()
    )


def consent_history(*, patient: PatientProfile) -> QuerySet[ConsentRecord]:
    """Every decision, newest first."""
    return (
        ConsentRecord.objects.filter(patient=patient)
        .select_related("recorded_by")
        .order_by("-decided_at", "-id")
    )


def restriction_active(*, patient: PatientProfile) -> ProcessingRestriction | None:
    return _active_restrictions(patient.pk).order_by("-starts_at", "-id").first()


# --- Data requests: who sees which ---------------------------------------------------------


def _covered(scope: CoordinatorScope, patient_field: str) -> Q:
    """Patients a coordinator's scope covers: living in one of its provinces, or cared
    for (now or before: any care relationship) by a clinician of one of its
    facilities or of a facility in one of its provinces."""
    prefix = f"{patient_field}__" if patient_field else ""
    cared = CareRelationship.objects.filter(
        patient_id=OuterRef(f"{patient_field}_id" if patient_field else "pk")
    ).filter(
        Q(member__clinician_profile__facility_id__in=scope.facility_ids)
        | Q(member__clinician_profile__facility__province_id__in=scope.province_ids)
    )
    return Q(**{f"{prefix}home_commune__province_id__in": scope.province_ids}) | Q(Exists(cared))


def coordinator_covers(*, user: User, patient: PatientProfile) -> bool:
    scope = coordinator_scope(user=user)
    if scope.empty:
        return False
    return PatientProfile.objects.filter(pk=patient.pk).filter(_covered(scope, "")).exists()


def _requests() -> QuerySet[DataRequest]:
    from privacy.models import DataRequestEvent

    return DataRequest.objects.select_related(
        "patient__user", "patient__home_commune__province", "handler", "created_by"
    ).prefetch_related(  # each row's history, in one query for the whole list
        Prefetch(
            "events", queryset=DataRequestEvent.objects.select_related("actor").order_by("at", "id")
        )
    )


def data_request_list_for_patient(*, patient: PatientProfile) -> QuerySet[DataRequest]:
    return _requests().filter(patient=patient).order_by("-created_at", "-id")


WORKLIST_STATES = ("open", "overdue", "closed")


def data_request_worklist(
    *, user: User, state: str = "open", request: Any = None, limit: int = 200
) -> list[DataRequest]:
    """The requests of patients the coordinator's scope covers: ``open`` (by the
    deadline each waits on: responding while received, completing once in progress),
    ``overdue`` (open and past that deadline), ``closed`` (newest first). One audit
    event for the list, which shows who the patients are."""
    scope = coordinator_scope(user=user)
    if scope.empty:
        return []
    rows = _requests().filter(_covered(scope, "patient"))
    if state == "closed":
        rows = rows.exclude(status__in=DataRequest.OPEN).order_by("-closed_at", "-id")
    else:
        # DataRequest.next_deadline, in SQL.
        rows = (
            rows.filter(status__in=DataRequest.OPEN)
            .annotate(
                waits_on=Case(
                    When(status=DataRequest.Status.RECEIVED, then=Least("respond_by", "due_at")),
                    default=F("due_at"),
                )
            )
            .order_by("waits_on", "id")
        )
        if state == "overdue":
            rows = rows.filter(waits_on__lt=timezone.now())
    found = list(rows[:limit])
    if found:
        audit_record(
            actor=user,
            action=AuditEvent.Action.READ,
            target="privacy.data_requests:worklist",
            reason=f"data requests worklist, {state} ({len(found)})",
            request=request,
        )
    return found


def data_request_get_for_user(
    *, user: User, request_id: Any, request: Any = None
) -> tuple[DataRequest, str]:
    """The request and the user's role in it ("patient" or "coordinator"); audited.

    ``NotFound`` for anyone else (audited as ``denied``), the same as for a request
    that does not exist.
    """
    try:
        pk = int(request_id)
    except (TypeError, ValueError):
        raise NotFound(_("No such request.")) from None
    found = _requests().filter(pk=pk).first()
    if found is None or not user.is_authenticated:
        raise NotFound(_("No such request."))
    if found.patient.user_id == user.pk:
        role = "patient"
    elif coordinator_covers(user=user, patient=found.patient):
        role = "coordinator"
    else:
        audit_record(
            actor=user,
            action=AuditEvent.Action.DENIED,
            target=f"privacy.data_request:{found.pk}",
            patient=found.patient,
            reason="data request",
            request=request,
        )
        raise NotFound(_("No such request."))
    audit_record(
        actor=user,
        action=AuditEvent.Action.READ,
        target=f"privacy.data_request:{found.pk}",
        patient=found.patient,
        reason=f"data request ({role})",
        request=request,
    )
    return found, role
