"""Two-step sign-in with a TOTP authenticator (telehealth/two_factor.py): setting it up,
signing in with it, wrong codes, the role setting that requires it, the API token and
the websocket. Codes are computed with django-otp's own TOTP implementation."""

from __future__ import annotations

import base64
import time

import pytest
from channels.db import database_sync_to_async
from django.conf import settings
from django.test import Client
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice

from telehealth.models import AuditEvent
from tests.consult.conftest import open_socket
from tests.factories import PASSWORD, ClinicianFactory, CoordinatorFactory, PatientFactory


def code_for(device: TOTPDevice, *, steps_ahead: int = 0) -> str:
    """The code the person's phone shows now (or ``steps_ahead`` periods later)."""
    device.refresh_from_db()
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    totp.time = time.time() + steps_ahead * device.step
    return f"{totp.token():0{device.digits}d}"


def wrong_code(device: TOTPDevice) -> str:
    right = code_for(device)
    return f"{(int(right) + 1) % 10**device.digits:0{device.digits}d}"


def next_period(device: TOTPDevice) -> None:
    """Pretend the 30 s period has moved on and any earlier wait is over, so the phone
    shows a code not used before (each code works once)."""
    TOTPDevice.objects.filter(pk=device.pk).update(
        last_t=-1, throttling_failure_count=0, throttling_failure_timestamp=None
    )


def enrolled(user) -> TOTPDevice:
    device = TOTPDevice.objects.create(user=user, name="authenticator", confirmed=True)
    return device


def password_step(client: Client, user, next_url: str = ""):
    data = {"username": user.username, "password": PASSWORD}
    if next_url:
        data["next"] = next_url
    return client.post("/login/", data)


def signed_in(client: Client) -> bool:
    return client.get("/api/v1/me/").status_code == 200


@pytest.fixture
def doctor_user(db):
    return ClinicianFactory().user


# --- Setting it up from the profile ----------------------------------------------------------


@pytest.mark.django_db
def test_a_doctor_turns_it_on_from_the_profile_with_a_qr_code_and_a_code(doctor_user):
    client = Client()
    assert password_step(client, doctor_user)["Location"] == "/"
    assert b"/account/two-factor/" in client.get("/profile/").content

    page = client.get("/account/two-factor/")
    device = TOTPDevice.objects.get(user=doctor_user)
    wrong = client.post("/account/two-factor/", {"otp": wrong_code(device)})
    next_period(device)
    right = client.post("/account/two-factor/", {"otp": code_for(device)})

    assert page.status_code == 200
    assert b"<svg" in page.content and b"<img" not in page.content
    assert wrong.status_code == 400
    assert right["Location"] == "/profile/"
    device.refresh_from_db()
    assert device.confirmed
    assert AuditEvent.objects.filter(target=f"user:{doctor_user.pk}:totp:enabled").count() == 1
    assert AuditEvent.objects.filter(
        actor=doctor_user, action=AuditEvent.Action.DENIED, target__endswith="totp:enrol"
    ).exists()
    assert signed_in(client)  # this session passed the code: it stays signed in


@pytest.mark.django_db
def test_the_key_can_be_typed_instead_of_scanned(doctor_user):
    client = Client()
    client.force_login(doctor_user)

    page = client.get("/account/two-factor/").content.decode()
    device = TOTPDevice.objects.get(user=doctor_user)
    typed = base64.b32encode(device.bin_key).decode().rstrip("=")
    shown = typed[:4] + " " + typed[4:8]

    assert shown in page


@pytest.mark.django_db
def test_patients_are_not_offered_it():
    patient = PatientFactory().user
    client = Client()
    client.force_login(patient)

    assert client.get("/account/two-factor/").status_code == 404
    assert b"/account/two-factor/" not in client.get("/profile/").content


# --- Signing in with it --------------------------------------------------------------------------


