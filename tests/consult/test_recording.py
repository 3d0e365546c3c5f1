"""Recording a video visit: consent first, stops when consent is missing, private storage
of the files the relay node uploads with its own token, and audited downloads."""

from __future__ import annotations

import fractions
import hashlib
import io
import uuid

import av
import numpy as np
import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from consult import media
from consult import visit_services as services
from consult.models import VisitParticipant, VisitRecording, VisitRecordingSession
from relay.tokens import issue_token, issue_upload_token
from telehealth.errors import AccessDenied, Conflict
from telehealth.models import AuditEvent
from tests.consult.test_services import PNG
from tests.factories import ClinicianFactory, PatientFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def relay_calls(monkeypatch):
    """What the web tier asks of the relay node (no node runs here)."""
    calls: list[tuple] = []
    monkeypatch.setattr(
        media,
        "relay_recording_start",
        lambda **kw: calls.append(("start", kw["room"], kw["recording"], kw["upload_url"])) or True,
    )
    monkeypatch.setattr(
        media,
        "relay_recording_stop",
        lambda **kw: calls.append(("stop", kw["room"], kw["recording"])) or True,
    )
    return calls


@pytest.fixture
def events(monkeypatch):
    sent: list[tuple[str, dict]] = []
    monkeypatch.setattr(
        services,
        "publish_topic_event_on_commit",
        lambda topic, *, name, data: sent.append((name, data)),
    )
    return sent


@pytest.fixture
def visit(patient, doctor):
    visit = services.visit_schedule(patient=patient, host=doctor.user, scheduled_start=None)
    services.visit_open_waiting_room(visit_id=visit.pk, by=doctor.user)
    services.visit_check_in(visit_id=visit.pk, user=patient.user, device_check={})
    services.visit_admit(visit_id=visit.pk, user_id=patient.user.pk, by=doctor.user)
    visit.refresh_from_db()
    return visit


def everyone_consents(visit):
    for member in VisitParticipant.objects.filter(visit=visit).select_related("user"):
        services.visit_recording_consent(visit_id=visit.pk, user=member.user, consent=True)


def recording(visit, doctor, capture):
    everyone_consents(visit)
    with capture(execute=True):
        return services.visit_recording_start(visit_id=visit.pk, by=doctor.user)


def running(visit):
    return VisitRecordingSession.objects.filter(visit=visit, ended_at__isnull=True).first()


# --------------------------------------------------------------------------- start and stop


def test_recording_is_refused_until_everyone_consented(
    visit, patient, doctor, relay_calls, django_capture_on_commit_callbacks
):
    services.visit_recording_consent(visit_id=visit.pk, user=doctor.user, consent=True)

    with pytest.raises(Conflict) as refused:
        services.visit_recording_start(visit_id=visit.pk, by=doctor.user)

    assert refused.value.code == "consent_missing"
    assert patient.user.display_name in refused.value.message
    assert refused.value.fields == {"consent": [patient.user.display_name]}
    assert running(visit) is None and relay_calls == []

    services.visit_recording_consent(visit_id=visit.pk, user=patient.user, consent=True)
    with django_capture_on_commit_callbacks(execute=True):
        session = services.visit_recording_start(visit_id=visit.pk, by=doctor.user)

    assert running(visit) == session
    assert relay_calls == [
        (
            "start",
            visit.room,
            str(session.pk),
            f"http://127.0.0.1:8000/api/v1/visits/{visit.pk}/recordings/upload/",
        )
    ]
    assert AuditEvent.objects.filter(target=f"consult.visit:{visit.pk}:recording:{session.pk}")


def test_starting_twice_gives_the_same_recording_and_only_the_host_starts(
    visit, patient, doctor, relay_calls, django_capture_on_commit_callbacks
):
    first = recording(visit, doctor, django_capture_on_commit_callbacks)

    again = services.visit_recording_start(visit_id=visit.pk, by=doctor.user)
    with pytest.raises(AccessDenied):
        services.visit_recording_start(visit_id=visit.pk, by=patient.user)
    with pytest.raises(AccessDenied):
        services.visit_recording_stop(visit_id=visit.pk, by=patient.user)

    assert again == first
    assert VisitRecordingSession.objects.filter(visit=visit).count() == 1


