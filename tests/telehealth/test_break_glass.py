"""Break-glass: a doctor outside the care relationship opens a record in an emergency,
with a reason, for a limited time; the facility's privacy officer is alerted live and
reviews it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from django.test import Client

from telehealth import services
from telehealth.models import (
    AuditEvent,
    BreakGlassAccess,
    CareRelationship,
    ClinicianProfile,
    PrivacyOfficerAssignment,
)
from tests.consult.conftest import open_socket
from tests.factories import (
    ClinicianFactory,
    CoordinatorFactory,
    FacilityFactory,
    PatientFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db

REASON = "Bất tỉnh tại cấp cứu, cần xem tiền sử dị ứng thuốc"


def officer_of(facility, **kwargs):  # type: ignore[no-untyped-def]
    user = UserFactory(**kwargs)
    PrivacyOfficerAssignment.objects.create(user=user, facility=facility)
    return user


def break_glass(api_client, doctor, patient, reason: str = REASON):  # type: ignore[no-untyped-def]
    api_client.force_authenticate(doctor.user)
    return api_client.post(
        f"/api/v1/patients/{patient.pk}/break-glass/", {"reason": reason}, format="json"
    )


def test_a_doctor_breaks_the_glass_with_a_reason_and_reads_the_record(
    api_client, patient, doctor, settings
):
    settings.TELEHEALTH_BREAK_GLASS_MINUTES = 240
    officer = officer_of(doctor.facility)
    api_client.force_authenticate(doctor.user)
    assert api_client.get(f"/api/v1/patients/{patient.pk}/").status_code == 404

    # when the doctor states the emergency
    response = break_glass(api_client, doctor, patient)

    # then the record opens, for four hours, on the basis break_glass
    assert response.status_code == 201
    body = response.json()
    assert body["patient"]["full_name"] == patient.user.display_name
    access = BreakGlassAccess.objects.get(pk=body["access"]["id"])
    assert (access.doctor, access.patient, access.facility) == (
        doctor.user,
        patient,
        doctor.facility,
    )
    assert access.reason == REASON
    assert access.review_state == BreakGlassAccess.Review.PENDING
    assert access.ends_at - access.started_at == timedelta(hours=4)
    relationship = CareRelationship.objects.get(patient=patient, member=doctor.user)
    assert relationship.kind == CareRelationship.Kind.BREAK_GLASS
    assert relationship.ends_at == access.ends_at
    assert list(access.alerted_officers.all()) == [officer]
    assert access.alerted_at is not None
    again = api_client.get(f"/api/v1/patients/{patient.pk}/", {"purpose": "resuscitation"})
    assert again.status_code == 200
    read = AuditEvent.objects.filter(actor=doctor.user, action="read", patient=patient).last()
    assert read.reason == "resuscitation (break_glass)"


@pytest.mark.parametrize(
    ("reason", "code"),
    [
        ("", "reason_required"),
        ("   cấp cứu   ", "reason_required"),
        ("x" * 1001, "reason_too_long"),
    ],
)
def test_the_reason_is_required_and_must_say_something(api_client, patient, doctor, reason, code):
    response = break_glass(api_client, doctor, patient, reason=reason)

    assert response.status_code == 400
    assert response.json()["code"] == code
    assert "reason" in response.json()["fields"]
    assert not BreakGlassAccess.objects.exists()
    assert not CareRelationship.objects.filter(member=doctor.user).exists()
    assert api_client.get(f"/api/v1/patients/{patient.pk}/").status_code == 404


def test_the_access_ends_by_itself_when_its_time_is_up(api_client, patient, doctor, settings):
    settings.TELEHEALTH_BREAK_GLASS_MINUTES = 30
    response = break_glass(api_client, doctor, patient)
    access = BreakGlassAccess.objects.get(pk=response.json()["access"]["id"])
    assert access.ends_at - access.started_at == timedelta(minutes=30)
    assert api_client.get(f"/api/v1/patients/{patient.pk}/").status_code == 200

    # when 31 minutes have passed (the clock moved by moving the access into the past)
    shift = timedelta(minutes=31)
    CareRelationship.objects.filter(pk=access.relationship_id).update(
        starts_at=access.relationship.starts_at - shift, ends_at=access.ends_at - shift
    )
    BreakGlassAccess.objects.filter(pk=access.pk).update(
        started_at=access.started_at - shift, ends_at=access.ends_at - shift
    )

    # then the record is closed again, with nobody having revoked anything
    assert api_client.get(f"/api/v1/patients/{patient.pk}/").status_code == 404
    access.refresh_from_db()
    assert not access.is_active
    assert AuditEvent.objects.filter(actor=doctor.user, action="denied", patient=patient).exists()
    # and breaking the glass again is a new access, alerted and reviewed again
    assert break_glass(api_client, doctor, patient).status_code == 201
    assert BreakGlassAccess.objects.filter(doctor=doctor.user).count() == 2


@pytest.mark.parametrize("who", ["health_worker", "coordinator", "patient", "administrator"])
def test_only_doctors_may_break_the_glass(api_client, patient, who):
    if who == "health_worker":
        user = ClinicianFactory(kind=ClinicianProfile.Kind.HEALTH_WORKER).user
    elif who == "coordinator":
        user = CoordinatorFactory().user
    elif who == "patient":
        user = PatientFactory().user
    else:
        user = UserFactory(is_staff=True, is_superuser=True)
    api_client.force_authenticate(user)

    response = api_client.post(
        f"/api/v1/patients/{patient.pk}/break-glass/", {"reason": REASON}, format="json"
    )

    assert response.status_code == 403
    assert response.json()["code"] == "not_a_doctor"
    assert not BreakGlassAccess.objects.exists()
    assert not CareRelationship.objects.filter(member=user).exists()
    assert AuditEvent.objects.filter(
        actor=user, action="denied", patient=patient, target=f"break_glass:patient:{patient.pk}"
    ).exists()


def test_a_patient_who_does_not_exist_is_the_usual_404_and_audited(api_client, doctor):
    api_client.force_authenticate(doctor.user)

    response = api_client.post(
        "/api/v1/patients/999999/break-glass/", {"reason": REASON}, format="json"
    )

    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
    assert AuditEvent.objects.filter(
        actor=doctor.user, action="denied", target="break_glass:patient:999999", patient=None
    ).exists()
    assert not BreakGlassAccess.objects.exists()


def test_who_already_has_access_is_told_no_break_glass_is_needed(api_client, patient, doctor):
    services.care_relationship_grant(
        patient=patient, member=doctor.user, kind=CareRelationship.Kind.PRIMARY
    )

    response = break_glass(api_client, doctor, patient)

    assert response.status_code == 409
    assert response.json()["code"] == "already_has_access"
    assert response.json()["fields"] == {"basis": ["primary"]}
    assert not BreakGlassAccess.objects.exists()


# --- The alert ---------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_the_alert_reaches_the_privacy_officers_socket_at_once():
    def given():  # type: ignore[no-untyped-def]
        doctor = ClinicianFactory()
        elsewhere = FacilityFactory()
        return (
            PatientFactory(),
            doctor,
            officer_of(doctor.facility),
            officer_of(elsewhere),
        )

    patient, doctor, officer, other_officer = await database_sync_to_async(given)()
    officer_socket, connected, _ = await open_socket(officer)
    other_socket, _, _ = await open_socket(other_officer)
    assert connected

    # when the doctor breaks the glass
    access = await database_sync_to_async(services.break_glass_open)(
        doctor=doctor.user, patient_id=patient.pk, reason=REASON
    )

    # then the officer of the doctor's facility hears of it live, and nobody else
    frame, _ = await officer_socket.receive_until("event")
    assert frame["topic"] == "user"
    assert frame["name"] == "break_glass.opened"
    assert frame["data"]["access"] == access.pk
    assert frame["data"]["doctor"] == {"id": doctor.user_id, "name": doctor.user.display_name}
    assert frame["data"]["patient"]["id"] == patient.pk
    assert frame["data"]["facility"]["code"] == doctor.facility.code
    assert frame["data"]["reason"] == REASON
    assert await other_socket.nothing()
    for socket in (officer_socket, other_socket):
        await socket.close()


# --- The review list ---------------------------------------------------------------------


def test_the_review_list_holds_the_officers_facility_only_pending_first(api_client, patient):
    mine, theirs = ClinicianFactory(), ClinicianFactory()
    officer = officer_of(mine.facility)
    other_officer = officer_of(theirs.facility)
    first = services.break_glass_open(doctor=mine.user, patient_id=patient.pk, reason=REASON)
    services.break_glass_review(reviewer=officer, access_id=first.pk, justified=True)
    second = services.break_glass_open(
        doctor=mine.user, patient_id=PatientFactory().pk, reason=REASON
    )
    BreakGlassAccess.objects.filter(pk=second.pk).update(
        started_at=first.started_at - timedelta(hours=1)
    )
    services.break_glass_open(doctor=theirs.user, patient_id=patient.pk, reason=REASON)
    api_client.force_authenticate(officer)

    listed = api_client.get("/api/v1/break-glass/").json()["results"]
    pending = api_client.get("/api/v1/break-glass/", {"state": "pending"}).json()["results"]

    # the older pending access comes before the newer reviewed one; the other facility's
    # access is not there
    assert [a["id"] for a in listed] == [second.pk, first.pk]
    assert [a["review_state"] for a in listed] == ["pending", "justified"]
    assert listed[1]["reviewed_by"]["id"] == officer.pk
    assert [a["id"] for a in pending] == [second.pk]
    assert AuditEvent.objects.filter(actor=officer, target="break_glass:review_list").exists()
    api_client.force_authenticate(other_officer)
    assert [
        a["doctor"]["id"] for a in api_client.get("/api/v1/break-glass/").json()["results"]
    ] == [theirs.user_id]


@pytest.mark.parametrize("who", ["doctor", "coordinator", "patient"])
def test_the_review_list_is_for_privacy_officers_only(api_client, who):
    user = {
        "doctor": lambda: ClinicianFactory().user,
        "coordinator": lambda: CoordinatorFactory().user,
        "patient": lambda: PatientFactory().user,
    }[who]()
    api_client.force_authenticate(user)

    assert api_client.get("/api/v1/break-glass/").status_code == 404
    client = Client()
    client.force_login(user)
    assert client.get("/break-glass/review/").status_code == 404


def test_an_officer_approves_an_access(api_client, patient, doctor):
    officer = officer_of(doctor.facility)
    access = services.break_glass_open(doctor=doctor.user, patient_id=patient.pk, reason=REASON)
    api_client.force_authenticate(officer)

    response = api_client.post(
        f"/api/v1/break-glass/{access.pk}/review/", {"decision": "justified"}, format="json"
    )

    assert response.status_code == 200
    assert response.json()["review_state"] == "justified"
    access.refresh_from_db()
    assert (access.reviewed_by, access.review_state) == (officer, "justified")
    assert access.reviewed_at is not None
    assert access.is_active  # a justified access runs to its end
    # and a review is final
    again = api_client.post(
        f"/api/v1/break-glass/{access.pk}/review/",
        {"decision": "not_justified", "note": "changed my mind"},
        format="json",
    )
    assert again.status_code == 409
    assert AuditEvent.objects.filter(
        actor=officer, patient=patient, target=f"break_glass:{access.pk}:justified"
    ).exists()


def test_flagging_an_access_needs_a_note_and_ends_it_at_once(api_client, patient, doctor):
    officer = officer_of(doctor.facility)
    access = services.break_glass_open(doctor=doctor.user, patient_id=patient.pk, reason=REASON)
    api_client.force_authenticate(officer)
    url = f"/api/v1/break-glass/{access.pk}/review/"

    bare = api_client.post(url, {"decision": "not_justified"}, format="json")
    flagged = api_client.post(
        url,
        {"decision": "not_justified", "note": "Bệnh nhân không ở khoa cấp cứu hôm đó."},
        format="json",
    )

    assert bare.status_code == 400
    assert bare.json()["code"] == "note_required"
    assert flagged.status_code == 200
    assert flagged.json()["review_state"] == "not_justified"
    assert flagged.json()["review_note"] == "Bệnh nhân không ở khoa cấp cứu hôm đó."
    access.refresh_from_db()
    assert not access.is_active
    api_client.force_authenticate(doctor.user)
    assert api_client.get(f"/api/v1/patients/{patient.pk}/").status_code == 404


def test_only_the_facilitys_officers_review_and_never_their_own_access(api_client, patient):
    doctor = ClinicianFactory()
    access = services.break_glass_open(doctor=doctor.user, patient_id=patient.pk, reason=REASON)
    stranger = officer_of(FacilityFactory())
    api_client.force_authenticate(stranger)
    assert (
        api_client.post(
            f"/api/v1/break-glass/{access.pk}/review/", {"decision": "justified"}, format="json"
        ).status_code
        == 404
    )

    # a doctor who is also their facility's privacy officer
    PrivacyOfficerAssignment.objects.create(user=doctor.user, facility=doctor.facility)
    api_client.force_authenticate(doctor.user)
    own = api_client.post(
        f"/api/v1/break-glass/{access.pk}/review/", {"decision": "justified"}, format="json"
    )

    assert own.status_code == 403
    assert own.json()["code"] == "own_access"
    access.refresh_from_db()
    assert access.review_state == "pending"


# --- The pages ---------------------------------------------------------------------------


def test_a_doctor_breaks_the_glass_from_the_refused_record_page(patient, doctor):
    officer = officer_of(doctor.facility)
    client = Client()
    client.force_login(doctor.user)

    refused = client.get(f"/patients/{patient.pk}/")
    missing = client.get("/patients/999999/")
    short = client.post(f"/patients/{patient.pk}/break-glass/", {"reason": "gấp"})
    opened = client.post(f"/patients/{patient.pk}/break-glass/", {"reason": REASON}, follow=True)

    # the refused page names nobody and offers the emergency form, the same for a
    # patient who does not exist
    assert refused.status_code == missing.status_code == 404
    assert patient.user.display_name not in refused.content.decode()
    assert 'id="break-glass-form"' in refused.content.decode()
    assert 'id="break-glass-form"' in missing.content.decode()
    assert short.status_code == 400
    assert "20" in short.content.decode()
    # then the record shows, marked as emergency access
    page = opened.content.decode()
    assert opened.status_code == 200
    assert patient.user.display_name in page
    assert 'data-basis="break_glass"' in page
    # and the officer's review page lists it with a verdict form
    client.force_login(officer)
    review = client.get("/break-glass/review/").content.decode()
    access = BreakGlassAccess.objects.get()
    assert f'data-break-glass="{access.pk}"' in review
    assert f'action="/break-glass/{access.pk}/review/"' in review
    assert 'data-nav="break-glass-review"' in review
    saved = client.post(f"/break-glass/{access.pk}/review/", {"decision": "justified"})
    assert saved.status_code == 302
    access.refresh_from_db()
    assert access.review_state == "justified"


def test_the_record_page_offers_no_break_glass_to_a_health_worker(patient):
    worker = ClinicianFactory(kind=ClinicianProfile.Kind.HEALTH_WORKER)
    client = Client()
    client.force_login(worker.user)

    refused = client.get(f"/patients/{patient.pk}/")
    posted = client.post(f"/patients/{patient.pk}/break-glass/", {"reason": REASON})

    assert refused.status_code == 404
    assert "break-glass-form" not in refused.content.decode()
    assert posted.status_code == 403
    assert not BreakGlassAccess.objects.exists()


def test_a_doctor_who_already_has_access_is_sent_to_the_record(patient, doctor):
    services.care_relationship_grant(
        patient=patient, member=doctor.user, kind=CareRelationship.Kind.PRIMARY
    )
    client = Client()
    client.force_login(doctor.user)

    response = client.post(f"/patients/{patient.pk}/break-glass/", {"reason": REASON}, follow=True)

    assert response.status_code == 200
    assert patient.user.display_name in response.content.decode()
    assert not BreakGlassAccess.objects.exists()


def test_the_patients_page_opens_a_record_by_number(patient, doctor):
    services.care_relationship_grant(
        patient=patient, member=doctor.user, kind=CareRelationship.Kind.PRIMARY
    )
    client = Client()
    client.force_login(doctor.user)

    page = client.get("/patients/")
    jump = client.get("/patients/", {"patient": str(patient.pk)})
    bad = client.get("/patients/", {"patient": "abc"})
    superscript = client.get("/patients/", {"patient": "²"})  # a digit to str.isdigit

    assert page.status_code == 200
    assert f'href="/patients/{patient.pk}/"' in page.content.decode()
    assert 'data-nav="patients"' in page.content.decode()
    assert jump.status_code == 302
    assert jump["Location"] == f"/patients/{patient.pk}/"
    assert bad.status_code == superscript.status_code == 400
    client.force_login(PatientFactory().user)
    assert client.get("/patients/").status_code == 404


def test_the_demo_seed_gives_every_hub_a_privacy_officer(db):
    from telehealth.models import Facility
    from telehealth.seeding import network_seed

    network_seed(
        seed=7, facilities=150, doctors=200, health_workers=None, patients=50, coordinators=None
    )

    hubs = Facility.objects.filter(is_telehealth_hub=True)
    assert hubs.exists()
    assert not hubs.filter(privacy_officers__isnull=True).exists()
    bach_mai = Facility.objects.get(name="Bệnh viện Bạch Mai")
    assert bach_mai.privacy_officers.filter(user__username="demo.privacy").exists()
