"""Every main page, signed in as each role, in a real browser at phone and desktop sizes:
each shows a heading, runs without a script error or a failed request, and is saved
as a screenshot under tests/e2e/screenshots/ for a person to look at. And a page
whose session ends goes to the expired-session page, and back after signing in."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import time, timedelta

import pytest
from django.utils import timezone

from tests.e2e.conftest import DESKTOP, PHONE, screenshot
from tests.factories import PASSWORD, CoordinatorFactory, province

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SIZES = {"phone": PHONE, "desktop": DESKTOP}


@dataclass
class Person:
    role: str
    username: str
    name: str
    # (screenshot name, path, words the page's heading holds)
    pages: list[tuple[str, str, str]]


@pytest.fixture
def people(servers, celery_eager) -> list[Person]:
    """A small referral network in Hà Nội with one of each role, made before the browser
    starts (Playwright's loop would make on_commit publishing think it runs in async code).

    Lan has a routed referral, second in its queue, and a video appointment; Dr Gần
    hosts a video visit with her today; a coordinator covers the province."""
    from consult import visit_services
    from scheduler import appointment_services, policy, routing
    from scheduler.models import LevelRule, ServiceLevel, Slot
    from tests.scheduler.conftest import (
        build_network,
        patient_of,
        submitted_referral,
        weekly_schedule,
    )

    # A transactional test elsewhere may have emptied the routing rules, and this
    # process caches the network index: put the rules back and read afresh.
    policy.policy_defaults_load(LevelRule=LevelRule, ServiceLevel=ServiceLevel)
    routing.network_index_reset()
    network = build_network()
    lan = patient_of(network.referrer, user__username="bn.lan", user__full_name="Trần Thị Lan")
    submitted_referral(network)
    submitted_referral(network, patient=lan)
    doctor = network.cardiologist_near
    schedule = weekly_schedule(doctor, hours=(time(0, 0), time(23, 30)))
    appointment_services.slots_generate(schedule_id=schedule.pk)
    slot = (
        Slot.objects.filter(
            schedule=schedule,
            status=Slot.Status.FREE,
            start__gt=timezone.now() + timedelta(hours=3),
        )
        .order_by("start")
        .first()
    )
    appointment_services.appointment_book(by=lan.user, slot_id=slot.pk, mode="video")
    visit_services.visit_schedule(
        patient=lan, host=doctor.user, scheduled_start=timezone.now() + timedelta(minutes=10)
    )
    coordinator = CoordinatorFactory(
        user__username="dp.an", user__full_name="Đỗ Phương An", province=province("01")
    ).user
    routing.network_index_reset()
    return [
        Person(
            "patient",
            "bn.lan",
            "Trần Thị Lan",
            [
                ("home", "/", "Xin chào"),
                ("appointments", "/appointments/", "Lịch hẹn"),
                ("referrals", "/referrals/", "Chuyển tuyến của tôi"),
                ("visits", "/visits/", "Buổi khám video"),
                ("profile", "/profile/", "Hồ sơ của tôi"),
            ],
        ),
        Person(
            "doctor",
            doctor.user.username,
            doctor.user.display_name,
            [
                ("home", "/", "Xin chào"),
                ("doctor-day", "/doctor/day/", "Ngày làm việc của tôi"),
                ("referrals", "/referrals/", "Chuyển tuyến của tôi"),
                ("visits", "/visits/", "Buổi khám video"),
                ("network", "/network/", "Mạng lưới của tôi"),
                ("profile", "/profile/", "Hồ sơ của tôi"),
            ],
        ),
        Person(
            "health-worker",
            network.referrer.user.username,
            network.referrer.user.display_name,
            [
                ("home", "/", "Xin chào"),
                ("referrals", "/referrals/", "Chuyển tuyến của tôi"),
            ],
        ),
        Person(
            "coordinator",
            coordinator.username,
            coordinator.display_name,
            [
                ("home", "/", "Xin chào"),
                ("board", "/coordinator/board/", "Bảng điều phối"),
                ("coverage", "/network/coverage/", "Độ bao phủ kèm cặp"),
            ],
        ),
    ]


def _watch(page, who: str, problems: list[str]) -> None:  # type: ignore[no-untyped-def]
    """Collect script errors, console errors and failed requests of ``page``."""
    page.on("pageerror", lambda error: problems.append(f"{who} {page.url}: {error}"))
    # A failed request is also a console error without its URL; the response
    # listener below reports it with the URL instead.
    page.on(
        "console",
        lambda message: (
            problems.append(f"{who} {page.url}: console: {message.text}")
            if message.type == "error" and "Failed to load resource" not in message.text
            else None
        ),
    )
    page.on(
        "response",
        lambda response: (
            problems.append(f"{who}: {response.status} {response.url}")
            if response.status >= 400 and not response.url.endswith("/favicon.ico")
            else None
        ),
    )


def _sign_in(page, web: str, username: str) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{web}/login/")
    page.get_by_label("Tên đăng nhập").fill(username)
    page.get_by_label("Mật khẩu").fill(PASSWORD)
    page.get_by_role("button", name="Đăng nhập").click()
    page.wait_for_url(f"{web}/")


def _visit(page, web: str, path: str, heading: str) -> None:  # type: ignore[no-untyped-def]
    """Open ``path``, let its scripts finish their first requests, check its heading."""
    from playwright.sync_api import expect

    page.goto(f"{web}{path}")
    page.wait_for_load_state("networkidle")
    assert page.url == f"{web}{path}", f"{path} ended on {page.url}"
    title = page.locator("main h1").first
    expect(title).to_be_visible()
    expect(title).to_contain_text(heading)


def test_every_main_page_at_phone_and_desktop_sizes(servers, people, browser):
    problems: list[str] = []
    for size, viewport in SIZES.items():
        context = browser.new_context(viewport=viewport, locale="vi-VN")
        page = context.new_page()
        _watch(page, "anonymous", problems)
        _visit(page, servers.web, "/login/", "Đăng nhập")
        screenshot(page, f"login-{size}")
        context.close()

        for person in people:
            context = browser.new_context(viewport=viewport, locale="vi-VN")
            page = context.new_page()
            _watch(page, person.role, problems)
            _sign_in(page, servers.web, person.username)
            for name, path, heading in person.pages:
                _visit(page, servers.web, path, heading)
                screenshot(page, f"{person.role}-{name}-{size}")
            context.close()

    assert problems == []


def test_the_home_page_and_menu_fit_a_phone(servers, people, browser):
    from playwright.sync_api import expect

    problems: list[str] = []
    context = browser.new_context(viewport=PHONE, locale="vi-VN")
    page = context.new_page()
    _watch(page, "patient", problems)
    _sign_in(page, servers.web, "bn.lan")
    menu = page.get_by_role("button", name="Menu")
    links = page.get_by_role("navigation", name="Menu chính")

    # folded on a phone: the page starts with the person, not with ten links
    expect(menu).to_be_visible()
    expect(links).to_be_hidden()
    width = page.evaluate("document.documentElement.scrollWidth")
    expect(page.get_by_role("heading", name="Lượt khám sắp tới của tôi")).to_be_visible()
    expect(page.get_by_role("link", name="Vào buổi khám").first).to_be_visible()
    expect(page.get_by_text("Vị trí của bạn trong hàng đợi")).to_be_visible()

    menu.click()
    expect(links.get_by_role("link", name="Chuyển tuyến của tôi")).to_be_visible()
    expect(links.get_by_role("link", name="Bảng điều phối")).to_have_count(0)
    screenshot(page, "patient-menu-open-phone")
    links.get_by_role("link", name="Hồ sơ", exact=True).click()
    page.wait_for_url(f"{servers.web}/profile/")
    context.close()

    assert width <= PHONE["width"], "the home page scrolls sideways on a phone"
    assert problems == []


def test_a_refused_profile_edit_shows_the_error_beside_the_field_then_saves(
    servers, people, browser
):
    from playwright.sync_api import expect

    from telehealth.models import User

    problems: list[str] = []
    context = browser.new_context(viewport=PHONE, locale="vi-VN")
    page = context.new_page()
    _watch(page, "patient", problems)
    _sign_in(page, servers.web, "bn.lan")
    _visit(page, servers.web, "/profile/", "Hồ sơ của tôi")

    page.get_by_label("Số điện thoại").fill("0" * 30)
    page.get_by_role("button", name="Lưu").click()
    error = page.locator("#phone-error")
    expect(error).to_be_visible()
    expect(error).to_have_text("Trường này không được dài quá 20 ký tự.")
    expect(page.get_by_label("Số điện thoại")).to_have_attribute("aria-invalid", "true")
    screenshot(page, "patient-profile-error-phone")

    page.get_by_label("Số điện thoại").fill("0912345678")
    page.get_by_label("Họ và tên").fill("Trần Thị Lan Anh")
    page.get_by_role("button", name="Lưu").click()
    expect(page.get_by_text("Đã lưu hồ sơ của bạn.")).to_be_visible()
    expect(error).to_be_hidden()
    expect(page.locator(".topbar .who")).to_have_text("Trần Thị Lan Anh")
    context.close()

    user = User.objects.get(username="bn.lan")
    assert (user.full_name, user.phone) == ("Trần Thị Lan Anh", "0912345678")
    # The refused save is the one failed request expected.
    assert problems == [f"patient: 400 {servers.web}/api/v1/me/"]


def test_pages_whose_session_ends_go_to_the_expired_session_page_and_back(servers, people, browser):
    from playwright.sync_api import expect

    context = browser.new_context(viewport=DESKTOP, locale="vi-VN")
    live = context.new_page()  # has the socket
    _sign_in(live, servers.web, "bn.lan")
    _visit(live, servers.web, "/appointments/", "Lịch hẹn")
    expect(live.locator("#connection")).to_have_attribute("data-state", "online")
    form = context.new_page()  # no socket: finds out from the API's 401
    _visit(form, servers.web, "/profile/", "Hồ sơ của tôi")

    # when the person signs out in a third tab
    other = context.new_page()
    other.goto(f"{servers.web}/")
    other.get_by_role("button", name="Đăng xuất").click()

    # then the page with a socket is told at once (close 4401) and says so
    live.wait_for_url(f"{servers.web}/session-expired/?next=%2Fappointments%2F")
    expect(live.get_by_role("heading", name="Phiên làm việc của bạn đã kết thúc")).to_be_visible()
    screenshot(live, "session-expired-desktop")
    # and the page without one finds out on its next save
    form.get_by_role("button", name="Lưu").click()
    form.wait_for_url(f"{servers.web}/session-expired/?next=%2Fprofile%2F")

    # signing in again returns to where the person was
    live.get_by_role("link", name="Đăng nhập lại").click()
    live.get_by_label("Tên đăng nhập").fill("bn.lan")
    live.get_by_label("Mật khẩu").fill(PASSWORD)
    live.get_by_role("button", name="Đăng nhập").click()
    live.wait_for_url(f"{servers.web}/appointments/")
    expect(live.locator("#connection")).to_have_attribute("data-state", "online")
    context.close()