def test_every_page_hears_that_recording_started_and_stopped(
    visit, doctor, relay_calls, events, django_capture_on_commit_callbacks
):
    session = recording(visit, doctor, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True):
        services.visit_recording_stop(visit_id=visit.pk, by=doctor.user)

    names = [name for name, _ in events]
    assert "visit.recording_started" in names and names[-1] == "visit.recording_stopped"
    assert events[-1][1]["recording"] == str(session.pk)
    assert events[-1][1]["reason"] == "stopped"
    assert relay_calls[-1] == ("stop", visit.room, str(session.pk))
    session.refresh_from_db()
    assert session.ended_at is not None


def test_withdrawing_consent_stops_the_recording_at_once(
    visit, patient, doctor, relay_calls, events, django_capture_on_commit_callbacks
):
    session = recording(visit, doctor, django_capture_on_commit_callbacks)

    with django_capture_on_commit_callbacks(execute=True):
        services.visit_recording_consent(visit_id=visit.pk, user=patient.user, consent=False)

    session.refresh_from_db()
    assert (session.stop_reason, session.ended_at is not None) == ("consent", True)
    assert relay_calls[-1] == ("stop", visit.room, str(session.pk))
    assert ("visit.recording_stopped", "consent") in [(n, d.get("reason")) for n, d in events]


def test_someone_joining_without_consent_stops_the_recording(
    visit, doctor, relay_calls, django_capture_on_commit_callbacks
):
    specialist = ClinicianFactory()
    services.visit_invite(
        visit_id=visit.pk, user=specialist.user, role="specialist", by=doctor.user
    )
    session = recording(visit, doctor, django_capture_on_commit_callbacks)
    # The specialist leaves, withdraws consent while away, then comes back.
    services.visit_check_in(visit_id=visit.pk, user=specialist.user, device_check={})
    services.visit_leave(visit_id=visit.pk, user=specialist.user)
    services.visit_recording_consent(visit_id=visit.pk, user=specialist.user, consent=False)
    assert running(visit) == session, "someone who left is not in the visit"

    with django_capture_on_commit_callbacks(execute=True):
        services.visit_check_in(visit_id=visit.pk, user=specialist.user, device_check={})

    assert running(visit) is None
    session.refresh_from_db()
    assert session.stop_reason == "consent"
    assert relay_calls[-1][0] == "stop"


def test_inviting_someone_who_has_not_consented_stops_the_recording(
    visit, doctor, relay_calls, django_capture_on_commit_callbacks
):
    recording(visit, doctor, django_capture_on_commit_callbacks)

    services.visit_invite(visit_id=visit.pk, user=UserFactory(), role="family", by=doctor.user)

    assert running(visit) is None


def test_ending_the_visit_stops_the_recording(
    visit, doctor, relay_calls, django_capture_on_commit_callbacks
):
    session = recording(visit, doctor, django_capture_on_commit_callbacks)

    with django_capture_on_commit_callbacks(execute=True):
        services.visit_end(visit_id=visit.pk, by=doctor.user, summary="")

    session.refresh_from_db()
    assert session.stop_reason == "visit_ended"
    assert relay_calls[-1] == ("stop", visit.room, str(session.pk))


def test_a_relay_that_cannot_record_ends_the_recording(
    visit, doctor, monkeypatch, events, django_capture_on_commit_callbacks
):
    monkeypatch.setattr(media, "relay_recording_start", lambda **kw: False)
    everyone_consents(visit)

    with django_capture_on_commit_callbacks(execute=True):
        session = services.visit_recording_start(visit_id=visit.pk, by=doctor.user)

    session.refresh_from_db()
    assert session.stop_reason == "relay", "no page may show a recording that is not happening"
    assert events[-1][0] == "visit.recording_stopped"


