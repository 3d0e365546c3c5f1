"""The network over REST: my network, requests and answers, suggestions, coverage (JSON and
CSV), the auto-assignment review, the policy, case conferences; with permissions."""

from __future__ import annotations

import csv
import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from consult.models import Message, Thread
from network.models import AssignmentRun, CaseConference, Mentorship
from telehealth import services as kernel_services
from telehealth.models import AuditEvent, ClinicianProfile, FacilityLevel
from tests.factories import CoordinatorFactory, PatientFactory, province
from tests.network.conftest import clinician, link

pytestmark = pytest.mark.django_db

# A 1×1 PNG: what an ECG photo looks like to the content sniffer.
PNG = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00"
    b"\x1f\x15\xc4\x89\x00\x00\x00\rIDATx\x9cc\xf8\xff\xff?\x00\x05\xfe\x02\xfe\xa7V\xbd\xfa"
    b"\x00\x00\x00\x00IEND\xaeB`\x82"
)


def test_anonymous_callers_get_401(api_client):
    assert api_client.get("/api/v1/network/me/").status_code == 401


def test_a_request_is_made_answered_and_shown_in_both_networks(api_client, central, district):
    # when the district doctor asks
    api_client.force_authenticate(district.user)
    created = api_client.post(
        "/api/v1/network/mentorships/", {"mentor": central.user_id, "message": "Xin chào thầy"}
    )
    # and the central doctor accepts
    api_client.force_authenticate(central.user)
    mine = api_client.get("/api/v1/network/me/").json()
    accepted = api_client.post(f"/api/v1/network/mentorships/{created.json()['id']}/accept/")

    assert created.status_code == 201
    assert created.json()["state"] == "requested" and created.json()["my_role"] == "mentee"
    assert mine["mentorships"][0]["awaiting"] == central.user_id
    assert accepted.status_code == 200
    body = accepted.json()
    assert body["state"] == "accepted" and body["my_role"] == "mentor" and body["thread"]
    # then the mentee sees their mentor, and the mentor's gauge moved
    api_client.force_authenticate(district.user)
    theirs = api_client.get("/api/v1/network/me/").json()
    assert theirs["mentorships"][0]["mentor"]["id"] == central.user_id
    assert theirs["can_be_mentored"] and not theirs["can_mentor"]
    api_client.force_authenticate(central.user)
    gauges = {g["mentee_level"]: g for g in api_client.get("/api/v1/network/me/").json()["gauges"]}
    assert gauges[3]["accepted"] == 1 and gauges[3]["free"] == 3


def test_a_full_quota_is_a_409_with_a_code(api_client, central):
    for _ in range(2):
        link(central, clinician(FacilityLevel.COMMUNE, kind="health_worker"))
    worker = clinician(FacilityLevel.COMMUNE, kind="health_worker")
    api_client.force_authenticate(worker.user)

    response = api_client.post("/api/v1/network/mentorships/", {"mentor": central.user_id})

    assert response.status_code == 409
    assert response.json()["code"] == "quota_full"


def test_ending_needs_a_known_reason(api_client, central, district):
    mentorship = link(central, district)
    api_client.force_authenticate(district.user)

    bad = api_client.post(f"/api/v1/network/mentorships/{mentorship.pk}/end/", {"reason": "bored"})
    good = api_client.post(
        f"/api/v1/network/mentorships/{mentorship.pk}/end/", {"reason": "completed", "note": "Xong"}
    )

    assert bad.status_code == 400 and "reason" in bad.json()["fields"]
    assert good.status_code == 200 and good.json()["state"] == "ended"


def test_history_is_readable_by_the_parties_only(api_client, central, district):
    mentorship = link(central, district)
    stranger = clinician(FacilityLevel.DISTRICT)

    api_client.force_authenticate(district.user)
    mine = api_client.get(f"/api/v1/network/mentorships/{mentorship.pk}/")
    api_client.force_authenticate(stranger.user)
    theirs = api_client.get(f"/api/v1/network/mentorships/{mentorship.pk}/")

    assert [e["state"] for e in mine.json()["history"]] == ["requested", "accepted"]
    assert theirs.status_code == 404


