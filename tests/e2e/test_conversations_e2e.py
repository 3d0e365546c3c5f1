"""My conversations in two real browsers: a message arrives live on the other side; a
message typed while the sender's socket is cut waits as pending and, after reconnecting,
is delivered exactly once (also when the socket dies between the send and its ack)."""

from __future__ import annotations

import re
import struct
import time
import zlib

import pytest
from django.utils import timezone

from consult import services, visit_services
from consult.models import Message, Thread, Visit, VisitParticipant
from tests.e2e.conftest import PHONE, screenshot, signed_in_page
from tests.factories import PASSWORD, ClinicianFactory, PatientFactory

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


def _png(width: int = 240, height: int = 140) -> bytes:
    """A small striped PNG, built by hand so the test needs no imaging library."""
    rows = b"".join(
        b"\x00" + b"".join(bytes((20 + x % 200, 110, 80 + y)) for x in range(width))
        for y in range(height)
    )

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


@pytest.fixture
def conversation(servers):
    """Created before the browser starts: Playwright's loop would make on_commit
    publishing think it runs inside async code."""
    patient = PatientFactory(user__username="bn.nam", user__full_name="Phạm Văn Nam")
    doctor = ClinicianFactory(user__username="bs.hoa", user__full_name="Lê Thị Hoa")
    thread = services.thread_open(
        kind=Thread.Kind.CONSULTATION,
        created_by=doctor.user,
        participants=[(patient.user, "patient")],
        patient=patient,
        subject="Theo dõi huyết áp",
    )
    for n, (who, body) in enumerate(
        [
            (doctor.user, "Chào anh Nam, anh gửi giúp tôi kết quả đo huyết áp tuần này nhé."),
            (patient.user, "Dạ vâng, sáng nay tôi đo được 145/90."),
            (doctor.user, "Anh đo lại buổi tối và ghi vào sổ giúp tôi."),
        ]
    ):
        services.message_send(user=who, thread_id=thread.pk, client_id=f"seed-{n}", body=body)
    visit = visit_services.visit_schedule(
        patient=patient, host=doctor.user, scheduled_start=timezone.now()
    )
    visit_services.visit_end(
        visit_id=visit.pk,
        by=doctor.user,
        summary="Huyết áp còn cao. Uống amlodipin 5 mg mỗi sáng.\nTái khám sau 2 tuần.",
    )
    ClinicianFactory(user__full_name="Ngô Quang Huy", title="PGS.TS")
    ClinicianFactory(user__full_name="Đỗ Minh Tâm")
    # Room for one more person only: the second invitation is refused.
    upcoming = visit_services.visit_schedule(
        patient=patient, host=doctor.user, scheduled_start=timezone.now(), source="e2e:invite"
    )
    Visit.objects.filter(pk=upcoming.pk).update(max_participants=3)
    thread.upcoming_visit = upcoming
    # A long conversation: more than one page of history.
    notes = services.thread_open(
        kind=Thread.Kind.CONSULTATION,
        created_by=doctor.user,
        participants=[(patient.user, "patient")],
        patient=patient,
        subject="Sổ theo dõi",
    )
    for n in range(1, 71):
        services.message_send(
            user=patient.user, thread_id=notes.pk, client_id=f"note-{n}", body=f"Ghi chú số {n}"
        )
    return thread


