"""Every write of appointments: availability, slots, booking, reschedule, cancel,
arrival, no-shows, reminders and the waiting list.

Double booking is impossible twice over: booking locks the slot row
(``select_for_update``) and checks it is free, and a partial unique constraint
allows one active appointment per slot, so even a path that forgot the lock
would fail with ``Conflict`` rather than book twice.

Rules (patients and the people booking for them):
- a slot can be booked from ``MIN_LEAD`` ahead until the slot's start;
- the patient side may cancel or reschedule until ``CHANGE_CUTOFF`` before
  the start, at most ``MAX_RESCHEDULES`` times; after that only the clinic can;
- the clinician may cancel any time before the end, with a reason.
Freed future slots are offered to the waiting list, one patient at a time,
held for ``OFFER_HOLD``.
"""

from __future__ import annotations

import logging
from datetime import date, datetime, time, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone, translation
from django.utils.dateparse import parse_datetime, parse_time
from django.utils.translation import gettext as _

from scheduler.models import (
    Appointment,
    AppointmentMode,
    AppointmentReminder,
    Referral,
    Schedule,
    ScheduleException,
    Slot,
    WaitlistEntry,
    WeeklyHours,
)
from scheduler.policy import LOCAL_TZ
from telehealth import services as kernel_services
from telehealth.dispatch import send_task_on_commit
from telehealth.errors import (
    AccessDenied,
    Conflict,
    DomainError,
    NotFound,
)
from telehealth.models import CareRelationship, ClinicianProfile, PatientProfile, User
from telehealth.realtime import notify_user_on_commit

logger = logging.getLogger(__name__)

MIN_LEAD = timedelta(minutes=5)
CHANGE_CUTOFF = timedelta(hours=2)
MAX_RESCHEDULES = 2
OFFER_HOLD = timedelta(minutes=30)
NO_SHOW_GRACE = timedelta(minutes=15)
DAY_BEFORE = timedelta(hours=24)
FIFTEEN_MINUTES = timedelta(minutes=15)
MAX_HORIZON_DAYS = 120

ACTIVE = Appointment.ACTIVE


def _source(appointment: Appointment) -> str:
    return f"scheduler.appointment:{appointment.pk}"


def _invalid(field: str, message: str) -> DomainError:
    return DomainError(_("Invalid input."), fields={field: [message]})


# --- Availability -----------------------------------------------------------------------


def _clinician(user: User) -> ClinicianProfile:
    clinician = getattr(user, "clinician_profile", None)
    if clinician is None:
        raise AccessDenied(_("Only clinicians publish availability."))
    return clinician


def schedule_for(*, clinician: ClinicianProfile) -> Schedule:
    schedule, _created = Schedule.objects.get_or_create(clinician=clinician)
    return schedule


def _parse_intervals(value: Any, name: str) -> list[tuple[int, time, time]]:
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > 100:
        raise _invalid(name, _("A list of {weekday, start, end}."))
    result = []
    for item in value:
        if not isinstance(item, dict):
            raise _invalid(name, _("A list of {weekday, start, end}."))
        weekday = item.get("weekday")
        start = parse_time(str(item.get("start", ""))) if item.get("start") else None
        end = parse_time(str(item.get("end", ""))) if item.get("end") else None
        if not isinstance(weekday, int) or not 0 <= weekday <= 6:
            raise _invalid(name, _("weekday is 0 (Monday) to 6 (Sunday)."))
        if start is None or end is None or start >= end:
            raise _invalid(name, _("start and end are times (HH:MM), start before end."))
        result.append((weekday, start, end))
    return result


def availability_set(*, by: User, data: dict[str, Any]) -> Schedule:
    """Replace a clinician's availability and regenerate their free slots.

    ``data``: ``visit_minutes``, ``buffer_minutes``, ``horizon_days``,
    ``allows_video``, ``allows_in_person``, ``hours`` and ``breaks`` (lists of
    {weekday, start, end}, local time). Booked slots are never touched.
    """
    clinician = _clinician(by)
    if not isinstance(data, dict):
        raise _invalid("non_field_errors", _("A JSON object is required."))
    fields: dict[str, list[str]] = {}
    numbers = {
        "visit_minutes": (5, 240),
        "buffer_minutes": (0, 120),
        "horizon_days": (1, MAX_HORIZON_DAYS),
    }
    values: dict[str, Any] = {}
    for name, (low, high) in numbers.items():
        if name in data:
            value = data[name]
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                fields[name] = [_("A whole number from %(a)d to %(b)d.") % {"a": low, "b": high}]
            else:
                values[name] = value
    for name in ("allows_video", "allows_in_person"):
        if name in data:
            if not isinstance(data[name], bool):
                fields[name] = [_("true or false.")]
            else:
                values[name] = data[name]
    hours: list = []
    breaks: list = []
    try:
        hours = _parse_intervals(data.get("hours"), "hours")
    except DomainError as exc:
        fields.update(exc.fields)
    try:
        breaks = _parse_intervals(data.get("breaks"), "breaks")
    except DomainError as exc:
        fields.update(exc.fields)
    if fields:
        raise DomainError(_("The availability has invalid fields."), fields=fields)
    with transaction.atomic():
        schedule = schedule_for(clinician=clinician)
        schedule = Schedule.objects.select_for_update().get(pk=schedule.pk)
        for name, value in values.items():
            setattr(schedule, name, value)
        if not (values.get("allows_video", schedule.allows_video) or schedule.allows_in_person):
            raise _invalid("allows_video", _("Allow at least one kind of visit."))
        schedule.updated_at = timezone.now()
        schedule.save()
        if "hours" in data or "breaks" in data:
            schedule.weekly.all().delete()
            WeeklyHours.objects.bulk_create(
                [
                    WeeklyHours(schedule=schedule, weekday=w, start_time=s, end_time=e)
                    for w, s, e in hours
                ]
                + [
                    WeeklyHours(
                        schedule=schedule,
                        weekday=w,
                        start_time=s,
                        end_time=e,
                        kind=WeeklyHours.Kind.BREAK,
                    )
                    for w, s, e in breaks
                ]
            )
        slots_generate(schedule_id=schedule.pk)
    return schedule


