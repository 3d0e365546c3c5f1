"""Reads of the shared kernel. Protected reads go through ``patient_get_for_user``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db.models import (
    Case,
    Exists,
    IntegerField,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
    Value,
    When,
)
from django.utils import timezone

from telehealth.audit import audit_record
from telehealth.errors import NotFound
from telehealth.filters import FacilityFilter
from telehealth.models import (
    AuditEvent,
    BreakGlassAccess,
    CareRelationship,
    CoordinatorAssignment,
    Facility,
    LegacyProvince,
    PatientProfile,
    PrivacyOfficerAssignment,
    Province,
    User,
)


def facility_list(*, filters: dict[str, Any] | None = None) -> QuerySet[Facility]:
    """Active facilities, filtered by province, level, specialty, hub and name.

    Raises ``django_filters`` validation errors for bad filter values; the API
    turns them into 400 with field errors.
    """
    base = Facility.objects.filter(is_active=True).select_related("province", "parent")
    return FacilityFilter(filters or {}, queryset=base).qs


def facility_get(*, code: str) -> Facility:
    try:
        return (
            Facility.objects.select_related("province", "commune", "parent")
            .prefetch_related("offerings__specialty")
            .get(code=code, is_active=True)
        )
    except Facility.DoesNotExist:
        raise NotFound(f"No facility with code {code!r}.") from None


def province_resolve(*, code: str) -> Province:
    """The province for a code of today's 34, or for a code of the 63 before July 2025.

    Today's codes win where both lists use the same number (they name the same
    place: each surviving province kept its code).
    """
    province = Province.objects.filter(code=code).first()
    if province is not None:
        return province
    legacy = LegacyProvince.objects.select_related("province").filter(code=code).first()
    if legacy is not None:
        return legacy.province
    raise NotFound(f"No province with code {code!r}, now or before July 2025.")


def care_relationship_active(*, user: User, patient: PatientProfile) -> CareRelationship | None:
    now = timezone.now()
    return (
        CareRelationship.objects.filter(member=user, patient=patient, starts_at__lte=now)
        .filter(Q(ends_at__isnull=True) | Q(ends_at__gt=now))
        .order_by("starts_at")
        .first()
    )


def patient_access_basis(*, user: User, patient: PatientProfile) -> str | None:
    """Why ``user`` may see ``patient``'s record ("self", a relationship kind), or None."""
    if not user.is_authenticated or not user.is_active:
        return None
    if patient.user_id == user.id:
        return "self"
    relationship = care_relationship_active(user=user, patient=patient)
    return relationship.kind if relationship is not None else None


def patient_list_for_user(*, user: User, purpose: str, request: Any = None) -> list[PatientProfile]:
    """The patients ``user`` cares for now (an active care relationship), by name.

    The list form of ``patient_get_for_user``: the same rule, one query, and one
    audit event for the list (naming how many), since it shows who they are.
    """
    now = timezone.now()
    active = CareRelationship.objects.filter(
        patient=OuterRef("pk"), member=user, starts_at__lte=now
    ).filter(Q(ends_at__isnull=True) | Q(ends_at__gt=now))
    patients = list(
        PatientProfile.objects.filter(Exists(active))
        .exclude(user=user)
        .select_related("user")
        .order_by("user__full_name", "pk")
    )
    if patients:
        audit_record(
            actor=user,
            action=AuditEvent.Action.READ,
            target="patients:in_my_care",
            reason=f"{purpose} ({len(patients)} patients)",
            request=request,
        )
    return patients


def patient_get_for_user(
    *, user: User, patient_id: int, purpose: str, request: Any = None
) -> PatientProfile:
    """The one way to read a patient's record: authorised, then audited.

    Raises ``NotFound`` both when the patient does not exist and when the user
    has no relationship with them, so the answer does not reveal who is a
    patient here. A refused attempt is audited as ``denied``.
    """
    patient = (
        PatientProfile.objects.select_related("user", "home_commune__province")
        .filter(pk=patient_id)
        .first()
    )
    if patient is None:
        raise NotFound("No such patient.")
    basis = patient_access_basis(user=user, patient=patient)
    if basis is None:
        audit_record(
            actor=user,
            action=AuditEvent.Action.DENIED,
            target=f"patient:{patient.pk}",
            patient=patient,
            reason=purpose,
            request=request,
        )
        raise NotFound("No such patient.")
    audit_record(
        actor=user,
        action=AuditEvent.Action.READ,
        target=f"patient:{patient.pk}",
        patient=patient,
        reason=f"{purpose} ({basis})",
        request=request,
    )
    return patient


def user_get_profile(*, user_id: int) -> User:
    return (
        User.objects.select_related(
            "clinician_profile__facility__province", "patient_profile__home_commune__province"
        )
        .prefetch_related(
            "clinician_profile__specialties",
            "coordinator_assignments__facility",
            "coordinator_assignments__province",
        )
        .get(pk=user_id)
    )


