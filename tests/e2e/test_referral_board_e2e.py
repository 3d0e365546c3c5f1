"""Referrals in real browsers (daphne + Debian's Chromium via Playwright): a commune health
worker writes one on /referrals/new/ while a coordinator of the province has the board
open; the board shows it without a reload, the coordinator accepts it there, and the
health worker's "my referrals" shows that live. A doctor declines through the dialog
that replaced window.prompt(). No script errors on the way."""

from __future__ import annotations

import re
import struct
import zlib

import pytest

from consult.models import Attachment
from scheduler.models import Referral
from tests.e2e.conftest import DESKTOP, PHONE, screenshot, signed_in_page
from tests.factories import PASSWORD

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _png() -> bytes:
    """A real 1×1 PNG: the server sniffs the content, not the name."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00\xff\x00\x00")
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


def _watch_errors(page, who: str, errors: list[str]) -> None:
    page.on("pageerror", lambda error: errors.append(f"{who}: {error}"))
    page.on(
        "console",
        lambda message: (
            errors.append(f"{who}: {message.text}")
            if message.type == "error" and "Failed to load resource" not in message.text
            else None
        ),
    )


def _online(page) -> None:
    """The page's socket is connected (and so watching its topics)."""
    page.locator('#connection[data-state="online"]').wait_for(timeout=15000)


@pytest.fixture
def site(transactional_db, monkeypatch, request):
    """daphne and a relay node, routing in daphne: these tests start no Celery worker, so
    tasks run eagerly, right after the commit that enqueues them, as a worker would."""
    monkeypatch.setenv("CELERY_TASK_ALWAYS_EAGER", "1")
    return request.getfixturevalue("servers")


@pytest.fixture
def people(site):
    """Made before the browsers start (Playwright's loop would confuse on_commit).

    A transactional test before this one emptied the policy tables; put the default
    level rules and service levels back, or nothing could be routed."""
    from scheduler.models import LevelRule, ServiceLevel
    from scheduler.policy import policy_defaults_load
    from tests.scheduler.conftest import build_network, patient_of, province_coordinator

    policy_defaults_load(LevelRule=LevelRule, ServiceLevel=ServiceLevel)
    network = build_network()
    patient = patient_of(network.referrer, user__full_name="Nguyễn Thị Bình")
    patient_of(network.referrer, user__full_name="Lò Văn Sáng")
    return {
        "network": network,
        "patient": patient,
        "health_worker": network.referrer.user,
        "coordinator": province_coordinator("01"),
    }