def test_a_dead_relay_node_ends_the_recording_it_was_making(
    visit, doctor, relay_calls, events, django_capture_on_commit_callbacks
):
    # given a recording on the room's node
    session = recording(visit, doctor, django_capture_on_commit_callbacks)
    calls = len(relay_calls)
    # when the watchdog finds the node dead (twice: it must be idempotent)
    with django_capture_on_commit_callbacks(execute=True):
        services.visit_recording_node_lost(visit_id=visit.pk)
        services.visit_recording_node_lost(visit_id=visit.pk)
    # then the recording is over for every page, and the dead node is not called
    session.refresh_from_db()
    assert session.stop_reason == "relay"
    assert events[-1][0] == "visit.recording_stopped"
    assert len(relay_calls) == calls


def test_the_api_starts_and_stops_and_the_visit_shows_it(
    api_client, visit, patient, doctor, relay_calls
):
    api_client.force_authenticate(patient.user)
    api_client.post(f"/api/v1/visits/{visit.pk}/consent/", {"recording": True}, format="json")
    api_client.force_authenticate(doctor.user)
    refused = api_client.post(f"/api/v1/visits/{visit.pk}/recording/start/")
    api_client.post(f"/api/v1/visits/{visit.pk}/consent/", {"recording": True}, format="json")

    started = api_client.post(f"/api/v1/visits/{visit.pk}/recording/start/")
    api_client.force_authenticate(patient.user)
    seen_by_patient = api_client.get(f"/api/v1/visits/{visit.pk}/").json()
    api_client.force_authenticate(doctor.user)
    stopped = api_client.post(f"/api/v1/visits/{visit.pk}/recording/stop/")

    assert (refused.status_code, refused.json()["code"]) == (409, "consent_missing")
    assert started.status_code == 200
    assert started.json()["recording"]["started_by"] == doctor.user.display_name
    assert seen_by_patient["recording"]["id"] == started.json()["recording"]["id"]
    assert stopped.json()["recording"] is None


def test_the_host_asks_and_only_those_who_have_not_agreed_are_prompted(
    api_client, visit, patient, doctor, events
):
    specialist = ClinicianFactory()
    services.visit_invite(
        visit_id=visit.pk, user=specialist.user, role="specialist", by=doctor.user
    )
    services.visit_recording_consent(visit_id=visit.pk, user=specialist.user, consent=True)
    api_client.force_authenticate(doctor.user)

    asked = api_client.post(f"/api/v1/visits/{visit.pk}/recording/ask/")
    api_client.force_authenticate(patient.user)
    by_patient = api_client.post(f"/api/v1/visits/{visit.pk}/recording/ask/")

    assert asked.status_code == 200 and asked.json() == {"asked": [patient.user.pk]}
    assert events[-1] == (
        "visit.recording_asked",
        {"visit": visit.pk, "by": doctor.user.display_name, "users": [patient.user.pk]},
    )
    assert by_patient.status_code == 403
    assert VisitParticipant.objects.get(visit=visit, user=patient.user).recording_consent is None
    assert running(visit) is None


def test_asking_when_everyone_agreed_prompts_nobody(visit, doctor, events):
    everyone_consents(visit)
    events.clear()

    asked = services.visit_recording_ask(visit_id=visit.pk, by=doctor.user)

    assert asked == [] and events == []


# --------------------------------------------------------------------------- uploads