def availability_exception_add(
    *, by: User, starts_at: Any, ends_at: Any, kind: Any = "blocked", note: Any = ""
) -> ScheduleException:
    """Time off (``blocked``: free slots in it become blocked) or extra hours (``extra``)."""
    clinician = _clinician(by)
    start = parse_datetime(starts_at) if isinstance(starts_at, str) else starts_at
    end = parse_datetime(ends_at) if isinstance(ends_at, str) else ends_at
    fields = {}
    if not isinstance(start, datetime):
        fields["starts_at"] = [_("A date and time (ISO 8601).")]
    if not isinstance(end, datetime):
        fields["ends_at"] = [_("A date and time (ISO 8601).")]
    if kind not in ScheduleException.Kind.values:
        fields["kind"] = [_("blocked or extra.")]
    if not fields and start >= end:
        fields["ends_at"] = [_("The end must be after the start.")]
    if not fields and end - start > timedelta(days=60):
        fields["ends_at"] = [_("At most 60 days at a time.")]
    if fields:
        raise DomainError(_("The exception has invalid fields."), fields=fields)
    if timezone.is_naive(start):
        start = timezone.make_aware(start, LOCAL_TZ)
    if timezone.is_naive(end):
        end = timezone.make_aware(end, LOCAL_TZ)
    with transaction.atomic():
        schedule = schedule_for(clinician=clinician)
        Schedule.objects.select_for_update().get(pk=schedule.pk)
        exception = ScheduleException.objects.create(
            schedule=schedule, starts_at=start, ends_at=end, kind=kind, note=str(note or "")[:200]
        )
        slots_generate(schedule_id=schedule.pk)
    return exception


def availability_exception_remove(*, by: User, exception_id: int) -> None:
    clinician = _clinician(by)
    with transaction.atomic():
        exception = ScheduleException.objects.filter(
            pk=exception_id, schedule__clinician=clinician
        ).first()
        if exception is None:
            raise NotFound(_("No such exception."))
        schedule_id = exception.schedule_id
        Schedule.objects.select_for_update().get(pk=schedule_id)
        exception.delete()
        slots_generate(schedule_id=schedule_id)


def _local(day: date, at: time) -> datetime:
    return datetime.combine(day, at, tzinfo=LOCAL_TZ)


def _subtract(
    intervals: list[tuple[datetime, datetime]], holes: list[tuple[datetime, datetime]]
) -> list[tuple[datetime, datetime]]:
    result = intervals
    for hole_start, hole_end in holes:
        next_result = []
        for start, end in result:
            if hole_end <= start or hole_start >= end:
                next_result.append((start, end))
                continue
            if start < hole_start:
                next_result.append((start, hole_start))
            if hole_end < end:
                next_result.append((hole_end, end))
        result = next_result
    return result


def desired_slots(
    *,
    schedule: Schedule,
    weekly: list[WeeklyHours],
    exceptions: list[ScheduleException],
    first_day: date,
    last_day: date,
) -> dict[datetime, tuple[datetime, bool]]:
    """The slots availability asks for: start → (end, blocked). Pure: no queries.

    Working intervals are the weekly hours plus extra exceptions, minus breaks;
    slots of ``visit_minutes`` follow each other with ``buffer_minutes`` between
    them. A slot overlapping a ``blocked`` exception is kept but blocked, so the
    clinician sees the day off in their calendar.
    """
    length = timedelta(minutes=schedule.visit_minutes)
    step = length + timedelta(minutes=schedule.buffer_minutes)
    blocked = [
        (e.starts_at, e.ends_at) for e in exceptions if e.kind == ScheduleException.Kind.BLOCKED
    ]
    extra = [(e.starts_at, e.ends_at) for e in exceptions if e.kind == ScheduleException.Kind.EXTRA]
    result: dict[datetime, tuple[datetime, bool]] = {}
    day = first_day
    while day <= last_day:
        hours = [
            (_local(day, w.start_time), _local(day, w.end_time))
            for w in weekly
            if w.weekday == day.weekday() and w.kind == WeeklyHours.Kind.HOURS
        ]
        day_start, day_end = _local(day, time(0, 0)), _local(day + timedelta(days=1), time(0, 0))
        hours += [
            (max(s, day_start), min(e, day_end)) for s, e in extra if s < day_end and e > day_start
        ]
        breaks = [
            (_local(day, w.start_time), _local(day, w.end_time))
            for w in weekly
            if w.weekday == day.weekday() and w.kind == WeeklyHours.Kind.BREAK
        ]
        for start, end in sorted(_subtract(sorted(hours), breaks)):
            at = start
            while at + length <= end:
                slot_end = at + length
                is_blocked = any(b_start < slot_end and b_end > at for b_start, b_end in blocked)
                if at not in result:
                    result[at] = (slot_end, is_blocked)
                at += step
        day += timedelta(days=1)
    return result


