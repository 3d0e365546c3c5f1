"""privacy/api.py: the REST endpoints, with their permissions (another patient or an
unrelated coordinator gets 404), bad input (400) and the OpenAPI schema."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from privacy.models import ConsentRecord, DataRequest, Purpose
from privacy.notices import CURRENT_NOTICE
from telehealth.models import AuditEvent, CareRelationship
from tests.factories import ClinicianFactory, PatientFactory

pytestmark = pytest.mark.django_db


def as_user(api_client, user):
    api_client.force_authenticate(user)
    return api_client


def test_anyone_reads_the_notice_in_both_languages(api_client):
    response = api_client.get("/api/v1/privacy/notice/")

    assert response.status_code == 200
    body = response.json()
    assert body["version"] == CURRENT_NOTICE.version
    assert "Luật Bảo vệ dữ liệu cá nhân" in body["text_vi"]
    assert "Personal Data Protection Law" in body["text_en"]
    assert [p["code"] for p in body["purposes"]] == list(CURRENT_NOTICE.purposes)


def test_a_patient_answers_withdraws_and_reads_their_consent(api_client):
    patient = PatientFactory(consent=False)
    client = as_user(api_client, patient.user)

    assert client.get("/api/v1/privacy/consent/").json()["needs_answer"] is True
    answered = client.post(
        "/api/v1/privacy/consent/",
        {"notice_version": CURRENT_NOTICE.version, "purposes": ["care", "recording"]},
        format="json",
    )
    withdrawn = client.post(
        "/api/v1/privacy/consent/withdraw/", {"purpose": "recording"}, format="json"
    )

    assert answered.status_code == 201
    state = withdrawn.json()
    assert state["needs_answer"] is False
    by_purpose = {p["purpose"]: p for p in state["purposes"]}
    assert by_purpose["care"]["allowed"] and not by_purpose["recording"]["allowed"]
    assert [h["action"] for h in state["history"]] == ["withdrawn", "answered"]
    assert state["history"][0]["method"] == "api"


def test_bad_consent_input_is_a_400_naming_the_field(api_client, patient):
    client = as_user(api_client, patient.user)

    unknown = client.post("/api/v1/privacy/consent/withdraw/", {"purpose": "ads"}, format="json")
    old = client.post(
        "/api/v1/privacy/consent/", {"notice_version": "1999", "purposes": []}, format="json"
    )

    assert unknown.status_code == 400 and "purpose" in unknown.json()["fields"]
    assert old.status_code == 400 and "notice_version" in old.json()["fields"]


def test_people_who_are_not_patients_get_403_on_the_patient_endpoints(api_client, doctor):
    client = as_user(api_client, doctor.user)

    for path in ("/api/v1/privacy/consent/", "/api/v1/privacy/requests/"):
        assert client.get(path).status_code == 403


def test_a_health_worker_who_cares_for_the_patient_records_a_paper_form(api_client):
    patient = PatientFactory(consent=False)
    worker = ClinicianFactory(kind="health_worker")
    CareRelationship.objects.create(patient=patient, member=worker.user, kind="primary")
    stranger = ClinicianFactory()
    form = {
        "notice_version": CURRENT_NOTICE.version,
        "purposes": ["care", "referral_sharing"],
        "signed_at": (timezone.now() - timedelta(days=1)).isoformat(),
        "note": "Phiếu 7",
    }

    refused = as_user(api_client, stranger.user).post(
        f"/api/v1/patients/{patient.pk}/consent/", form, format="json"
    )
    recorded = as_user(api_client, worker.user).post(
        f"/api/v1/patients/{patient.pk}/consent/", form, format="json"
    )

    assert refused.status_code == 404
    assert recorded.status_code == 201
    record = ConsentRecord.objects.get(patient=patient)
    assert (record.method, record.recorded_by, record.note) == ("paper", worker.user, "Phiếu 7")


def test_a_request_is_made_by_the_patient_and_handled_by_a_coordinator(
    api_client, patient, coordinator
):
    made = as_user(api_client, patient.user).post(
        "/api/v1/privacy/requests/",
        {"kind": "correction", "details": "Số thẻ BHYT sai"},
        format="json",
    )
    request_id = made.json()["id"]
    mine = api_client.get("/api/v1/privacy/requests/").json()

    client = as_user(api_client, coordinator)
    listed = client.get("/api/v1/privacy/worklist/").json()
    started = client.post(f"/api/v1/privacy/requests/{request_id}/start/")
    done = client.post(
        f"/api/v1/privacy/requests/{request_id}/complete/",
        {"outcome": "Đã sửa số thẻ.", "corrections": {"health_insurance_number": "GD4010199"}},
        format="json",
    )

    assert made.status_code == 201 and made.json()["status"] == "received"
    assert [r["id"] for r in mine] == [request_id]
    assert [r["id"] for r in listed] == [request_id]
    assert started.json()["status"] == "in_progress"
    assert done.status_code == 200
    body = done.json()
    assert body["status"] == "done"
    assert body["result"]["corrected"]["health_insurance_number"][1] == "GD4010199"
    assert [e["action"] for e in body["events"]] == ["received", "started", "done"]


def test_another_patient_and_an_unrelated_coordinator_get_404(api_client, patient, far_coordinator):
    made = as_user(api_client, patient.user).post(
        "/api/v1/privacy/requests/", {"kind": "deletion"}, format="json"
    )
    path = f"/api/v1/privacy/requests/{made.json()['id']}/"

    other = as_user(api_client, PatientFactory().user)
    assert other.get(path).status_code == 404
    assert other.post(path + "start/").status_code == 404
    far = as_user(api_client, far_coordinator)
    assert far.get(path).status_code == 404
    assert far.post(path + "refuse/", {"reason": "x"}, format="json").status_code == 404
    assert far.get("/api/v1/privacy/worklist/").json() == []
    assert DataRequest.objects.get().status == "received"
    assert AuditEvent.objects.filter(action="denied", actor=far_coordinator).exists()


def test_only_coordinators_have_a_worklist(api_client, patient):
    assert as_user(api_client, patient.user).get("/api/v1/privacy/worklist/").status_code == 403


def test_the_overdue_worklist(api_client, patient, coordinator):
    made = as_user(api_client, patient.user).post(
        "/api/v1/privacy/requests/", {"kind": "restriction"}, format="json"
    )
    DataRequest.objects.filter(pk=made.json()["id"]).update(
        due_at=timezone.now() - timedelta(minutes=1)
    )

    overdue = as_user(api_client, coordinator).get("/api/v1/privacy/worklist/?state=overdue")

    assert [(r["id"], r["overdue"]) for r in overdue.json()] == [(made.json()["id"], True)]


def test_the_patient_sees_what_deletion_would_keep(api_client, patient):
    plan = as_user(api_client, patient.user).get("/api/v1/privacy/deletion-plan/").json()

    assert plan["erased"] and plan["retention_until"]
    assert {row["item"] for row in plan["kept"]} >= {"identity", "consents", "access_log"}


def test_a_restriction_is_lifted_by_the_patient_through_the_api(api_client, patient):
    client = as_user(api_client, patient.user)
    client.post("/api/v1/privacy/requests/", {"kind": "restriction"}, format="json")

    lifted = client.post("/api/v1/privacy/restriction/lift/")

    assert lifted.status_code == 200 and lifted.json()["restriction"] is None
    assert all(p["allowed"] for p in lifted.json()["purposes"] if p["purpose"] != Purpose.CARE)


def test_the_schema_lists_the_privacy_endpoints(api_client):
    schema = api_client.get("/api/schema/?format=json").json()

    for path in (
        "/api/v1/privacy/notice/",
        "/api/v1/privacy/consent/",
        "/api/v1/privacy/consent/withdraw/",
        "/api/v1/privacy/export/",
        "/api/v1/privacy/requests/{request_id}/complete/",
        "/api/v1/privacy/worklist/",
        "/api/v1/patients/{patient_id}/consent/",
    ):
        assert path in schema["paths"], path
