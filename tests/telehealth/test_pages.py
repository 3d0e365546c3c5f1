"""The pages a person sees first: sign-in, home by role, the top bar, profile, an
expired session, the language switch."""

from datetime import time, timedelta
from pathlib import Path

import polib
import pytest
from django.test import Client
from django.utils import timezone

from consult import visit_services
from scheduler import appointment_services
from scheduler.models import Slot
from telehealth.models import AuditEvent
from tests.factories import (
    PASSWORD,
    ClinicianFactory,
    CoordinatorFactory,
    FacilityFactory,
    PatientFactory,
    province,
    sign_in,
)

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _routing_rules(monkeypatch):
    """Referrals are routed in these tests: the level rules and service levels must be
    there (a transactional test elsewhere may have emptied them) and the router's
    per-process cache of the network must see this test's facilities."""
    from scheduler import policy, routing
    from scheduler.models import LevelRule, ServiceLevel
    from scheduler.policy import policy_defaults_load

    monkeypatch.setattr(routing, "INDEX_TTL_SECONDS", 0.0)
    monkeypatch.setattr(policy, "SERVICE_LEVELS_TTL_SECONDS", 0.0)
    routing.network_index_reset()
    policy_defaults_load(LevelRule=LevelRule, ServiceLevel=ServiceLevel)
    yield
    routing.network_index_reset()


def _signed_in(user) -> Client:  # type: ignore[no-untyped-def]
    client = Client()
    sign_in(client, user.username)
    return client


def _book_video(patient, doctor):  # type: ignore[no-untyped-def]
    """A video appointment a few hours ahead (with its consult visit)."""
    from tests.scheduler.conftest import weekly_schedule

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
    return appointment_services.appointment_book(by=patient.user, slot_id=slot.pk, mode="video")


@pytest.fixture
def doctor_client():
    clinician = ClinicianFactory(
        user__username="bs.hoa",
        user__full_name="Lê Thị Hoa",
        facility=FacilityFactory(name="Bệnh viện Đa khoa tỉnh Lào Cai"),
        specialty_codes=["pediatrics"],
    )
    client = Client()
    sign_in(client, "bs.hoa")
    return client, clinician


def test_anonymous_visitors_are_sent_to_sign_in():
    response = Client().get("/")

    assert response.status_code == 302
    assert response["Location"].startswith("/login/")


def test_sign_in_page_is_vietnamese_by_default():
    page = Client().get("/login/").content.decode()

    assert "Đăng nhập" in page
    assert "Tên đăng nhập" in page
    assert '<html lang="vi">' in page


def test_home_says_who_i_am_and_where_i_work_in_vietnamese(doctor_client):
    client, _ = doctor_client

    page = client.get("/").content.decode()

    assert "Xin chào, Lê Thị Hoa" in page
    assert "Bệnh viện Đa khoa tỉnh Lào Cai" in page
    assert "Nơi công tác" in page
    assert "bác sĩ" in page
    assert "Nhi khoa" in page


def test_the_language_switch_turns_the_page_english(doctor_client):
    client, _ = doctor_client

    switched = client.post("/i18n/setlang/", {"language": "en", "next": "/"})
    page = client.get("/").content.decode()

    assert switched.status_code == 302
    assert "Hello, Lê Thị Hoa" in page
    assert "Works at" in page
    assert "Paediatrics" in page
    assert '<html lang="en">' in page


def test_a_coordinator_sees_their_province():
    assignment = CoordinatorFactory(user__username="dp.an")
    client = Client()
    sign_in(client, "dp.an")

    page = client.get("/").content.decode()

    assert assignment.province.name in page
    assert "điều phối viên" in page


def test_sign_out_ends_the_session(doctor_client):
    client, _ = doctor_client

    client.post("/logout/")

    assert client.get("/").status_code == 302


def test_an_unknown_page_is_a_readable_404():
    response = Client().get("/no-such-page/")

    assert response.status_code == 404
    assert "Không tìm thấy trang" in response.content.decode()


def test_every_vietnamese_message_is_translated():
    catalogue = polib.pofile(str(ROOT / "telehealth/locale/vi/LC_MESSAGES/django.po"))

    assert catalogue.untranslated_entries() == []
    assert catalogue.fuzzy_entries() == []


# --- Home, by role -----------------------------------------------------------------------