def test_a_referral_written_by_a_health_worker_shows_live_on_the_board_and_back(
    site, people, browser
):
    errors: list[str] = []
    board = signed_in_page(browser, site, people["coordinator"].username, PASSWORD)
    _watch_errors(board, "coordinator", errors)
    board.goto(f"{site.web}/coordinator/board/")
    _online(board)
    board.evaluate("window.notReloaded = true")
    assert board.locator("tbody tr[data-referral]").count() == 0

    worker = signed_in_page(
        browser, site, people["health_worker"].username, PASSWORD, viewport=PHONE
    )
    _watch_errors(worker, "health worker", errors)
    worker.goto(f"{site.web}/referrals/new/")
    worker.get_by_role("heading", name="Tạo phiếu chuyển tuyến").wait_for()
    screenshot(worker, "referral-new-phone")
    worker.set_viewport_size(DESKTOP)
    screenshot(worker, "referral-new-desktop")
    worker.set_viewport_size(PHONE)

    # Sent empty: each required field says so, and focus is on the first of them.
    worker.get_by_role("button", name="Gửi phiếu chuyển tuyến").click()
    worker.locator("#patient-error").get_by_text("Vui lòng điền mục này.").wait_for()
    assert worker.evaluate("document.activeElement.id") == "patient"
    assert worker.locator("#patient").get_attribute("aria-invalid") == "true"
    assert worker.locator("#reason-error").is_visible()
    assert Referral.objects.count() == 0
    screenshot(worker, "referral-new-errors-phone")

    # when the health worker fills it in, with a photo, and sends it
    worker.get_by_label("Bệnh nhân").select_option(label="Nguyễn Thị Bình")
    worker.get_by_label("Chuyên khoa").select_option(label="Tim mạch")
    worker.get_by_label("Khẩn").check()
    worker.get_by_label("Lý do chuyển tuyến").fill("Đau ngực khi gắng sức, điện tim nghi thiếu máu")
    worker.get_by_label("Tóm tắt bệnh án").fill("Nữ 61 tuổi, tăng huyết áp 10 năm.")
    worker.get_by_label("Tệp đính kèm (không bắt buộc)").set_input_files(
        files=[{"name": "dien-tim.png", "mimeType": "image/png", "buffer": _png()}]
    )
    worker.get_by_role("button", name="Gửi phiếu chuyển tuyến").click()

    # then "my referrals" says where it went and its ticket
    worker.wait_for_url(re.compile(r"/referrals/\?sent=\d+"))
    referral = Referral.objects.get(patient=people["patient"])
    sent = worker.locator("#sent")
    sent.get_by_text(f"Đã gửi phiếu chuyển tuyến #{referral.pk}").wait_for()
    sent.get_by_text("Phiếu đã được chuyển đến Trung tâm Y tế Gần, số thứ tự 001.").wait_for(
        timeout=15000
    )
    screenshot(worker, "referral-sent-phone")
    worker.evaluate("window.notReloaded = true")

    # and the coordinator's board shows it without a reload
    row = board.locator(f'tbody tr[data-referral="{referral.pk}"]')
    row.wait_for(timeout=15000)
    assert board.evaluate("window.notReloaded") is True
    assert "Nguyễn Thị Bình" in row.inner_text()
    assert "Trung tâm Y tế Gần" in row.inner_text()
    assert "001" in row.inner_text()
    screenshot(board, "referral-board-desktop")
    board.set_viewport_size(PHONE)
    screenshot(board, "referral-board-phone")
    board.set_viewport_size(DESKTOP)

    # when the coordinator accepts it from the board, saying why
    row.get_by_label(f"#{referral.pk}", exact=True).check()
    board.get_by_label("Lý do (được ghi lại kèm tên bạn)").fill("Đã gọi điện cho khoa Tim mạch")
    board.get_by_role("button", name="Tiếp nhận các phiếu đã chọn").click()
    board.locator("#notice").get_by_text("Xong.").wait_for()
    board.locator(f'tbody tr[data-referral="{referral.pk}"][data-status="accepted"]').wait_for()

    # then the health worker's page shows it accepted, live
    card = worker.locator(f"#referral-{referral.pk}")
    card.locator(".badge.status-accepted").wait_for(timeout=15000)
    assert worker.evaluate("window.notReloaded") is True
    screenshot(worker, "referral-accepted-phone")

    referral.refresh_from_db()
    assert referral.status == Referral.Status.ACCEPTED
    assert referral.priority == "urgent"
    assert referral.requested_mode == Referral.Mode.REMOTE_FIRST
    assert referral.target_facility == people["network"].district_near
    assert Attachment.objects.filter(thread_id=referral.thread_id, name="dien-tim.png").exists()
    assert errors == []


@pytest.fixture
def waiting_referral(people):
    from tests.scheduler.conftest import submitted_referral

    return submitted_referral(people["network"], patient=people["patient"])


def test_a_doctor_declines_a_referral_through_the_reason_dialog(
    site, people, waiting_referral, browser
):
    referral = waiting_referral
    doctor = people["network"].cardiologist_near.user
    errors: list[str] = []
    page = signed_in_page(browser, site, doctor.username, PASSWORD)
    _watch_errors(page, "doctor", errors)
    page.goto(f"{site.web}/doctor/day/")
    item = page.locator(f'li[data-referral="{referral.pk}"]')
    item.get_by_role("button", name="Từ chối").click()

    dialog = page.get_by_role("dialog", name="Từ chối phiếu chuyển tuyến")
    dialog.wait_for()
    field = dialog.get_by_label("Vì sao bạn từ chối? Người chuyển tuyến sẽ đọc lý do này.")
    assert page.evaluate("document.activeElement.tagName") == "INPUT"
    assert "Bệnh nhân: Nguyễn Thị Bình" in dialog.inner_text()
    # Escape cancels: nothing is sent, focus is back on the button.
    page.keyboard.press("Escape")
    dialog.wait_for(state="detached")
    assert page.evaluate("document.activeElement.textContent.trim()") == "Từ chối"

    item.get_by_role("button", name="Từ chối").click()
    dialog.get_by_role("button", name="Từ chối").click()  # empty: refused in place
    dialog.get_by_text("Vui lòng điền mục này.").wait_for()
    field.fill("Khoa đang quá tải, đề nghị chuyển tuyến tỉnh")
    screenshot(page, "doctor-day-decline-dialog-desktop")
    dialog.get_by_role("button", name="Từ chối").click()
    page.locator("#notice").get_by_text("Xong.").wait_for()
    item.wait_for(state="detached")

    referral.refresh_from_db()
    assert referral.status == Referral.Status.REJECTED
    assert referral.status_reason == "Khoa đang quá tải, đề nghị chuyển tuyến tỉnh"
    assert errors == []
