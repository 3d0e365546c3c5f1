"""Booking in a real browser (daphne + Debian's Chromium via Playwright): a patient picks
a free time of a doctor on /appointments/, sees the visit in their list, and the
appointment is booked in the database. No script errors on the way."""

from __future__ import annotations

import pytest

from scheduler import appointment_services
from scheduler.models import Appointment, Slot
from tests.e2e.conftest import DESKTOP, PHONE, screenshot, signed_in_page
from tests.factories import PASSWORD, ClinicianFactory, PatientFactory
from tests.scheduler.conftest import weekly_schedule

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture
def people(servers):
    """Made before the browser starts (Playwright's loop would confuse on_commit): a
    cardiologist seeing patients 08:00–11:00 every day of the coming week."""
    doctor = ClinicianFactory(specialty_codes=["cardiology"], user__full_name="Trần Văn Tâm")
    schedule = weekly_schedule(doctor)
    appointment_services.slots_generate(schedule_id=schedule.pk)
    patient = PatientFactory(user__full_name="Đặng Thị Hạnh")
    return {"doctor": doctor, "patient": patient}


def test_a_patient_books_a_video_visit_by_picking_a_free_time(servers, people, browser):
    errors: list[str] = []
    page = signed_in_page(
        browser, servers, people["patient"].user.username, PASSWORD, viewport=PHONE
    )
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{servers.web}/appointments/?specialty=cardiology")
    page.locator("#my-appointments").get_by_text("Chưa có lịch hẹn nào.").wait_for()

    # when the patient asks for the doctor's free times and picks the first
    row = page.locator(".clinicians li", has_text="Trần Văn Tâm")
    row.get_by_role("button", name="Giờ còn trống").click()
    slots = row.locator("button[data-slot]")
    slots.first.wait_for()
    assert row.get_by_label("khám qua video").is_checked()
    screenshot(page, "booking-free-times-phone")
    chosen = slots.first
    slot_id = int(chosen.get_attribute("data-slot"))
    chosen.click()

    # then they are told, and the visit is in their list
    page.locator("#notice").get_by_text("Đã đặt lịch.").wait_for()
    mine = page.locator("#my-appointments")
    mine.get_by_text("Trần Văn Tâm").wait_for()
    assert "khám qua video" in mine.inner_text()
    assert mine.get_by_role("link", name="Vào khám").count() == 1
    assert row.locator(".slots").is_hidden()
    screenshot(page, "booking-booked-phone")
    page.set_viewport_size(DESKTOP)
    screenshot(page, "booking-booked-desktop")

    # and the appointment is booked, on that slot, which is no longer free
    appointment = Appointment.objects.get(patient=people["patient"])
    assert appointment.status == Appointment.Status.BOOKED
    assert appointment.mode == "video"
    assert appointment.slot_id == slot_id
    assert appointment.clinician == people["doctor"]
    assert appointment.visit_id is not None
    assert Slot.objects.get(pk=slot_id).status == Slot.Status.BUSY
    assert errors == []


@pytest.fixture
def bookable_now(servers):
    """A doctor taking 5-minute video visits around the clock, so a free time starts
    within minutes whenever the test runs (the waiting room opens 30 minutes before)."""
    from datetime import time

    doctor = ClinicianFactory(user__username="bs.khoa", user__full_name="Võ Minh Khoa")
    schedule = weekly_schedule(
        doctor, visit_minutes=5, buffer_minutes=0, hours=(time(0, 0), time(23, 59))
    )
    appointment_services.slots_generate(schedule_id=schedule.pk)
    patient = PatientFactory(user__username="bn.hoa", user__full_name="Ngô Thị Hoa")
    return {"doctor": doctor, "patient": patient}


def test_a_patient_books_checks_in_is_admitted_and_both_see_video(servers, bookable_now, browser):
    from tests.e2e.test_visit_e2e import _wait_frames_growing

    # given the patient books the doctor's first free time on their phone
    patient_page = signed_in_page(browser, servers, "bn.hoa", PASSWORD, viewport=PHONE)
    patient_page.goto(f"{servers.web}/appointments/")
    row = patient_page.locator(".clinicians li", has_text="Võ Minh Khoa")
    row.get_by_role("button", name="Giờ còn trống").click()
    row.locator("button[data-slot]").first.click()
    patient_page.locator("#notice").get_by_text("Đã đặt lịch.").wait_for()
    visit_id = Appointment.objects.get(patient=bookable_now["patient"]).visit_id
    # when the doctor opens the waiting room and the patient follows "Vào khám" and checks in
    doctor_page = signed_in_page(browser, servers, "bs.khoa", PASSWORD)
    doctor_page.goto(f"{servers.web}/visits/{visit_id}/")
    doctor_page.get_by_role("button", name="Mở phòng chờ").click()
    day_page = doctor_page.context.new_page()  # the doctor's day, in a second tab
    day_page.goto(f"{servers.web}/doctor/day/")
    day_page.locator("#doctor-day").get_by_text("Ngô Thị Hoa").wait_for()
    patient_page.locator("#my-appointments").get_by_role("link", name="Vào khám").click()
    patient_page.wait_for_url(f"**/visits/{visit_id}/")
    patient_page.get_by_role("button", name="Tôi đã sẵn sàng").click()
    patient_page.get_by_text("Bạn đang ở phòng chờ").wait_for()
    # the doctor's day says so without a reload
    day_page.get_by_text("Đang ở phòng chờ: Ngô Thị Hoa").wait_for(timeout=10000)
    admit = doctor_page.get_by_role("button", name="Cho vào")
    admit.wait_for(timeout=10000)
    admit.click()
    # then each side sees the other's video (frames decoded keep growing)
    patient_frames = _wait_frames_growing(patient_page)
    doctor_frames = _wait_frames_growing(doctor_page)
    screenshot(patient_page, "booked-visit-call-phone")
    assert patient_frames[1] > patient_frames[0] > 0
    assert doctor_frames[1] > doctor_frames[0] > 0
