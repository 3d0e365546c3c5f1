"""Every write of privacy/: consent decisions, the checks other apps run before
processing that needs consent, the data download, and data-subject requests.

Consent is per purpose (``privacy.models.Purpose``) and append-only: every
decision is a new ``ConsentRecord`` holding the whole set the patient agrees to.
Withdrawing takes effect at once for what comes next, never for what was done
before (Law 91/2025: a withdrawal does not make earlier processing unlawful):

* recording: no new recording starts, and a running recording of the patient's
  visits is stopped in the same transaction (the relay node is told after
  commit, as for a participant who withdraws in the visit);
* sharing on referral: a receiving clinician of a facility that never cared for
  the patient is refused the record, except for an emergency referral, which goes
  ahead on the vital-interests basis and is audited as such;
* case discussion: no new case conference about the patient;
* care: no new video visit is scheduled.

A restriction (a restriction request, or deletion) holds back every purpose but
care the same way, without touching the consent records.

Data-subject requests (correction, restriction, deletion) go received → in
progress → done or refused, by a coordinator whose scope covers the patient,
against the deadlines set when they are received (``privacy.deadlines``).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Max, Q
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext, pgettext

from privacy import deadlines, selectors
from privacy.models import (
    ConsentRecord,
    DataRequest,
    DataRequestEvent,
    ProcessingRestriction,
    Purpose,
)
from privacy.notices import CURRENT_NOTICE, notice_get
from telehealth import services as kernel_services
from telehealth.audit import audit_record
from telehealth.errors import AccessDenied, Conflict, DomainError, NotFound
from telehealth.models import AuditEvent, CareRelationship, PatientProfile, User

MAX_DETAILS = 4000
MAX_OUTCOME = 4000
#: How long a clinical record is kept (Law on Medical Examination and Treatment 2023,
#: Circular 32/2023/TT-BYT: at least 10 years), counted from its latest entry.
RETENTION_YEARS_DEFAULT = 10


def _invalid(field: str, message: str) -> DomainError:
    return DomainError(_("Invalid input."), fields={field: [message]})


def _purpose_list(values: Iterable[Any], field: str = "purposes") -> list[str]:
    """Known purposes, in the notice's order, each once."""
    chosen = set()
    for value in values:
        if value not in Purpose.values:
            raise _invalid(field, _("Unknown purpose: %(value)s.") % {"value": value})
        chosen.add(value)
    return [p for p in Purpose.values if p in chosen]


#: Namespace of the per-patient advisory lock (any fixed number; the audit chain uses another).
_PATIENT_LOCK_NAMESPACE = 7_331_002


def _serialise(patient: PatientProfile) -> None:
    """One decision about a patient at a time, to the end of the transaction: each new
    consent record is computed from the one before, so two at once must not both
    start from the same one (a withdrawal would be lost).

    An advisory lock, not the patient's row: a visit's row lock also locks its
    patient's row, and a withdrawal then locks the visits it stops, so taking the
    patient's row first could deadlock with a visit action. On SQLite, writers are
    serialised by the database already."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_advisory_xact_lock(%s, %s)",
                [_PATIENT_LOCK_NAMESPACE, patient.pk % 2_147_483_647],
            )


# --- Consent ------------------------------------------------------------------------------


def _in_force_at(patient: PatientProfile, when: datetime) -> ConsentRecord | None:
    return (
        ConsentRecord.objects.filter(patient=patient, decided_at__lte=when)
        .order_by("-decided_at", "-id")
        .first()
    )


def _record(
    *,
    patient: PatientProfile,
    purposes: list[str],
    action: str,
    notice_version: str,
    method: str,
    by: User | None,
    decided_at: datetime,
    note: str = "",
    request: Any = None,
) -> ConsentRecord:
    before = _in_force_at(patient, decided_at)
    previous = set(before.purposes) if before is not None else set()
    record = ConsentRecord.objects.create(
        patient=patient,
        notice_version=notice_version,
        action=action,
        purposes=purposes,
        given=[p for p in purposes if p not in previous],
        withdrawn=[p for p in Purpose.values if p in previous and p not in purposes],
        method=method,
        recorded_by=by,
        decided_at=decided_at,
        note=note[:255],
    )
    # Before the audit event: it takes the audit chain's lock, which comes last
    # (after the visits' row locks), as in every service.
    _after_decision(patient, by)
    audit_record(
        actor=by,
        action=AuditEvent.Action.UPDATE if before is not None else AuditEvent.Action.CREATE,
        target=f"privacy.consent:{record.pk}:{action}",
        patient=patient,
        reason=f"consent {action} ({method}): {','.join(purposes) or '-'}",
        request=request,
    )
    return record


def _after_decision(patient: PatientProfile, by: User | None) -> None:
    """What a decision or a restriction stops at once: a running recording of the
    patient's visits once the recording purpose is no longer allowed."""
    if not selectors.consent_allows(patient=patient, purpose=Purpose.RECORDING):
        from consult.visit_services import visit_recordings_stop_for_patient

        visit_recordings_stop_for_patient(patient_id=patient.pk, by=by)


