"""Pages of consult/: my conversations, one conversation, my visit summaries, the invite search."""

from __future__ import annotations

import json
import re

import pytest
from django.conf import settings
from django.test import Client
from django.utils import timezone

from consult import services, visit_services
from consult.models import Thread
from telehealth.models import AuditEvent
from tests.factories import ClinicianFactory, PatientFactory

pytestmark = pytest.mark.django_db


def client_for(user, language: str | None = None) -> Client:
    client = Client()
    client.force_login(user)
    if language:
        client.cookies[settings.LANGUAGE_COOKIE_NAME] = language
    return client


def script_strings(html: str) -> dict[str, str]:
    found = re.search(
        r'<script id="conversation-strings" type="application/json">(.*?)</script>', html
    )
    assert found, "the page carries the script's strings"
    return json.loads(found.group(1))


def consultation(doctor, patient, subject: str) -> Thread:
    return services.thread_open(
        kind=Thread.Kind.CONSULTATION,
        created_by=doctor.user,
        participants=[(patient.user, "patient")],
        patient=patient,
        subject=subject,
    )


def ended_visit(doctor, patient, summary: str):
    visit = visit_services.visit_schedule(
        patient=patient, host=doctor.user, scheduled_start=timezone.now()
    )
    return visit_services.visit_end(visit_id=visit.pk, by=doctor.user, summary=summary)


# --- My conversations ----------------------------------------------------------------------


def test_my_conversations_lists_only_my_threads_with_unread_counts(patient, doctor):
    mine = consultation(doctor, patient, "Đau ngực khi gắng sức")
    services.message_send(user=doctor.user, thread_id=mine.pk, client_id="a", body="Chào chị")
    services.message_send(user=doctor.user, thread_id=mine.pk, client_id="b", body="Chị đỡ chưa?")
    consultation(ClinicianFactory(), PatientFactory(), "Sốt kéo dài của người khác")

    page = client_for(patient.user).get("/conversations/")

    html = page.content.decode()
    assert page.status_code == 200
    assert "Đau ngực khi gắng sức" in html
    assert "Sốt kéo dài của người khác" not in html
    assert doctor.user.display_name in html  # the other participant
    assert '<span class="count">2</span>' in html  # two unread from the doctor


def test_a_thread_without_a_subject_is_named_after_the_others(patient, doctor):
    consultation(doctor, patient, "")

    html = client_for(patient.user).get("/conversations/").content.decode()

    assert f'<span class="thread-title">{doctor.user.display_name}</span>' in html


def test_my_thread_opens_with_its_participants(patient, doctor):
    thread = consultation(doctor, patient, "Kết quả xét nghiệm máu")

    page = client_for(patient.user).get(f"/conversations/{thread.pk}/")

    html = page.content.decode()
    assert page.status_code == 200
    assert "Kết quả xét nghiệm máu" in html
    assert f'data-presence="{doctor.user.pk}"' in html
    assert f'data-thread="{thread.pk}"' in html


def test_a_thread_of_others_is_404(patient, doctor):
    others = consultation(ClinicianFactory(), PatientFactory(), "Không phải của bạn")

    page = client_for(patient.user).get(f"/conversations/{others.pk}/")

    assert page.status_code == 404
    assert "Không phải của bạn" not in page.content.decode()


def test_a_removed_participant_no_longer_opens_the_thread(patient, doctor):
    thread = consultation(doctor, patient, "Tái khám")
    services.thread_participant_remove(
        thread_id=thread.pk, user_id=patient.user.pk, removed_by=doctor.user
    )

    assert client_for(patient.user).get(f"/conversations/{thread.pk}/").status_code == 404
    assert "Tái khám" not in client_for(patient.user).get("/conversations/").content.decode()


def test_conversations_need_signing_in():
    page = Client().get("/conversations/")

    assert page.status_code == 302
    assert page["Location"].startswith("/login/")


def test_pages_are_vietnamese_by_default_and_english_by_choice(patient, doctor):
    thread = consultation(doctor, patient, "")

    vietnamese = client_for(patient.user).get("/conversations/").content.decode()
    english = client_for(patient.user, "en").get("/conversations/").content.decode()
    thread_vi = client_for(patient.user).get(f"/conversations/{thread.pk}/").content.decode()

    assert "Cuộc trò chuyện của tôi" in vietnamese
    assert "My conversations" in english
    assert "Cuộc trò chuyện của tôi" not in english
    assert "Tìm trong cuộc trò chuyện này" in thread_vi
    assert script_strings(thread_vi)["pending"] == "Đang chờ gửi…"  # translated for the script