def test_a_coordinator_reads_the_mentorships_of_their_province(api_client, coordinator):
    hanoi = link(clinician(FacilityLevel.CENTRAL), clinician(FacilityLevel.DISTRICT))
    saigon = link(
        clinician(FacilityLevel.CENTRAL, province_code="79"),
        clinician(FacilityLevel.DISTRICT, province_code="79"),
    )
    api_client.force_authenticate(coordinator)

    assert api_client.get(f"/api/v1/network/mentorships/{hanoi.pk}/").status_code == 200
    assert api_client.get(f"/api/v1/network/mentorships/{saigon.pk}/").status_code == 404


def test_my_mentorships_filter_by_state(api_client, central, district):
    link(central, district)
    api_client.force_authenticate(central.user)
    api_client.post(
        "/api/v1/network/mentorships/",
        {"mentee": clinician(FacilityLevel.PROVINCIAL).user_id},
    )

    accepted = api_client.get("/api/v1/network/mentorships/", {"state": "accepted"}).json()
    everything = api_client.get("/api/v1/network/mentorships/").json()

    assert accepted["count"] == 1 and everything["count"] == 2


def test_suggestions_come_with_reasons(api_client, district):
    clinician(FacilityLevel.CENTRAL, specialties=("internal-medicine",), name="Nội Trung ương")
    api_client.force_authenticate(district.user)

    response = api_client.get("/api/v1/network/suggestions/", {"limit": 5})

    body = response.json()
    assert response.status_code == 200 and body["role"] == "mentor"
    assert body["results"][0]["name"] == "Nội Trung ương"
    assert "chuyên khoa" in body["results"][0]["reason"]
    assert api_client.get("/api/v1/network/suggestions/", {"role": "boss"}).status_code == 400


def test_the_graph_and_directory_cards(api_client, central, district):
    link(central, district)
    api_client.force_authenticate(district.user)

    graph = api_client.get("/api/v1/network/graph/").json()
    card = api_client.get(f"/api/v1/network/people/{central.user_id}/").json()

    assert {n["id"] for n in graph["nodes"]} == {central.user_id, district.user_id}
    assert card["level"] == 1 and card["specialties"] == ["cardiology", "internal-medicine"]


# --- Coverage ---------------------------------------------------------------------------


def test_coverage_is_for_coordinators_of_the_province(api_client, coordinator, central, district):
    link(central, district)
    saigon = CoordinatorFactory(province=province("79")).user

    api_client.force_authenticate(coordinator)
    mine = api_client.get("/api/v1/network/coverage/")
    api_client.force_authenticate(saigon)
    other = api_client.get("/api/v1/network/coverage/", {"province": "01"})
    api_client.force_authenticate(district.user)
    doctor = api_client.get("/api/v1/network/coverage/")

    assert mine.status_code == 200
    assert mine.json()["province"] == "01"
    assert mine.json()["totals"]["covered"] == 1
    assert other.status_code == 403
    assert doctor.status_code == 403


def test_coverage_exports_as_csv_and_the_export_is_audited(api_client, coordinator, central):
    mentee = clinician(FacilityLevel.DISTRICT, name="Trần Thị Bình")
    link(central, mentee)
    clinician(FacilityLevel.COMMUNE, kind="health_worker", name="Lê Văn Xã")
    api_client.force_authenticate(coordinator)

    response = api_client.get("/api/v1/network/coverage/export/")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    text = b"".join(response.streaming_content).decode("utf-8-sig")
    rows = list(csv.DictReader(io.StringIO(text)))
    by_name = {(r["name"], r["role"]): r for r in rows}
    assert by_name[("Trần Thị Bình", "mentee")]["status"] == "covered"
    assert by_name[("Lê Văn Xã", "mentee")]["status"] == "no_mentor"
    assert by_name[(central.user.display_name, "mentor")]["places_used"] == "3:1"
    assert AuditEvent.objects.filter(action="export", target="network.coverage:01").exists()


# --- Auto-assignment ----------------------------------------------------------------------------


