"""In the call, in two real browsers through a real relay node: recording the whole visit
with everyone's recorded consent, and audio-only mode switched on and off during the call.

Media figures come from the pages' own ``getStats()`` (``window.telehealthVisit.mediaStats``).
"""

from __future__ import annotations

import time

import av
import pytest
from django.utils import timezone

from consult import visit_services
from consult.models import VisitParticipant, VisitRecording
from telehealth.models import AuditEvent
from tests.e2e.conftest import PHONE, screenshot, signed_in_page
from tests.factories import PASSWORD, ClinicianFactory, PatientFactory

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture
def visit(servers):
    """Created before the browser starts (see test_visit_e2e.py)."""
    patient = PatientFactory(user__username="bn.hoa", user__full_name="Phạm Thị Hoa")
    doctor = ClinicianFactory(user__username="bs.tuan", user__full_name="Đỗ Minh Tuấn")
    ClinicianFactory(user__username="bs.ngoai", user__full_name="Vũ Văn Ngoại")
    return visit_services.visit_schedule(
        patient=patient, host=doctor.user, scheduled_start=timezone.now()
    )


def _stats(page) -> dict[str, int]:
    return page.evaluate("window.telehealthVisit.mediaStats()")


def _wait_until(predicate, timeout_s: float = 25, what: str = "") -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise AssertionError(f"gave up waiting: {what}")


def _growing(page, key: str, by: int = 10, timeout_s: float = 25) -> bool:
    first = _stats(page)[key]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        page.wait_for_timeout(500)
        if _stats(page)[key] > first + by:
            return True
    return False


def _settled(page, key: str, timeout_s: float = 15) -> int:
    """Wait until ``key`` no longer changes over a whole second; its value then."""
    deadline = time.monotonic() + timeout_s
    last = _stats(page)[key]
    while time.monotonic() < deadline:
        page.wait_for_timeout(1000)
        now = _stats(page)[key]
        if now == last:
            return now
        last = now
    raise AssertionError(f"{key} kept changing")


def _into_the_call(browser, servers, visit):
    doctor_page = signed_in_page(browser, servers, "bs.tuan", PASSWORD)
    doctor_page.goto(f"{servers.web}/visits/{visit.pk}/")
    doctor_page.get_by_role("button", name="Mở phòng chờ").click()
    patient_page = signed_in_page(browser, servers, "bn.hoa", PASSWORD, viewport=PHONE)
    patient_page.goto(f"{servers.web}/visits/{visit.pk}/")
    patient_page.get_by_role("button", name="Tôi đã sẵn sàng").click()
    patient_page.get_by_text("Bạn đang ở phòng chờ").wait_for()
    admit = doctor_page.get_by_role("button", name="Cho vào")
    admit.wait_for(timeout=10000)
    admit.click()
    assert _growing(patient_page, "videoFramesDecoded"), "the patient never saw the doctor"
    assert _growing(doctor_page, "videoFramesDecoded"), "the doctor never saw the patient"
    return doctor_page, patient_page