@pytest.mark.django_db
def test_with_an_authenticator_the_password_alone_does_not_sign_in(doctor_user):
    device = enrolled(doctor_user)
    client = Client()

    response = password_step(client, doctor_user, next_url="/profile/")

    assert response["Location"] == "/login/verify/"
    assert not signed_in(client)
    assert client.get("/profile/")["Location"].startswith("/login/")
    assert not AuditEvent.objects.filter(actor=doctor_user, action="sign_in").exists()

    verified = client.post("/login/verify/", {"otp": code_for(device)})

    assert verified["Location"] == "/profile/"
    assert signed_in(client)
    sign_in = AuditEvent.objects.get(actor=doctor_user, action="sign_in")
    assert sign_in.reason == "password + TOTP"


@pytest.mark.django_db
def test_a_wrong_code_is_refused_audited_and_slows_the_next_try(settings, doctor_user):
    settings.OTP_TOTP_THROTTLE_FACTOR = 60  # the wait after one wrong code: 60 s, not 1 s
    device = enrolled(doctor_user)
    client = Client()
    password_step(client, doctor_user)

    wrong = client.post("/login/verify/", {"otp": wrong_code(device)})
    right_too_soon = client.post("/login/verify/", {"otp": code_for(device)})

    assert wrong.status_code == 400
    assert "không đúng" in wrong.content.decode() or "not right" in wrong.content.decode()
    assert right_too_soon.status_code == 400
    assert not signed_in(client)
    assert (
        AuditEvent.objects.filter(
            actor=doctor_user, action=AuditEvent.Action.DENIED, target="session:totp"
        ).count()
        == 2
    )


@pytest.mark.django_db
def test_a_code_works_only_once(doctor_user):
    device = enrolled(doctor_user)
    code = code_for(device)
    first, second = Client(), Client()
    password_step(first, doctor_user)
    password_step(second, doctor_user)

    assert first.post("/login/verify/", {"otp": code}).status_code == 302
    assert second.post("/login/verify/", {"otp": code}).status_code == 400
    assert not signed_in(second)


@pytest.mark.django_db
def test_wrong_codes_count_for_the_lockout(settings, doctor_user):
    settings.AXES_FAILURE_LIMIT = 2
    device = enrolled(doctor_user)
    client = Client()
    password_step(client, doctor_user)

    for _ in range(2):
        client.post("/login/verify/", {"otp": wrong_code(device)})
        next_period(device)
    locked = client.post("/login/verify/", {"otp": code_for(device)})

    assert locked.status_code == 429
    assert not signed_in(client)


@pytest.mark.django_db
def test_the_code_page_needs_a_password_first():
    response = Client().get("/login/verify/")

    assert response["Location"] == "/login/"


# --- Required by the setting ----------------------------------------------------------------------


@pytest.fixture
def required_for_doctors_and_coordinators(settings):
    settings.TELEHEALTH_REQUIRE_TOTP_ROLES = ["doctor", "coordinator"]


@pytest.mark.django_db
def test_required_and_not_set_up_sends_to_set_up_before_anything_works(
    required_for_doctors_and_coordinators,
):
    coordinator = CoordinatorFactory().user
    client = Client()

    response = password_step(client, coordinator)

    assert response["Location"] == "/account/two-factor/"
    assert not signed_in(client)
    assert client.get("/")["Location"].startswith("/login/")
    page = client.get("/account/two-factor/")
    assert page.status_code == 200
    assert "bắt buộc" in page.content.decode() or "requires" in page.content.decode()

    device = TOTPDevice.objects.get(user=coordinator)
    done = client.post("/account/two-factor/", {"otp": code_for(device)})

    assert done["Location"] == "/"
    assert signed_in(client)
    assert client.get("/").status_code == 200


@pytest.mark.django_db
def test_a_session_signed_in_without_the_required_factor_is_sent_to_it(
    required_for_doctors_and_coordinators, doctor_user
):
    client = Client()
    client.force_login(doctor_user)  # e.g. the admin's own sign-in form, or an older session

    page = client.get("/profile/")
    api = Client()
    api.force_login(doctor_user)
    call = api.get("/api/v1/me/")

    assert page["Location"] == "/account/two-factor/"
    assert not signed_in(client)
    assert call.status_code == 401
    assert call.json()["code"] == "otp_required"
    assert "second factor required" in AuditEvent.objects.filter(
        actor=doctor_user, action="sign_out"
    ).values_list("reason", flat=True)