@transaction.atomic
def consent_answer(
    *,
    patient: PatientProfile,
    purposes: Iterable[Any],
    notice_version: str,
    method: str,
    by: User,
    decided_at: datetime | None = None,
    note: str = "",
    request: Any = None,
) -> ConsentRecord:
    """The patient answers the privacy notice: the purposes they agree to (any others
    are withdrawn or not given). Always a new record.

    On the page and the API (``web``, ``api``) the patient answers for themself, to
    the current notice, now. On paper (``paper``) a clinician who may see the
    patient (the caller read them through ``patient_get_for_user``) records a signed
    form: the version printed on it and the day it was signed (not in the future).
    Takes the patient's row lock; audited; a withdrawn recording stops at once.
    """
    notice = notice_get(notice_version)
    if notice is None:
        raise _invalid("notice_version", _("Unknown notice version."))
    chosen = _purpose_list(purposes)
    if not set(chosen) <= set(notice.purposes):
        raise _invalid("purposes", _("This notice does not ask about some of these purposes."))
    now = timezone.now()
    if method == ConsentRecord.Method.PAPER:
        if getattr(by, "clinician_profile", None) is None or by.pk == patient.user_id:
            raise AccessDenied(_("Only a health worker or doctor records a paper form."))
        decided_at = decided_at or now
        if decided_at > now + timedelta(minutes=5):
            raise _invalid("signed_at", _("The form cannot be signed in the future."))
    elif method in (ConsentRecord.Method.WEB, ConsentRecord.Method.API):
        if by.pk != patient.user_id:
            raise AccessDenied(_("Only the patient answers for themself here."))
        if notice.version != CURRENT_NOTICE.version:
            raise Conflict(
                _("A newer privacy notice has been published: read it and answer again."),
                code="notice_outdated",
            )
        decided_at = now
    else:
        raise _invalid("method", _("Unknown way of recording consent."))
    _serialise(patient)
    return _record(
        patient=patient,
        purposes=chosen,
        action=ConsentRecord.Action.ANSWERED,
        notice_version=notice.version,
        method=method,
        by=by,
        decided_at=decided_at,
        note=note.strip() if isinstance(note, str) else "",
        request=request,
    )


def _consent_change(
    *,
    patient: PatientProfile,
    purpose: Any,
    give: bool,
    method: str,
    by: User,
    request: Any = None,
) -> ConsentRecord | None:
    if by.pk != patient.user_id:
        raise AccessDenied(_("Only the patient can change their consent."))
    if method not in (ConsentRecord.Method.WEB, ConsentRecord.Method.API):
        raise _invalid("method", _("Unknown way of recording consent."))
    (purpose,) = _purpose_list([purpose], field="purpose")
    with transaction.atomic():
        _serialise(patient)
        current = selectors.consent_current(patient=patient)
        agreed = set(current.purposes) if current is not None else set()
        if (purpose in agreed) == give:
            return current  # nothing changes: no new record
        after = agreed | {purpose} if give else agreed - {purpose}
        return _record(
            patient=patient,
            purposes=[p for p in Purpose.values if p in after],
            action=ConsentRecord.Action.GIVEN if give else ConsentRecord.Action.WITHDRAWN,
            # Giving: to the notice the patient reads now; withdrawing keeps the version
            # they had agreed under.
            notice_version=(
                CURRENT_NOTICE.version if give or current is None else current.notice_version
            ),
            method=method,
            by=by,
            decided_at=timezone.now(),
            request=request,
        )


