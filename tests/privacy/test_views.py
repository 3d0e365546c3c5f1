"""privacy/views.py: "My data & privacy" for patients and "Data requests" for coordinators,
in Vietnamese by default, working without scripts, closed to everyone else."""

from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path

import polib
import pytest
from django.test import Client
from django.utils import timezone, translation

from privacy.models import ConsentRecord, DataRequest, Purpose
from privacy.notices import CURRENT_NOTICE
from privacy.selectors import consent_allows
from telehealth.models import Sex
from tests.factories import PatientFactory, sign_in

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]


def signed_in(user) -> Client:
    client = Client()
    sign_in(client, user.username)
    return client


def test_a_patient_reads_the_notice_and_their_consent_in_vietnamese(patient):
    page = signed_in(patient.user).get("/privacy/").content.decode()

    assert "Dữ liệu và quyền riêng tư" in page
    assert CURRENT_NOTICE.title_vi in page and "Luật Bảo vệ dữ liệu cá nhân" in page
    assert "Ghi hình các buổi khám qua video" in page
    assert 'action="/privacy/consent/recording/withdraw/"' in page
    assert 'href="/privacy/export/"' in page
    assert 'data-nav="privacy" aria-current="page"' in page


def test_a_patient_who_never_answered_gets_the_form_with_nothing_ticked():
    patient = PatientFactory(consent=False)
    client = signed_in(patient.user)

    page = client.get("/privacy/").content.decode()
    response = client.post(
        "/privacy/consent/",
        {"notice_version": CURRENT_NOTICE.version, "purposes": ["care", "recording"]},
    )

    assert "Xin đọc thông báo về dữ liệu cá nhân" in page
    assert "checked" not in page
    assert response.status_code == 302 and response["Location"] == "/privacy/"
    record = ConsentRecord.objects.get(patient=patient)
    assert (record.method, record.purposes) == ("web", ["care", "recording"])


def test_the_withdraw_button_withdraws_and_says_so(patient):
    client = signed_in(patient.user)

    response = client.post("/privacy/consent/recording/withdraw/", follow=True)

    assert not consent_allows(patient=patient, purpose=Purpose.RECORDING)
    page = response.content.decode()
    assert "Bạn đã rút lại sự đồng ý với: Ghi hình các buổi khám qua video" in page
    assert 'action="/privacy/consent/recording/give/"' in page


def test_a_refusal_comes_back_as_a_message_not_an_error_page(patient):
    client = signed_in(patient.user)
    client.post("/privacy/requests/", {"kind": "deletion"})

    response = client.post("/privacy/requests/", {"kind": "deletion"}, follow=True)

    assert response.status_code == 200
    assert "Bạn đã có một yêu cầu loại này đang mở" in response.content.decode()
    assert DataRequest.objects.filter(patient=patient).count() == 1


def test_the_download_button_gives_a_json_file(patient):
    response = signed_in(patient.user).get("/privacy/export/")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/json")
    assert json.loads(response.content)["profile"]["patient_id"] == patient.pk


def test_a_patient_makes_a_request_and_follows_it(patient):
    client = signed_in(patient.user)

    response = client.post(
        "/privacy/requests/", {"kind": "correction", "details": "Sai ngày sinh"}, follow=True
    )
    made = DataRequest.objects.get(patient=patient)
    detail = client.get(f"/privacy/requests/{made.pk}/").content.decode()

    assert f"Đã nhận yêu cầu #{made.pk} của bạn" in response.content.decode()
    assert f'href="/privacy/requests/{made.pk}/"' in response.content.decode()
    assert "Sai ngày sinh" in detail and "Xử lý yêu cầu" not in detail


def test_a_coordinator_works_through_the_requests_on_their_pages(patient, coordinator):
    signed_in(patient.user).post("/privacy/requests/", {"kind": "correction", "details": "SĐT"})
    made = DataRequest.objects.get(patient=patient)
    client = signed_in(coordinator)

    worklist = client.get("/privacy/worklist/").content.decode()
    client.post(f"/privacy/requests/{made.pk}/start/")
    page = client.get(f"/privacy/requests/{made.pk}/").content.decode()
    client.post(
        f"/privacy/requests/{made.pk}/complete/",
        {"phone": "0987654321", "outcome": "Đã sửa số điện thoại."},
    )

    assert "Yêu cầu về dữ liệu" in worklist and patient.user.display_name in worklist
    assert 'data-nav="privacy-worklist" aria-current="page"' in worklist
    assert 'id="complete-form"' in page and 'name="phone"' in page
    made.refresh_from_db()
    patient.user.refresh_from_db()
    assert made.status == "done" and patient.user.phone == "0987654321"


def test_a_finished_correction_names_the_fields_as_people_read_them(patient, coordinator):
    signed_in(patient.user).post("/privacy/requests/", {"kind": "correction", "details": "x"})
    made = DataRequest.objects.get(patient=patient)
    client = signed_in(coordinator)
    client.post(f"/privacy/requests/{made.pk}/start/")
    sex = "male" if patient.sex != "male" else "female"
    client.post(
        f"/privacy/requests/{made.pk}/complete/",
        {"phone": "0987654321", "sex": sex, "outcome": "Đã sửa."},
    )

    page = signed_in(patient.user).get(f"/privacy/requests/{made.pk}/").content.decode()

    made.refresh_from_db()
    assert set(made.result["corrected"]) == {"phone", "sex"}
    assert "→ 0987654321" in page and "phone:" not in page and "sex:" not in page
    with translation.override("vi"):
        label = str(Sex(sex).label)
    assert label != sex and "Giới tính" in page and f"→ {label}" in page