@pytest.mark.django_db
def test_patients_sign_in_as_before_when_doctors_must_use_it(
    required_for_doctors_and_coordinators,
):
    patient = PatientFactory().user
    client = Client()

    assert password_step(client, patient)["Location"] == "/"
    assert signed_in(client)


@pytest.mark.django_db
def test_it_cannot_be_turned_off_when_the_role_requires_it(
    required_for_doctors_and_coordinators, doctor_user
):
    device = enrolled(doctor_user)
    client = Client()
    password_step(client, doctor_user)
    client.post("/login/verify/", {"otp": code_for(device)})
    next_period(device)

    client.post("/account/two-factor/disable/", {"otp": code_for(device)})

    assert TOTPDevice.objects.filter(user=doctor_user, confirmed=True).exists()


# --- Turning it off -------------------------------------------------------------------------------


@pytest.mark.django_db
def test_turning_it_off_needs_a_current_code(doctor_user):
    device = enrolled(doctor_user)
    client = Client()
    password_step(client, doctor_user)
    client.post("/login/verify/", {"otp": code_for(device)})
    next_period(device)

    client.post("/account/two-factor/disable/", {"otp": wrong_code(device)})
    still_on = TOTPDevice.objects.filter(user=doctor_user).exists()
    next_period(device)
    client.post("/account/two-factor/disable/", {"otp": code_for(device)})

    assert still_on
    assert not TOTPDevice.objects.filter(user=doctor_user).exists()
    assert AuditEvent.objects.filter(target=f"user:{doctor_user.pk}:totp:disabled").exists()
    assert password_step(Client(), doctor_user)["Location"] == "/"


# --- The API token --------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_api_token_needs_the_code_too(api_client, doctor_user):
    device = enrolled(doctor_user)
    credentials = {"username": doctor_user.username, "password": PASSWORD}

    missing = api_client.post("/api/v1/auth/token/", credentials, format="json")
    wrong = api_client.post(
        "/api/v1/auth/token/", {**credentials, "otp": wrong_code(device)}, format="json"
    )
    next_period(device)
    right = api_client.post(
        "/api/v1/auth/token/", {**credentials, "otp": code_for(device)}, format="json"
    )

    assert missing.status_code == 400
    assert missing.json()["code"] == "otp_required"
    assert "otp" in missing.json()["fields"]
    assert wrong.status_code == 400
    assert wrong.json()["code"] == "bad_otp"
    assert right.status_code == 200
    api_client.credentials(HTTP_AUTHORIZATION=f"Token {right.json()['token']}")
    assert api_client.get("/api/v1/me/").json()["username"] == doctor_user.username


@pytest.mark.django_db
def test_no_api_token_before_a_required_authenticator_is_set_up(
    required_for_doctors_and_coordinators, api_client, doctor_user
):
    response = api_client.post(
        "/api/v1/auth/token/",
        {"username": doctor_user.username, "password": PASSWORD},
        format="json",
    )

    assert response.status_code == 400
    assert response.json()["code"] == "otp_enrolment_required"


# --- The websocket --------------------------------------------------------------------------


def _verified_cookie(user, device) -> str:
    client = Client()
    password_step(client, user)
    assert client.post("/login/verify/", {"otp": code_for(device)}).status_code == 302
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"


def _password_only_cookie(user) -> str:
    client = Client()
    client.force_login(user)
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"


@pytest.mark.django_db(transaction=True)
async def test_sockets_accept_only_sessions_that_passed_the_second_factor():
    user = (await database_sync_to_async(ClinicianFactory)()).user
    device = await database_sync_to_async(enrolled)(user)

    refused, connected, _ = await open_socket(
        None, cookie=await database_sync_to_async(_password_only_cookie)(user)
    )
    assert connected
    assert (await refused.communicator.receive_output(timeout=5))["code"] == 4401

    accepted, connected, _ = await open_socket(
        None, cookie=await database_sync_to_async(_verified_cookie)(user, device)
    )
    assert connected
    assert (await accepted.receive())["type"] == "welcome"
    await accepted.close()
