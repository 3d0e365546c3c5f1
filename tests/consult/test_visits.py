"""Video visits: the waiting room, admission, participants, snapshots, consent, the record."""

from __future__ import annotations

import jwt
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from consult import visit_services as services
from consult.models import Visit, VisitParticipant
from telehealth import services as kernel_services
from telehealth.errors import AccessDenied, Conflict, NotFound
from telehealth.models import AuditEvent, CareRelationship
from tests.consult.test_services import PNG
from tests.factories import ClinicianFactory, PatientFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def visit(patient, doctor):
    return services.visit_schedule(
        patient=patient,
        host=doctor.user,
        scheduled_start=timezone.now(),
        source="scheduler.appointment:1",
    )


def admitted(visit, patient, doctor):
    services.visit_open_waiting_room(visit_id=visit.pk, by=doctor.user)
    services.visit_check_in(
        visit_id=visit.pk, user=patient.user, device_check={"camera": True, "microphone": True}
    )
    services.visit_admit(visit_id=visit.pk, user_id=patient.user.pk, by=doctor.user)
    visit.refresh_from_db()
    return visit


def test_scheduling_the_same_appointment_twice_gives_one_visit(patient, doctor, visit):
    again = services.visit_schedule(
        patient=patient, host=doctor.user, scheduled_start=None, source="scheduler.appointment:1"
    )

    assert again.pk == visit.pk
    assert visit.thread.kind == "visit"


def test_nobody_gets_into_the_media_room_without_admission(visit, patient, doctor):
    services.visit_open_waiting_room(visit_id=visit.pk, by=doctor.user)
    waiting = services.visit_check_in(
        visit_id=visit.pk,
        user=patient.user,
        device_check={"camera": True, "microphone": False, "connection": {"rtt_ms": 80}},
    )

    assert waiting.state == "waiting"
    assert waiting.device_check["microphone"] is False
    with pytest.raises(AccessDenied):
        services.visit_join(visit_id=visit.pk, user=patient.user)


def test_admission_starts_the_visit_and_hands_out_a_join_token(visit, patient, doctor, settings):
    visit = admitted(visit, patient, doctor)

    joined = services.visit_join(visit_id=visit.pk, user=patient.user)

    claims = jwt.decode(
        joined["token"],
        settings.RELAY_TOKEN_SECRET,
        algorithms=["HS256"],
        audience="telehealth-relay",
    )
    assert visit.state == "in_progress"
    assert visit.started_at is not None
    assert claims["room"] == f"visit-{visit.pk}"
    assert claims["sub"] == f"u-{patient.user.pk}"
    assert set(claims["cap"]) == {"publish", "subscribe"}
    assert claims["exp"] - claims["iat"] <= 120
    assert joined["relay"] == settings.RELAY_URL
    assert [a["user"] for a in joined["admitted"]] == [doctor.user.pk]


def test_only_the_host_admits(visit, patient, doctor):
    services.visit_open_waiting_room(visit_id=visit.pk, by=doctor.user)
    services.visit_check_in(visit_id=visit.pk, user=patient.user, device_check={})

    with pytest.raises(AccessDenied):
        services.visit_admit(visit_id=visit.pk, user_id=patient.user.pk, by=patient.user)


def test_a_stranger_cannot_check_in(visit):
    with pytest.raises(NotFound):
        services.visit_check_in(visit_id=visit.pk, user=UserFactory(), device_check={})


def test_checking_in_too_early_is_refused(patient, doctor):
    later = services.visit_schedule(
        patient=patient,
        host=doctor.user,
        scheduled_start=timezone.now() + timezone.timedelta(hours=2),
    )

    with pytest.raises(Conflict) as error:
        services.visit_check_in(visit_id=later.pk, user=patient.user, device_check={})

    assert error.value.code == "too_early"


def test_an_invited_specialist_sees_the_patient_until_the_visit_ends(visit, patient, doctor):
    specialist = ClinicianFactory()
    visit = admitted(visit, patient, doctor)

    services.visit_invite(
        visit_id=visit.pk, user=specialist.user, role="specialist", by=doctor.user
    )
    during = CareRelationship.objects.get(member=specialist.user, kind="visit")
    services.visit_end(visit_id=visit.pk, by=doctor.user, summary="Theo dõi huyết áp")
    during.refresh_from_db()

    assert during.ends_at is not None
    visit.refresh_from_db()
    assert (visit.state, visit.summary) == ("ended", "Theo dõi huyết áp")


def test_the_participant_limit_holds(visit, doctor, settings):
    for n in range(visit.max_participants - 2):
        services.visit_invite(
            visit_id=visit.pk, user=UserFactory(username=f"kin{n}"), role="family", by=doctor.user
        )

    with pytest.raises(Conflict) as error:
        services.visit_invite(
            visit_id=visit.pk,
            user=UserFactory(username="one-too-many"),
            role="family",
            by=doctor.user,
        )

    assert error.value.code == "visit_full"


def test_removal_cuts_access_and_asks_the_relay_to_cut_media(
    visit, patient, doctor, monkeypatch, django_capture_on_commit_callbacks
):
    from consult import media

    cut = []
    monkeypatch.setattr(
        media,
        "relay_remove_participant",
        lambda room, participant: cut.append((room, participant)) or True,
    )
    specialist = ClinicianFactory()
    visit = admitted(visit, patient, doctor)
    services.visit_invite(
        visit_id=visit.pk, user=specialist.user, role="specialist", by=doctor.user
    )

    with django_capture_on_commit_callbacks(execute=True):
        services.visit_remove(visit_id=visit.pk, user_id=specialist.user.pk, by=doctor.user)

    assert cut == [(visit.room, f"u-{specialist.user.pk}")]
    with pytest.raises(NotFound):
        services.visit_join(visit_id=visit.pk, user=specialist.user)