def slots_generate(*, schedule_id: int, now: datetime | None = None) -> dict[str, int]:
    """Make the schedule's future slots match its availability, up to its horizon.

    Idempotent. Creates missing slots, blocks free ones that fall in time off,
    frees blocked ones no longer in time off, and removes free slots that no
    longer fit the hours (or blocks them when an old appointment points at
    them). Busy and held slots, and slots in the past, are never touched.
    Conditional updates (``status=free``) make a concurrent booking win.
    """
    now = now or timezone.now()
    with transaction.atomic():
        schedule = Schedule.objects.select_for_update().filter(pk=schedule_id).first()
        if schedule is None:
            raise NotFound(_("No such schedule."))
        first_day = timezone.localtime(now, LOCAL_TZ).date()
        last_day = first_day + timedelta(days=schedule.horizon_days)
        wanted = (
            desired_slots(
                schedule=schedule,
                weekly=list(schedule.weekly.all()),
                exceptions=list(
                    schedule.exceptions.filter(
                        ends_at__gt=now, starts_at__lt=_local(last_day, time(23, 59))
                    )
                ),
                first_day=first_day,
                last_day=last_day,
            )
            if schedule.is_active
            else {}
        )
        wanted = {start: value for start, value in wanted.items() if start > now}
        existing = {
            slot.start: slot
            for slot in Slot.objects.filter(schedule=schedule, start__gt=now).only(
                "pk", "start", "end", "status"
            )
        }
        created = Slot.objects.bulk_create(
            [
                Slot(
                    schedule=schedule,
                    start=start,
                    end=end,
                    status=Slot.Status.BLOCKED if is_blocked else Slot.Status.FREE,
                )
                for start, (end, is_blocked) in wanted.items()
                if start not in existing
            ],
            ignore_conflicts=True,
        )
        counts = {"created": len(created), "blocked": 0, "freed": 0, "removed": 0}
        for start, slot in existing.items():
            want = wanted.get(start)
            if want is not None and want[0] != slot.end:
                want = None  # the visit length changed: this slot no longer fits
            if want is None:
                if slot.status in (Slot.Status.FREE, Slot.Status.BLOCKED):
                    if (
                        Appointment.objects.filter(slot=slot).exists()
                        or WaitlistEntry.objects.filter(offered_slot=slot).exists()
                    ):
                        counts["blocked"] += Slot.objects.filter(
                            pk=slot.pk, status=Slot.Status.FREE
                        ).update(status=Slot.Status.BLOCKED)
                    else:
                        counts["removed"] += Slot.objects.filter(
                            pk=slot.pk, status__in=[Slot.Status.FREE, Slot.Status.BLOCKED]
                        ).delete()[0]
                continue
            if want[1] and slot.status == Slot.Status.FREE:
                counts["blocked"] += Slot.objects.filter(
                    pk=slot.pk, status=Slot.Status.FREE
                ).update(status=Slot.Status.BLOCKED)
            elif not want[1] and slot.status == Slot.Status.BLOCKED:
                counts["freed"] += Slot.objects.filter(
                    pk=slot.pk, status=Slot.Status.BLOCKED
                ).update(status=Slot.Status.FREE)
    return counts


# --- Booking -------------------------------------------------------------------------------


def _patient_for(by: User, patient_id: Any, request: Any) -> PatientProfile:
    """The patient booked for: oneself, or someone the booker cares for (audited read)."""
    from telehealth.selectors import patient_get_for_user

    if patient_id is None:
        patient = getattr(by, "patient_profile", None)
        if patient is None:
            raise _invalid("patient_id", _("Say which patient this is for."))
        return patient
    if not isinstance(patient_id, int) or isinstance(patient_id, bool):
        raise _invalid("patient_id", _("A patient id is required."))
    return patient_get_for_user(
        user=by, patient_id=patient_id, purpose="book an appointment", request=request
    )


def _locked_slot(slot_id: Any) -> Slot:
    if not isinstance(slot_id, int) or isinstance(slot_id, bool):
        raise _invalid("slot_id", _("A slot id is required."))
    slot = (
        Slot.objects.select_for_update(of=("self",))
        .select_related("schedule__clinician__user", "schedule__clinician__facility")
        .filter(pk=slot_id)
        .first()
    )
    if slot is None:
        raise NotFound(_("No such slot."))
    return slot


