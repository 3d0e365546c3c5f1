"""The signed-in person's own profile."""

import pytest

from tests.factories import ClinicianFactory, CoordinatorFactory, PatientFactory

pytestmark = pytest.mark.django_db


def test_a_doctor_sees_where_they_work_and_their_level(api_client):
    clinician = ClinicianFactory(
        specialty_codes=["cardiology"], facility__name="Bệnh viện Bạch Mai"
    )
    api_client.force_authenticate(clinician.user)

    me = api_client.get("/api/v1/me/").json()

    assert me["roles"] == ["doctor"]
    assert me["clinician"]["facility"]["name"] == "Bệnh viện Bạch Mai"
    assert me["clinician"]["level"] == clinician.facility.level
    assert [s["code"] for s in me["clinician"]["specialties"]] == ["cardiology"]


def test_one_person_can_hold_several_roles(api_client):
    clinician = ClinicianFactory()
    PatientFactory(user=clinician.user)
    CoordinatorFactory(user=clinician.user)
    api_client.force_authenticate(clinician.user)

    me = api_client.get("/api/v1/me/").json()

    assert me["roles"] == ["coordinator", "doctor", "patient"]
    assert me["coordinates"][0]["province"]["code"] == "01"


def test_a_person_can_change_their_name_and_language(api_client, patient):
    api_client.force_authenticate(patient.user)

    response = api_client.patch(
        "/api/v1/me/", {"full_name": "Trần Thị Lan", "preferred_language": "en"}, format="json"
    )

    assert response.status_code == 200
    patient.user.refresh_from_db()
    assert (patient.user.full_name, patient.user.preferred_language) == ("Trần Thị Lan", "en")


def test_roles_and_username_cannot_be_changed_by_oneself(api_client, patient):
    api_client.force_authenticate(patient.user)

    response = api_client.patch("/api/v1/me/", {"is_staff": True, "username": "x"}, format="json")

    assert response.status_code == 400
    assert set(response.json()["fields"]) == {"is_staff", "username"}
    patient.user.refresh_from_db()
    assert not patient.user.is_staff


def test_an_unknown_language_is_refused_and_nothing_changes(api_client, patient):
    api_client.force_authenticate(patient.user)

    response = api_client.patch(
        "/api/v1/me/", {"full_name": "Lan", "preferred_language": "fr"}, format="json"
    )

    assert response.status_code == 400
    assert "preferred_language" in response.json()["fields"]
    patient.user.refresh_from_db()
    assert patient.user.full_name != "Lan"