def test_a_bad_correction_on_the_page_says_which_field(patient, coordinator):
    signed_in(patient.user).post("/privacy/requests/", {"kind": "correction", "details": "x"})
    made = DataRequest.objects.get(patient=patient)
    client = signed_in(coordinator)
    client.post(f"/privacy/requests/{made.pk}/start/")

    response = client.post(
        f"/privacy/requests/{made.pk}/complete/",
        {"date_of_birth": "2999-01-01", "outcome": "x"},
        follow=True,
    )

    assert "Ngày sinh không thể ở tương lai." in response.content.decode()
    made.refresh_from_db()
    assert made.status == "in_progress"


def test_the_pages_are_closed_to_the_wrong_people(patient, doctor, far_coordinator):
    signed_in(patient.user).post("/privacy/requests/", {"kind": "deletion"})
    made = DataRequest.objects.get(patient=patient)

    assert signed_in(doctor.user).get("/privacy/").status_code == 403
    assert signed_in(patient.user).get("/privacy/worklist/").status_code == 403
    assert signed_in(patient.user).post(f"/privacy/requests/{made.pk}/start/").status_code == 403
    assert signed_in(far_coordinator).get(f"/privacy/requests/{made.pk}/").status_code == 404
    other = signed_in(PatientFactory().user)
    assert other.get(f"/privacy/requests/{made.pk}/").status_code == 404
    assert other.post(f"/privacy/requests/{made.pk}/refuse/", {"reason": "x"}).status_code == 404
    assert Client().get("/privacy/").status_code == 302  # to the sign-in


def test_the_nav_shows_each_role_its_privacy_link(patient, coordinator, doctor):
    assert 'data-nav="privacy"' in signed_in(patient.user).get("/").content.decode()
    assert 'data-nav="privacy-worklist"' in signed_in(coordinator).get("/").content.decode()
    home = signed_in(doctor.user).get("/").content.decode()
    assert 'data-nav="privacy' not in home


def test_every_vietnamese_message_of_privacy_is_translated():
    catalogue = polib.pofile(str(ROOT / "privacy/locale/vi/LC_MESSAGES/django.po"))

    assert catalogue.untranslated_entries() == []
    assert [e for e in catalogue.fuzzy_entries() if e.msgid] == []


def test_before_a_deletion_the_coordinator_sees_what_it_leaves_standing(patient, coordinator):
    # given a patient with an upcoming video appointment who asks to be deleted
    from tests.factories import ClinicianFactory
    from tests.telehealth.test_pages import _book_video

    _book_video(patient, ClinicianFactory())
    signed_in(patient.user).post("/privacy/requests/", {"kind": "deletion"})
    made = DataRequest.objects.get(patient=patient)
    # when the coordinator opens the request
    page = signed_in(coordinator).get(f"/privacy/requests/{made.pk}/").content.decode()
    # then they are told completing does not cancel it, and only that
    assert "Hoàn tất không hủy: 1 lịch hẹn sắp tới. Hãy hủy trước" in page
    standing = page.split('id="left-standing"', 1)[1].split("</p>", 1)[0]
    assert "chuyển tuyến" not in standing  # no "0 open referrals"
    # and not that waiting-list places stay: completing cancels those
    assert "danh sách chờ" not in standing


def test_with_nothing_left_standing_the_coordinator_is_not_warned(patient, coordinator):
    signed_in(patient.user).post("/privacy/requests/", {"kind": "deletion"})
    made = DataRequest.objects.get(patient=patient)

    page = signed_in(coordinator).get(f"/privacy/requests/{made.pk}/").content.decode()

    assert "Hoàn tất sẽ xóa thông tin liên lạc" in page and 'id="left-standing"' not in page


def test_a_finished_deletion_says_until_when_in_the_local_date_form(patient, coordinator):
    signed_in(patient.user).post("/privacy/requests/", {"kind": "deletion"})
    made = DataRequest.objects.get(patient=patient)
    client = signed_in(coordinator)
    client.post(f"/privacy/requests/{made.pk}/start/")
    client.post(f"/privacy/requests/{made.pk}/complete/", {"outcome": "Đã xóa."})

    page = client.get(f"/privacy/requests/{made.pk}/").content.decode()

    made.refresh_from_db()
    until = made.result["retention_until"]
    local = timezone.localtime(datetime.fromisoformat(until))  # the day in Vietnam
    assert f"Được lưu giữ, có hạn chế, đến {local:%d/%m/%Y};" in page
    assert until[:10] not in page


def test_a_moment_stored_in_utc_shows_as_its_day_in_vietnam():
    from privacy.views import _stored_date

    # 18:00 UTC on 2 December is 01:00 on 3 December in Vietnam
    assert _stored_date("2036-12-02T18:00:00+00:00") == date(2036, 12, 3)
    assert _stored_date("1980-03-07") == date(1980, 3, 7)
    assert _stored_date("not a date") == "not a date"


def test_a_corrected_date_of_birth_reads_as_a_date(patient, coordinator):
    patient.date_of_birth = "1980-03-07"
    patient.save(update_fields=["date_of_birth"])
    signed_in(patient.user).post("/privacy/requests/", {"kind": "correction", "details": "x"})
    made = DataRequest.objects.get(patient=patient)
    client = signed_in(coordinator)
    client.post(f"/privacy/requests/{made.pk}/start/")
    client.post(
        f"/privacy/requests/{made.pk}/complete/",
        {"date_of_birth": "1980-07-03", "outcome": "Đã sửa."},
    )

    page = signed_in(patient.user).get(f"/privacy/requests/{made.pk}/").content.decode()

    made.refresh_from_db()
    assert made.result["corrected"]["date_of_birth"] == ["1980-03-07", "1980-07-03"]
    assert "<del>07/03/1980</del> → 03/07/1980" in page and "1980-07-03" not in page
