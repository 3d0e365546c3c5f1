"""Reading a patient's record: only with a relationship, and every read audited."""

import pytest
from django.utils import timezone

from telehealth import services
from telehealth.audit import audit_verify_chain
from telehealth.models import AuditEvent, CareRelationship
from tests.factories import ClinicianFactory, PatientFactory

pytestmark = pytest.mark.django_db


def test_a_patient_reads_their_own_record_and_the_read_is_audited(api_client, patient):
    api_client.force_authenticate(patient.user)

    response = api_client.get(f"/api/v1/patients/{patient.pk}/", REMOTE_ADDR="10.1.2.3")

    assert response.status_code == 200
    event = AuditEvent.objects.get(action="read", patient=patient)
    assert (event.actor, event.ip_address) == (patient.user, "10.1.2.3")
    assert "self" in event.reason


def test_the_care_team_reads_with_a_relationship(api_client, patient, doctor):
    services.care_relationship_grant(
        patient=patient, member=doctor.user, kind=CareRelationship.Kind.PRIMARY
    )
    api_client.force_authenticate(doctor.user)

    response = api_client.get(f"/api/v1/patients/{patient.pk}/", {"purpose": "ward round"})

    assert response.status_code == 200
    assert response.json()["full_name"] == patient.user.display_name
    assert AuditEvent.objects.filter(
        actor=doctor.user, action="read", reason__contains="ward round"
    ).exists()


def test_an_unrelated_doctor_gets_404_and_the_attempt_is_audited(api_client, patient):
    stranger = ClinicianFactory()
    api_client.force_authenticate(stranger.user)

    response = api_client.get(f"/api/v1/patients/{patient.pk}/")

    assert response.status_code == 404
    assert AuditEvent.objects.filter(actor=stranger.user, action="denied", patient=patient).exists()


def test_another_patient_gets_the_same_404_as_for_a_missing_patient(api_client, patient):
    other = PatientFactory()
    api_client.force_authenticate(other.user)

    forbidden = api_client.get(f"/api/v1/patients/{patient.pk}/")
    missing = api_client.get("/api/v1/patients/999999/")

    assert forbidden.status_code == missing.status_code == 404
    assert forbidden.json() == missing.json()


def test_access_stops_when_the_relationship_ends(api_client, patient, doctor):
    services.care_relationship_grant(
        patient=patient, member=doctor.user, kind="visit", source="consult.visit:1"
    )
    services.care_relationship_end(
        patient=patient, member=doctor.user, kind="visit", source="consult.visit:1"
    )
    api_client.force_authenticate(doctor.user)

    assert api_client.get(f"/api/v1/patients/{patient.pk}/").status_code == 404


def test_a_time_limited_relationship_expires_by_itself(api_client, patient, doctor):
    services.care_relationship_grant(
        patient=patient,
        member=doctor.user,
        kind="break_glass",
        ends_at=timezone.now() - timezone.timedelta(seconds=1),
    )
    api_client.force_authenticate(doctor.user)

    assert api_client.get(f"/api/v1/patients/{patient.pk}/").status_code == 404


def test_granting_twice_keeps_one_relationship(patient, doctor):
    for _ in range(2):
        services.care_relationship_grant(patient=patient, member=doctor.user, kind="primary")

    assert CareRelationship.objects.filter(patient=patient, member=doctor.user).count() == 1


def test_every_grant_and_read_keeps_the_audit_chain_intact(api_client, patient, doctor):
    services.care_relationship_grant(patient=patient, member=doctor.user, kind="primary")
    api_client.force_authenticate(doctor.user)
    for _ in range(3):
        api_client.get(f"/api/v1/patients/{patient.pk}/")

    assert AuditEvent.objects.count() == 4
    assert audit_verify_chain() is None


def test_a_clinicians_patient_list_holds_only_patients_in_their_care_and_is_audited(db):
    # given a health worker caring for one patient, and a patient of someone else
    from telehealth.models import AuditEvent, CareRelationship
    from telehealth.selectors import patient_list_for_user
    from tests.factories import ClinicianFactory, PatientFactory

    worker = ClinicianFactory()
    mine, other = PatientFactory(), PatientFactory()
    CareRelationship.objects.create(patient=mine, member=worker.user, kind="primary", source="t")
    ended = PatientFactory()
    CareRelationship.objects.create(
        patient=ended,
        member=worker.user,
        kind="referral",
        source="t",
        ends_at=timezone.now() - timezone.timedelta(minutes=1),
    )
    # when listing the patients they may refer
    patients = patient_list_for_user(user=worker.user, purpose="patients to refer")
    # then only the one in their care now is there, and the read is audited
    assert patients == [mine]
    assert other not in patients and ended not in patients
    assert AuditEvent.objects.filter(actor=worker.user, target="patients:in_my_care").exists()
