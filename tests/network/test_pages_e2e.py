"""The network pages in real browsers (daphne + Debian's Chromium via Playwright): a
mentor accepts a request and the mentee sees it live, with presence and a message;
a coordinator runs an auto-assignment and reviews it. No script errors on the way."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from network import services
from telehealth.models import ClinicianProfile, FacilityLevel
from tests.factories import PASSWORD, CoordinatorFactory, FacilityFactory, province
from tests.integration.test_processes import BIN, ROOT, _child_env, _free_port, _stop, _wait_for
from tests.network.conftest import clinician, link

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
if not Path(CHROMIUM).exists() and os.environ.get("TELEHEALTH_TEST_REQUIRE_SERVICES") != "1":
    pytestmark.append(pytest.mark.skip(reason="Chromium is not installed"))


@pytest.fixture(autouse=True)
def _orm_beside_playwright(monkeypatch):
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


@pytest.fixture
def web(transactional_db) -> Iterator[str]:
    """daphne on the test database, with the network pages mounted and tasks run eagerly."""
    import socket

    port = _free_port()
    env = _child_env()
    env["CELERY_TASK_ALWAYS_EAGER"] = "1"
    process = subprocess.Popen(
        [str(BIN / "daphne"), "-b", "127.0.0.1", "-p", str(port), "telehealth.asgi:application"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )

    def listening() -> bool:
        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", port)) == 0

    try:
        _wait_for(listening, 30, "daphne")
        yield f"http://127.0.0.1:{port}"
    finally:
        log = _stop(process)
        if os.environ.get("E2E_SHOW_LOGS"):
            print(log)


@pytest.fixture
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        yield launched
        launched.close()


def _page(browser, web: str, username: str, errors: list[str], *, phone: bool = False):  # type: ignore[no-untyped-def]
    from tests.e2e.conftest import DESKTOP, PHONE

    context = browser.new_context(viewport=PHONE if phone else DESKTOP, locale="vi-VN")
    page = context.new_page()
    page.on("pageerror", lambda error: errors.append(f"{username}: {error}"))
    page.on(
        "console",
        lambda message: (
            errors.append(f"{username}: {message.text}")
            if message.type == "error" and "Failed to load resource" not in message.text
            else None
        ),
    )
    page.on(
        "response",
        lambda response: (
            errors.append(f"{username}: {response.status} {response.url}")
            if response.status >= 400 and not response.url.endswith("/favicon.ico")
            else None
        ),
    )
    page.goto(f"{web}/login/")
    page.get_by_label("Tên đăng nhập").fill(username)
    page.get_by_label("Mật khẩu").fill(PASSWORD)
    page.get_by_role("button", name="Đăng nhập").click()
    page.wait_for_url(f"{web}/")
    return page


@pytest.fixture
def people(web):
    """Made before the browsers start (Playwright's loop would confuse on_commit)."""
    mentor = clinician(FacilityLevel.CENTRAL, specialties=("cardiology",), name="PGS Nguyễn Minh")
    first = clinician(FacilityLevel.DISTRICT, name="BS Trần Hà")
    link(mentor, first)
    second = clinician(
        FacilityLevel.COMMUNE, kind=ClinicianProfile.Kind.HEALTH_WORKER, name="YS Lò Thị Mai"
    )
    request = services.do_mentorship_request(mentor=mentor, mentee=second, requested_by=second.user)
    for _ in range(3):
        FacilityFactory(level=FacilityLevel.COMMUNE, province=province("01"))
        clinician(FacilityLevel.COMMUNE, kind=ClinicianProfile.Kind.HEALTH_WORKER)
    coordinator = CoordinatorFactory(province=province("01")).user
    return {
        "mentor": mentor,
        "first": first,
        "second": second,
        "request": request,
        "coordinator": coordinator,
    }


def test_a_request_accepted_shows_up_live_with_presence_and_a_conversation(web, people, browser):
    from tests.e2e.conftest import screenshot

    errors: list[str] = []
    mentee_page = _page(browser, web, people["second"].user.username, errors, phone=True)
    mentee_page.goto(f"{web}/network/")
    mentee_page.get_by_text("đang chờ người kia trả lời").wait_for()
    mentor_page = _page(browser, web, people["mentor"].user.username, errors)
    mentor_page.goto(f"{web}/network/")
    mentor_page.get_by_text("Số chỗ hướng dẫn của tôi").wait_for()
    mentor_page.locator("#mentees").get_by_text("BS Trần Hà").wait_for()
    screenshot(mentor_page, "network-mentor-desktop")

    # when the mentor accepts the waiting request
    mentor_page.locator("#pending").get_by_role("button", name="Chấp nhận").click()
    mentor_page.locator("#mentees").get_by_text("YS Lò Thị Mai").wait_for()

    # then the mentee's page says so at once and shows the mentor, online
    mentee_page.get_by_text("Một yêu cầu kèm cặp đã được chấp nhận").wait_for(timeout=10000)
    mentors = mentee_page.locator("#mentors")
    mentors.get_by_text("PGS Nguyễn Minh").wait_for()
    mentors.locator(".presence-online").wait_for(timeout=10000)
    # and they can talk in the mentorship's conversation
    mentee_page.locator("#mentors").get_by_role("button", name="Trao đổi").click()
    mentee_page.get_by_placeholder("Viết tin nhắn…").fill("Em chào thầy ạ")
    mentee_page.get_by_role("button", name="Gửi").click()
    mentee_page.locator("#messages").get_by_text("Em chào thầy ạ").wait_for()
    mentor_page.locator("#mentees .unread:not([hidden])").get_by_text("1").wait_for(timeout=10000)
    screenshot(mentee_page, "network-mentee-phone")
    mentor_page.locator("#graph svg .node").first.wait_for()
    assert mentor_page.locator("#graph svg .node").count() == 3
    # and the mentor ends the other mentorship, saying why
    row = mentor_page.locator("#mentees li", has_text="BS Trần Hà")
    row.get_by_role("button", name="Kết thúc").click()
    row.get_by_label("Vì sao kết thúc?").select_option("completed")
    row.locator(".end-form").get_by_role("button", name="Kết thúc").click()
    mentor_page.locator("#mentees li", has_text="BS Trần Hà").wait_for(state="detached")

    assert errors == []


def test_a_coordinator_runs_and_reviews_an_auto_assignment(web, people, browser):
    from tests.e2e.conftest import screenshot

    errors: list[str] = []
    page = _page(browser, web, people["coordinator"].username, errors)
    page.goto(f"{web}/network/coverage/")
    page.locator("#totals").get_by_text("Người được hướng dẫn").wait_for()

    page.get_by_role("button", name="Bắt đầu phân công tự động").click()
    page.locator("#proposals table").wait_for(timeout=20000)
    page.get_by_role("button", name="Chấp nhận tất cả đề xuất").click()
    page.locator("#proposals").get_by_text("đã chấp nhận").first.wait_for()
    screenshot(page, "network-coverage-desktop")

    assert page.locator("#run-summary").get_by_text("Chi phí phương án tham lam").count() == 1
    assert errors == []


@pytest.fixture
def offered(web):
    """A mentor who offered to guide a district doctor; the doctor has not answered yet."""
    mentor = clinician(FacilityLevel.CENTRAL, specialties=("cardiology",), name="GS Phạm Quang")
    mentee = clinician(FacilityLevel.DISTRICT, name="BS Đặng Thu")
    services.do_mentorship_request(mentor=mentor, mentee=mentee, requested_by=mentor.user)
    return {"mentor": mentor, "mentee": mentee}


def test_a_doctor_accepts_a_mentors_offer_and_the_mentor_sees_it_live(web, offered, browser):
    from tests.e2e.conftest import screenshot

    errors: list[str] = []
    # given the mentor's page open on their network, with the offer still waiting
    mentor_page = _page(browser, web, offered["mentor"].user.username, errors)
    mentor_page.goto(f"{web}/network/")
    mentor_page.get_by_text("đang chờ người kia trả lời").wait_for()
    # when the doctor accepts the offer on their phone
    mentee_page = _page(browser, web, offered["mentee"].user.username, errors, phone=True)
    mentee_page.goto(f"{web}/network/")
    mentee_page.locator("#pending").get_by_role("button", name="Chấp nhận").click()
    mentee_page.locator("#mentors").get_by_text("GS Phạm Quang").wait_for()
    # then the mentor's open page shows the new mentee without a reload
    mentor_page.get_by_text("Một yêu cầu kèm cặp đã được chấp nhận").wait_for(timeout=10000)
    mentor_page.locator("#mentees").get_by_text("BS Đặng Thu").wait_for(timeout=10000)
    screenshot(mentor_page, "network-mentor-sees-acceptance-desktop")
    assert errors == []