# --- My visit summaries ------------------------------------------------------------------


def test_summaries_show_only_my_ended_visits(patient, doctor):
    ended_visit(doctor, patient, "Uống thuốc hạ áp mỗi sáng, tái khám sau 2 tuần.")
    visit_services.visit_schedule(
        patient=patient, host=doctor.user, scheduled_start=timezone.now()
    )  # not ended yet: no summary to show
    ended_visit(ClinicianFactory(), PatientFactory(), "Tóm tắt của bệnh nhân khác.")

    page = client_for(patient.user).get("/visits/summaries/")

    html = page.content.decode()
    assert page.status_code == 200
    assert "Tóm tắt buổi khám của tôi" in html
    assert "Uống thuốc hạ áp mỗi sáng, tái khám sau 2 tuần." in html
    assert "Tóm tắt của bệnh nhân khác." not in html
    assert html.count('class="card summary"') == 1


def test_each_summary_read_is_audited(patient, doctor):
    visit = ended_visit(doctor, patient, "Nghỉ ngơi, uống nhiều nước.")
    before = AuditEvent.objects.filter(target=f"consult.visit:{visit.pk}").count()

    client_for(patient.user).get("/visits/summaries/")

    assert AuditEvent.objects.filter(target=f"consult.visit:{visit.pk}").count() == before + 1


def test_the_doctor_of_a_visit_does_not_see_it_among_their_own_summaries(patient, doctor):
    ended_visit(doctor, patient, "Chỉ dành cho bệnh nhân.")

    html = client_for(doctor.user).get("/visits/summaries/").content.decode()

    assert "Chỉ dành cho bệnh nhân." not in html
    assert "Bạn chưa có buổi khám video nào đã kết thúc." in html


def test_a_visit_without_a_summary_says_so(patient, doctor):
    ended_visit(doctor, patient, "")

    html = client_for(patient.user).get("/visits/summaries/").content.decode()

    assert "Bác sĩ chưa viết tóm tắt cho buổi khám này." in html


# --- Invite a specialist -----------------------------------------------------------------------


def test_the_host_finds_a_doctor_by_name_without_accents(doctor):
    wanted = ClinicianFactory(user__full_name="Nguyễn Thị Đào", title="TS.BS")
    ClinicianFactory(user__full_name="Trần Văn Bình")
    PatientFactory(user__full_name="Nguyễn Thị Đào Bệnh Nhân")  # a patient is not listed

    found = client_for(doctor.user).get("/visits/clinicians/", {"q": "nguyen dao"}).json()

    assert [r["id"] for r in found["results"]] == [wanted.user.pk]
    assert found["results"][0]["title"] == "TS.BS"


def test_other_accounts_are_found_only_by_their_exact_username(doctor):
    family = PatientFactory(user__username="ngoc.anh", user__full_name="Lê Ngọc Anh").user

    by_name = client_for(doctor.user).get("/visits/clinicians/", {"q": "Ngọc Anh"}).json()
    by_username = client_for(doctor.user).get("/visits/clinicians/", {"q": "ngoc.anh"}).json()

    assert by_name["results"] == []
    assert [r["id"] for r in by_username["results"]] == [family.pk]
    assert "Lê Ngọc Anh" not in str(by_username)  # the username, never the person's name


def test_patients_cannot_search_the_directory(patient):
    answer = client_for(patient.user).get("/visits/clinicians/", {"q": "nguyen"})

    assert answer.status_code == 403


def test_only_the_host_gets_the_invite_control(patient, doctor):
    visit = visit_services.visit_schedule(
        patient=patient, host=doctor.user, scheduled_start=timezone.now()
    )

    host_page = client_for(doctor.user).get(f"/visits/{visit.pk}/").content.decode()
    patient_page = client_for(patient.user).get(f"/visits/{visit.pk}/").content.decode()

    assert 'id="invite-form"' in host_page
    assert "Mời bác sĩ chuyên khoa" in host_page
    assert 'id="invite-form"' not in patient_page