def test_a_visit_is_recorded_only_with_everyones_consent_and_served_to_its_people(
    servers, visit, browser
):
    doctor_page, patient_page = _into_the_call(browser, servers, visit)

    # The doctor agrees for himself, then asks the others: the patient's page asks her.
    doctor_page.locator("#recording-consent").check()
    toggle = doctor_page.locator("#recording-toggle")
    assert toggle.is_disabled()  # the patient has not agreed yet
    doctor_page.get_by_role("button", name="Hỏi ý kiến đồng ý của mọi người").click()
    prompt = patient_page.get_by_role("alertdialog")
    prompt.wait_for(timeout=10000)
    assert "Đỗ Minh Tuấn đề nghị ghi hình buổi khám này" in prompt.inner_text()
    screenshot(patient_page, "visit-recording-consent-prompt-phone")
    prompt.get_by_role("button", name="Tôi đồng ý").click()
    prompt.wait_for(state="hidden")
    consent = VisitParticipant.objects.get(visit=visit, user__username="bn.hoa")
    assert consent.recording_consent is True and consent.recording_consent_at is not None

    # Everyone agreed: the doctor starts; every page shows that the visit is being recorded.
    doctor_page.get_by_role("button", name="Bắt đầu ghi hình").click()
    patient_page.locator("#recording-indicator").wait_for(timeout=10000)
    screenshot(doctor_page, "visit-recording-running-desktop")
    patient_page.wait_for_timeout(5000)  # some seconds of the call on record
    doctor_page.get_by_role("button", name="Dừng ghi hình").click()
    patient_page.locator("#recording-indicator").wait_for(state="hidden", timeout=10000)

    # The node uploads one file per participant; each holds decodable video and sound.
    _wait_until(
        lambda: VisitRecording.objects.filter(visit=visit).count() == 2,
        40,
        "the relay node to upload both files",
    )
    files = list(VisitRecording.objects.filter(visit=visit).select_related("participant"))
    assert {f.participant.username for f in files} == {"bs.tuan", "bn.hoa"}
    for recorded in files:
        with recorded.file.open("rb") as handle, av.open(handle) as container:
            kinds = {stream.type for stream in container.streams}
            video_frames = sum(1 for _ in container.decode(video=0))
        assert kinds == {"video", "audio"}
        assert video_frames > 30, f"{recorded.participant.username}: {video_frames} frames"

    # Served to the visit's host and its patient only; every attempt audited.
    outsider_page = signed_in_page(browser, servers, "bs.ngoai", PASSWORD)
    for recorded in files:
        url = f"{servers.web}/api/v1/recordings/{recorded.pk}/"
        for page in (doctor_page, patient_page):
            answer = page.request.get(url)
            assert answer.status == 200
            assert len(answer.body()) == recorded.size
            assert answer.headers["cache-control"] == "private, no-store"
        assert outsider_page.request.get(url).status == 404
        audited = AuditEvent.objects.filter(
            target__endswith=f":recording_file:{recorded.pk}",
            action__in=[AuditEvent.Action.READ, AuditEvent.Action.DENIED],
        )
        assert sorted(audited.values_list("actor__username", "action")) == [
            ("bn.hoa", AuditEvent.Action.READ),
            ("bs.ngoai", AuditEvent.Action.DENIED),
            ("bs.tuan", AuditEvent.Action.READ),
        ]


def test_audio_only_stops_video_both_ways_keeps_the_sound_and_switches_back(
    servers, visit, browser
):
    doctor_page, patient_page = _into_the_call(browser, servers, visit)

    doctor_page.locator("#audio-only").click()
    doctor_page.locator('#audio-only[aria-pressed="true"]').wait_for()

    # The doctor's side neither sends video nor gets any from the relay ...
    doctor_sent = _settled(doctor_page, "videoBytesSent")
    doctor_decoded = _settled(doctor_page, "videoFramesDecoded")
    patient_decoded = _settled(patient_page, "videoFramesDecoded")
    # ... while the sound goes on, both ways.
    assert _growing(doctor_page, "audioPacketsReceived", by=50)
    assert _growing(patient_page, "audioPacketsReceived", by=50)
    assert _stats(doctor_page)["videoBytesSent"] == doctor_sent
    assert _stats(doctor_page)["videoFramesDecoded"] == doctor_decoded
    assert _stats(patient_page)["videoFramesDecoded"] == patient_decoded
    doctor_tile = doctor_page.locator("#videos .tile.audio-only")
    assert doctor_tile.count() == 1
    participant = VisitParticipant.objects.get(visit=visit, user__username="bs.tuan")
    assert participant.audio_only is True
    screenshot(doctor_page, "visit-audio-only-desktop")

    doctor_page.locator("#audio-only").click()
    doctor_page.locator('#audio-only[aria-pressed="false"]').wait_for()

    assert _growing(doctor_page, "videoFramesDecoded"), "video did not come back to the doctor"
    assert _growing(patient_page, "videoFramesDecoded"), "the doctor's video did not come back"
    assert _stats(doctor_page)["videoBytesSent"] > doctor_sent