def consent_give(
    *, patient: PatientProfile, purpose: Any, method: str, by: User, request: Any = None
) -> ConsentRecord | None:
    """The patient agrees to one more purpose. Idempotent (already given: no record)."""
    return _consent_change(
        patient=patient, purpose=purpose, give=True, method=method, by=by, request=request
    )


def consent_withdraw(
    *, patient: PatientProfile, purpose: Any, method: str, by: User, request: Any = None
) -> ConsentRecord | None:
    """The patient withdraws one purpose: a new record, the earlier ones kept.
    Idempotent. Withdrawing recording stops a running recording of their visits."""
    return _consent_change(
        patient=patient, purpose=purpose, give=False, method=method, by=by, request=request
    )


def consent_import(
    *,
    patient_ids: Iterable[int],
    purposes: Iterable[str] | None = None,
    notice_version: str = CURRENT_NOTICE.version,
    note: str = "",
) -> int:
    """Record that patients agreed to ``purposes`` (all of the notice's by default),
    for those with no decision yet: patients brought over from a register where
    they consented (the demo seed, test factories). Method ``imported``, nobody as
    recorder, not audited row by row (an administrative load); bulk inserts, so a
    national seed of 100,000 patients takes seconds. Returns how many were recorded.
    """
    notice = notice_get(notice_version)
    if notice is None:
        raise ValueError(f"unknown notice version {notice_version!r}")
    chosen = _purpose_list(notice.purposes if purposes is None else purposes)
    ids = sorted(set(patient_ids))
    answered = set(
        ConsentRecord.objects.filter(patient_id__in=ids).values_list("patient_id", flat=True)
    )
    now = timezone.now()
    rows = [
        ConsentRecord(
            patient_id=pk,
            notice_version=notice.version,
            action=ConsentRecord.Action.ANSWERED,
            purposes=chosen,
            given=chosen,
            withdrawn=[],
            method=ConsentRecord.Method.IMPORTED,
            decided_at=now,
            recorded_at=now,
            note=note[:255],
        )
        for pk in ids
        if pk not in answered
    ]
    ConsentRecord.objects.bulk_create(rows, batch_size=5000)
    return len(rows)


# --- Checks other apps run before processing that needs consent ----------------------------


def referral_sharing_check(
    *, patient: PatientProfile, member: User, emergency: bool, source: str, by: User | None
) -> None:
    """Before a referral gives ``member`` (the receiving side) the patient's record.

    Allowed when the patient consents to sharing on referral (one indexed query, the
    usual case), or when ``member``'s facility has cared for the patient before (any
    care relationship with the member or a colleague at the same facility, now or
    in the past: the record is not new to them). Otherwise an emergency goes ahead
    on the vital-interests basis (Law 91/2025) and is audited as such; anything
    else is refused with ``ConsentRequired`` (409), which rolls back the action.
    """
    if selectors.consent_allows(patient=patient, purpose=Purpose.REFERRAL_SHARING):
        return
    clinician = getattr(member, "clinician_profile", None)
    seen = CareRelationship.objects.filter(patient=patient)
    if clinician is not None:
        seen = seen.filter(
            Q(member=member) | Q(member__clinician_profile__facility_id=clinician.facility_id)
        )
    else:
        seen = seen.filter(member=member)
    if seen.exists():
        return
    if emergency:
        where = clinician.facility.name if clinician is not None else member.username
        audit_record(
            actor=by,
            action=AuditEvent.Action.CREATE,
            target=f"privacy.vital_interests:{source}"[:120],
            patient=patient,
            reason=(
                f"emergency referral: record shared with {where} without consent to "
                "sharing (vital interests)"
            ),
        )
        return
    selectors.consent_check(patient=patient, purpose=Purpose.REFERRAL_SHARING)


# --- The data download ---------------------------------------------------------------------