# --- Coordinators ---------------------------------------------------------------------


@dataclass(frozen=True)
class CoordinatorScope:
    """What a coordinator coordinates: facilities, and whole provinces."""

    facility_ids: frozenset[int]
    province_ids: frozenset[int]

    def covers(self, facility: Facility | None) -> bool:
        if facility is None:
            return False
        return facility.pk in self.facility_ids or facility.province_id in self.province_ids

    def covers_ids(self, facility_id: int | None, province_id: int | None) -> bool:
        return facility_id in self.facility_ids or province_id in self.province_ids

    @property
    def empty(self) -> bool:
        return not self.facility_ids and not self.province_ids

    def facilities_q(self, prefix: str) -> Q:
        """Rows whose facility (the field ``prefix``) the scope covers."""
        return Q(**{f"{prefix}__in": self.facility_ids}) | Q(
            **{f"{prefix}__province_id__in": self.province_ids}
        )


def coordinator_scope(*, user: User) -> CoordinatorScope:
    """The scope of ``user``'s coordinator assignments; empty for anyone signed out or
    deactivated, whatever assignments are left on the account."""
    if not user.is_authenticated or not user.is_active:
        return CoordinatorScope(frozenset(), frozenset())
    rows = list(
        CoordinatorAssignment.objects.filter(user=user).values_list("facility_id", "province_id")
    )
    return CoordinatorScope(
        facility_ids=frozenset(f for f, _p in rows if f is not None),
        province_ids=frozenset(p for _f, p in rows if p is not None),
    )


# --- Break-glass review and the patient's access log ------------------------------------


def privacy_officer_facility_ids(*, user: User) -> list[int]:
    """The facilities whose emergency accesses ``user`` reviews (none: not an officer)."""
    if not user.is_authenticated or not user.is_active:
        return []
    return list(
        PrivacyOfficerAssignment.objects.filter(user=user).values_list("facility_id", flat=True)
    )


def break_glass_review_list(
    *, officer: User, state: str | None = None, request: Any = None
) -> QuerySet[BreakGlassAccess]:
    """Emergency accesses at the facilities ``officer`` is privacy officer of: pending
    first, then the newest. Anyone else gets ``NotFound``.

    The list names patients, so each read is one audit event (like a board read).
    """
    facility_ids = privacy_officer_facility_ids(user=officer)
    if not facility_ids:
        raise NotFound("No review list here.")
    accesses = BreakGlassAccess.objects.filter(facility_id__in=facility_ids)
    if state:
        accesses = accesses.filter(review_state=state)
    audit_record(
        actor=officer,
        action=AuditEvent.Action.READ,
        target="break_glass:review_list",
        reason=f"privacy review ({state or 'all'})",
        request=request,
    )
    return accesses.select_related("doctor", "patient__user", "facility", "reviewed_by").order_by(
        Case(
            When(review_state=BreakGlassAccess.Review.PENDING, then=Value(0)),
            default=Value(1),
            output_field=IntegerField(),
        ),
        "-started_at",
        "-id",
    )


def patient_access_log(
    *, user: User, patient_id: int, request: Any = None
) -> tuple[PatientProfile, QuerySet[AuditEvent], list[BreakGlassAccess]]:
    """Who accessed this patient's record: for the patient themself only.

    Returns the patient, their audit events newest first (page it), and their
    emergency accesses. Anyone else, including their own doctors, gets the
    ``NotFound`` of a missing patient, audited as ``denied``; the patient's own
    read is audited too (it is a read of their record).
    """
    patient = PatientProfile.objects.select_related("user").filter(pk=patient_id).first()
    if patient is None:
        raise NotFound("No such patient.")
    own = user.is_authenticated and user.is_active and patient.user_id == user.id
    audit_record(
        actor=user if user.is_authenticated else None,
        action=AuditEvent.Action.READ if own else AuditEvent.Action.DENIED,
        target=f"patient:{patient.pk}:access_log",
        patient=patient,
        reason="who accessed my record" if own else "access log of another person",
        request=request,
    )
    if not own:
        raise NotFound("No such patient.")
    events = (
        AuditEvent.objects.filter(patient=patient)
        .select_related("actor__clinician_profile__facility")
        .prefetch_related(
            Prefetch(
                "actor__coordinator_assignments",
                queryset=CoordinatorAssignment.objects.select_related("facility", "province"),
            ),
            Prefetch(
                "actor__privacy_officer_assignments",
                queryset=PrivacyOfficerAssignment.objects.select_related("facility"),
            ),
        )
        .order_by("-at", "-id")
    )
    accesses = list(
        BreakGlassAccess.objects.filter(patient=patient)
        .select_related("doctor", "facility")
        .order_by("-started_at", "-id")
    )
    return patient, events, accesses