def _book(
    *,
    slot: Slot,
    patient: PatientProfile,
    mode: Any,
    by: User,
    reason: str = "",
    referral: Referral | None = None,
    offer: WaitlistEntry | None = None,
    rescheduled_from: Appointment | None = None,
) -> Appointment:
    """Book a slot the caller has locked. Raises ``Conflict`` when it is not free."""
    now = timezone.now()
    schedule = slot.schedule
    clinician = schedule.clinician
    if mode not in AppointmentMode.values:
        raise _invalid("mode", _("video or in_person."))
    if mode == AppointmentMode.VIDEO and not schedule.allows_video:
        raise _invalid("mode", _("This clinician does not offer video visits."))
    if mode == AppointmentMode.IN_PERSON and not schedule.allows_in_person:
        raise _invalid("mode", _("This clinician does not offer in-person visits."))
    if clinician.user_id == patient.user_id:
        raise _invalid("slot_id", _("You cannot book yourself."))
    held_for_me = (
        slot.status == Slot.Status.HELD
        and offer is not None
        and offer.offered_slot_id == slot.pk
        and offer.status == WaitlistEntry.Status.OFFERED
    )
    if slot.status != Slot.Status.FREE and not held_for_me:
        raise Conflict(_("This time is no longer free."), code="slot_taken")
    if slot.start < now + MIN_LEAD:
        raise Conflict(_("This time is too soon to book."), code="too_late")
    overlapping = Appointment.objects.filter(
        patient=patient, status__in=ACTIVE, start__lt=slot.end, end__gt=slot.start
    )
    if rescheduled_from is not None:
        overlapping = overlapping.exclude(pk=rescheduled_from.pk)
    if overlapping.exists():
        raise Conflict(_("The patient already has an appointment at this time."), code="overlap")
    try:
        with transaction.atomic():
            appointment = Appointment.objects.create(
                patient=patient,
                clinician=clinician,
                slot=slot,
                start=slot.start,
                end=slot.end,
                mode=mode,
                status=Appointment.Status.BOOKED,
                reason=reason[:255],
                booked_by=by,
                referral=referral,
                rescheduled_from=rescheduled_from,
                reschedule_count=(rescheduled_from.reschedule_count + 1) if rescheduled_from else 0,
            )
    except IntegrityError:
        raise Conflict(_("This time is no longer free."), code="slot_taken") from None
    slot.status = Slot.Status.BUSY
    slot.save(update_fields=["status"])
    if mode == AppointmentMode.VIDEO:
        from consult.visit_services import visit_schedule

        visit = visit_schedule(
            patient=patient,
            host=clinician.user,
            scheduled_start=slot.start,
            source=_source(appointment),
        )
        appointment.visit_id = visit.pk
        appointment.save(update_fields=["visit_id"])
    else:
        kernel_services.care_relationship_grant(
            patient=patient,
            member=clinician.user,
            kind=CareRelationship.Kind.CONSULTATION,
            source=_source(appointment),
            granted_by=by,
            reason=_("booked appointment"),
        )
    data = {"appointment": appointment.pk, "start": appointment.start.isoformat(), "mode": mode}
    notify_user_on_commit(patient.user_id, name="appointment.booked", data=data)
    notify_user_on_commit(clinician.user_id, name="appointment.booked", data=data)
    return appointment


def appointment_book(
    *,
    by: User,
    slot_id: Any,
    mode: Any,
    patient_id: Any = None,
    reason: Any = "",
    request: Any = None,
) -> Appointment:
    """A patient books a slot for themself, or a clinician for a patient they care for.

    Locks the slot row, so of two people booking the same slot at the same time
    one gets the appointment and the other ``Conflict`` (``slot_taken``). A
    video appointment gets its consult visit (``visit_schedule``, idempotent per
    appointment); an in-person one lets the clinician see the patient's record.
    """
    reason = reason if isinstance(reason, str) else ""
    with transaction.atomic():
        patient = _patient_for(by, patient_id, request)
        slot = _locked_slot(slot_id)
        offer = (
            WaitlistEntry.objects.select_for_update()
            .filter(offered_slot=slot, status=WaitlistEntry.Status.OFFERED, patient=patient)
            .first()
        )
        appointment = _book(
            slot=slot, patient=patient, mode=mode, by=by, reason=reason, offer=offer
        )
        if offer is not None:
            offer.status = WaitlistEntry.Status.BOOKED
            offer.appointment = appointment
            offer.save(update_fields=["status", "appointment"])
    return appointment


def appointment_book_for_referral(*, referral: Referral, slot_id: Any, by: User) -> Appointment:
    """Book the referred patient into a slot at the receiving side (caller checked the roles).

    Video when the referral asked for remote consultation first, in person otherwise.
    """
    slot = _locked_slot(slot_id)
    if slot.schedule.clinician.facility_id != referral.target_facility_id:
        raise _invalid("slot_id", _("Choose a slot at the receiving facility."))
    mode = (
        AppointmentMode.VIDEO
        if referral.requested_mode == Referral.Mode.REMOTE_FIRST
        else AppointmentMode.IN_PERSON
    )
    if mode == AppointmentMode.VIDEO and not slot.schedule.allows_video:
        mode = AppointmentMode.IN_PERSON
    return _book(
        slot=slot,
        patient=referral.patient,
        mode=mode,
        by=by,
        reason=referral.reason,
        referral=referral,
    )


def _locked_appointment(appointment_id: Any) -> Appointment:
    appointment = (
        Appointment.objects.select_for_update(of=("self",))
        .select_related("patient__user", "clinician__user", "slot")
        .filter(pk=appointment_id)
        .first()
        if isinstance(appointment_id, int)
        else None
    )
    if appointment is None:
        raise NotFound(_("No such appointment."))
    return appointment


def _side(appointment: Appointment, user: User) -> str:
    """'clinic' for the clinician, 'patient' for the patient and whoever booked; else NotFound."""
    if appointment.clinician.user_id == user.pk:
        return "clinic"
    if appointment.patient.user_id == user.pk or appointment.booked_by_id == user.pk:
        return "patient"
    raise NotFound(_("No such appointment."))


def _release_slot(appointment: Appointment) -> bool:
    """Give the slot back (free) if it is still ahead; True if it should be offered on."""
    slot = Slot.objects.select_for_update().get(pk=appointment.slot_id)
    if slot.status == Slot.Status.BUSY and slot.start > timezone.now() + MIN_LEAD:
        slot.status = Slot.Status.FREE
        slot.save(update_fields=["status"])
        return True
    return False