def patient_data_export(*, user: User, request: Any = None) -> dict[str, Any]:
    """Everything the service holds about the signed-in patient, machine-readable
    (``privacy.export``). Audited as an ``export`` of their record."""
    from privacy.export import patient_export_build

    patient = PatientProfile.objects.select_related("user", "home_commune__province").filter(
        user=user
    )
    found = patient.first() if user.is_authenticated else None
    if found is None:
        raise NotFound(_("Only patients can download their data here."))
    with transaction.atomic():
        audit_record(
            actor=user,
            action=AuditEvent.Action.EXPORT,
            target=f"patient:{found.pk}:export",
            patient=found,
            reason="data download (the patient's own request)",
            request=request,
        )
        return patient_export_build(found)


# --- Data-subject requests -----------------------------------------------------------------


def _event(
    data_request: DataRequest,
    *,
    actor: User | None,
    action: str,
    from_status: str = "",
    to_status: str = "",
    note: str = "",
) -> DataRequestEvent:
    return DataRequestEvent.objects.create(
        request=data_request,
        actor=actor,
        action=action,
        from_status=from_status,
        to_status=to_status,
        note=note[:MAX_OUTCOME],
    )


def _step(
    data_request: DataRequest,
    *,
    by: User,
    action: str,
    from_status: str,
    note: str = "",
    why: str = "",
    request: Any = None,
) -> None:
    """A coordinator's step on a request: a request event (the history both sides
    read) and an audit event, always both (docs/privacy.md)."""
    _event(
        data_request,
        actor=by,
        action=action,
        from_status=from_status,
        to_status=data_request.status,
        note=note,
    )
    audit_record(
        actor=by,
        action=AuditEvent.Action.UPDATE,
        target=f"privacy.data_request:{data_request.pk}:{action}",
        patient=data_request.patient,
        reason=(why or note)[:255],
        request=request,
    )


def _text(value: Any, field: str, *, required: bool, limit: int) -> str:
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise _invalid(field, _("Text is required."))
    value = value.strip()
    if required and not value:
        raise _invalid(field, _("This field is required."))
    if len(value) > limit:
        raise _invalid(field, _("At most %(n)d characters.") % {"n": limit})
    return value


def _restrict(
    patient: PatientProfile,
    *,
    reason: str,
    by: User | None,
    data_request: DataRequest | None = None,
    ends_at: datetime | None = None,
) -> ProcessingRestriction:
    restriction = ProcessingRestriction.objects.create(
        patient=patient, reason=reason, request=data_request, ends_at=ends_at
    )
    _after_decision(patient, by)  # before the audit event, as in _record
    audit_record(
        actor=by,
        action=AuditEvent.Action.CREATE,
        target=f"privacy.restriction:{restriction.pk}:{reason}",
        patient=patient,
        reason="processing restricted",
    )
    return restriction


def _unrestrict(restrictions: Iterable[ProcessingRestriction], by: User | None) -> int:
    now = timezone.now()
    count = 0
    for restriction in restrictions:
        restriction.ends_at = now
        restriction.ended_by = by
        restriction.save(update_fields=["ends_at", "ended_by"])
        audit_record(
            actor=by,
            action=AuditEvent.Action.UPDATE,
            target=f"privacy.restriction:{restriction.pk}:lifted",
            patient=restriction.patient,
            reason="processing restriction lifted",
        )
        count += 1
    return count