def test_a_coordinator_runs_reviews_and_applies(
    api_client, coordinator, central, celery_eager, django_capture_on_commit_callbacks
):
    mentees = [clinician(FacilityLevel.DISTRICT) for _ in range(3)]
    api_client.force_authenticate(coordinator)

    with django_capture_on_commit_callbacks(execute=True):
        started = api_client.post("/api/v1/network/assignment-runs/", {"province": "01"})
    run_id = started.json()["id"]
    run = api_client.get(f"/api/v1/network/assignment-runs/{run_id}/").json()
    proposals = api_client.get(f"/api/v1/network/assignment-runs/{run_id}/proposals/").json()
    first = proposals["results"][0]
    api_client.post(
        f"/api/v1/network/assignment-runs/{run_id}/review/",
        {"decision": "reject", "proposal_ids": [first["id"]]},
        format="json",
    )
    accepted = api_client.post(
        f"/api/v1/network/assignment-runs/{run_id}/review/", {"decision": "accept"}, format="json"
    )
    with django_capture_on_commit_callbacks(execute=True):
        applied = api_client.post(f"/api/v1/network/assignment-runs/{run_id}/apply/")

    assert started.status_code == 202
    assert run["state"] == "proposed" and run["assigned"] == 3 and run["coverage"] == 1.0
    assert run["greedy_cost"] is not None and "solve" in run["timings"]
    assert proposals["count"] == 3 and "km" in first["reason"]
    assert accepted.json() == {"changed": 2}
    assert applied.status_code == 202
    assert AssignmentRun.objects.get(pk=run_id).state == "applied"
    assert Mentorship.objects.filter(source="auto", mentor=central).count() == 2
    assert len(mentees) == 3


def test_a_province_coordinator_runs_their_own_province_by_default(api_client, coordinator):
    api_client.force_authenticate(coordinator)

    response = api_client.post("/api/v1/network/assignment-runs/", {"province": ""}, format="json")

    assert response.status_code == 202
    assert response.json()["province"] == "01"


def test_a_doctor_cannot_see_runs(api_client, district):
    api_client.force_authenticate(district.user)

    assert api_client.get("/api/v1/network/assignment-runs/").status_code == 403
    assert api_client.post("/api/v1/network/assignment-runs/", {}).status_code == 403


# --- Policy -----------------------------------------------------------------------------


def test_everyone_reads_the_policy_and_administrators_replace_it(api_client, district, admin_user):
    api_client.force_authenticate(district.user)
    read = api_client.get("/api/v1/network/policy/")
    refused = api_client.put("/api/v1/network/policy/", {}, format="json")
    api_client.force_authenticate(admin_user)
    replaced = api_client.put(
        "/api/v1/network/policy/",
        {
            "name": "Mở rộng",
            "max_distance_km": 600,
            "quotas": [
                {"mentor_level": 1, "mentee_level": 2, "quota": 4},
                {"mentor_level": 1, "mentee_level": 3, "quota": 4},
                {"mentor_level": 1, "mentee_level": 4, "quota": 2},
                {"mentor_level": 2, "mentee_level": 4, "quota": 2},
            ],
        },
        format="json",
    )

    assert read.status_code == 200 and len(read.json()["quotas"]) == 3
    assert refused.status_code == 403
    assert replaced.status_code == 200
    assert {"mentor_level": 2, "mentee_level": 4, "quota": 2} in replaced.json()["quotas"]


# --- Case conferences -------------------------------------------------------------------