def _wait_until(page, expression: str, timeout: float = 15.0) -> None:
    """Poll ``expression`` in the page. Not ``page.wait_for_function``: it runs the
    expression through eval() inside the page, which the Content-Security-Policy forbids
    (no 'unsafe-eval'); ``page.evaluate`` goes through the debugging protocol instead."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(expression):
        assert time.monotonic() < deadline, f"still false after {timeout} s: {expression}"
        page.wait_for_timeout(100)


def _online(page) -> None:
    page.locator('#connection[data-state="online"]').wait_for(timeout=15000)


def _bodies(page, text: str) -> int:
    return page.locator(".msg-body", has_text=text).count()


def test_a_message_arrives_live_and_one_typed_offline_is_delivered_once(
    servers, conversation, browser
):
    from playwright.sync_api import expect

    doctor = signed_in_page(browser, servers, "bs.hoa", PASSWORD)
    doctor.goto(f"{servers.web}/conversations/")
    doctor.get_by_role("link", name="Theo dõi huyết áp").wait_for()
    screenshot(doctor, "conversations-list-desktop")
    doctor.get_by_role("link", name="Theo dõi huyết áp").click()
    _online(doctor)

    patient = signed_in_page(browser, servers, "bn.nam", PASSWORD, viewport=PHONE)
    patient.goto(f"{servers.web}/conversations/")
    screenshot(patient, "conversations-list-phone")
    patient.get_by_role("link", name="Theo dõi huyết áp").click()
    _online(patient)
    patient.get_by_text("Anh đo lại buổi tối").wait_for()

    # Live: typing shows on the other side, then the message, without a reload.
    box = patient.get_by_role("textbox", name="Tin nhắn", exact=True)
    box.fill("Chào bác sĩ, tối qua tôi đo được 150/95.")
    box.press("Space")
    doctor.get_by_text("Phạm Văn Nam đang nhập…").wait_for(timeout=10000)
    box.press("Enter")
    doctor.locator(".msg-body", has_text="tối qua tôi đo được 150/95").wait_for(timeout=10000)
    # The doctor's page marks it read; the patient sees that.
    patient.locator(".msg.mine.latest .msg-status", has_text="Đã xem").wait_for(timeout=10000)

    # An image and a PDF from the doctor: the image shows on the patient's phone, the PDF
    # downloads.
    doctor.locator("#file-input").set_input_files(
        files=[
            {"name": "huyet-ap.png", "mimeType": "image/png", "buffer": _png()},
            {"name": "ket-qua.pdf", "mimeType": "application/pdf", "buffer": PDF},
        ]
    )
    expect(doctor.locator(".file-chip")).to_have_count(2, timeout=10000)
    expect(doctor.locator("#send")).to_be_enabled(timeout=10000)
    doctor.get_by_role("textbox", name="Tin nhắn", exact=True).fill("Biểu đồ huyết áp của anh")
    doctor.get_by_role("button", name="Gửi", exact=True).click()
    patient.locator(".att-image img").wait_for(timeout=10000)
    expect(patient.locator(".att-image img")).to_have_js_property(
        "naturalWidth", 240, timeout=10000
    )
    pdf_link = patient.locator(".att-file a", has_text="ket-qua.pdf")
    download = patient.request.get(f"{servers.web}{pdf_link.get_attribute('href')}")
    assert download.ok
    assert download.body() == PDF
    screenshot(patient, "conversation-phone")
    screenshot(doctor, "conversation-desktop")

    # The patient's connection drops: the socket is cut and nothing can reconnect.
    patient.context.set_offline(True)
    patient.evaluate("window.telehealthConversation.realtime.ws.close()")
    patient.locator(
        '#connection[data-state="offline"], #connection[data-state="reconnecting"]'
    ).wait_for()
    offline_text = "Tôi có cần uống thêm thuốc không ạ?"
    box.fill(offline_text)
    box.press("Enter")
    pending = patient.locator(".msg.pending", has_text=offline_text)
    pending.wait_for()
    assert "Đang chờ kết nối để gửi…" in pending.inner_text()
    screenshot(patient, "conversation-offline-phone")
    doctor.wait_for_timeout(1500)
    assert Message.objects.filter(thread=conversation, body=offline_text).count() == 0
    assert _bodies(doctor, offline_text) == 0

    # Back online: the outbox resends under the same client id.
    patient.context.set_offline(False)
    _online(patient)
    patient.locator(".msg.pending").first.wait_for(state="detached", timeout=15000)
    doctor.locator(".msg-body", has_text=offline_text).wait_for(timeout=10000)

    # The socket dies right after a send, before its ack: the retry after reconnecting
    # is answered with the stored message, not a second one.
    lost_ack_text = "Và tôi có nên tập thể dục buổi sáng không?"
    patient.evaluate(
        """() => {
          window.acks = [];
          const realtime = window.telehealthConversation.realtime;
          realtime.addEventListener("ack", (e) => window.acks.push(e.detail));
          const ws = realtime.ws;
          const send = ws.send.bind(ws);
          ws.send = (data) => { send(data); if (data.includes('"type":"send"')) ws.close(); };
        }"""
    )
    box.fill(lost_ack_text)
    box.press("Enter")
    doctor.locator(".msg-body", has_text=lost_ack_text).wait_for(timeout=15000)
    _online(patient)
    _wait_until(patient, "window.telehealthConversation.pending().length === 0")
    doctor.wait_for_timeout(1500)  # room for a duplicate to show up, if there were one
    # The first ack was lost with the socket; the retry was answered as a duplicate.
    assert patient.evaluate("window.acks.map((a) => a.duplicate)") == [True]

    for text in (offline_text, lost_ack_text):
        assert Message.objects.filter(thread=conversation, body=text).count() == 1
        assert _bodies(doctor, text) == 1
        assert _bodies(patient, text) == 1
    seqs = list(
        Message.objects.filter(thread=conversation).order_by("seq").values_list("seq", flat=True)
    )
    assert seqs == list(range(1, len(seqs) + 1))


def test_a_patient_reads_visit_summaries_and_the_host_invites_a_specialist(
    servers, conversation, browser
):
    patient = signed_in_page(browser, servers, "bn.nam", PASSWORD, viewport=PHONE)
    patient.goto(f"{servers.web}/visits/summaries/")
    patient.get_by_text("Uống amlodipin 5 mg mỗi sáng.").wait_for()
    screenshot(patient, "visit-summaries-phone")

    # Search finds a message older than the first page; choosing it loads older pages.
    patient.goto(f"{servers.web}/conversations/")
    patient.get_by_role("link", name="Sổ theo dõi").click()
    patient.get_by_text("Ghi chú số 70").wait_for()
    assert patient.locator(".msg-body", has_text="Ghi chú số 7").count() < 70
    patient.get_by_role("searchbox").fill("ghi chu so 7")
    patient.get_by_role("searchbox").press("Enter")
    patient.get_by_text("Tìm thấy").wait_for()
    patient.locator(".search-hit", has_text=re.compile(r"Ghi chú số 7$")).click()
    patient.locator(".msg.highlight .msg-body", has_text=re.compile(r"^Ghi chú số 7$")).wait_for()
    assert patient.locator(".msg-body").count() == 70
    screenshot(patient, "conversation-search-phone")

    visit = conversation.upcoming_visit
    doctor = signed_in_page(browser, servers, "bs.hoa", PASSWORD)
    doctor.goto(f"{servers.web}/visits/{visit.pk}/")
    doctor.get_by_label("Tìm bác sĩ theo tên").fill("ngo huy")
    doctor.get_by_role("button", name="Chọn: Ngô Quang Huy").click()
    doctor.get_by_label("Vai trò trong buổi khám").select_option("specialist")
    doctor.get_by_role("button", name="Gửi lời mời").click()
    doctor.get_by_text("Đã mời Ngô Quang Huy với vai trò bác sĩ chuyên khoa").wait_for(
        timeout=10000
    )

    # A second invitation does not fit in the visit: the refusal is shown readably.
    doctor.get_by_label("Tìm bác sĩ theo tên").fill("do minh tam")
    doctor.get_by_role("button", name="Chọn: Đỗ Minh Tâm").click()
    doctor.get_by_label("Vai trò trong buổi khám").select_option("interpreter")
    doctor.get_by_role("button", name="Gửi lời mời").click()
    error = doctor.locator('#invite-status[data-kind="error"]')
    error.wait_for(timeout=10000)
    assert "3" in error.inner_text()
    screenshot(doctor, "visit-invite-desktop")
    assert list(
        VisitParticipant.objects.filter(visit=visit, role="specialist").values_list(
            "user__full_name", flat=True
        )
    ) == ["Ngô Quang Huy"]