@transaction.atomic
def data_request_create(
    *, patient: PatientProfile, kind: Any, details: Any, by: User, request: Any = None
) -> DataRequest:
    """The patient asks us to correct, restrict or delete their data.

    One open request of each kind at a time (``Conflict``). A correction says what
    is wrong. A restriction applies at once, while a coordinator reviews it: the
    purposes it holds back are all optional, so holding them back cannot harm the
    patient, and waiting for the review could. Audited; the deadline is set now.
    """
    if by.pk != patient.user_id:
        raise AccessDenied(_("Only the patient can make a request about their data."))
    if kind not in DataRequest.Kind.values:
        raise _invalid("kind", _("One of: correction, restriction, deletion."))
    details = _text(
        details, "details", required=kind == DataRequest.Kind.CORRECTION, limit=MAX_DETAILS
    )
    _serialise(patient)
    if DataRequest.objects.filter(patient=patient, kind=kind, status__in=DataRequest.OPEN).exists():
        raise Conflict(
            _("You already have an open request of this kind; it is being handled."),
            code="request_open",
        )
    now = timezone.now()
    data_request = DataRequest.objects.create(
        patient=patient,
        kind=kind,
        details=details,
        created_by=by,
        created_at=now,
        respond_by=deadlines.respond_by(now),
        due_at=deadlines.complete_by(now, kind),
    )
    _event(data_request, actor=by, action="received", to_status=DataRequest.Status.RECEIVED)
    if kind == DataRequest.Kind.RESTRICTION:
        _restrict(
            patient,
            reason=ProcessingRestriction.Reason.REQUEST,
            by=by,
            data_request=data_request,
        )
    audit_record(
        actor=by,
        action=AuditEvent.Action.CREATE,
        target=f"privacy.data_request:{data_request.pk}:{kind}",
        patient=patient,
        reason="data-subject request",
        request=request,
    )
    return data_request


def _as_coordinator(by: User, request_id: Any, request: Any) -> int:
    """The request's id if ``by`` is a coordinator covering its patient. Called before
    the write transaction: the read (or the refusal) is audited and stays audited
    whatever happens next, and the audit chain's lock is not held while the action
    locks visits (a deletion stops recordings)."""
    found, role = selectors.data_request_get_for_user(
        user=by, request_id=request_id, request=request
    )
    if role != "coordinator":
        raise AccessDenied(_("A coordinator handles this request."))
    return found.pk


def _locked_request(pk: int) -> DataRequest:
    return (
        DataRequest.objects.select_for_update(of=("self",))
        .select_related("patient__user")
        .get(pk=pk)
    )


def _require_status(data_request: DataRequest, allowed: Iterable[str], action: str) -> None:
    if data_request.status not in allowed:
        raise Conflict(
            _("A request that is %(status)s cannot be %(action)s.")
            % {"status": data_request.get_status_display(), "action": action},
            code="invalid_state",
        )


def data_request_start(*, request_id: Any, by: User, request: Any = None) -> DataRequest:
    """A coordinator takes the request: received → in progress. Idempotent."""
    pk = _as_coordinator(by, request_id, request)
    with transaction.atomic():
        return _start(_locked_request(pk), by, request)


def _start(data_request: DataRequest, by: User, request: Any = None) -> DataRequest:
    if data_request.status == DataRequest.Status.IN_PROGRESS:
        return data_request
    _require_status(
        data_request, [DataRequest.Status.RECEIVED], pgettext("data request", "started")
    )
    data_request.status = DataRequest.Status.IN_PROGRESS
    data_request.handler = by
    data_request.started_at = timezone.now()
    data_request.save(update_fields=["status", "handler", "started_at"])
    _step(
        data_request,
        by=by,
        action="started",
        from_status=DataRequest.Status.RECEIVED,
        why="took the request",
        request=request,
    )
    return data_request


def data_request_complete(
    *,
    request_id: Any,
    by: User,
    outcome: Any,
    corrections: dict[str, Any] | None = None,
    request: Any = None,
) -> DataRequest:
    """A coordinator finishes the request: in progress → done, saying what was done.

    * correction: ``corrections`` (identity and contact fields, already validated)
      are applied to the record, each change kept as before → after in the result;
    * restriction: stays in force until the patient lifts it;
    * deletion: ``patient_erase`` (contact details and sign-in erased, clinical
      records kept restricted until their retention ends; the result says exactly
      what was kept and why).
    """
    outcome = _text(outcome, "outcome", required=True, limit=MAX_OUTCOME)
    pk = _as_coordinator(by, request_id, request)
    with transaction.atomic():
        return _complete(_locked_request(pk), by, outcome, corrections, request)


