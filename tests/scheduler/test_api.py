"""The REST endpoints: thin over the services, errors as field errors, access by relationship."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from scheduler import appointment_services
from scheduler.models import Slot
from telehealth.models import AuditEvent
from tests.factories import ClinicianFactory, PatientFactory
from tests.scheduler.conftest import (
    facility_coordinator,
    patient_of,
    province_coordinator,
    submitted_referral,
    weekly_schedule,
)

pytestmark = pytest.mark.django_db


def _as(api_client, user):
    api_client.force_authenticate(user)
    return api_client


def test_a_health_worker_writes_and_submits_a_referral(api_client, network, celery_eager):
    patient = patient_of(network.referrer)

    response = _as(api_client, network.referrer.user).post(
        "/api/v1/referrals/",
        {
            "patient_id": patient.pk,
            "specialty": "cardiology",
            "reason": "Đau ngực",
            "clinical_summary": "Tăng huyết áp",
            "priority": "urgent",
            "submit": True,
        },
        format="json",
    )

    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["status"] == "requested"
    assert body["roles"] == ["requester"]
    assert [e["action"] for e in body["history"]] == ["created", "submitted"]


def test_bad_input_is_a_400_with_field_errors_never_a_500(api_client, network):
    client = _as(api_client, network.referrer.user)

    missing = client.post("/api/v1/referrals/", {"specialty": "cardiology"}, format="json")
    wrong = client.post(
        "/api/v1/referrals/",
        {"patient_id": 1, "specialty": "x", "reason": "r", "priority": "soon"},
        format="json",
    )

    assert missing.status_code == 400 and {"patient_id", "reason"} <= set(missing.json()["fields"])
    assert wrong.status_code == 400 and {"specialty", "priority"} <= set(wrong.json()["fields"])


def test_the_detail_shows_queue_position_history_and_reasons_to_each_side(api_client, network):
    referral = submitted_referral(network)

    as_patient = _as(api_client, referral.patient.user).get(f"/api/v1/referrals/{referral.pk}/")
    as_receiver = _as(api_client, network.cardiologist_near.user).get(
        f"/api/v1/referrals/{referral.pk}/"
    )

    assert as_patient.status_code == 200
    body = as_patient.json()
    assert body["queue_position"] == 1 and body["ticket"] == "001"
    assert body["target_facility"]["code"] == "TTYT-GAN"
    assert as_receiver.json()["roles"] == ["receiving"]
    assert as_receiver.json()["decisions"][0]["reasons"]["facility"] == "TTYT-GAN"


def test_an_unrelated_person_gets_404_for_a_referral(api_client, network):
    referral = submitted_referral(network)

    response = _as(api_client, PatientFactory().user).get(f"/api/v1/referrals/{referral.pk}/")

    assert response.status_code == 404


def test_accept_and_reject_through_the_api(api_client, network):
    first, second = submitted_referral(network), submitted_referral(network)
    client = _as(api_client, network.cardiologist_near.user)

    accepted = client.post(f"/api/v1/referrals/{first.pk}/accept/", {}, format="json")
    no_reason = client.post(f"/api/v1/referrals/{second.pk}/reject/", {}, format="json")
    rejected = client.post(
        f"/api/v1/referrals/{second.pk}/reject/", {"reason": "Không cần chuyển"}, format="json"
    )
    again = client.post(f"/api/v1/referrals/{second.pk}/accept/", {}, format="json")

    assert accepted.status_code == 200 and accepted.json()["status"] == "accepted"
    assert no_reason.status_code == 400 and "reason" in no_reason.json()["fields"]
    assert rejected.json()["status_reason"] == "Không cần chuyển"
    assert again.status_code == 409


def test_the_referrer_cannot_accept_their_own_referral(api_client, network):
    referral = submitted_referral(network)

    response = _as(api_client, network.referrer.user).post(
        f"/api/v1/referrals/{referral.pk}/accept/", {}, format="json"
    )

    assert response.status_code == 403


def test_the_fhir_export_is_a_service_request_and_a_task(api_client, network):
    referral = submitted_referral(network, priority="emergency")

    bundle = (
        _as(api_client, network.referrer.user).get(f"/api/v1/referrals/{referral.pk}/fhir/").json()
    )

    request, task = (entry["resource"] for entry in bundle["entry"][:2])
    assert (request["resourceType"], request["priority"], request["status"]) == (
        "ServiceRequest",
        "stat",
        "active",
    )
    assert (task["resourceType"], task["status"], task["owner"]["reference"]) == (
        "Task",
        "requested",
        "Organization/TTYT-GAN",
    )


def test_the_board_is_for_coordinators_and_audited(api_client, network):
    coordinator = province_coordinator()
    submitted_referral(network)
    submitted_referral(network, priority="urgent")

    board = _as(api_client, coordinator).get("/api/v1/board/?province=01&view=new")
    refused = _as(api_client, network.referrer.user).get("/api/v1/board/")

    assert board.status_code == 200
    body = board.json()
    assert body["topic"] == "board.province.01"
    assert body["counts"]["new"] == 2 and len(body["referrals"]) == 2
    assert body["referrals"][0]["priority"] == "urgent"  # the earlier deadline first
    assert refused.status_code == 403
    assert AuditEvent.objects.filter(actor=coordinator, target="board.province.01").exists()


def test_a_coordinator_cannot_open_another_provinces_board(api_client, network):
    coordinator = province_coordinator("79")

    response = _as(api_client, coordinator).get("/api/v1/board/?province=01")

    assert response.status_code == 404


def test_bulk_accept_and_reroute_from_the_board(api_client, network):
    coordinator = facility_coordinator(network.district_near)
    first, second = submitted_referral(network), submitted_referral(network)
    client = _as(api_client, coordinator)

    no_reason = client.post("/api/v1/board/accept/", {"referral_ids": [first.pk]}, format="json")
    accepted = client.post(
        "/api/v1/board/accept/", {"referral_ids": [first.pk], "reason": "Nhận thay"}, format="json"
    )
    rerouted = client.post(
        "/api/v1/board/reroute/", {"referral_ids": [second.pk], "reason": "Quá tải"}, format="json"
    )

    assert no_reason.status_code == 400
    assert accepted.json() == {"accepted": [first.pk]}
    assert rerouted.json() == {"assigned": [second.pk], "no_slot": []}


def test_the_heat_table_shows_todays_load(api_client, network):
    coordinator = province_coordinator()
    submitted_referral(network)

    load = _as(api_client, coordinator).get("/api/v1/board/load/?province=01").json()

    near = next(f for f in load["facilities"] if f["code"] == "TTYT-GAN")
    assert near["cells"]["cardiology"] == {"capacity": 2, "assigned": 1, "waiting": 1, "load": 0.5}
    assert {"code": "cardiology", "name": "Tim mạch"} in load["specialties"]


def test_a_queue_lists_who_waits_in_order(api_client, network):
    submitted_referral(network)
    urgent = submitted_referral(network, priority="urgent")
    client = _as(api_client, network.cardiologist_near.user)

    queues = client.get("/api/v1/queues/").json()
    detail = client.get(f"/api/v1/queues/{queues[0]['id']}/").json()

    assert queues[0]["waiting"] == 2 and queues[0]["capacity"] == 2
    assert detail["waiting"][0]["id"] == urgent.pk
    assert [r["position"] for r in detail["waiting"]] == [1, 2]


def test_availability_slots_and_booking_through_the_api(api_client):
    doctor = ClinicianFactory(specialty_codes=["cardiology"])
    patient = PatientFactory()
    client = _as(api_client, doctor.user)

    saved = client.put(
        "/api/v1/availability/",
        {
            "visit_minutes": 30,
            "buffer_minutes": 0,
            "hours": [{"weekday": d, "start": "08:00", "end": "10:00"} for d in range(7)],
            "breaks": [{"weekday": d, "start": "09:00", "end": "09:30"} for d in range(7)],
        },
        format="json",
    )
    assert saved.status_code == 200 and saved.json()["visit_minutes"] == 30
    bookable = _as(api_client, patient.user).get(
        "/api/v1/clinicians/bookable/?specialty=cardiology"
    )
    assert [c["id"] for c in bookable.json()] == [doctor.pk]
    slots = api_client.get(
        "/api/v1/slots/",
        {"clinician": doctor.pk, "from": (timezone.now() + timedelta(hours=3)).isoformat()},
    ).json()
    booked = api_client.post(
        "/api/v1/appointments/", {"slot_id": slots[0]["id"], "mode": "video"}, format="json"
    )
    twice = api_client.post(
        "/api/v1/appointments/", {"slot_id": slots[0]["id"], "mode": "video"}, format="json"
    )

    assert booked.status_code == 201 and booked.json()["join_url"].startswith("/visits/")
    assert twice.status_code == 409 and twice.json()["code"] == "slot_taken"
    mine = api_client.get("/api/v1/appointments/?upcoming=1").json()
    assert [a["status"] for a in mine] == ["booked"]
    fhir = api_client.get(f"/api/v1/appointments/{mine[0]['id']}/fhir/").json()
    assert (fhir["resourceType"], fhir["status"]) == ("Appointment", "booked")


def test_bad_slot_queries_are_field_errors(api_client):
    client = _as(api_client, PatientFactory().user)

    assert client.get("/api/v1/slots/?clinician=abc").status_code == 400
    doctor = ClinicianFactory()
    weekly_schedule(doctor)
    response = client.get(f"/api/v1/slots/?clinician={doctor.pk}&from=yesterday")
    assert response.status_code == 400 and "from" in response.json()["fields"]


def test_waiting_list_through_the_api(api_client):
    doctor = ClinicianFactory()
    schedule = weekly_schedule(doctor)
    appointment_services.slots_generate(schedule_id=schedule.pk)
    patient = PatientFactory()
    client = _as(api_client, patient.user)

    joined = client.post(
        "/api/v1/waitlist/", {"clinician_id": doctor.pk, "mode": "video"}, format="json"
    )
    slot = Slot.objects.filter(schedule=schedule, status="free").order_by("-start").first()
    appointment_services.waitlist_offer_slot(slot_id=slot.pk)
    taken = client.post(f"/api/v1/waitlist/{joined.json()['id']}/accept/", format="json")

    assert joined.status_code == 201
    assert taken.status_code == 200 and taken.json()["slot"] == slot.pk


def test_the_schema_lists_the_scheduler_endpoints(api_client):
    schema = _as(api_client, PatientFactory().user).get("/api/schema/").content.decode()

    for path in (
        "/api/v1/referrals/{referral_id}/accept/",
        "/api/v1/board/",
        "/api/v1/slots/",
        "/api/v1/appointments/",
        "/api/v1/availability/",
        "/api/v1/queues/{queue_id}/",
    ):
        assert path in schema