def test_a_snapshot_is_stored_privately_and_every_read_is_audited(
    api_client, visit, patient, doctor
):
    visit = admitted(visit, patient, doctor)
    api_client.force_authenticate(doctor.user)

    notice = api_client.post(
        f"/api/v1/visits/{visit.pk}/snapshot-notice/", {"user_id": patient.user.pk}, format="json"
    )
    stored = api_client.post(
        f"/api/v1/visits/{visit.pk}/snapshots/",
        {"image": SimpleUploadedFile("frame.png", PNG, "image/png"), "user_id": patient.user.pk},
        format="multipart",
    )
    url = stored.json()["url"]
    by_doctor = api_client.get(url)
    api_client.force_authenticate(PatientFactory().user)
    by_stranger = api_client.get(url)

    assert notice.status_code == 204
    assert stored.status_code == 201
    assert b"".join(by_doctor.streaming_content) == PNG
    assert by_stranger.status_code == 404
    assert AuditEvent.objects.filter(target__contains=":snapshot:", action="read").count() == 1


def test_a_patient_cannot_take_snapshots(visit, patient, doctor):
    visit = admitted(visit, patient, doctor)

    with pytest.raises(AccessDenied):
        services.visit_snapshot_store(
            visit_id=visit.pk,
            by=patient.user,
            subject_id=doctor.user.pk,
            image=SimpleUploadedFile("x.png", PNG, "image/png"),
        )


def test_recording_needs_everyones_consent(visit, patient, doctor):
    services.visit_recording_consent(visit_id=visit.pk, user=doctor.user, consent=True)
    assert not services.visit_recording_allowed(visit=visit)

    services.visit_recording_consent(visit_id=visit.pk, user=patient.user, consent=True)
    assert services.visit_recording_allowed(visit=visit)

    services.visit_recording_consent(visit_id=visit.pk, user=patient.user, consent=False)
    assert not services.visit_recording_allowed(visit=visit)


def test_audio_only_can_be_switched_during_the_call(visit, patient, doctor):
    visit = admitted(visit, patient, doctor)

    member = services.visit_set_audio_only(visit_id=visit.pk, user=patient.user, audio_only=True)

    assert member.audio_only is True


def test_the_visit_chat_is_the_messaging_engine(visit, patient, doctor):
    from consult import services as messaging

    result = messaging.message_send(
        user=patient.user, thread_id=visit.thread_id, client_id="v1", body="Em nghe rõ"
    )

    assert result.message.seq >= 1


def test_the_api_starts_an_ad_hoc_visit_from_a_care_relationship(api_client):
    patient, doctor = PatientFactory(), ClinicianFactory()
    kernel_services.care_relationship_grant(patient=patient, member=doctor.user, kind="referral")
    api_client.force_authenticate(doctor.user)

    response = api_client.post("/api/v1/visits/", {"patient_id": patient.pk}, format="json")

    assert response.status_code == 201
    body = response.json()
    assert body["state"] == "waiting"
    assert {p["user"]: p["state"] for p in body["participants"]} == {
        doctor.user.pk: "admitted",
        patient.user.pk: "invited",
    }


def test_the_patient_sees_the_doctor_and_the_read_is_audited(api_client, visit, patient):
    api_client.force_authenticate(patient.user)

    body = api_client.get(f"/api/v1/visits/{visit.pk}/").json()

    assert body["host"]["id"] == visit.host_id
    assert AuditEvent.objects.filter(
        actor=patient.user, target=f"consult.visit:{visit.pk}"
    ).exists()


def test_cancelling_after_the_start_is_refused(visit, patient, doctor):
    visit = admitted(visit, patient, doctor)

    with pytest.raises(Conflict):
        services.visit_cancel(visit_id=visit.pk, by=doctor.user)
    assert Visit.objects.get(pk=visit.pk).state == "in_progress"


def test_turn_credentials_follow_corturns_rest_format(settings):
    import base64
    import hashlib
    import hmac

    from consult import media

    settings.TURN_URLS = ["turn:turn.example.vn:3478"]
    settings.TURN_SHARED_SECRET = "s3cret"
    creds = media.turn_credentials(user_ref="u-7", now=1_000)

    expected = base64.b64encode(
        hmac.new(b"s3cret", creds["username"].encode(), hashlib.sha1).digest()
    ).decode()
    assert creds["username"] == f"{1_000 + settings.TURN_TTL_SECONDS}:u-7"
    assert creds["credential"] == expected


def test_participants_states_are_visible(visit):
    states = set(VisitParticipant.objects.filter(visit=visit).values_list("state", flat=True))

    assert states == {"admitted", "invited"}


def test_removing_one_participant_hides_the_visit_from_them_only(
    api_client, visit, patient, doctor
):
    specialist = ClinicianFactory()
    visit = admitted(visit, patient, doctor)
    services.visit_invite(
        visit_id=visit.pk, user=specialist.user, role="specialist", by=doctor.user
    )
    api_client.force_authenticate(doctor.user)

    removed = api_client.post(
        f"/api/v1/visits/{visit.pk}/remove/", {"user_id": specialist.user.pk}, format="json"
    )

    assert removed.status_code == 200
    assert {p["user"]: p["state"] for p in removed.json()["participants"]}[
        specialist.user.pk
    ] == "removed"
    api_client.force_authenticate(patient.user)
    assert api_client.get(f"/api/v1/visits/{visit.pk}/").status_code == 200
    assert visit.pk in [v["id"] for v in api_client.get("/api/v1/visits/").json()]
    api_client.force_authenticate(specialist.user)
    assert api_client.get(f"/api/v1/visits/{visit.pk}/").status_code == 404