def _complete(
    data_request: DataRequest,
    by: User,
    outcome: str,
    corrections: dict[str, Any] | None,
    request: Any,
) -> DataRequest:
    _require_status(data_request, [DataRequest.Status.IN_PROGRESS], _("completed"))
    patient = data_request.patient
    result: dict[str, Any] = {}
    if data_request.kind == DataRequest.Kind.CORRECTION:
        changes = kernel_services.patient_record_correct(
            patient=patient,
            data=corrections or {},
            by=by,
            reason=f"privacy.data_request:{data_request.pk}",
        )
        result = {"corrected": changes}
    elif corrections:
        raise _invalid("corrections", _("Only a correction request changes the record."))
    elif data_request.kind == DataRequest.Kind.RESTRICTION:
        active = selectors.restriction_active(patient=patient)
        if active is None:
            raise Conflict(
                _("The patient has lifted the restriction; refuse the request instead."),
                code="restriction_lifted",
            )
        result = {"restricted_since": active.starts_at.isoformat()}
    else:
        result = patient_erase(patient=patient, by=by, data_request=data_request)
    before = data_request.status
    data_request.status = DataRequest.Status.DONE
    data_request.closed_at = timezone.now()
    data_request.outcome = outcome
    data_request.result = result
    data_request.save(update_fields=["status", "closed_at", "outcome", "result"])
    _step(data_request, by=by, action="done", from_status=before, note=outcome, request=request)
    return data_request


def data_request_refuse(
    *, request_id: Any, by: User, reason: Any, request: Any = None
) -> DataRequest:
    """A coordinator refuses the request with a reason the patient reads (for
    example: the data is correct as it is). A refused restriction is lifted."""
    reason = _text(reason, "reason", required=True, limit=MAX_OUTCOME)
    pk = _as_coordinator(by, request_id, request)
    with transaction.atomic():
        return _refuse(_locked_request(pk), by, reason, request)


def _refuse(data_request: DataRequest, by: User, reason: str, request: Any) -> DataRequest:
    _require_status(data_request, DataRequest.OPEN, pgettext("data request", "refused"))
    if data_request.kind == DataRequest.Kind.RESTRICTION:
        _unrestrict(
            ProcessingRestriction.objects.filter(request=data_request, ends_at__isnull=True), by
        )
    before = data_request.status
    data_request.status = DataRequest.Status.REFUSED
    data_request.handler = data_request.handler or by
    data_request.closed_at = timezone.now()
    data_request.outcome = reason
    data_request.save(update_fields=["status", "handler", "closed_at", "outcome"])
    _step(data_request, by=by, action="refused", from_status=before, note=reason, request=request)
    return data_request


def data_request_extend(
    *, request_id: Any, by: User, reason: Any, request: Any = None
) -> DataRequest:
    """A coordinator extends an open request's completion once, by
    ``PRIVACY_REQUEST_EXTENSION_DAYS``, saying why (the patient reads it in the
    request's history, with the new date). A second extension is refused."""
    reason = _text(reason, "reason", required=True, limit=MAX_OUTCOME)
    pk = _as_coordinator(by, request_id, request)
    with transaction.atomic():
        return _extend(_locked_request(pk), by, reason, request)


def _day(moment: datetime) -> str:
    return timezone.localtime(moment).strftime("%d/%m/%Y")


def _extend(data_request: DataRequest, by: User, reason: str, request: Any) -> DataRequest:
    _require_status(data_request, DataRequest.OPEN, _("extended"))
    if data_request.extended:
        raise Conflict(_("A request can be extended only once."), code="already_extended")
    if data_request.due_at < timezone.now():
        raise Conflict(
            _("The request is already past its deadline: an extension is asked for before it."),
            code="past_deadline",
        )
    before = data_request.due_at
    data_request.due_at = deadlines.extended(before)
    data_request.save(update_fields=["due_at"])
    _step(
        data_request,
        by=by,
        action="extended",
        from_status=data_request.status,
        note=reason,
        why=f"due {_day(before)} -> {_day(data_request.due_at)}: {reason}",
        request=request,
    )
    return data_request


@transaction.atomic
def restriction_lift(*, patient: PatientProfile, by: User, request: Any = None) -> int:
    """The patient lifts the restriction they asked for (not the one that keeps a
    deleted record back until its retention ends). Returns how many were lifted."""
    if by.pk != patient.user_id:
        raise AccessDenied(_("Only the patient can lift their restriction."))
    now = timezone.now()
    active = ProcessingRestriction.objects.select_related("patient").filter(
        Q(ends_at__isnull=True) | Q(ends_at__gt=now),
        patient=patient,
        reason=ProcessingRestriction.Reason.REQUEST,
    )
    return _unrestrict(list(active), by)