def _cancel_visit(appointment: Appointment, *, no_show: bool = False) -> None:
    if appointment.visit_id is None:
        return
    from consult.models import Visit
    from consult.visit_services import visit_cancel

    state = Visit.objects.filter(pk=appointment.visit_id).values_list("state", flat=True).first()
    if state in (Visit.State.SCHEDULED, Visit.State.WAITING):
        visit_cancel(visit_id=appointment.visit_id, by=appointment.clinician.user, no_show=no_show)


def _offer_after_commit(slot_id: int) -> None:
    from scheduler.tasks import offer_freed_slot

    # With the broker down the cancellation stands; only the waiting-list offer of
    # this slot is skipped (the slot stays free to book).
    send_task_on_commit(offer_freed_slot, slot_id, what=f"waiting-list offer of slot {slot_id}")


def appointment_cancel(*, appointment_id: Any, by: User, reason: Any = "") -> Appointment:
    """Cancel a booked appointment, following the rules; the freed slot goes to the waiting list."""
    reason = reason.strip()[:255] if isinstance(reason, str) else ""
    with transaction.atomic():
        appointment = _locked_appointment(appointment_id)
        side = _side(appointment, by)
        now = timezone.now()
        if appointment.status not in (Appointment.Status.BOOKED, Appointment.Status.PENDING):
            raise Conflict(_("Only a booked appointment can be cancelled."), code="invalid_state")
        if side == "patient" and appointment.start - now < CHANGE_CUTOFF:
            raise Conflict(
                _("Less than 2 hours before the visit: please call the clinic to cancel."),
                code="too_late",
            )
        if side == "clinic":
            if not reason:
                raise _invalid("reason", _("Say why the clinic cancels."))
            if appointment.end <= now:
                raise Conflict(_("This appointment is over."), code="too_late")
        appointment.status = Appointment.Status.CANCELLED
        appointment.cancelled_at = now
        appointment.cancelled_by = by
        appointment.cancellation_reason = reason or "cancelled by the patient"
        appointment.save(
            update_fields=["status", "cancelled_at", "cancelled_by", "cancellation_reason"]
        )
        if _release_slot(appointment):
            _offer_after_commit(appointment.slot_id)
        _cancel_visit(appointment)
        data = {"appointment": appointment.pk, "status": appointment.status}
        notify_user_on_commit(appointment.patient.user_id, name="appointment.cancelled", data=data)
        notify_user_on_commit(
            appointment.clinician.user_id, name="appointment.cancelled", data=data
        )
    return appointment


def appointment_reschedule(*, appointment_id: Any, by: User, slot_id: Any) -> Appointment:
    """Move a booked appointment to another free slot of the same clinician.

    A new appointment replaces the old one (which becomes ``cancelled``,
    "rescheduled", and points at the new one); a video visit moves with it.
    The patient side may do this until 2 hours before, at most twice.
    """
    with transaction.atomic():
        appointment = _locked_appointment(appointment_id)
        side = _side(appointment, by)
        now = timezone.now()
        if appointment.status != Appointment.Status.BOOKED:
            raise Conflict(_("Only a booked appointment can be rescheduled."), code="invalid_state")
        if side == "patient":
            if appointment.start - now < CHANGE_CUTOFF:
                raise Conflict(
                    _("Less than 2 hours before the visit: please call the clinic."),
                    code="too_late",
                )
            if appointment.reschedule_count >= MAX_RESCHEDULES:
                raise Conflict(
                    _("This appointment was already moved twice."), code="too_many_reschedules"
                )
        if not isinstance(slot_id, int) or isinstance(slot_id, bool):
            raise _invalid("slot_id", _("A slot id is required."))
        # Both slots locked in id order: two reschedules crossing each other cannot deadlock.
        for pk in sorted({appointment.slot_id, slot_id}):
            Slot.objects.select_for_update().filter(pk=pk).first()
        new_slot = _locked_slot(slot_id)
        if new_slot.schedule.clinician_id != appointment.clinician_id:
            raise _invalid("slot_id", _("Choose another time with the same clinician."))
        appointment.status = Appointment.Status.CANCELLED
        appointment.cancelled_at = now
        appointment.cancelled_by = by
        appointment.cancellation_reason = "rescheduled"
        appointment.save(
            update_fields=["status", "cancelled_at", "cancelled_by", "cancellation_reason"]
        )
        _cancel_visit(appointment)
        replacement = _book(
            slot=new_slot,
            patient=appointment.patient,
            mode=appointment.mode,
            by=by,
            reason=appointment.reason,
            referral=appointment.referral,
            rescheduled_from=appointment,
        )
        if _release_slot(appointment):
            _offer_after_commit(appointment.slot_id)
    return replacement


def _clinic_action(appointment_id: Any, by: User) -> Appointment:
    appointment = _locked_appointment(appointment_id)
    if _side(appointment, by) != "clinic":
        raise AccessDenied(_("Only the clinician can do this."))
    return appointment


def appointment_arrive(*, appointment_id: Any, by: User) -> Appointment:
    """The patient is here (in person) or in the waiting room: booked → arrived."""
    with transaction.atomic():
        appointment = _clinic_action(appointment_id, by)
        if appointment.status == Appointment.Status.ARRIVED:
            return appointment
        if appointment.status not in (Appointment.Status.BOOKED, Appointment.Status.CHECKED_IN):
            raise Conflict(
                _("Only a booked appointment can be marked arrived."), code="invalid_state"
            )
        appointment.status = Appointment.Status.ARRIVED
        appointment.arrived_at = timezone.now()
        appointment.save(update_fields=["status", "arrived_at"])
    return appointment


