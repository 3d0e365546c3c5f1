"""The messaging engine over REST: history, search, attachments, opening threads."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from consult import services
from consult.models import Thread
from telehealth import services as kernel_services
from telehealth.models import AuditEvent
from tests.consult.test_services import PDF, PNG
from tests.factories import ClinicianFactory, PatientFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def thread(patient, doctor):
    thread = services.thread_open(
        kind=Thread.Kind.CONSULTATION,
        created_by=doctor.user,
        participants=[(patient.user, "patient")],
        patient=patient,
    )
    for n in range(1, 8):
        services.message_send(
            user=doctor.user, thread_id=thread.pk, client_id=f"h{n}", body=f"Tin nhắn số {n}"
        )
    return thread


def test_history_pages_backwards_by_sequence_number(api_client, thread, patient):
    api_client.force_authenticate(patient.user)

    newest = api_client.get(f"/api/v1/threads/{thread.pk}/messages/", {"limit": 3}).json()
    older = api_client.get(
        f"/api/v1/threads/{thread.pk}/messages/",
        {"limit": 3, "before": newest["results"][0]["seq"]},
    ).json()

    assert [m["seq"] for m in newest["results"]] == [5, 6, 7]
    assert [m["seq"] for m in older["results"]] == [2, 3, 4]
    assert newest["has_more"] and older["has_more"]


def test_history_pages_forwards_for_catching_up(api_client, thread, patient):
    api_client.force_authenticate(patient.user)

    page = api_client.get(f"/api/v1/threads/{thread.pk}/messages/", {"after": 5}).json()

    assert [m["seq"] for m in page["results"]] == [6, 7]
    assert not page["has_more"]


def test_each_history_read_is_audited_against_the_patient(api_client, thread, patient, doctor):
    api_client.force_authenticate(doctor.user)

    api_client.get(f"/api/v1/threads/{thread.pk}/messages/")

    event = AuditEvent.objects.get(actor=doctor.user, target=f"consult.thread:{thread.pk}:history")
    assert event.patient == patient


def test_a_bad_cursor_is_a_400(api_client, thread, patient):
    api_client.force_authenticate(patient.user)

    response = api_client.get(f"/api/v1/threads/{thread.pk}/messages/", {"before": "yesterday"})

    assert response.status_code == 400
    assert "before" in response.json()["fields"]


def test_outsiders_get_404_for_the_thread_and_its_history(api_client, thread):
    api_client.force_authenticate(ClinicianFactory().user)

    assert api_client.get(f"/api/v1/threads/{thread.pk}/").status_code == 404
    assert api_client.get(f"/api/v1/threads/{thread.pk}/messages/").status_code == 404


def test_search_ignores_diacritics(api_client, thread, patient, doctor):
    services.message_send(
        user=doctor.user, thread_id=thread.pk, client_id="s", body="Kết quả siêu âm tim bình thường"
    )
    api_client.force_authenticate(patient.user)

    found = api_client.get(f"/api/v1/threads/{thread.pk}/search/", {"q": "sieu am"}).json()

    assert [m["body"] for m in found] == ["Kết quả siêu âm tim bình thường"]


def test_my_threads_show_unread_counts(api_client, thread, patient):
    api_client.force_authenticate(patient.user)
    api_client.post(f"/api/v1/threads/{thread.pk}/read/", {"seq": 4}, format="json")

    threads = api_client.get("/api/v1/threads/").json()

    assert [(t["id"], t["unread"], t["read_seq"]) for t in threads] == [(thread.pk, 3, 4)]


def test_sending_over_http_is_idempotent_too(api_client, thread, patient):
    api_client.force_authenticate(patient.user)
    body = {"client_id": "http-1", "body": "Em cảm ơn bác sĩ"}

    first = api_client.post(f"/api/v1/threads/{thread.pk}/messages/", body, format="json")
    again = api_client.post(f"/api/v1/threads/{thread.pk}/messages/", body, format="json")

    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["seq"] == again.json()["seq"] == 8


def test_attachments_are_served_only_to_participants(api_client, thread, patient):
    api_client.force_authenticate(patient.user)
    uploaded = api_client.post(
        f"/api/v1/threads/{thread.pk}/attachments/",
        {"file": SimpleUploadedFile("tay.png", PNG, "image/png")},
        format="multipart",
    ).json()

    mine = api_client.get(uploaded["url"])
    api_client.force_authenticate(ClinicianFactory().user)
    theirs = api_client.get(uploaded["url"])

    assert mine.status_code == 200
    assert mine["Content-Type"] == "image/png"
    assert b"".join(mine.streaming_content) == PNG
    assert theirs.status_code == 404
    assert AuditEvent.objects.filter(target=f"consult.attachment:{uploaded['id']}").count() == 1


def test_an_upload_without_a_file_names_the_field(api_client, thread, patient):
    api_client.force_authenticate(patient.user)

    response = api_client.post(f"/api/v1/threads/{thread.pk}/attachments/", {}, format="multipart")

    assert response.status_code == 400
    assert "file" in response.json()["fields"]


def test_a_pdf_lab_result_can_be_uploaded(api_client, thread, patient):
    api_client.force_authenticate(patient.user)

    response = api_client.post(
        f"/api/v1/threads/{thread.pk}/attachments/",
        {"file": SimpleUploadedFile("xet-nghiem", PDF, "application/octet-stream")},
        format="multipart",
    )

    assert response.status_code == 201
    assert response.json()["content_type"] == "application/pdf"


def test_a_doctor_opens_a_consultation_with_a_patient_they_care_for(api_client):
    patient = PatientFactory()
    doctor = ClinicianFactory()
    colleague = ClinicianFactory()
    kernel_services.care_relationship_grant(patient=patient, member=doctor.user, kind="primary")
    api_client.force_authenticate(doctor.user)

    response = api_client.post(
        "/api/v1/threads/",
        {
            "kind": "consultation",
            "patient_id": patient.pk,
            "subject": "Tăng huyết áp",
            "participant_ids": [patient.user.pk, colleague.user.pk],
        },
        format="json",
    )

    assert response.status_code == 201
    roles = {p["id"]: p["role"] for p in response.json()["participants"]}
    assert roles == {
        doctor.user.pk: "doctor",
        patient.user.pk: "patient",
        colleague.user.pk: "doctor",
    }


def test_a_doctor_cannot_open_a_thread_about_a_stranger(api_client):
    patient = PatientFactory()
    doctor = ClinicianFactory()
    api_client.force_authenticate(doctor.user)

    response = api_client.post(
        "/api/v1/threads/",
        {"kind": "consultation", "patient_id": patient.pk, "participant_ids": [patient.user.pk]},
        format="json",
    )

    assert response.status_code == 404
    assert not Thread.objects.exists()


def test_the_host_removes_a_participant(api_client, thread, patient, doctor):
    api_client.force_authenticate(doctor.user)

    response = api_client.delete(f"/api/v1/threads/{thread.pk}/participants/{patient.user.pk}/")

    assert response.status_code == 204
    api_client.force_authenticate(patient.user)
    assert api_client.get(f"/api/v1/threads/{thread.pk}/").status_code == 404