# --- Deletion --------------------------------------------------------------------------------

#: What deletion erases (shown to the patient by these labels).
ERASED_LABELS = {
    "phone": gettext_lazy("your phone number"),
    "email": gettext_lazy("your email address"),
    "address": gettext_lazy("your street address"),
    "username": gettext_lazy("your username (replaced by an anonymous one)"),
    "password": gettext_lazy("your password and API tokens: the account is closed"),
    "waitlist": gettext_lazy("your places on waiting lists"),
    "care_relationships": gettext_lazy("everyone's access to your record through your care"),
}
#: What deletion keeps, and why.
KEPT_LABELS = {
    "identity": gettext_lazy(
        "your name, date of birth, sex, health insurance number and home commune"
    ),
    "visits": gettext_lazy("video visits, with their notes, summaries and snapshots"),
    "recordings": gettext_lazy("recordings of video visits"),
    "appointments": gettext_lazy("appointments"),
    "referrals": gettext_lazy("referrals and care plans"),
    "messages": gettext_lazy("messages in conversations about your care"),
    "consents": gettext_lazy("your consent decisions and requests"),
    "access_log": gettext_lazy("the log of who opened your record"),
}
BASIS_LABELS = {
    "medical_record": gettext_lazy(
        "part of your medical record, which the Law on Medical Examination and Treatment "
        "2023 and Circular 32/2023/TT-BYT require us to keep for at least 10 years; it is "
        "restricted: nobody can open it in the course of care, and it is used for nothing new"
    ),
    "evidence": gettext_lazy(
        "proof that your data was processed lawfully and that your request was handled "
        "(Law 91/2025/QH15); kept for the same time as your medical record"
    ),
    "security_log": gettext_lazy(
        "the append-only access log, which cannot be changed by anyone; kept for the same "
        "time as your medical record"
    ),
}


def _retention_years() -> int:
    return int(getattr(settings, "PRIVACY_RETENTION_YEARS", RETENTION_YEARS_DEFAULT))


def deletion_plan(*, patient: PatientProfile) -> dict[str, Any]:
    """What deleting the patient's data would erase and keep, with counts and until when
    (the latest clinical entry plus the retention years). Read-only: shown to the
    patient before they ask and to the coordinator before they complete."""
    from consult.models import Message, Visit, VisitRecording
    from scheduler.models import Appointment, Referral, WaitlistEntry
    from scheduler.selectors import OPEN_STATUSES

    visits = Visit.objects.filter(patient=patient)
    referrals = Referral.objects.filter(patient=patient)
    appointments = Appointment.objects.filter(patient=patient)
    messages = Message.objects.filter(thread__patient=patient)
    latest = [
        visits.aggregate(m=Max("created_at"))["m"],
        visits.aggregate(m=Max("ended_at"))["m"],
        referrals.aggregate(m=Max("created_at"))["m"],
        referrals.aggregate(m=Max("closed_at"))["m"],
        appointments.aggregate(m=Max("end"))["m"],
        messages.aggregate(m=Max("created_at"))["m"],
    ]
    last_entry = max((d for d in latest if d is not None), default=None)
    start = max(last_entry or timezone.now(), timezone.now())
    until = _add_years(start, _retention_years())
    counts = {
        "visits": visits.count(),
        "recordings": VisitRecording.objects.filter(visit__patient=patient).count(),
        "appointments": appointments.count(),
        "referrals": referrals.count(),
        "messages": messages.count(),
        "consents": ConsentRecord.objects.filter(patient=patient).count()
        + DataRequest.objects.filter(patient=patient).count(),
        "access_log": AuditEvent.objects.filter(patient=patient).count(),
    }
    kept = [{"item": "identity", "count": None, "basis": "medical_record"}]
    for item in ("visits", "recordings", "appointments", "referrals", "messages"):
        if counts[item]:
            kept.append({"item": item, "count": counts[item], "basis": "medical_record"})
    kept.append({"item": "consents", "count": counts["consents"], "basis": "evidence"})
    kept.append({"item": "access_log", "count": counts["access_log"], "basis": "security_log"})
    open_appointments = appointments.filter(
        status__in=Appointment.ACTIVE, start__gt=timezone.now()
    ).count()
    open_referrals = referrals.filter(status__in=OPEN_STATUSES).count()
    return {
        "erased": list(ERASED_LABELS),
        "kept": kept,
        "retention_until": until.isoformat(),
        "waiting_lists": WaitlistEntry.objects.filter(
            patient=patient, status__in=["waiting", "offered"]
        ).count(),
        "open_appointments": open_appointments,
        "open_referrals": open_referrals,
    }


