"""Writes to the shared kernel. Other apps call these, never the models' save()."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any, NoReturn

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from telehealth.audit import audit_record
from telehealth.errors import AccessDenied, Conflict, DomainError, NotFound
from telehealth.models import (
    AuditEvent,
    BreakGlassAccess,
    CareRelationship,
    ClinicianProfile,
    PatientProfile,
    User,
)
from telehealth.realtime import notify_user_on_commit

logger = logging.getLogger(__name__)


@transaction.atomic
def care_relationship_grant(
    *,
    patient: PatientProfile,
    member: User,
    kind: str,
    source: str = "",
    ends_at: datetime | None = None,
    granted_by: User | None = None,
    reason: str = "",
) -> CareRelationship:
    """Let ``member`` see ``patient``'s record for ``kind`` (from ``source``). Idempotent.

    Granting again the same (patient, member, kind, source) re-opens it and
    moves its end; it never makes a second row. Audited as a change to the
    patient's record.
    """
    if kind not in CareRelationship.Kind.values:
        raise DomainError(f"Unknown care relationship {kind!r}.", code="invalid_kind")
    if member.pk == patient.user_id:
        raise DomainError("A patient needs no relationship with themself.", code="self_relation")
    relationship, created = CareRelationship.objects.select_for_update().get_or_create(
        patient=patient,
        member=member,
        kind=kind,
        source=source,
        defaults={"ends_at": ends_at, "granted_by": granted_by},
    )
    if not created and relationship.ends_at != ends_at:
        relationship.ends_at = ends_at
        relationship.save(update_fields=["ends_at"])
    audit_record(
        actor=granted_by,
        action=AuditEvent.Action.CREATE,
        target=f"care_relationship:{relationship.pk}:{kind}:{member.username}",
        patient=patient,
        reason=reason or source,
    )
    return relationship


@transaction.atomic
def care_relationship_end(
    *,
    patient: PatientProfile,
    member: User,
    kind: str,
    source: str = "",
    ended_by: User | None = None,
) -> None:
    """End the relationship now; access through it stops at once. Idempotent."""
    now = timezone.now()
    updated = CareRelationship.objects.filter(
        patient=patient, member=member, kind=kind, source=source, ends_at__isnull=True
    ).update(ends_at=now)
    if updated:
        audit_record(
            actor=ended_by,
            action=AuditEvent.Action.UPDATE,
            target=f"care_relationship:{kind}:{member.username}:ended",
            patient=patient,
            reason=source,
        )


_SELF_EDITABLE = {"full_name", "phone", "preferred_language"}


@transaction.atomic
def user_profile_update(*, user: User, data: dict[str, Any]) -> User:
    """Change what a person may change about themself; other fields are refused."""
    unknown = set(data) - _SELF_EDITABLE
    if unknown:
        raise DomainError(
            "These fields cannot be changed here.",
            code="read_only",
            fields={name: ["read-only"] for name in sorted(unknown)},
        )
    for name, value in data.items():
        setattr(user, name, value)
    if data:
        user.save(update_fields=sorted(data))
    return user


# --- Break-glass (emergency) access ---------------------------------------------------

# A reason short enough to be a reflex ("urgent") says nothing a reviewer can judge.
BREAK_GLASS_REASON_MIN_LENGTH = 20
BREAK_GLASS_REASON_MAX_LENGTH = 1000


def _break_glass_alert_data(access: BreakGlassAccess, clinician: ClinicianProfile) -> dict:
    return {
        "access": access.pk,
        "doctor": {"id": access.doctor_id, "name": access.doctor.display_name},
        "facility": {"code": clinician.facility.code, "name": clinician.facility.name},
        "patient": {"id": access.patient_id, "name": access.patient.user.display_name},
        "reason": access.reason,
        "started_at": access.started_at.isoformat(),
        "ends_at": access.ends_at.isoformat(),
    }


def break_glass_open(
    *, doctor: User, patient_id: int, reason: str, request: Any = None
) -> BreakGlassAccess:
    """A doctor outside the care relationship opens a patient's record in an emergency.

    Checks, in this order: the person is an active doctor (``AccessDenied``
    otherwise, audited as ``denied``); the reason is stated (at least
    ``BREAK_GLASS_REASON_MIN_LENGTH`` characters); the patient exists
    (``NotFound`` otherwise, audited as ``denied``); the doctor has no access
    already (``Conflict``: nothing to break).

    Then, in one transaction: a ``BreakGlassAccess`` row, a ``break_glass`` care
    relationship that ends by itself after ``TELEHEALTH_BREAK_GLASS_MINUTES``
    (audited on the patient's record with the reason), and the alert: the
    privacy officers of the doctor's facility are recorded on the row and get a
    ``break_glass.opened`` event on their own topic after commit. The record
    itself is then read through ``selectors.patient_get_for_user`` as usual
    (basis ``break_glass``).
    """
    from telehealth.selectors import patient_access_basis

    patient = PatientProfile.objects.select_related("user").filter(pk=patient_id).first()
    clinician = (
        ClinicianProfile.objects.select_related("facility").filter(user_id=doctor.pk).first()
    )

    def refuse(error: DomainError) -> NoReturn:
        audit_record(
            actor=doctor,
            action=AuditEvent.Action.DENIED,
            target=f"break_glass:patient:{patient_id}",
            patient=patient,
            reason=f"emergency access refused: {error.code}",
            request=request,
        )
        raise error

    if not doctor.is_active or clinician is None or clinician.kind != ClinicianProfile.Kind.DOCTOR:
        refuse(
            AccessDenied(
                _("Only doctors may use emergency access to a patient's record."),
                code="not_a_doctor",
            )
        )
    cleaned = " ".join((reason or "").split())
    if len(cleaned) < BREAK_GLASS_REASON_MIN_LENGTH:
        message = _(
            "State the emergency that makes you open this record, in at least %(count)d characters."
        ) % {"count": BREAK_GLASS_REASON_MIN_LENGTH}
        raise DomainError(message, code="reason_required", fields={"reason": [message]})
    if len(cleaned) > BREAK_GLASS_REASON_MAX_LENGTH:
        message = _("Keep the reason under %(count)d characters.") % {
            "count": BREAK_GLASS_REASON_MAX_LENGTH
        }
        raise DomainError(message, code="reason_too_long", fields={"reason": [message]})
    if patient is None:
        refuse(NotFound(_("No such patient.")))
    basis = patient_access_basis(user=doctor, patient=patient)
    if basis is not None:
        raise Conflict(
            _("You already have access to this record; emergency access is not needed."),
            code="already_has_access",
            fields={"basis": [basis]},
        )

    now = timezone.now()
    ends_at = now + timedelta(minutes=settings.TELEHEALTH_BREAK_GLASS_MINUTES)
    with transaction.atomic():
        access = BreakGlassAccess.objects.create(
            doctor=doctor,
            patient=patient,
            facility=clinician.facility,
            reason=cleaned,
            started_at=now,
            ends_at=ends_at,
        )
        access.relationship = care_relationship_grant(
            patient=patient,
            member=doctor,
            kind=CareRelationship.Kind.BREAK_GLASS,
            source=f"telehealth.break_glass:{access.pk}",
            ends_at=ends_at,
            granted_by=doctor,
            reason=f"emergency access: {cleaned}",
        )
        officers = list(
            User.objects.filter(
                privacy_officer_assignments__facility=clinician.facility, is_active=True
            )
            .exclude(pk=doctor.pk)
            .distinct()
            .order_by("pk")
        )
        access.alerted_at = now
        access.save(update_fields=["relationship", "alerted_at"])
        access.alerted_officers.set(officers)
        data = _break_glass_alert_data(access, clinician)
        for officer in officers:
            notify_user_on_commit(officer.pk, name="break_glass.opened", data=data)
    if not officers:
        # Still reviewable (admin, and any officer assigned later sees it pending).
        logger.warning(
            "break-glass access %s at facility %s: no privacy officer to alert",
            access.pk,
            clinician.facility.code,
        )
    return access


@transaction.atomic
def break_glass_review(
    *, reviewer: User, access_id: int, justified: bool, note: str = "", request: Any = None
) -> BreakGlassAccess:
    """A privacy officer of the access's facility judges it: justified or not.

    Only officers of that facility see it (anyone else: ``NotFound``); nobody
    reviews their own access; a review is final (``Conflict`` the second time).
    "Not justified" needs a note and ends the access at once if it is still
    running. Audited on the patient's record; the doctor hears of it
    (``break_glass.reviewed``) after commit.
    """
    note = (note or "").strip()
    access = (
        BreakGlassAccess.objects.select_for_update(of=("self",))
        .select_related("patient__user", "doctor")
        .filter(pk=access_id, facility__privacy_officers__user=reviewer)
        .first()
    )
    if access is None or not reviewer.is_active:
        raise NotFound(_("No such emergency access to review."))
    if access.doctor_id == reviewer.pk:
        raise AccessDenied(
            _("Another privacy officer must review your own emergency access."), code="own_access"
        )
    if access.review_state != BreakGlassAccess.Review.PENDING:
        raise Conflict(_("This emergency access has already been reviewed."), code="reviewed")
    if not justified and not note:
        message = _("Say why the access was not justified.")
        raise DomainError(message, code="note_required", fields={"note": [message]})
    now = timezone.now()
    access.review_state = (
        BreakGlassAccess.Review.JUSTIFIED if justified else BreakGlassAccess.Review.NOT_JUSTIFIED
    )
    access.reviewed_by = reviewer
    access.review_note = note[:2000]
    access.reviewed_at = now
    fields = ["review_state", "reviewed_by", "review_note", "reviewed_at"]
    if not justified and access.ends_at > now:
        access.ends_at = now
        fields.append("ends_at")
        CareRelationship.objects.filter(pk=access.relationship_id, ends_at__gt=now).update(
            ends_at=now
        )
    access.save(update_fields=fields)
    audit_record(
        actor=reviewer,
        action=AuditEvent.Action.UPDATE,
        target=f"break_glass:{access.pk}:{access.review_state}",
        patient=access.patient,
        reason=note or access.review_state,
        request=request,
    )
    notify_user_on_commit(
        access.doctor_id,
        name="break_glass.reviewed",
        data={"access": access.pk, "review_state": access.review_state},
    )
    return access


# --- Sessions, deactivation and the TOTP second factor ------------------------------------
# Imports are local: these services touch django-otp, DRF tokens and the session
# engine, which the rest of the kernel never needs.


def session_end(*, session_key: str, user: User, reason: str, request: Any = None) -> bool:
    """End one session from outside a request made with it (a socket found it over):
    delete it, audit a sign-out with ``reason`` (``session_security.IDLE`` or
    ``ABSOLUTE``, or a text), and close that session's sockets on every web process.

    Idempotent: only the caller whose delete removed the row audits and publishes, so
    two sockets of one session noticing at once write one sign-out. Returns that."""
    from telehealth.realtime import publish_on_commit, user_topic
    from telehealth.session_security import REASON_LABELS, session_store

    store = session_store(session_key)
    with transaction.atomic():
        deleted = store.get_model_class().objects.filter(session_key=session_key).delete()[0]
        if deleted:
            audit_record(
                actor=user,
                action=AuditEvent.Action.SIGN_OUT,
                target="session",
                reason=REASON_LABELS.get(reason, reason),
                request=request,
            )
            publish_on_commit(
                user_topic(user.pk), {"kind": "session_ended", "session_key": session_key}
            )
    store.delete(session_key)  # the cached copy
    return bool(deleted)


def _user_session_keys(user_id: int) -> list[str]:
    """Keys of the live sessions signed in as ``user_id``, or waiting for their code.

    Sessions are not indexed by user, so this decodes every live session: fine for
    a rare administrative act, not for a request path."""
    from django.contrib.auth import SESSION_KEY

    from telehealth.session_security import session_store
    from telehealth.two_factor import PENDING_KEY

    store = session_store()
    rows = (
        store.get_model_class()
        .objects.filter(expire_date__gt=timezone.now())
        .values_list("session_key", "session_data")
    )
    keys = []
    for key, data in rows.iterator(chunk_size=1000):
        decoded = store.decode(data)
        pending = decoded.get(PENDING_KEY)
        pending_user = pending.get("user") if isinstance(pending, dict) else None
        if str(decoded.get(SESSION_KEY)) == str(user_id) or pending_user == user_id:
            keys.append(key)
    return keys


@transaction.atomic
def user_deactivate(
    *, user: User, by: User | None = None, reason: str = "", request: Any = None
) -> dict[str, int]:
    """Deactivate ``user`` and close every way in at once: their sessions are deleted
    (signed-in and half-signed-in ones), their API token is deleted, and every socket
    of theirs on every web process closes with 4401 (``session_ended`` with no
    session key, after commit). Audited as one change to the account.

    Idempotent: an account already inactive has whatever is left closed (each call
    is audited: it is an administrator's act). The user's row is locked while it runs; the
    admin action and the ``is_active`` safety-net signal (``telehealth.signals``)
    both come here. Returns how many sessions and tokens it ended."""
    from rest_framework.authtoken.models import Token

    from telehealth.realtime import publish_on_commit, user_topic
    from telehealth.session_security import session_store

    locked = User.objects.select_for_update().get(pk=user.pk)
    was_active = locked.is_active
    if was_active:
        # A plain row update sends no post_save and skips the bulk guard of
        # UserQuerySet.update: neither safety net calls us again.
        User.objects.filter(pk=user.pk).update_rows(is_active=False)
    user.is_active = False
    keys = _user_session_keys(user.pk)
    sessions = session_store().get_model_class().objects.filter(session_key__in=keys).delete()[0]
    tokens = Token.objects.filter(user_id=user.pk).delete()[0]
    audit_record(
        actor=by,
        action=AuditEvent.Action.UPDATE,
        target=f"user:{user.pk}:deactivated",
        reason=(
            f"{reason or 'account deactivated'}; "
            f"{sessions} session(s) and {tokens} API token(s) ended"
        ),
        request=request,
    )

    def _drop_cached_copies() -> None:
        for key in keys:
            session_store(key).delete(key)

    # After commit: before it, a request could read the still-visible row back into the cache.
    transaction.on_commit(_drop_cached_copies)
    publish_on_commit(user_topic(user.pk), {"kind": "session_ended", "session_key": None})
    return {"sessions": sessions, "tokens": tokens}


def _totp_check(*, user: User, device: Any, code: Any, request: Any, target: str) -> None:
    """Raise unless ``code`` is the device's current code (each code works once).

    Wrong codes are audited as ``denied`` and slow the device down (django-otp's
    throttle: 1, 2, 4 … seconds before the next try is even looked at)."""
    from django_otp.plugins.otp_totp.models import TOTPDevice

    text = str(code or "").replace(" ", "").strip()
    if not (text.isdigit() and len(text) == device.digits):
        message = _("Enter the 6-digit code shown in your authenticator app.")
        raise DomainError(message, code="invalid_otp", fields={"otp": [message]})
    with transaction.atomic():
        locked = TOTPDevice.objects.select_for_update().get(pk=device.pk)
        allowed, _info = locked.verify_is_allowed()
        verified = allowed and locked.verify_token(text)
    if verified:
        return
    audit_record(
        actor=user,
        action=AuditEvent.Action.DENIED,
        target=target,
        reason="wrong TOTP code" if allowed else "TOTP code refused: too many wrong codes",
        request=request,
    )
    if not allowed:
        message = _("Too many wrong codes. Wait a minute, then try again.")
        raise DomainError(message, code="otp_throttled", fields={"otp": [message]})
    message = _("That code is not right. Check the time on your phone and try again.")
    raise DomainError(message, code="bad_otp", fields={"otp": [message]})


def totp_device_start(*, user: User) -> Any:
    """The authenticator being set up (unconfirmed): made once, shown again until
    it is confirmed, so reloading the page keeps the same QR code."""
    from django_otp.plugins.otp_totp.models import TOTPDevice

    device = TOTPDevice.objects.filter(user=user, confirmed=False).order_by("-pk").first()
    if device is None:
        device = TOTPDevice.objects.create(user=user, name="authenticator", confirmed=False)
    return device


def totp_device_confirm(*, user: User, code: Any, request: Any = None) -> Any:
    """Confirm the authenticator being set up with a code it shows: from now on the
    person signs in with password and code. One authenticator per person: confirming
    replaces any other. Audited."""
    from django_otp.plugins.otp_totp.models import TOTPDevice

    device = TOTPDevice.objects.filter(user=user, confirmed=False).order_by("-pk").first()
    if device is None:
        raise DomainError(_("Open the set-up page again to get a new code."), code="no_device")
    _totp_check(
        user=user, device=device, code=code, request=request, target=f"user:{user.pk}:totp:enrol"
    )
    with transaction.atomic():
        TOTPDevice.objects.filter(pk=device.pk).update(confirmed=True)
        TOTPDevice.objects.filter(user=user).exclude(pk=device.pk).delete()
        audit_record(
            actor=user,
            action=AuditEvent.Action.UPDATE,
            target=f"user:{user.pk}:totp:enabled",
            reason="two-step sign-in turned on",
            request=request,
        )
    device.refresh_from_db()
    return device


def totp_sign_in_verify(*, user: User, code: Any, request: Any = None) -> Any:
    """Check the second step of a sign-in (or of an API token request). Returns the
    device; the sign-in itself is audited when it completes."""
    from telehealth.two_factor import confirmed_device

    device = confirmed_device(user)
    if device is None:
        raise DomainError(_("Set up two-step sign-in first."), code="otp_enrolment_required")
    _totp_check(user=user, device=device, code=code, request=request, target="session:totp")
    return device


def totp_disable(*, user: User, code: Any, request: Any = None) -> None:
    """Turn two-step sign-in off, with a current code (someone at an unlocked screen
    cannot). Refused when a role of the person requires it. Audited."""
    from django_otp.plugins.otp_totp.models import TOTPDevice

    from telehealth.two_factor import confirmed_device, totp_required

    if totp_required(user):
        raise DomainError(
            _("Two-step sign-in is required for your role and cannot be turned off."),
            code="totp_required",
        )
    device = confirmed_device(user)
    if device is None:
        raise DomainError(_("Two-step sign-in is not on."), code="not_enabled")
    _totp_check(
        user=user, device=device, code=code, request=request, target=f"user:{user.pk}:totp:disable"
    )
    # Not one transaction with the check: a wrong code's audit and throttle must stay.
    with transaction.atomic():
        TOTPDevice.objects.filter(user=user).delete()
        audit_record(
            actor=user,
            action=AuditEvent.Action.UPDATE,
            target=f"user:{user.pk}:totp:disabled",
            reason="two-step sign-in turned off",
            request=request,
        )


@transaction.atomic
def care_relationships_end_all(
    *, patient: PatientProfile, ended_by: User | None, reason: str
) -> int:
    """End every relationship that still gives someone the patient's record, now
    (those open-ended and those set to end later). One audit event. Returns how many."""
    now = timezone.now()
    ended = (
        CareRelationship.objects.filter(patient=patient)
        .exclude(ends_at__lte=now)
        .update(ends_at=now)
    )
    if ended:
        audit_record(
            actor=ended_by,
            action=AuditEvent.Action.UPDATE,
            target=f"care_relationship:all:{patient.pk}:ended",
            patient=patient,
            reason=f"{reason} ({ended})",
        )
    return ended


#: What a correction request may change: the identity and contact details. Clinical
#: content is corrected by the clinicians who wrote it, never here.
PATIENT_CORRECTABLE_USER = ("full_name", "phone")
PATIENT_CORRECTABLE_PROFILE = (
    "date_of_birth",
    "sex",
    "health_insurance_number",
    "address",
    "home_commune",
)


def _plain(value: Any) -> str:
    if value is None:
        return ""
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "code"):  # a commune
        return f"{value.code} {value.name}"
    return str(value)


@transaction.atomic
def patient_record_correct(
    *, patient: PatientProfile, data: dict[str, Any], by: User, reason: str
) -> dict[str, list[str]]:
    """Correct a patient's identity or contact details (a data-subject request handled
    by a coordinator). ``data`` holds validated values of the correctable fields;
    any other field is refused. Returns ``{field: [before, after]}`` for what
    changed, so the old value stays on record. Audited."""
    unknown = set(data) - {*PATIENT_CORRECTABLE_USER, *PATIENT_CORRECTABLE_PROFILE}
    if unknown:
        raise DomainError(
            "These fields cannot be corrected here.",
            code="read_only",
            fields={name: ["read-only"] for name in sorted(unknown)},
        )
    patient = PatientProfile.objects.select_for_update().select_related("user").get(pk=patient.pk)
    changes: dict[str, list[str]] = {}
    for name, value in data.items():
        owner: Any = patient.user if name in PATIENT_CORRECTABLE_USER else patient
        before = getattr(owner, name)
        if before != value:
            changes[name] = [_plain(before), _plain(value)]
            setattr(owner, name, value)
    user_fields = sorted(n for n in changes if n in PATIENT_CORRECTABLE_USER)
    profile_fields = sorted(n for n in changes if n in PATIENT_CORRECTABLE_PROFILE)
    if user_fields:
        patient.user.save(update_fields=user_fields)
    if profile_fields:
        patient.save(update_fields=profile_fields)
    if changes:
        audit_record(
            actor=by,
            action=AuditEvent.Action.UPDATE,
            target=f"patient:{patient.pk}:corrected:{','.join(sorted(changes))}",
            patient=patient,
            reason=reason,
        )
    return changes


@transaction.atomic
def patient_contact_erase(*, patient: PatientProfile, by: User, reason: str) -> list[str]:
    """Erase what reaches or signs in the patient outside their medical record: phone,
    email, street address, and the account (an anonymous username, no usable
    password, API tokens deleted, inactive: its sessions no longer sign anyone in,
    and the deactivation closes them). The name, date of birth, sex, insurance
    number and home commune stay: they are the administrative part of the medical
    record. Audited. Returns what was erased."""
    from rest_framework.authtoken.models import Token

    patient = PatientProfile.objects.select_for_update().select_related("user").get(pk=patient.pk)
    user = patient.user
    user.phone = ""
    user.email = ""
    user.first_name = ""
    user.last_name = ""
    user.username = f"erased-{user.pk}"
    user.set_unusable_password()
    user.is_active = False
    # Saving is_active=False closes the account's sessions and sockets too
    # (telehealth.signals' safety net); these say who and why in its audit event.
    user._th_deactivated_by = by  # type: ignore[attr-defined]
    user._th_deactivation_reason = "the patient's data was deleted at their request"  # type: ignore[attr-defined]
    user.save(
        update_fields=[
            "phone",
            "email",
            "first_name",
            "last_name",
            "username",
            "password",
            "is_active",
        ]
    )
    patient.address = ""
    patient.save(update_fields=["address"])
    Token.objects.filter(user=user).delete()
    audit_record(
        actor=by,
        action=AuditEvent.Action.DELETE,
        target=f"patient:{patient.pk}:contact_and_account_erased",
        patient=patient,
        reason=reason,
    )
    return ["phone", "email", "address", "username", "password"]
