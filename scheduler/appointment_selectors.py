"""Reads of schedules, slots, appointments and the waiting list.

Free slots are public to signed-in people (they say nothing about a patient).
An appointment is visible to its patient, to whoever booked it and to its
clinician; reading one is audited against the patient.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.db.models import Q, QuerySet
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.translation import gettext as _

from scheduler.models import Appointment, Schedule, Slot, WaitlistEntry
from telehealth.audit import audit_record
from telehealth.errors import DomainError, NotFound
from telehealth.models import AuditEvent, ClinicianProfile, User, name_search_pattern

MAX_SLOT_RANGE = timedelta(days=31)


def _when(value: Any, name: str, default: datetime) -> datetime:
    if value in (None, ""):
        return default
    parsed = parse_datetime(value) if isinstance(value, str) else None
    if parsed is None:
        raise DomainError(_("Invalid input."), fields={name: [_("A date and time (ISO 8601).")]})
    return parsed if timezone.is_aware(parsed) else timezone.make_aware(parsed)


def bookable_clinicians(
    *, specialty_code: str | None = None, facility_code: str | None = None, name: str = ""
) -> QuerySet[ClinicianProfile]:
    """Clinicians with an active schedule, for the booking page. ``name``: words of the
    doctor's or the facility's name, accents and case ignored ("bach mai", "nguyen")."""
    clinicians = ClinicianProfile.objects.filter(schedule__is_active=True).select_related(
        "user", "facility", "schedule"
    )
    for word in name.split()[:5]:
        pattern = name_search_pattern(word[:40])
        clinicians = clinicians.filter(
            Q(user__full_name__iregex=pattern) | Q(facility__name__iregex=pattern)
        )
    if specialty_code:
        clinicians = clinicians.filter(specialties__code=specialty_code)
    if facility_code:
        clinicians = clinicians.filter(facility__code=facility_code)
    return clinicians.prefetch_related("specialties").order_by("facility__level", "user__full_name")


def slot_list(
    *,
    user: User,
    clinician_id: Any,
    starts_after: Any = None,
    starts_before: Any = None,
    include_all: bool = False,
) -> QuerySet[Slot]:
    """A clinician's slots in a window (at most 31 days): free ones for everyone; every
    status for the clinician themself (``include_all``)."""
    if not isinstance(clinician_id, int):
        raise DomainError(_("Invalid input."), fields={"clinician": [_("A clinician id.")]})
    schedule = Schedule.objects.filter(clinician_id=clinician_id).first()
    if schedule is None:
        raise NotFound(_("This clinician has no schedule."))
    now = timezone.now()
    start = _when(starts_after, "from", now)
    end = _when(starts_before, "to", start + timedelta(days=7))
    if end <= start or end - start > MAX_SLOT_RANGE:
        raise DomainError(
            _("Invalid input."), fields={"to": [_("After 'from', at most 31 days later.")]}
        )
    slots = Slot.objects.filter(schedule=schedule, start__gte=max(start, now), start__lt=end)
    own = schedule.clinician.user_id == user.pk
    if not (include_all and own):
        slots = slots.filter(status=Slot.Status.FREE)
    return slots.order_by("start")


def _visible(user: User) -> QuerySet[Appointment]:
    return Appointment.objects.filter(
        Q(patient__user=user) | Q(booked_by=user) | Q(clinician__user=user)
    ).select_related("patient__user", "clinician__user", "clinician__facility")


def appointment_list_for_user(
    *,
    user: User,
    day: Any = None,
    upcoming: bool = False,
    between: tuple[datetime, datetime] | None = None,
) -> QuerySet[Appointment]:
    """The user's appointments, in start order: of one local ``day`` (YYYY-MM-DD),
    starting within ``between`` (start, end), or ``upcoming`` (not ended yet)."""
    appointments = _visible(user)
    if between is not None:
        appointments = appointments.filter(start__gte=between[0], start__lt=between[1])
    if day:
        from django.utils.dateparse import parse_date

        parsed = parse_date(day) if isinstance(day, str) else None
        if parsed is None:
            raise DomainError(_("Invalid input."), fields={"day": [_("A date (YYYY-MM-DD).")]})
        from scheduler.policy import LOCAL_TZ

        start = datetime.combine(parsed, datetime.min.time(), tzinfo=LOCAL_TZ)
        appointments = appointments.filter(start__gte=start, start__lt=start + timedelta(days=1))
    if upcoming:
        appointments = appointments.filter(end__gte=timezone.now())
    return appointments.order_by("start")


def appointment_get_for_user(
    *, user: User, appointment_id: int, request: Any = None
) -> Appointment:
    """One appointment, if it is the user's (patient, booker, clinician); audited."""
    appointment = _visible(user).filter(pk=appointment_id).first()
    if appointment is None:
        raise NotFound(_("No such appointment."))
    if appointment.patient.user_id != user.pk:
        audit_record(
            actor=user,
            action=AuditEvent.Action.READ,
            target=f"scheduler.appointment:{appointment.pk}",
            patient=appointment.patient,
            reason="read an appointment",
            request=request,
        )
    return appointment


def waitlist_for_user(*, user: User) -> QuerySet[WaitlistEntry]:
    return (
        WaitlistEntry.objects.filter(Q(patient__user=user) | Q(created_by=user))
        .select_related("clinician__user", "offered_slot", "patient__user")
        .order_by("-created_at")
    )
