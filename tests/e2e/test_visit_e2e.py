"""A patient and a doctor meet in a video visit, in two real browsers, through the waiting room
and a real relay node: each sees the other's video (getStats: framesDecoded grows)."""

from __future__ import annotations

import time

import pytest
from django.utils import timezone

from consult import visit_services
from tests.e2e.conftest import PHONE, screenshot, signed_in_page
from tests.factories import PASSWORD, ClinicianFactory, PatientFactory

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _frames(page) -> int:
    return page.evaluate("window.telehealthVisit.framesDecoded()")


def _wait_frames_growing(page, timeout_s: float = 25) -> tuple[int, int]:
    """framesDecoded of the page's remote videos: first above zero, then growing."""
    deadline = time.monotonic() + timeout_s
    first = 0
    while time.monotonic() < deadline and first == 0:
        page.wait_for_timeout(500)
        first = _frames(page)
    later = first
    while time.monotonic() < deadline and later <= first + 10:
        page.wait_for_timeout(500)
        later = _frames(page)
    return first, later


@pytest.fixture
def visit(servers):
    """Created before the browser starts: Playwright's loop would make on_commit
    publishing think it runs inside async code."""
    patient = PatientFactory(user__username="bn.lan", user__full_name="Trần Thị Lan")
    doctor = ClinicianFactory(user__username="bs.minh", user__full_name="Lê Văn Minh")
    return visit_services.visit_schedule(
        patient=patient, host=doctor.user, scheduled_start=timezone.now()
    )


def test_patient_and_doctor_see_each_other_through_the_waiting_room(servers, visit, browser):
    doctor_page = signed_in_page(browser, servers, "bs.minh", PASSWORD)
    doctor_page.goto(f"{servers.web}/visits/{visit.pk}/")
    doctor_page.get_by_role("button", name="Mở phòng chờ").click()
    patient_page = signed_in_page(browser, servers, "bn.lan", PASSWORD, viewport=PHONE)
    patient_page.goto(f"{servers.web}/visits/{visit.pk}/")

    patient_page.get_by_text("Bác sĩ đang trực tuyến").wait_for()  # the doctor's status
    patient_page.get_by_role("button", name="Tôi đã sẵn sàng").click()
    patient_page.get_by_text("Bạn đang ở phòng chờ").wait_for()
    screenshot(patient_page, "visit-waiting-room-phone")
    admit = doctor_page.get_by_role("button", name="Cho vào")
    admit.wait_for(timeout=10000)
    screenshot(doctor_page, "visit-doctor-waiting-list-desktop")
    admit.click()

    patient_frames = _wait_frames_growing(patient_page)
    doctor_frames = _wait_frames_growing(doctor_page)
    screenshot(patient_page, "visit-call-phone")
    screenshot(doctor_page, "visit-call-desktop")

    assert patient_frames[1] > patient_frames[0] > 0
    assert doctor_frames[1] > doctor_frames[0] > 0