def test_a_mentor_holds_a_case_conference_with_attachments_and_recommendations(
    api_client, central, district
):
    link(central, district)
    second = clinician(FacilityLevel.PROVINCIAL)
    link(central, second)
    colleague = clinician(FacilityLevel.CENTRAL)
    api_client.force_authenticate(central.user)

    opened = api_client.post(
        "/api/v1/network/case-conferences/",
        {
            "subject": "Suy tim mất bù",
            "mentee_ids": [district.user_id, second.user_id],
            "colleague_ids": [colleague.user_id],
        },
        format="json",
    ).json()
    upload = api_client.post(
        f"/api/v1/threads/{opened['thread']}/attachments/",
        {"file": SimpleUploadedFile("ecg.png", PNG, content_type="image/png")},
        format="multipart",
    ).json()
    presented = api_client.post(
        f"/api/v1/network/case-conferences/{opened['id']}/present/",
        {"body": "Bệnh nhân nam 67 tuổi…", "attachment_ids": [upload["id"]]},
        format="json",
    )
    concluded = api_client.post(
        f"/api/v1/network/case-conferences/{opened['id']}/conclude/",
        {"recommendations": "Tăng lợi tiểu, hẹn khám lại sau 1 tuần"},
        format="json",
    )

    thread = Thread.objects.get(pk=opened["thread"])
    assert thread.kind == Thread.Kind.CASE_CONFERENCE
    assert set(thread.participants.values_list("user_id", flat=True)) == {
        central.user_id,
        district.user_id,
        second.user_id,
        colleague.user_id,
    }
    assert presented.json()["presented_at"]
    assert (
        Message.objects.get(thread=thread, body="Bệnh nhân nam 67 tuổi…").attachments.count() == 1
    )
    assert concluded.json()["state"] == "concluded"
    assert concluded.json()["recommendations"].startswith("Tăng lợi tiểu")
    assert thread.__class__.objects.get(pk=thread.pk).is_closed
    # and a mentee reads it, a stranger does not
    api_client.force_authenticate(district.user)
    assert api_client.get(f"/api/v1/network/case-conferences/{opened['id']}/").status_code == 200
    assert len(api_client.get("/api/v1/network/case-conferences/").json()) == 1
    api_client.force_authenticate(clinician(FacilityLevel.DISTRICT).user)
    assert api_client.get(f"/api/v1/network/case-conferences/{opened['id']}/").status_code == 404


def test_only_my_mentees_are_invited(api_client, central):
    stranger = clinician(FacilityLevel.DISTRICT)
    api_client.force_authenticate(central.user)

    response = api_client.post(
        "/api/v1/network/case-conferences/",
        {"subject": "Ca khó", "mentee_ids": [stranger.user_id]},
        format="json",
    )

    assert response.status_code == 400
    assert response.json()["fields"]["mentee_ids"] == [str(stranger.user_id)]


def test_a_patient_is_attached_only_if_the_mentor_may_see_them(api_client, central, district):
    link(central, district)
    patient = PatientFactory()
    api_client.force_authenticate(central.user)
    body = {"subject": "Ca khó", "mentee_ids": [district.user_id], "patient_id": patient.pk}

    refused = api_client.post("/api/v1/network/case-conferences/", body, format="json")
    kernel_services.care_relationship_grant(
        patient=patient, member=central.user, kind="consultation", source="test"
    )
    allowed = api_client.post("/api/v1/network/case-conferences/", body, format="json")

    assert refused.status_code == 404
    assert AuditEvent.objects.filter(patient=patient, action="denied").exists()
    assert allowed.status_code == 201 and allowed.json()["patient"] == patient.pk
    conference = CaseConference.objects.get(pk=allowed.json()["id"])
    # the mentee in the conference may now see the patient, while they stay in it
    assert district.user.care_relationships.filter(patient=patient).exists()
    # and reading the conference is audited against the patient
    assert AuditEvent.objects.filter(
        patient=patient, target=f"network.case_conference:{conference.pk}"
    ).exists()


def test_health_workers_cannot_open_case_conferences(api_client, commune_worker):
    api_client.force_authenticate(commune_worker.user)

    response = api_client.post(
        "/api/v1/network/case-conferences/",
        {"subject": "x", "mentee_ids": [1]},
        format="json",
    )

    assert response.status_code == 403


def test_every_network_endpoint_is_in_the_openapi_schema(api_client, district):
    api_client.force_authenticate(district.user)

    schema = api_client.get("/api/schema/", {"format": "json"}).json()

    paths = set(schema["paths"])
    for path in [
        "/api/v1/network/me/",
        "/api/v1/network/graph/",
        "/api/v1/network/suggestions/",
        "/api/v1/network/mentorships/",
        "/api/v1/network/mentorships/{mentorship_id}/accept/",
        "/api/v1/network/coverage/",
        "/api/v1/network/coverage/export/",
        "/api/v1/network/assignment-runs/",
        "/api/v1/network/assignment-runs/{run_id}/proposals/",
        "/api/v1/network/case-conferences/",
        "/api/v1/network/policy/",
    ]:
        assert path in paths, path
    operations = [
        operation["operationId"]
        for path, item in schema["paths"].items()
        if path.startswith("/api/v1/network/")
        for operation in item.values()
    ]
    assert len(operations) == len(set(operations))  # no collisions to be renamed "…_2"
    assert ClinicianProfile.objects.exists()