def test_a_patient_sees_upcoming_visits_and_open_referrals_with_their_place_in_the_queue():
    from tests.scheduler.conftest import build_network, patient_of, submitted_referral

    network = build_network()
    lan = patient_of(network.referrer, user__username="bn.lan", user__full_name="Trần Thị Lan")
    submitted_referral(network)  # someone else's, ahead in the same queue
    submitted_referral(network, patient=lan)
    appointment = _book_video(lan, network.cardiologist_near)

    page = _signed_in(lan.user).get("/").content.decode()

    assert "Lượt khám sắp tới của tôi" in page
    assert "BS. Gần" in page and "khám qua video" in page
    assert f'href="/visits/{appointment.visit_id}/"' in page and "Vào buổi khám" in page
    assert "Chuyển tuyến đang mở của tôi" in page
    assert "Tim mạch" in page and "Trung tâm Y tế Gần" in page
    assert "Vị trí của bạn trong hàng đợi: <strong>2</strong>" in page


def test_a_patient_never_sees_another_patients_visits_or_referrals():
    from tests.scheduler.conftest import build_network, patient_of, submitted_referral

    network = build_network()
    lan = patient_of(network.referrer, user__full_name="Trần Thị Lan")
    other = patient_of(network.referrer, user__full_name="Phạm Văn Bình")
    submitted_referral(network, patient=other)
    _book_video(other, network.cardiologist_near)
    # Lan is also the commune health worker's patient: the worker's lists hold Bình too.

    page = _signed_in(lan.user).get("/").content.decode()

    assert "Phạm Văn Bình" not in page
    assert "Bạn chưa có lượt khám nào sắp tới." in page
    assert "Bạn không có chuyển tuyến nào đang mở." in page


def test_a_patient_who_is_also_a_health_worker_sees_only_their_own_rows_as_patient():
    from tests.scheduler.conftest import build_network, patient_of, submitted_referral

    network = build_network()
    worker = network.referrer
    PatientFactory(user=worker.user)
    someone = patient_of(worker, user__full_name="Phạm Văn Bình")
    submitted_referral(network, patient=someone)

    page = _signed_in(worker.user).get("/").content.decode()

    my_referrals = page.split('id="my-referrals"')[1].split("</section>")[0]
    assert "Phạm Văn Bình" not in page
    assert "Bạn không có chuyển tuyến nào đang mở." in my_referrals


def test_a_doctor_sees_todays_visits_and_the_links_of_their_day():
    doctor = ClinicianFactory(user__username="bs.minh", user__full_name="Lê Văn Minh")
    patient = PatientFactory(user__full_name="Trần Thị Lan")
    visit = visit_services.visit_schedule(
        patient=patient, host=doctor.user, scheduled_start=timezone.now()
    )

    page = _signed_in(doctor.user).get("/").content.decode()

    assert "Lượt khám hôm nay" in page
    assert "Khám qua video với Trần Thị Lan" in page
    assert f'href="/visits/{visit.pk}/"' in page and "Mở buổi khám" in page
    for href in ('href="/doctor/day/"', 'href="/referrals/new/"', 'href="/network/"'):
        assert href in page
    # Other people's records on a page: one audit event for the read.
    assert AuditEvent.objects.filter(
        actor=doctor.user, target="telehealth.home:today", action=AuditEvent.Action.READ
    ).exists()


def test_a_doctor_with_an_empty_day_is_told_so_with_the_queue_count():
    from tests.scheduler.conftest import build_network, submitted_referral

    network = build_network()
    submitted_referral(network)

    page = _signed_in(network.cardiologist_near.user).get("/").content.decode()

    assert "Hôm nay không có lượt khám." in page
    assert "1 chuyển tuyến đang chờ trong hàng đợi của bạn." in page
    assert not AuditEvent.objects.filter(target="telehealth.home:today").exists()


def test_a_coordinator_sees_the_board_counts_and_links():
    from tests.scheduler.conftest import build_network, submitted_referral

    network = build_network()
    submitted_referral(network)
    CoordinatorFactory(user__username="dp.an", province=province("01"))
    client = Client()
    sign_in(client, "dp.an")

    page = client.get("/").content.decode()

    coordination = page.split('id="coordination"')[1].split("</section>")[0]
    assert "Điều phối chuyển tuyến" in coordination
    assert "<strong>1</strong> mới trong hàng đợi" in coordination
    assert 'href="/coordinator/board/"' in coordination
    assert 'href="/network/coverage/"' in coordination


def test_the_top_bar_shows_each_role_its_own_links():
    patient = PatientFactory()
    doctor = ClinicianFactory()
    coordinator = CoordinatorFactory().user

    def links(user):  # type: ignore[no-untyped-def]
        page = _signed_in(user).get("/profile/").content.decode()
        bar = page.split('id="site-nav"')[1].split("</nav>")[0]
        return {
            href
            for href in (
                "/appointments/",
                "/referrals/",
                "/doctor/day/",
                "/referrals/new/",
                "/coordinator/board/",
                "/network/",
                "/network/coverage/",
                "/visits/",
                "/conversations/",
                "/profile/",
            )
            if f'href="{href}"' in bar
        }

    assert links(patient.user) == {
        "/appointments/",
        "/referrals/",
        "/visits/",
        "/conversations/",
        "/profile/",
    }
    assert links(doctor.user) == {
        "/doctor/day/",
        "/referrals/",
        "/referrals/new/",
        "/visits/",
        "/conversations/",
        "/network/",
        "/profile/",
    }
    assert links(coordinator) == {
        "/referrals/",
        "/coordinator/board/",
        "/network/coverage/",
        "/profile/",
    }