def appointment_fulfil(*, appointment_id: Any, by: User) -> Appointment:
    with transaction.atomic():
        appointment = _clinic_action(appointment_id, by)
        if appointment.status == Appointment.Status.FULFILLED:
            return appointment
        if appointment.status not in (
            Appointment.Status.BOOKED,
            Appointment.Status.ARRIVED,
            Appointment.Status.CHECKED_IN,
        ):
            raise Conflict(_("This appointment cannot be marked done."), code="invalid_state")
        appointment.status = Appointment.Status.FULFILLED
        appointment.save(update_fields=["status"])
    return appointment


def appointment_no_show(*, appointment_id: Any, by: User) -> Appointment:
    """The clinician marks a no-show, from the start of the appointment on."""
    with transaction.atomic():
        appointment = _clinic_action(appointment_id, by)
        if appointment.status == Appointment.Status.NOSHOW:
            return appointment
        if appointment.status != Appointment.Status.BOOKED:
            raise Conflict(_("Only a booked appointment can be a no-show."), code="invalid_state")
        if appointment.start > timezone.now():
            raise Conflict(_("The appointment has not started yet."), code="too_early")
        _mark_no_show(appointment)
    return appointment


def _mark_no_show(appointment: Appointment) -> None:
    appointment.status = Appointment.Status.NOSHOW
    appointment.save(update_fields=["status"])
    _cancel_visit(appointment, no_show=True)
    notify_user_on_commit(
        appointment.patient.user_id,
        name="appointment.noshow",
        data={"appointment": appointment.pk},
    )


def appointments_mark_no_shows(*, now: datetime | None = None, limit: int = 1000) -> dict[str, int]:
    """Beat: booked appointments over by ``NO_SHOW_GRACE`` are settled.

    A video appointment whose visit took place is ``fulfilled``; anything else
    still ``booked`` is a ``noshow`` (its visit, if still waiting, is cancelled
    as a no-show). Each in its own transaction, taken with SKIP LOCKED.
    """
    from consult.models import Visit

    now = now or timezone.now()
    counts = {"noshow": 0, "fulfilled": 0}
    due = list(
        Appointment.objects.filter(
            status=Appointment.Status.BOOKED, end__lt=now - NO_SHOW_GRACE
        ).values_list("pk", flat=True)[:limit]
    )
    for appointment_id in due:
        with transaction.atomic():
            appointment = (
                Appointment.objects.select_for_update(skip_locked=True, of=("self",))
                .select_related("patient__user", "clinician__user")
                .filter(pk=appointment_id, status=Appointment.Status.BOOKED)
                .first()
            )
            if appointment is None:
                continue
            state = None
            if appointment.visit_id is not None:
                state = (
                    Visit.objects.filter(pk=appointment.visit_id)
                    .values_list("state", flat=True)
                    .first()
                )
            if state in (Visit.State.IN_PROGRESS, Visit.State.ENDED):
                appointment.status = Appointment.Status.FULFILLED
                appointment.save(update_fields=["status"])
                counts["fulfilled"] += 1
            else:
                _mark_no_show(appointment)
                counts["noshow"] += 1
    return counts


# --- Reminders ---------------------------------------------------------------------------------


def _join_link(appointment: Appointment) -> str:
    base = getattr(settings, "TELEHEALTH_SITE_URL", "").rstrip("/")
    if appointment.mode == AppointmentMode.VIDEO and appointment.visit_id is not None:
        return f"{base}/visits/{appointment.visit_id}/"
    return f"{base}/appointments/"


def reminder_text(appointment: Appointment, kind: str) -> str:
    """The reminder, in the active language (callers wrap it in ``translation.override``)."""
    local = timezone.localtime(appointment.start, LOCAL_TZ)
    values = {
        "doctor": appointment.clinician.user.display_name,
        "date": local.strftime("%d/%m/%Y"),
        "time": local.strftime("%H:%M"),
        "link": _join_link(appointment),
        "place": appointment.clinician.facility.name,
    }
    if appointment.mode == AppointmentMode.VIDEO:
        if kind == AppointmentReminder.Kind.DAY_BEFORE:
            return (
                _(
                    "Reminder: your video visit with %(doctor)s is on %(date)s at "
                    "%(time)s. Join here: %(link)s"
                )
                % values
            )
        return (
            _(
                "Your video visit with %(doctor)s starts in 15 minutes (%(time)s). "
                "Join now: %(link)s"
            )
            % values
        )
    if kind == AppointmentReminder.Kind.DAY_BEFORE:
        return (
            _("Reminder: your appointment with %(doctor)s at %(place)s is on %(date)s at %(time)s.")
            % values
        )
    return (
        _("Your appointment with %(doctor)s at %(place)s starts in 15 minutes (%(time)s).") % values
    )


