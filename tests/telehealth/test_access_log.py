"""Who accessed my record: the patient's own audit events, newest first, break-glass
marked, for the patient only, with the hash chain of the rows shown verified."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test import Client

from telehealth import services
from telehealth.audit import audit_record, audit_verify_chain, audit_verify_events
from telehealth.models import AuditEvent, CareRelationship, PrivacyOfficerAssignment
from tests.factories import ClinicianFactory, PatientFactory, UserFactory

pytestmark = pytest.mark.django_db

REASON = "Bất tỉnh tại cấp cứu, cần xem tiền sử dị ứng thuốc"


def read_record(api_client, user, patient, purpose: str = "view record"):  # type: ignore[no-untyped-def]
    api_client.force_authenticate(user)
    return api_client.get(f"/api/v1/patients/{patient.pk}/", {"purpose": purpose})


def access_log(api_client, user, patient, **params):  # type: ignore[no-untyped-def]
    api_client.force_authenticate(user)
    return api_client.get(f"/api/v1/patients/{patient.pk}/access-log/", params)


def test_the_patient_sees_who_opened_their_record_and_the_break_glass(api_client, patient, doctor):
    officer = UserFactory(full_name="Bùi Thị Ngọc")
    PrivacyOfficerAssignment.objects.create(user=officer, facility=doctor.facility)
    carer = ClinicianFactory()
    services.care_relationship_grant(
        patient=patient, member=carer.user, kind=CareRelationship.Kind.PRIMARY
    )
    read_record(api_client, carer.user, patient, "ward round")
    access = services.break_glass_open(doctor=doctor.user, patient_id=patient.pk, reason=REASON)
    read_record(api_client, doctor.user, patient, "resuscitation")
    services.break_glass_review(reviewer=officer, access_id=access.pk, justified=True)

    response = access_log(api_client, patient.user, patient)

    assert response.status_code == 200
    body = response.json()
    entries = body["results"]
    # newest first: my own look at the log, the review, the doctor's read, the grant…
    assert [e["id"] for e in entries] == sorted((e["id"] for e in entries), reverse=True)
    assert entries[0]["description"] and entries[0]["target"] == f"patient:{patient.pk}:access_log"
    doctor_read = next(e for e in entries if e["reason"] == "resuscitation (break_glass)")
    assert doctor_read["who"] == doctor.user.display_name
    assert doctor_read["role"] in {"doctor", "bác sĩ"}
    assert doctor_read["place"] == doctor.facility.name
    assert doctor_read["break_glass"] is True
    grant = next(e for e in entries if ":break_glass:" in e["target"])
    assert grant["break_glass"] is True
    assert REASON in grant["reason"]
    review = next(e for e in entries if e["target"] == f"break_glass:{access.pk}:justified")
    assert review["who"] == "Bùi Thị Ngọc"
    assert review["break_glass"] is True
    carer_read = next(e for e in entries if e["reason"] == "ward round (primary)")
    assert carer_read["break_glass"] is False
    assert carer_read["place"] == carer.facility.name
    assert body["break_glass"] == [
        {
            "id": access.pk,
            "doctor": {"id": doctor.user_id, "name": doctor.user.display_name},
            "facility": {
                "code": doctor.facility.code,
                "name": doctor.facility.name,
                "level": doctor.facility.level,
                "level_label": body["break_glass"][0]["facility"]["level_label"],
            },
            "reason": REASON,
            "started_at": body["break_glass"][0]["started_at"],
            "ends_at": body["break_glass"][0]["ends_at"],
            "review_state": "justified",
            "review_state_label": body["break_glass"][0]["review_state_label"],
        }
    ]
    assert body["chain"] == {
        "verified": True,
        "checked": len(entries),
        "first_broken": None,
        "scope": "page",
    }


def test_the_page_marks_the_break_glass_and_shows_the_chain_verified(patient, doctor):
    services.break_glass_open(doctor=doctor.user, patient_id=patient.pk, reason=REASON)
    client = Client()
    client.force_login(patient.user)

    response = client.get("/access-log/")

    page = response.content.decode()
    assert response.status_code == 200
    assert 'data-nav="access-log"' in page
    assert 'id="chain-check" data-verified="true"' in page
    bg = page.split('id="break-glass"')[1].split("</section>")[0]
    assert doctor.user.display_name in bg
    assert REASON in bg
    assert doctor.facility.name in bg
    assert 'data-break-glass="true"' in page.split('id="access-log"')[1]


@pytest.mark.parametrize("who", ["another patient", "their doctor", "break-glass doctor"])
def test_nobody_else_reads_a_patients_access_log(api_client, patient, who):
    if who == "another patient":
        reader = PatientFactory().user
    else:
        reader = ClinicianFactory().user
        if who == "their doctor":
            services.care_relationship_grant(
                patient=patient, member=reader, kind=CareRelationship.Kind.PRIMARY
            )
        else:
            services.break_glass_open(doctor=reader, patient_id=patient.pk, reason=REASON)

    refused = access_log(api_client, reader, patient)
    missing = api_client.get("/api/v1/patients/999999/access-log/")

    assert refused.status_code == missing.status_code == 404
    assert refused.json() == missing.json()
    assert AuditEvent.objects.filter(
        actor=reader, action="denied", target=f"patient:{patient.pk}:access_log"
    ).exists()


def test_the_access_log_page_is_only_ever_ones_own(patient, doctor):
    other = PatientFactory()
    read_by_doctor = services.care_relationship_grant(
        patient=other, member=doctor.user, kind=CareRelationship.Kind.PRIMARY
    )
    client = Client()
    client.force_login(doctor.user)
    assert client.get("/access-log/").status_code == 404  # not a patient

    client.force_login(patient.user)
    page = client.get("/access-log/").content.decode()

    assert f"care_relationship:{read_by_doctor.pk}" not in page
    assert doctor.user.display_name not in page


def test_other_patients_events_never_show(api_client, patient, doctor):
    other = PatientFactory()
    services.care_relationship_grant(
        patient=other, member=doctor.user, kind=CareRelationship.Kind.PRIMARY
    )
    read_record(api_client, doctor.user, other, "someone else's visit")
    audit_record(actor=doctor.user, action="read", target="patients:in_my_care")

    entries = access_log(api_client, patient.user, patient).json()["results"]

    assert [e["target"] for e in entries] == [f"patient:{patient.pk}:access_log"]


def test_the_log_is_paged_newest_first_with_a_bounded_number_of_queries(
    api_client, patient, django_assert_max_num_queries
):
    readers = [ClinicianFactory() for _ in range(5)]
    for reader in readers:
        services.care_relationship_grant(
            patient=patient, member=reader.user, kind=CareRelationship.Kind.PRIMARY
        )
    for i in range(60):
        read_record(api_client, readers[i % 5].user, patient, f"read {i}")
    api_client.force_authenticate(patient.user)

    with django_assert_max_num_queries(20):
        first = api_client.get(f"/api/v1/patients/{patient.pk}/access-log/").json()
    second = api_client.get(f"/api/v1/patients/{patient.pk}/access-log/", {"page": 2}).json()

    # 5 grants + 60 reads + 2 looks at the log
    assert first["count"] == 5 + 60 + 1
    assert second["count"] == 5 + 60 + 2
    assert len(first["results"]) == 50
    assert first["next"] is not None
    assert first["results"][1]["reason"] == "read 59 (primary)"
    reasons = [e["reason"] for e in second["results"]]
    assert "read 0 (primary)" in reasons
    assert second["chain"]["verified"] is True


@pytest.mark.postgres
def test_a_changed_row_shows_as_a_broken_chain(api_client, patient, doctor):
    services.care_relationship_grant(
        patient=patient, member=doctor.user, kind=CareRelationship.Kind.PRIMARY
    )
    read_record(api_client, doctor.user, patient, "ward round")
    event = AuditEvent.objects.get(patient=patient, reason="ward round (primary)")
    # given someone with the database superuser's rights who turned triggers off and
    # rewrote why the doctor read the record (rolled back with the test)
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL session_replication_role = replica")  # triggers off
        cursor.execute(
            "UPDATE telehealth_auditevent SET reason = 'emergency' WHERE id = %s", [event.pk]
        )

    body = access_log(api_client, patient.user, patient).json()
    client = Client()
    client.force_login(patient.user)
    page = client.get("/access-log/").content.decode()

    assert body["chain"]["verified"] is False
    assert body["chain"]["first_broken"] == event.pk
    assert 'id="chain-check" data-verified="false"' in page
    assert audit_verify_chain() == event.pk


@pytest.mark.postgres
def test_a_rewritten_row_with_a_recomputed_hash_is_found_by_its_neighbour(patient, doctor):
    services.care_relationship_grant(
        patient=patient, member=doctor.user, kind=CareRelationship.Kind.PRIMARY
    )
    mine = audit_record(actor=doctor.user, action="read", target="patient:x", patient=patient)
    audit_record(actor=doctor.user, action="read", target="patients:in_my_care")
    # the row is rewritten with a hash that matches its new contents
    mine.reason = "nothing to see"
    forged = mine.compute_hash()
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL session_replication_role = replica")  # triggers off
        cursor.execute(
            "UPDATE telehealth_auditevent SET reason = %s, hash = %s WHERE id = %s",
            [mine.reason, forged, mine.pk],
        )

    rows = list(AuditEvent.objects.filter(patient=patient))

    # the next row (another person's) still points at the old hash
    assert audit_verify_events(rows) == mine.pk


def test_an_intact_log_verifies_page_by_page_and_whole(patient, doctor):
    services.care_relationship_grant(
        patient=patient, member=doctor.user, kind=CareRelationship.Kind.PRIMARY
    )
    for i in range(5):
        audit_record(actor=doctor.user, action="read", target=f"patient:{i}", patient=patient)

    assert audit_verify_events(list(AuditEvent.objects.filter(patient=patient))) is None
    assert audit_verify_events([]) is None
    assert audit_verify_chain() is None