def webm(frames: int = 10) -> bytes:
    """A small real WebM (VP8), as a relay node would send."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="webm") as container:
        stream = container.add_stream("libvpx", rate=30)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(
                np.full((72, 64), i * 20, dtype=np.uint8), format="yuv420p"
            )
            frame.pts, frame.time_base = i, fractions.Fraction(1, 30)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return buffer.getvalue()


def upload_token(session, visit, user, data: bytes, **overrides) -> str:
    started = session.started_at.timestamp() + 0.5
    claims = {
        "room": visit.room,
        "recording": str(session.pk),
        "file": uuid.uuid4().hex,
        "participant": f"u-{user.pk}",
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "content_type": "video/webm",
        "started_at": started,
        "ended_at": started + 3,
        "node": "relay-1",
    }
    claims.update(overrides)
    secret = claims.pop("secret", settings.RELAY_TOKEN_SECRET)
    return issue_upload_token(secret, **claims)


def post_upload(client, visit, data: bytes, token: str | None):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
    return client.post(
        f"/api/v1/visits/{visit.pk}/recordings/upload/",
        {"file": SimpleUploadedFile("r.webm", data, "application/octet-stream")},
        format="multipart",
        **headers,
    )


@pytest.fixture
def recorded(visit, doctor, relay_calls, django_capture_on_commit_callbacks):
    return recording(visit, doctor, django_capture_on_commit_callbacks)


def test_an_upload_with_the_nodes_token_is_stored_privately(
    api_client, visit, patient, doctor, recorded
):
    data = webm()
    token = upload_token(recorded, visit, patient.user, data)

    stored = post_upload(api_client, visit, data, token)
    again = post_upload(api_client, visit, data, token)

    assert stored.status_code == 201, stored.json()
    assert again.status_code == 200, "a retried upload finds the same file"
    file = VisitRecording.objects.get()
    assert (file.participant, file.session, file.content_type) == (
        patient.user,
        recorded,
        "video/webm",
    )
    assert file.size == len(data) and file.file.read() == data
    assert str(settings.PRIVATE_MEDIA_ROOT) in file.file.path, "outside every served folder"
    assert AuditEvent.objects.filter(
        target=f"consult.visit:{visit.pk}:recording_file:{file.pk}", action="create"
    ).exists()


@pytest.mark.parametrize(
    "token",
    ["none", "garbage", "other-secret", "join-token", "other-visit", "expired"],
)
def test_an_upload_without_a_good_node_token_is_refused(
    api_client, visit, patient, doctor, recorded, token
):
    data = webm()
    tokens = {
        "none": None,
        "garbage": "nonsense",
        "other-secret": upload_token(
            recorded, visit, patient.user, data, secret="another-secret-long-enough-for-hs256!"
        ),
        # what the web tier signs for the relay is not what the relay signs for us
        "join-token": issue_token(
            settings.RELAY_TOKEN_SECRET, room=visit.room, sub="web", caps=["admin"]
        ),
        "other-visit": upload_token(recorded, visit, patient.user, data, room="visit-999999"),
        "expired": upload_token(
            recorded, visit, patient.user, data, now=timezone.now().timestamp() - 3600
        ),
    }
    # even the host's own session does not open this endpoint
    api_client.force_authenticate(doctor.user)

    response = post_upload(api_client, visit, data, tokens[token])

    assert response.status_code in (401, 403)
    assert not VisitRecording.objects.exists()


@pytest.mark.parametrize(
    ("content", "change", "status", "code"),
    [
        ("png", {}, 400, "unsupported_type"),
        ("webm", {"sha256": "0" * 64}, 400, "digest_mismatch"),
        ("webm", {"size": 10}, 400, "size_mismatch"),
        ("webm", {"recording": str(uuid.uuid4())}, 404, "not_found"),
        ("webm", {"participant": "u-999999"}, 400, "not_participant"),
    ],
)
def test_an_upload_must_be_the_recording_its_token_describes(
    api_client, visit, patient, recorded, content, change, status, code
):
    data = PNG if content == "png" else webm()

    response = post_upload(
        api_client, visit, data, upload_token(recorded, visit, patient.user, data, **change)
    )

    assert (response.status_code, response.json()["code"]) == (status, code)
    assert not VisitRecording.objects.exists()


def test_a_file_running_past_the_stop_is_refused(
    api_client, visit, patient, doctor, recorded, django_capture_on_commit_callbacks
):
    services.visit_recording_consent(visit_id=visit.pk, user=patient.user, consent=False)
    recorded.refresh_from_db()
    data = webm()
    late = recorded.ended_at.timestamp() + 60

    response = post_upload(
        api_client,
        visit,
        data,
        upload_token(recorded, visit, patient.user, data, ended_at=late),
    )

    assert (response.status_code, response.json()["code"]) == (409, "outside_recording")
    assert not VisitRecording.objects.exists()


def test_a_stop_reported_by_the_node_ends_the_recording(api_client, visit, patient, recorded):
    data = webm()

    response = post_upload(
        api_client,
        visit,
        data,
        upload_token(recorded, visit, patient.user, data, reason="shutdown"),
    )

    assert response.status_code == 201
    recorded.refresh_from_db()
    assert recorded.stop_reason == "relay"


# --------------------------------------------------------------------------- downloads


@pytest.fixture
def stored(api_client, visit, patient, recorded):
    data = webm()
    post_upload(api_client, visit, data, upload_token(recorded, visit, patient.user, data))
    return VisitRecording.objects.get(), data


def test_the_host_and_the_patient_download_and_every_read_is_audited(
    api_client, visit, patient, doctor, stored
):
    file, data = stored
    url = f"/api/v1/recordings/{file.pk}/"

    api_client.force_authenticate(doctor.user)
    by_host = api_client.get(url)
    api_client.force_authenticate(patient.user)
    by_patient = api_client.get(url)
    listed = api_client.get(f"/api/v1/visits/{visit.pk}/recordings/")

    assert b"".join(by_host.streaming_content) == data
    assert by_host["Content-Type"] == "video/webm"
    assert "attachment" in by_host["Content-Disposition"]
    assert by_host["Cache-Control"] == "private, no-store"
    assert by_patient.status_code == 200
    assert [r["url"] for r in listed.json()] == [url]
    reads = AuditEvent.objects.filter(
        target=f"consult.visit:{visit.pk}:recording_file:{file.pk}", action="read"
    )
    assert set(reads.values_list("actor", flat=True)) == {doctor.user.pk, patient.user.pk}


@pytest.mark.parametrize("who", ["stranger", "specialist"])
def test_anyone_else_gets_404_and_the_attempt_is_audited(
    api_client, visit, doctor, stored, who, relay_calls
):
    file, _ = stored
    if who == "specialist":  # took part in the visit, but is not its host or patient
        person = ClinicianFactory().user
        services.visit_invite(visit_id=visit.pk, user=person, role="specialist", by=doctor.user)
    else:
        person = PatientFactory().user
    api_client.force_authenticate(person)

    response = api_client.get(f"/api/v1/recordings/{file.pk}/")
    listing = api_client.get(f"/api/v1/visits/{visit.pk}/recordings/")

    assert response.status_code == 404 and listing.status_code == 404
    denied = AuditEvent.objects.filter(actor=person, action="denied")
    assert denied.filter(target=f"consult.visit:{visit.pk}:recording_file:{file.pk}").exists()
    assert denied.filter(target=f"consult.visit:{visit.pk}:recordings").exists()
    assert not AuditEvent.objects.filter(actor=person, action="read", target__contains="record")


def test_the_relay_admin_requests_are_signed_like_removal(monkeypatch, settings):
    import json

    import jwt

    settings.REDIS_URL = ""
    sent = []

    class Answer:
        status = 200

        def __enter__(self):
            return self

        def __exit__(self, *args):
            return False

    def urlopen(request, timeout):
        sent.append(request)
        return Answer()

    monkeypatch.setattr(media.urllib.request, "urlopen", urlopen)

    assert media.relay_recording_start(room="visit-5", recording="r1", upload_url="http://w/u/")
    assert media.relay_recording_stop(room="visit-5", recording="r1")

    start, stop = sent
    assert (start.get_method(), start.full_url) == (
        "POST",
        f"{settings.RELAY_URL}/rooms/visit-5/recording",
    )
    assert json.loads(start.data) == {"recording": "r1", "upload_url": "http://w/u/"}
    assert (stop.get_method(), stop.full_url) == (
        "DELETE",
        f"{settings.RELAY_URL}/rooms/visit-5/recording?recording=r1",
    )
    claims = jwt.decode(
        start.get_header("Authorization").removeprefix("Bearer "),
        settings.RELAY_TOKEN_SECRET,
        algorithms=["HS256"],
        audience="telehealth-relay",
    )
    assert (claims["room"], claims["cap"]) == ("visit-5", ["admin"])
