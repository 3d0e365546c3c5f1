"""The pages a person sees first: sign-in, who am I, the language switch."""

from pathlib import Path

import polib
import pytest
from django.test import Client

from tests.factories import ClinicianFactory, CoordinatorFactory, FacilityFactory, sign_in

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]


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
