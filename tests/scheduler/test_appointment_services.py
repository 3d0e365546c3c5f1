"""Availability, slots, booking, rescheduling and cancelling by the rules, the waiting list,
reminders in the patient's language and no-shows."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

import pytest
from django.utils import timezone

from consult.models import Visit
from scheduler import appointment_services as services
from scheduler.models import Appointment, AppointmentReminder, Slot, WaitlistEntry
from scheduler.policy import LOCAL_TZ
from telehealth.errors import AccessDenied, Conflict, DomainError, NotFound
from telehealth.selectors import patient_access_basis
from tests.factories import ClinicianFactory, PatientFactory
from tests.scheduler.conftest import patient_of, weekly_schedule

pytestmark = pytest.mark.django_db


@pytest.fixture
def doctor():
    return ClinicianFactory(specialty_codes=["cardiology"], user__full_name="BS. Lan")


@pytest.fixture
def schedule(doctor):
    schedule = weekly_schedule(doctor, lunch=(time(9, 0), time(9, 30)))
    services.slots_generate(schedule_id=schedule.pk)
    return schedule


def _free(schedule, *, after: timedelta = timedelta(hours=3)):
    return (
        Slot.objects.filter(schedule=schedule, status="free", start__gt=timezone.now() + after)
        .order_by("start")
        .first()
    )


def test_weekly_hours_break_length_and_buffer_make_the_slots(doctor):
    schedule = weekly_schedule(doctor, lunch=(time(9, 0), time(9, 30)))
    monday = date(2030, 1, 7)

    wanted = services.desired_slots(
        schedule=schedule,
        weekly=list(schedule.weekly.all()),
        exceptions=[],
        first_day=monday,
        last_day=monday,
    )

    starts = [timezone.localtime(s, LOCAL_TZ).strftime("%H:%M") for s in sorted(wanted)]
    # 20-minute visits with 10 minutes between them, 08:00–11:00, lunch 09:00–09:30.
    assert starts == ["08:00", "08:30", "09:30", "10:00", "10:30"]
    assert all(end - start == timedelta(minutes=20) for start, (end, _) in wanted.items())


def test_generating_slots_twice_changes_nothing(schedule):
    before = Slot.objects.filter(schedule=schedule).count()

    counts = services.slots_generate(schedule_id=schedule.pk)

    assert before > 0
    assert counts == {"created": 0, "blocked": 0, "freed": 0, "removed": 0}
    assert Slot.objects.filter(schedule=schedule).count() == before


def test_time_off_blocks_free_slots_and_removing_it_frees_them(schedule, doctor):
    tomorrow = timezone.localdate() + timedelta(days=1)
    start = datetime.combine(tomorrow, time(0, 0), tzinfo=LOCAL_TZ)

    exception = services.availability_exception_add(
        by=doctor.user, starts_at=start.isoformat(), ends_at=(start + timedelta(days=1)).isoformat()
    )

    day = Slot.objects.filter(
        schedule=schedule, start__gte=start, start__lt=start + timedelta(days=1)
    )
    assert set(day.values_list("status", flat=True)) == {"busy-unavailable"}
    services.availability_exception_remove(by=doctor.user, exception_id=exception.pk)
    assert set(day.values_list("status", flat=True)) == {"free"}


def test_extra_hours_add_slots(schedule, doctor):
    day = timezone.localdate() + timedelta(days=2)
    start = datetime.combine(day, time(14, 0), tzinfo=LOCAL_TZ)

    services.availability_exception_add(
        by=doctor.user,
        starts_at=start.isoformat(),
        ends_at=(start + timedelta(hours=1)).isoformat(),
        kind="extra",
    )

    extra = Slot.objects.filter(
        schedule=schedule, start__gte=start, start__lt=start + timedelta(hours=1)
    )
    assert extra.count() == 2  # 14:00 and 14:30


def test_availability_set_validates_and_regenerates(doctor):
    with pytest.raises(DomainError) as error:
        services.availability_set(
            by=doctor.user,
            data={"visit_minutes": 2, "hours": [{"weekday": 9, "start": "08:00", "end": "07:00"}]},
        )
    assert set(error.value.fields) == {"visit_minutes", "hours"}

    schedule = services.availability_set(
        by=doctor.user,
        data={
            "visit_minutes": 30,
            "buffer_minutes": 0,
            "hours": [{"weekday": d, "start": "13:00", "end": "15:00"} for d in range(7)],
        },
    )

    starts = {
        timezone.localtime(s, LOCAL_TZ).strftime("%H:%M")
        for s in Slot.objects.filter(schedule=schedule).values_list("start", flat=True)
    }
    assert starts <= {"13:00", "13:30", "14:00", "14:30"} and "14:30" in starts


def test_a_patient_books_a_video_visit_and_the_visit_is_created(schedule):
    patient = PatientFactory()
    slot = _free(schedule)

    appointment = services.appointment_book(by=patient.user, slot_id=slot.pk, mode="video")

    slot.refresh_from_db()
    assert (appointment.status, slot.status) == ("booked", "busy")
    visit = Visit.objects.get(pk=appointment.visit_id)
    assert visit.source == f"scheduler.appointment:{appointment.pk}"
    assert visit.scheduled_start == slot.start and visit.host == schedule.clinician.user


def test_an_in_person_booking_lets_the_doctor_see_the_patient(schedule):
    patient = PatientFactory()

    services.appointment_book(by=patient.user, slot_id=_free(schedule).pk, mode="in_person")

    assert patient_access_basis(user=schedule.clinician.user, patient=patient) == "consultation"


def test_a_booked_slot_cannot_be_booked_again(schedule):
    slot = _free(schedule)
    services.appointment_book(by=PatientFactory().user, slot_id=slot.pk, mode="video")

    with pytest.raises(Conflict) as error:
        services.appointment_book(by=PatientFactory().user, slot_id=slot.pk, mode="video")

    assert error.value.code == "slot_taken"


def test_a_health_worker_books_for_a_patient_in_their_care_only(schedule):
    worker = ClinicianFactory(kind="health_worker")
    mine, stranger = patient_of(worker), PatientFactory()

    appointment = services.appointment_book(
        by=worker.user, slot_id=_free(schedule).pk, mode="video", patient_id=mine.pk
    )
    assert appointment.patient == mine and appointment.booked_by == worker.user
    with pytest.raises(NotFound):
        services.appointment_book(
            by=worker.user, slot_id=_free(schedule).pk, mode="video", patient_id=stranger.pk
        )


def test_bad_booking_input_is_a_field_error(schedule):
    patient = PatientFactory()

    with pytest.raises(DomainError) as error:
        services.appointment_book(by=patient.user, slot_id="abc", mode="video")
    assert "slot_id" in error.value.fields
    with pytest.raises(DomainError) as error:
        services.appointment_book(by=patient.user, slot_id=_free(schedule).pk, mode="phone")
    assert "mode" in error.value.fields


def test_the_patient_cannot_hold_two_appointments_at_once(schedule):
    patient = PatientFactory()
    slot = _free(schedule)
    other_doctor = ClinicianFactory()
    other = weekly_schedule(other_doctor, buffer_minutes=10)
    services.slots_generate(schedule_id=other.pk)
    same_time = Slot.objects.get(schedule=other, start=slot.start)
    services.appointment_book(by=patient.user, slot_id=slot.pk, mode="video")

    with pytest.raises(Conflict) as error:
        services.appointment_book(by=patient.user, slot_id=same_time.pk, mode="video")

    assert error.value.code == "overlap"


def test_cancelling_frees_the_slot_and_cancels_the_visit(schedule):
    patient = PatientFactory()
    appointment = services.appointment_book(
        by=patient.user, slot_id=_free(schedule).pk, mode="video"
    )

    services.appointment_cancel(appointment_id=appointment.pk, by=patient.user)

    appointment.refresh_from_db()
    assert appointment.status == "cancelled"
    assert Slot.objects.get(pk=appointment.slot_id).status == "free"
    assert Visit.objects.get(pk=appointment.visit_id).state == "cancelled"


def test_the_patient_cannot_cancel_within_two_hours_but_the_clinic_can_with_a_reason(schedule):
    patient = PatientFactory()
    soon = (
        Slot.objects.filter(
            schedule=schedule, status="free", start__gt=timezone.now() + timedelta(minutes=10)
        )
        .order_by("start")
        .first()
    )
    appointment = services.appointment_book(by=patient.user, slot_id=soon.pk, mode="in_person")
    Appointment.objects.filter(pk=appointment.pk).update(start=timezone.now() + timedelta(hours=1))

    with pytest.raises(Conflict) as error:
        services.appointment_cancel(appointment_id=appointment.pk, by=patient.user)
    assert error.value.code == "too_late"
    with pytest.raises(DomainError):
        services.appointment_cancel(appointment_id=appointment.pk, by=schedule.clinician.user)
    services.appointment_cancel(
        appointment_id=appointment.pk, by=schedule.clinician.user, reason="Bác sĩ đi cấp cứu"
    )
    assert Appointment.objects.get(pk=appointment.pk).status == "cancelled"


def test_rescheduling_moves_the_booking_and_its_visit_at_most_twice(schedule):
    patient = PatientFactory()
    slots = list(
        Slot.objects.filter(
            schedule=schedule, status="free", start__gt=timezone.now() + timedelta(hours=3)
        ).order_by("start")[:4]
    )
    first = services.appointment_book(by=patient.user, slot_id=slots[0].pk, mode="video")

    second = services.appointment_reschedule(
        appointment_id=first.pk, by=patient.user, slot_id=slots[1].pk
    )
    third = services.appointment_reschedule(
        appointment_id=second.pk, by=patient.user, slot_id=slots[2].pk
    )

    first.refresh_from_db()
    assert (first.status, first.cancellation_reason) == ("cancelled", "rescheduled")
    assert third.rescheduled_from_id == second.pk and third.reschedule_count == 2
    assert Slot.objects.get(pk=slots[0].pk).status == "free"
    assert Visit.objects.get(pk=first.visit_id).state == "cancelled"
    assert Visit.objects.get(pk=third.visit_id).scheduled_start == slots[2].start
    with pytest.raises(Conflict) as error:
        services.appointment_reschedule(
            appointment_id=third.pk, by=patient.user, slot_id=slots[3].pk
        )
    assert error.value.code == "too_many_reschedules"


def test_someone_else_cannot_touch_an_appointment(schedule):
    appointment = services.appointment_book(
        by=PatientFactory().user, slot_id=_free(schedule).pk, mode="video"
    )

    with pytest.raises(NotFound):
        services.appointment_cancel(appointment_id=appointment.pk, by=PatientFactory().user)
    with pytest.raises(AccessDenied):
        services.appointment_no_show(appointment_id=appointment.pk, by=appointment.patient.user)


def test_a_freed_slot_is_offered_to_the_first_patient_waiting_then_the_next(schedule):
    doctor = schedule.clinician
    booker, first, second = PatientFactory(), PatientFactory(), PatientFactory()
    slot = _free(schedule)
    appointment = services.appointment_book(by=booker.user, slot_id=slot.pk, mode="video")
    entries = [
        services.waitlist_join(by=p.user, clinician_id=doctor.pk, mode="video")
        for p in (first, second)
    ]

    services.appointment_cancel(appointment_id=appointment.pk, by=booker.user)
    offered = services.waitlist_offer_slot(slot_id=slot.pk)

    assert offered == entries[0]
    slot.refresh_from_db()
    assert slot.status == "busy-tentative"
    # Nobody else can book a held slot …
    with pytest.raises(Conflict):
        services.appointment_book(by=PatientFactory().user, slot_id=slot.pk, mode="video")
    # … the first declines, and it goes to the second, who takes it.
    services.waitlist_decline(entry_id=entries[0].pk, by=first.user)
    assert services.waitlist_offer_slot(slot_id=slot.pk) == entries[1]
    booked = services.waitlist_accept(entry_id=entries[1].pk, by=second.user)
    assert booked.patient == second and booked.slot_id == slot.pk
    assert WaitlistEntry.objects.get(pk=entries[1].pk).status == "booked"
    assert WaitlistEntry.objects.get(pk=entries[0].pk).status == "waiting"


def test_an_offer_not_taken_in_time_expires_and_moves_on(schedule):
    slot = _free(schedule)
    patient = PatientFactory()
    entry = services.waitlist_join(
        by=patient.user, clinician_id=schedule.clinician.pk, mode="video"
    )
    services.waitlist_offer_slot(slot_id=slot.pk)

    expired = services.waitlist_expire_offers(now=timezone.now() + timedelta(minutes=31))

    entry.refresh_from_db()
    assert expired == 1
    assert entry.status == "waiting" and slot.pk in entry.declined_slot_ids
    assert Slot.objects.get(pk=slot.pk).status == "free"


def test_reminders_are_sent_once_in_the_patients_language_with_the_join_link(schedule):
    vietnamese = PatientFactory(user__preferred_language="vi")
    english = PatientFactory(user__preferred_language="en")
    slots = list(
        Slot.objects.filter(
            schedule=schedule, status="free", start__gt=timezone.now() + timedelta(hours=26)
        ).order_by("start")[:2]
    )
    booked = [
        services.appointment_book(by=p.user, slot_id=s.pk, mode="video")
        for p, s in zip((vietnamese, english), slots, strict=True)
    ]
    # A day before the later one: both are within 24 hours.
    at = slots[1].start - timedelta(hours=23)

    sent = services.appointment_reminders_send(now=at)
    again = services.appointment_reminders_send(now=at)

    assert (sent, again) == (2, 0)
    vi = AppointmentReminder.objects.get(appointment=booked[0], kind="day_before")
    en = AppointmentReminder.objects.get(appointment=booked[1], kind="day_before")
    assert vi.language == "vi" and "Nhắc lịch" in vi.text and "BS. Lan" in vi.text
    assert en.language == "en" and en.text.startswith(
        "Reminder: your video visit with BS. Lan is on "
    )
    assert en.link.endswith(f"/visits/{booked[1].visit_id}/") and en.link in en.text

    fifteen = services.appointment_reminders_send(now=slots[0].start - timedelta(minutes=10))
    assert fifteen == 1
    assert AppointmentReminder.objects.filter(
        appointment=booked[0], kind="fifteen_minutes"
    ).exists()


def test_no_day_before_reminder_for_a_booking_made_the_same_day(schedule):
    slot = (
        Slot.objects.filter(
            schedule=schedule, status="free", start__gt=timezone.now() + timedelta(hours=1)
        )
        .order_by("start")
        .first()
    )
    services.appointment_book(by=PatientFactory().user, slot_id=slot.pk, mode="video")

    assert services.appointment_reminders_send(now=timezone.now()) == 0


def test_no_shows_are_marked_after_the_grace_and_a_held_visit_counts_as_fulfilled(schedule):
    patients = [PatientFactory(), PatientFactory()]
    appointments = [
        services.appointment_book(
            by=p.user, slot_id=_free(schedule, after=timedelta(hours=h)).pk, mode="video"
        )
        for p, h in zip(patients, (3, 6), strict=True)
    ]
    Visit.objects.filter(pk=appointments[1].visit_id).update(state="ended")
    after = max(a.end for a in appointments) + timedelta(minutes=16)

    counts = services.appointments_mark_no_shows(now=after)

    assert counts == {"noshow": 1, "fulfilled": 1}
    assert Appointment.objects.get(pk=appointments[0].pk).status == "noshow"
    assert Visit.objects.get(pk=appointments[0].visit_id).state == "no_show"
    assert Appointment.objects.get(pk=appointments[1].pk).status == "fulfilled"


def test_the_clinician_marks_arrival_and_completion(schedule):
    appointment = services.appointment_book(
        by=PatientFactory().user, slot_id=_free(schedule).pk, mode="in_person"
    )
    doctor = schedule.clinician.user

    services.appointment_arrive(appointment_id=appointment.pk, by=doctor)
    services.appointment_fulfil(appointment_id=appointment.pk, by=doctor)

    assert Appointment.objects.get(pk=appointment.pk).status == "fulfilled"