def appointment_reminders_send(*, now: datetime | None = None, limit: int = 2000) -> int:
    """Beat: send the day-before and fifteen-minute reminders that are due. Returns how many.

    Once each (unique per appointment and kind: a second run, or two beats,
    send nothing more). Written in the patient's preferred language, delivered
    as an ``appointment.reminder`` event to the patient's sockets and stored
    for an SMS gateway. A day-before reminder is skipped for appointments booked
    less than a day ahead; the fifteen-minute one is sent up to the start.
    """
    now = now or timezone.now()
    sent = 0
    plans = [
        (AppointmentReminder.Kind.DAY_BEFORE, DAY_BEFORE, FIFTEEN_MINUTES),
        (AppointmentReminder.Kind.FIFTEEN_MINUTES, FIFTEEN_MINUTES, timedelta(0)),
    ]
    for kind, ahead, until in plans:
        due = (
            Appointment.objects.filter(
                status=Appointment.Status.BOOKED,
                start__lte=now + ahead,
                start__gt=now + until,
            )
            .exclude(reminders__kind=kind)
            .select_related("patient__user", "clinician__user", "clinician__facility")
            .order_by("start")[:limit]
        )
        for appointment in due:
            if kind == AppointmentReminder.Kind.DAY_BEFORE and (
                appointment.created_at > appointment.start - DAY_BEFORE
            ):
                continue
            language = appointment.patient.user.preferred_language or settings.LANGUAGE_CODE
            with translation.override(language):
                text = reminder_text(appointment, kind)
            try:
                with transaction.atomic():
                    AppointmentReminder.objects.create(
                        appointment=appointment,
                        kind=kind,
                        language=language,
                        text=text,
                        link=_join_link(appointment),
                    )
                    notify_user_on_commit(
                        appointment.patient.user_id,
                        name="appointment.reminder",
                        data={
                            "appointment": appointment.pk,
                            "kind": kind,
                            "text": text,
                            "link": _join_link(appointment),
                        },
                    )
            except IntegrityError:
                continue  # another run sent it
            sent += 1
    return sent


# --- The waiting list ----------------------------------------------------------------------------


def waitlist_join(
    *,
    by: User,
    clinician_id: Any,
    mode: Any,
    not_before: Any = None,
    not_after: Any = None,
    patient_id: Any = None,
    reason: Any = "",
    request: Any = None,
) -> WaitlistEntry:
    """Put a patient on a clinician's waiting list for an earlier slot in a window."""
    now = timezone.now()
    fields: dict[str, list[str]] = {}
    clinician = (
        ClinicianProfile.objects.filter(pk=clinician_id).select_related("user").first()
        if isinstance(clinician_id, int)
        else None
    )
    if clinician is None:
        fields["clinician_id"] = [_("No such clinician.")]
    if mode not in AppointmentMode.values:
        fields["mode"] = [_("video or in_person.")]
    start = parse_datetime(not_before) if isinstance(not_before, str) else (not_before or now)
    end = (
        parse_datetime(not_after)
        if isinstance(not_after, str)
        else (not_after or now + timedelta(days=30))
    )
    if not isinstance(start, datetime):
        fields["not_before"] = [_("A date and time (ISO 8601).")]
    if not isinstance(end, datetime):
        fields["not_after"] = [_("A date and time (ISO 8601).")]
    if not fields and start >= end:
        fields["not_after"] = [_("The end must be after the start.")]
    if fields:
        raise DomainError(_("The waiting list entry has invalid fields."), fields=fields)
    with transaction.atomic():
        patient = _patient_for(by, patient_id, request)
        if WaitlistEntry.objects.filter(
            patient=patient,
            clinician=clinician,
            status__in=[WaitlistEntry.Status.WAITING, WaitlistEntry.Status.OFFERED],
        ).exists():
            raise Conflict(_("Already on this waiting list."), code="already_waiting")
        return WaitlistEntry.objects.create(
            patient=patient,
            clinician=clinician,
            mode=mode,
            not_before=start,
            not_after=end,
            reason=str(reason or "")[:255],
            created_by=by,
        )


def waitlist_offer_slot(*, slot_id: int, now: datetime | None = None) -> WaitlistEntry | None:
    """Offer a free slot to the first patient waiting for it; hold it for ``OFFER_HOLD``.

    Idempotent: a slot that is not free (booked, already held) is left alone.
    The first entry by age whose window contains the slot, whose mode the
    schedule allows and who did not decline this slot before gets it.
    """
    now = now or timezone.now()
    with transaction.atomic():
        slot = (
            Slot.objects.select_for_update(of=("self",))
            .select_related("schedule")
            .filter(pk=slot_id)
            .first()
        )
        if slot is None or slot.status != Slot.Status.FREE or slot.start <= now + MIN_LEAD:
            return None
        modes = [
            m
            for m, allowed in (
                (AppointmentMode.VIDEO, slot.schedule.allows_video),
                (AppointmentMode.IN_PERSON, slot.schedule.allows_in_person),
            )
            if allowed
        ]
        candidates = (
            WaitlistEntry.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("patient__user")
            .filter(
                clinician_id=slot.schedule.clinician_id,
                status=WaitlistEntry.Status.WAITING,
                not_before__lte=slot.start,
                not_after__gte=slot.start,
                mode__in=modes,
            )
            .order_by("created_at", "pk")
        )
        for entry in candidates[:50]:
            if slot.pk in (entry.declined_slot_ids or []):
                continue
            busy = Appointment.objects.filter(
                patient=entry.patient, status__in=ACTIVE, start__lt=slot.end, end__gt=slot.start
            ).exists()
            if busy:
                continue
            entry.status = WaitlistEntry.Status.OFFERED
            entry.offered_slot = slot
            entry.offer_expires_at = min(now + OFFER_HOLD, slot.start - MIN_LEAD)
            entry.save(update_fields=["status", "offered_slot", "offer_expires_at"])
            slot.status = Slot.Status.HELD
            slot.save(update_fields=["status"])
            notify_user_on_commit(
                entry.patient.user_id,
                name="waitlist.offer",
                data={
                    "entry": entry.pk,
                    "slot": slot.pk,
                    "start": slot.start.isoformat(),
                    "expires_at": entry.offer_expires_at.isoformat(),
                },
            )
            return entry
    return None


