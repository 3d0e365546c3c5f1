"""Signing in: Argon2, sessions, tokens, and throttling that cannot lock a patient out."""

import pytest
from django.contrib.auth.hashers import identify_hasher
from django.test import Client
from django.utils import timezone

from telehealth.models import AuditEvent
from tests.factories import PASSWORD, UserFactory

pytestmark = pytest.mark.django_db


def test_passwords_are_hashed_with_argon2():
    user = UserFactory()

    assert identify_hasher(user.password).algorithm == "argon2"
    assert user.check_password(PASSWORD)


def test_sign_in_with_a_session_and_it_is_audited():
    user = UserFactory(username="lan")
    client = Client()

    response = client.post("/login/", {"username": "lan", "password": PASSWORD})

    assert response.status_code == 302
    assert client.get("/").status_code == 200
    assert AuditEvent.objects.filter(actor=user, action="sign_in").count() == 1


def test_token_for_correct_credentials_then_use_it(api_client):
    UserFactory(username="minh")

    token = api_client.post(
        "/api/v1/auth/token/", {"username": "minh", "password": PASSWORD}, format="json"
    ).json()["token"]
    api_client.credentials(HTTP_AUTHORIZATION=f"Token {token}")

    assert api_client.get("/api/v1/me/").json()["username"] == "minh"


def test_wrong_password_gets_a_clear_400(api_client):
    UserFactory(username="minh")

    response = api_client.post(
        "/api/v1/auth/token/", {"username": "minh", "password": "nope"}, format="json"
    )

    assert response.status_code == 400
    assert response.json()["code"] == "bad_credentials"


def test_missing_fields_are_named(api_client):
    response = api_client.post("/api/v1/auth/token/", {}, format="json")

    assert response.status_code == 400
    assert set(response.json()["fields"]) == {"username", "password"}


def test_revoking_the_token_signs_the_client_out(api_client):
    UserFactory(username="minh")
    token = api_client.post(
        "/api/v1/auth/token/", {"username": "minh", "password": PASSWORD}, format="json"
    ).json()["token"]
    api_client.credentials(HTTP_AUTHORIZATION=f"Token {token}")

    assert api_client.delete("/api/v1/auth/token/").status_code == 204
    assert api_client.get("/api/v1/me/").status_code == 401


def _fail(client, username, address):
    return client.post("/login/", {"username": username, "password": "wrong"}, REMOTE_ADDR=address)


def test_repeated_failures_lock_out_that_address_for_that_account_only(settings):
    settings.AXES_FAILURE_LIMIT = 3
    UserFactory(username="patient.an")
    attacker = Client()

    for _ in range(3):
        _fail(attacker, "patient.an", "203.0.113.9")
    attacker_again = attacker.post(
        "/login/", {"username": "patient.an", "password": PASSWORD}, REMOTE_ADDR="203.0.113.9"
    )
    patient_at_home = Client().post(
        "/login/", {"username": "patient.an", "password": PASSWORD}, REMOTE_ADDR="198.51.100.7"
    )

    assert attacker_again.status_code == 429
    assert patient_at_home.status_code == 302


def test_a_lockout_ends_by_itself_after_the_cool_off(settings):
    from axes.models import AccessAttempt

    settings.AXES_FAILURE_LIMIT = 2
    UserFactory(username="patient.binh")
    client = Client()
    for _ in range(2):
        _fail(client, "patient.binh", "203.0.113.10")

    AccessAttempt.objects.update(
        attempt_time=timezone.now() - settings.AXES_COOLOFF_TIME - timezone.timedelta(seconds=1)
    )
    response = client.post(
        "/login/", {"username": "patient.binh", "password": PASSWORD}, REMOTE_ADDR="203.0.113.10"
    )

    assert response.status_code == 302


def test_token_endpoint_is_throttled_by_lockout_too(settings, api_client):
    settings.AXES_FAILURE_LIMIT = 2
    UserFactory(username="minh")
    for _ in range(2):
        api_client.post("/api/v1/auth/token/", {"username": "minh", "password": "x"}, format="json")

    response = api_client.post(
        "/api/v1/auth/token/", {"username": "minh", "password": PASSWORD}, format="json"
    )

    assert response.status_code == 429
    assert response.json()["code"] == "locked_out"
