"""privacy/export.py: a patient downloads everything the service holds about them, as JSON,
and the download is itself audited as an export."""

from __future__ import annotations

import json

import pytest

from consult import services as messaging
from consult.models import Visit
from privacy import services
from telehealth.models import AuditEvent
from telehealth.selectors import patient_get_for_user
from tests.factories import sign_in
from tests.scheduler.conftest import build_network, patient_of, submitted_referral
from tests.telehealth.test_pages import _book_video

pytestmark = pytest.mark.django_db


@pytest.fixture
def lan():
    """A patient with a referral, a video appointment whose visit has notes, a message,
    and a doctor who opened their record."""
    network = build_network()
    patient = patient_of(network.referrer, user__username="bn.lan", user__full_name="Trần Thị Lan")
    referral = submitted_referral(network, patient=patient)
    appointment = _book_video(patient, network.cardiologist_near)
    Visit.objects.filter(pk=appointment.visit_id).update(
        notes="Huyết áp 150/90", summary="Tăng huyết áp độ 1"
    )
    visit = Visit.objects.get(pk=appointment.visit_id)
    messaging.message_send(
        user=patient.user, thread_id=visit.thread_id, client_id="c-1", body="Chào bác sĩ"
    )
    patient_get_for_user(
        user=network.referrer.user, patient_id=patient.pk, purpose="check before the visit"
    )
    return patient, referral, appointment, network


def test_the_download_holds_every_part_of_the_record(lan):
    patient, referral, appointment, network = lan

    data = services.patient_data_export(user=patient.user)

    assert data["format"] == "telehealth.patient-data" and data["version"] == 1
    assert data["profile"]["full_name"] == "Trần Thị Lan"
    assert data["consents"]["history"][0]["method"] == "imported"
    assert [r["id"] for r in data["referrals"]] == [referral.pk]
    assert data["referrals"][0]["history"], "the referral's events"
    assert [a["id"] for a in data["appointments"]] == [appointment.pk]
    assert data["visits"][0]["notes"] == "Huyết áp 150/90"
    assert data["visits"][0]["summary"] == "Tăng huyết áp độ 1"
    texts = [m["text"] for c in data["conversations"] for m in c["messages"]]
    assert "Chào bác sĩ" in texts
    readers = {row["who"] for row in data["access_log"] if row["action"] == "read"}
    assert network.referrer.user.display_name in readers
    assert any(r["kind"] == "primary" for r in data["care_relationships"])
    json.dumps(data)  # machine-readable as it is


def test_the_download_is_audited_as_an_export(lan):
    patient, *_ = lan

    data = services.patient_data_export(user=patient.user)

    event = AuditEvent.objects.filter(actor=patient.user, action="export").get()
    assert event.patient == patient and event.target == f"patient:{patient.pk}:export"
    assert data["access_log"][-1]["action"] == "export"  # the download shows itself


def test_the_download_has_nothing_of_another_patient(lan, client):
    _patient, referral, _appointment, network = lan
    other = patient_of(network.referrer, user__full_name="Phạm Văn Bình")
    submitted_referral(network, patient=other)

    sign_in(client, other.user.username)
    response = client.get("/privacy/export/")

    assert response.status_code == 200
    body = response.content.decode()
    assert "Phạm Văn Bình" in body and "Trần Thị Lan" not in body
    assert response["Content-Disposition"].startswith('attachment; filename="my-health-data-')
    assert json.loads(body)["referrals"][0]["id"] != referral.pk


def test_only_patients_download(doctor, api_client):
    api_client.force_authenticate(doctor.user)

    assert api_client.get("/api/v1/privacy/export/").status_code == 403
    assert not AuditEvent.objects.filter(action="export").exists()


def test_a_doctor_who_is_also_a_patient_downloads_only_their_own_conversations(lan):
    # given Lan's cardiologist, who is a patient of the service too
    from consult.models import Thread
    from tests.factories import PatientFactory

    _lan, _referral, appointment, network = lan
    doctor = network.cardiologist_near
    as_patient = PatientFactory(user=doctor.user)
    own = messaging.thread_open(
        kind=Thread.Kind.CONSULTATION,
        created_by=network.referrer.user,
        participants=[(doctor.user, "patient")],
        patient=as_patient,
    )
    # when the doctor downloads their own data
    data = services.patient_data_export(user=doctor.user)
    # then their own consultation is there, and Lan's visit chat (they are in it) is not
    threads = {t["id"] for t in data["conversations"]}
    assert own.pk in threads
    assert Visit.objects.get(pk=appointment.visit_id).thread_id not in threads
    assert "Chào bác sĩ" not in json.dumps(data, ensure_ascii=False)