def _entry_for(by: User, entry_id: Any) -> WaitlistEntry:
    entry = (
        WaitlistEntry.objects.select_for_update(of=("self",))
        .select_related("patient__user")
        .filter(pk=entry_id)
        .first()
        if isinstance(entry_id, int)
        else None
    )
    if entry is None or by.pk not in (entry.patient.user_id, entry.created_by_id):
        raise NotFound(_("No such waiting list entry."))
    return entry


def waitlist_accept(*, entry_id: Any, by: User) -> Appointment:
    """Take the offered slot: it is booked for the patient."""
    with transaction.atomic():
        entry = _entry_for(by, entry_id)
        if entry.status != WaitlistEntry.Status.OFFERED or entry.offered_slot_id is None:
            raise Conflict(_("There is no offer to accept."), code="no_offer")
        if entry.offer_expires_at and entry.offer_expires_at < timezone.now():
            raise Conflict(_("The offer has expired."), code="offer_expired")
        slot = _locked_slot(entry.offered_slot_id)
        appointment = _book(
            slot=slot,
            patient=entry.patient,
            mode=entry.mode,
            by=by,
            reason=entry.reason,
            offer=entry,
        )
        entry.status = WaitlistEntry.Status.BOOKED
        entry.appointment = appointment
        entry.save(update_fields=["status", "appointment"])
    return appointment


def _release_offer(entry: WaitlistEntry, *, next_status: str) -> int | None:
    """The patient does not take the offered slot: free it and remember the refusal."""
    slot_id = entry.offered_slot_id
    if slot_id is not None:
        Slot.objects.filter(pk=slot_id, status=Slot.Status.HELD).update(status=Slot.Status.FREE)
        entry.declined_slot_ids = sorted({*(entry.declined_slot_ids or []), slot_id})
    entry.status = next_status
    entry.offered_slot = None
    entry.offer_expires_at = None
    entry.save(update_fields=["status", "offered_slot", "offer_expires_at", "declined_slot_ids"])
    return slot_id


def waitlist_decline(*, entry_id: Any, by: User) -> WaitlistEntry:
    """Turn the offer down and keep waiting; the slot goes to the next patient."""
    with transaction.atomic():
        entry = _entry_for(by, entry_id)
        if entry.status != WaitlistEntry.Status.OFFERED:
            raise Conflict(_("There is no offer to decline."), code="no_offer")
        slot_id = _release_offer(entry, next_status=WaitlistEntry.Status.WAITING)
        if slot_id is not None:
            _offer_after_commit(slot_id)
    return entry


def waitlist_cancel(*, entry_id: Any, by: User) -> WaitlistEntry:
    with transaction.atomic():
        entry = _entry_for(by, entry_id)
        if entry.status in (WaitlistEntry.Status.BOOKED, WaitlistEntry.Status.CANCELLED):
            return entry
        slot_id = (
            _release_offer(entry, next_status=WaitlistEntry.Status.CANCELLED)
            if entry.status == WaitlistEntry.Status.OFFERED
            else None
        )
        if slot_id is None:
            entry.status = WaitlistEntry.Status.CANCELLED
            entry.save(update_fields=["status"])
        else:
            _offer_after_commit(slot_id)
    return entry


def waitlist_expire_offers(*, now: datetime | None = None) -> int:
    """Beat: offers not taken in time go back (the patient keeps waiting); the slot moves on.

    Entries whose window has passed expire.
    """
    now = now or timezone.now()
    expired = 0
    for entry_id in list(
        WaitlistEntry.objects.filter(
            status=WaitlistEntry.Status.OFFERED, offer_expires_at__lt=now
        ).values_list("pk", flat=True)[:1000]
    ):
        with transaction.atomic():
            entry = (
                WaitlistEntry.objects.select_for_update(skip_locked=True)
                .filter(pk=entry_id, status=WaitlistEntry.Status.OFFERED, offer_expires_at__lt=now)
                .first()
            )
            if entry is None:
                continue
            slot_id = _release_offer(entry, next_status=WaitlistEntry.Status.WAITING)
            if slot_id is not None:
                _offer_after_commit(slot_id)
            expired += 1
    WaitlistEntry.objects.filter(status=WaitlistEntry.Status.WAITING, not_after__lt=now).update(
        status=WaitlistEntry.Status.EXPIRED
    )
    return expired


def slots_generate_all(*, limit: int = 10_000) -> int:
    """Beat (daily): extend every active schedule's slots to its horizon."""
    count = 0
    for schedule_id in Schedule.objects.filter(is_active=True).values_list("pk", flat=True)[:limit]:
        slots_generate(schedule_id=schedule_id)
        count += 1
    return count


__all__ = [
    "appointment_arrive",
    "appointment_book",
    "appointment_book_for_referral",
    "appointment_cancel",
    "appointment_fulfil",
    "appointment_no_show",
    "appointment_reminders_send",
    "appointment_reschedule",
    "appointments_mark_no_shows",
    "availability_exception_add",
    "availability_exception_remove",
    "availability_set",
    "slots_generate",
    "slots_generate_all",
    "waitlist_accept",
    "waitlist_cancel",
    "waitlist_decline",
    "waitlist_expire_offers",
    "waitlist_join",
    "waitlist_offer_slot",
]
