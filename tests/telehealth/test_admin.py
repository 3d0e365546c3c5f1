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

    # The changelist's own title, not a URL or a model name that both languages share.
    assert "Chọn cơ sở y tế để thay đổi" in vietnamese
    assert "Select facility to change" in english
    assert "Chọn cơ sở y tế" not in english


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


def test_a_persons_page_shows_every_role_they_hold(admin_client):
    # given a doctor who also coordinates a province
    from tests.factories import CoordinatorFactory

    clinician = ClinicianFactory(licence_number="CCHN-HN-0042")
    CoordinatorFactory(user=clinician.user)
    # when an administrator opens the person's page
    page = admin_client.get(f"/admin/telehealth/user/{clinician.user.pk}/change/")
    # then the clinician and coordinator roles are there to edit, in Vietnamese
    html = page.content.decode()
    assert page.status_code == 200
    assert 'value="CCHN-HN-0042"' in html
    assert 'name="coordinator_assignments-TOTAL_FORMS" value="1"' in html
    assert "Thay đổi người dùng" in html