def _add_years(moment: datetime, years: int) -> datetime:
    try:
        return moment.replace(year=moment.year + years)
    except ValueError:  # 29 February
        return moment.replace(year=moment.year + years, day=28)


def patient_erase(
    *, patient: PatientProfile, by: User, data_request: DataRequest | None = None
) -> dict[str, Any]:
    """Delete what is not a medical record; keep the medical record restricted.

    Erased: contact details and the sign-in (``telehealth.services.patient_contact_erase``),
    places on waiting lists, and every active care relationship (nobody opens the
    record in the course of care any more). Kept, and said so with why and until
    when: the identity part of the record, visits, recordings, appointments,
    referrals, messages (the medical record: 10 years after its latest entry),
    consent records and requests (evidence), the audit log (append-only). A
    ``retention`` restriction holds the record back until then. Runs in the
    caller's transaction; each step audited.
    """
    from scheduler.appointment_services import waitlist_cancel
    from scheduler.models import WaitlistEntry

    plan = deletion_plan(patient=patient)
    # First, while no audit event has been written in this transaction: the
    # restriction stops a running recording, which locks visits (see _record).
    _restrict(
        patient,
        reason=ProcessingRestriction.Reason.RETENTION,
        by=by,
        data_request=data_request,
        ends_at=datetime.fromisoformat(plan["retention_until"]),
    )
    for entry_id in WaitlistEntry.objects.filter(
        patient=patient, status__in=["waiting", "offered"]
    ).values_list("pk", flat=True):
        waitlist_cancel(entry_id=entry_id, by=patient.user)
    ended = kernel_services.care_relationships_end_all(
        patient=patient, ended_by=by, reason="the patient's data was deleted"
    )
    kernel_services.patient_contact_erase(
        patient=patient,
        by=by,
        reason=f"privacy.data_request:{data_request.pk}" if data_request else "deletion",
    )
    return {
        "erased": plan["erased"],
        "kept": plan["kept"],
        "retention_until": plan["retention_until"],
        "care_relationships_ended": ended,
        "account_closed": True,
    }


def deletion_report(result: dict[str, Any]) -> dict[str, Any]:
    """A deletion result or plan in words, in the current language."""
    return {
        "erased": [str(ERASED_LABELS.get(item, item)) for item in result.get("erased", [])],
        "kept": [
            {
                "item": row["item"],
                "what": str(KEPT_LABELS.get(row["item"], row["item"])),
                "count": row.get("count"),
                "why": str(BASIS_LABELS.get(row["basis"], row["basis"])),
            }
            for row in result.get("kept", [])
        ],
        "retention_until": result.get("retention_until"),
        # Deletion leaves appointments and referrals standing (docs/privacy.md): the
        # coordinator sees them first, in words naming only those there are.
        # Waiting-list places are cancelled by it.
        "open_appointments": result.get("open_appointments", 0),
        "open_referrals": result.get("open_referrals", 0),
        "left_standing": _left_standing(result),
        "waiting_lists": result.get("waiting_lists", 0),
    }


def _left_standing(result: dict[str, Any]) -> list[str]:
    """What completing a deletion leaves standing, in words, only what there is."""
    standing = []
    if appointments := result.get("open_appointments", 0):
        standing.append(
            ngettext(
                "%(count)d upcoming appointment", "%(count)d upcoming appointments", appointments
            )
            % {"count": appointments}
        )
    if referrals := result.get("open_referrals", 0):
        standing.append(
            ngettext("%(count)d open referral", "%(count)d open referrals", referrals)
            % {"count": referrals}
        )
    return standing