def test_the_top_bar_marks_the_page_you_are_on():
    doctor = ClinicianFactory()

    page = _signed_in(doctor.user).get("/profile/").content.decode()

    assert 'href="/profile/" data-nav="profile" aria-current="page"' in page
    assert 'data-nav="network" aria-current' not in page


def test_anonymous_pages_have_no_menu():
    page = Client().get("/login/").content.decode()

    assert 'id="site-nav"' not in page


# --- An expired session ---------------------------------------------------------------


def test_the_session_expired_page_offers_sign_in_back_to_where_you_were():
    response = Client().get("/session-expired/", {"next": "/referrals/?tab=open"})

    page = response.content.decode()
    assert response.status_code == 200
    assert "Phiên làm việc của bạn đã kết thúc" in page
    assert 'href="/login/?next=%2Freferrals%2F%3Ftab%3Dopen"' in page
    assert "no-cache" in response["Cache-Control"]


@pytest.mark.parametrize("unsafe", ["https://evil.example/", "//evil.example/", "/login/"])
def test_the_session_expired_page_never_sends_you_elsewhere(unsafe):
    page = Client().get("/session-expired/", {"next": unsafe}).content.decode()

    assert 'href="/login/?next=%2F"' in page


def test_signing_in_from_the_session_expired_page_returns_to_the_page():
    PatientFactory(user__username="bn.lan")
    client = Client()

    response = client.post(
        "/login/", {"username": "bn.lan", "password": PASSWORD, "next": "/referrals/"}
    )

    assert response.status_code == 302 and response["Location"] == "/referrals/"


# --- Profile ----------------------------------------------------------------------------


def test_the_profile_page_shows_what_i_may_change_in_vietnamese(patient):
    patient.user.phone = "0912345678"
    patient.user.save(update_fields=["phone"])

    page = _signed_in(patient.user).get("/profile/").content.decode()

    assert "Hồ sơ của tôi" in page
    assert 'name="full_name"' in page and 'value="0912345678"' in page
    assert 'name="preferred_language"' in page
    assert "js/profile.js" in page


def test_a_profile_edit_is_saved(patient):
    client = _signed_in(patient.user)

    response = client.post(
        "/profile/",
        {"full_name": "Trần Thị Lan", "phone": "0987654321", "preferred_language": "en"},
        follow=True,
    )

    patient.user.refresh_from_db()
    assert (patient.user.full_name, patient.user.phone, patient.user.preferred_language) == (
        "Trần Thị Lan",
        "0987654321",
        "en",
    )
    assert "Đã lưu hồ sơ của bạn." in response.content.decode()


def test_a_refused_profile_edit_shows_each_error_next_to_its_field(patient):
    client = _signed_in(patient.user)
    before = patient.user.full_name

    response = client.post(
        "/profile/", {"full_name": "Lan", "phone": "0" * 30, "preferred_language": "fr"}
    )

    page = response.content.decode()
    assert response.status_code == 400
    phone_error = page.split('id="phone-error"')[1].split("</p>")[0]
    language_error = page.split('id="preferred_language-error"')[1].split("</p>")[0]
    assert "Trường này không được dài quá 20 ký tự." in phone_error
    assert "hidden" not in phone_error
    assert "&quot;fr&quot; không phải là một lựa chọn hợp lệ." in language_error
    assert 'id="id_phone" name="phone" type="tel" value="' + "0" * 30 in page
    assert 'id="full_name-error" data-error-for="full_name" hidden' in page
    patient.user.refresh_from_db()
    assert patient.user.full_name == before


def test_the_profile_api_answers_the_page_with_field_errors(patient):
    """What profile.js shows next to the fields: the API's 400 ``fields``."""
    client = _signed_in(patient.user)

    response = client.patch("/api/v1/me/", {"phone": "0" * 30}, content_type="application/json")

    assert response.status_code == 400
    assert list(response.json()["fields"]) == ["phone"]


def test_an_api_call_without_a_session_is_a_401_that_sends_the_page_to_sign_in():
    """realtime.js goes to /session-expired/ on exactly this answer."""
    response = Client().patch("/api/v1/me/", {"phone": "1"}, content_type="application/json")

    assert response.status_code == 401
