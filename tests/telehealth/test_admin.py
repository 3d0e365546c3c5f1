"""The admin for facilities, people and roles, in Vietnamese and English."""

import pytest
from django.test import Client

from telehealth.audit import audit_record
from tests.factories import ClinicianFactory, FacilityFactory, UserFactory, sign_in

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client():
    UserFactory(username="quantri", is_staff=True, is_superuser=True)
    client = Client()
    sign_in(client, "quantri")
    return client


@pytest.mark.parametrize(
    "path",
    [
        "/admin/telehealth/facility/",
        "/admin/telehealth/user/",
        "/admin/telehealth/province/",
        "/admin/telehealth/commune/",
        "/admin/telehealth/auditevent/",
        "/admin/telehealth/carerelationship/",
    ],
)
def test_every_admin_list_opens(admin_client, path):
    FacilityFactory()
    ClinicianFactory()

    assert admin_client.get(path).status_code == 200


def test_the_admin_speaks_vietnamese_and_english(admin_client):
    vietnamese = admin_client.get("/admin/telehealth/facility/").content.decode()
    admin_client.post("/i18n/setlang/", {"language": "en", "next": "/admin/"})
    english = admin_client.get("/admin/telehealth/facility/").content.decode()

    assert "cơ sở y tế" in vietnamese.lower()
    assert "facilit" in english.lower()


def test_a_facility_page_shows_its_specialties(admin_client):
    facility = FacilityFactory(offers={"cardiology": 12})

    page = admin_client.get(f"/admin/telehealth/facility/{facility.pk}/change/").content.decode()

    assert "Tim mạch" in page


def test_nobody_can_edit_or_delete_the_audit_log_in_the_admin(admin_client, patient):
    event = audit_record(actor=patient.user, action="read", target="x", patient=patient)

    change = admin_client.post(f"/admin/telehealth/auditevent/{event.pk}/change/", {})
    delete = admin_client.post(f"/admin/telehealth/auditevent/{event.pk}/delete/", {"post": "yes"})

    event.refresh_from_db()
    assert change.status_code in (403, 302)
    assert delete.status_code == 403
    assert event.reason == ""
