"""Fuzzing the REST API from its own OpenAPI schema (schemathesis, in process over WSGI).

Signed in (API token) as a patient, a doctor and a coordinator, every operation
of ``/api/schema/`` gets generated requests: valid ones and ones that break the
schema. Path parameters name real objects of the security world (the patient's
thread, visit, referral...), so bodies and queries reach the services instead of
stopping at a 404. Nothing may answer 5xx, and every documented answer must
match its schema and content type.

Bounded for CI: a fixed number of examples per operation and role, derandomized
(the same examples every run), no deadline. Each request runs in a savepoint
rolled back afterwards, so examples do not change the world for each other.
"""

from __future__ import annotations

import os

import hypothesis
import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections, transaction
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from rest_framework.authtoken.models import Token
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
)

from tests.security.world import World, build_world

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]

EXAMPLES = int(os.environ.get("API_FUZZ_EXAMPLES", "6"))
ROLES = ("patient", "doctor", "coord_facility")
CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]

# Not fuzzed, and why:
SKIP = {
    # The relay node's upload: a signed token is checked before the body is read;
    # tests/consult/test_recording.py covers it with real WebM files.
    ("POST", "/api/v1/visits/{visit_id}/recordings/upload/"),
    # Revoking the token would sign the fuzzer out (it is rolled back, but
    # throttled sign-ins are not): the matrix covers both methods.
    ("DELETE", "/api/v1/auth/token/"),
    ("POST", "/api/v1/auth/token/"),
}


def path_values(world: World) -> dict[str, object]:
    return {
        "thread_id": world.thread.pk,
        "user_id": world.patient.user.pk,
        "attachment_id": str(world.attachment.pk),
        "visit_id": world.visit.pk,
        "snapshot_id": str(world.snapshot.pk),
        "mentorship_id": world.mentorship.pk,
        "run_id": world.run.pk,
        "conference_id": world.conference.pk,
        "referral_id": world.referral.pk,
        "queue_id": world.queue.pk,
        "exception_id": world.availability_exception.pk,
        "appointment_id": world.appointment.pk,
        "entry_id": world.waitlist_entry.pk,
        "patient_id": world.patient.pk,
        "code": world.facility.code,
        "access_id": world.extra.get("break_glass_access_id", 0),
        "request_id": world.extra.get("data_request_id", 0),
    }


@pytest.fixture(scope="module")
def _keep_the_connection():
    """Requests here run inside the test's transaction, as Django's test client runs
    them: the WSGI handler must not close the connection at the end of a request."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture(scope="module")
def fuzz_world(_keep_the_connection, django_db_setup, django_db_blocker):
    with django_db_blocker.unblock():
        with transaction.atomic():
            world = build_world(recording=False)
            tokens = {
                role: Token.objects.get_or_create(user=world.users[role])[0].key for role in ROLES
            }
            yield world, tokens
            transaction.set_rollback(True)


@pytest.fixture(scope="module")
def api_schema(_keep_the_connection, django_db_setup, django_db_blocker):
    with django_db_blocker.unblock():
        return schemathesis.openapi.from_wsgi("/api/schema/?format=json", get_wsgi_application())


def _operations(schema) -> list:
    found = []
    for result in schema.get_all_operations():
        operation = result.ok()
        if (operation.method.upper(), operation.path) not in SKIP:
            found.append(operation)
    return found


def test_the_schema_lists_the_api(api_schema):
    paths = {op.path for op in _operations(api_schema)}
    assert "/api/v1/referrals/" in paths
    assert len(paths) > 60


def _fuzzer(strategy, label: str, headers: dict[str, str], failures: list[str]):
    """A hypothesis test of one operation: each request in a savepoint rolled back."""

    @given(case=strategy)
    @hypothesis_settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
        phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
    )
    def fuzz(case):
        with transaction.atomic():
            response = case.call(headers=headers)
            transaction.set_rollback(True)
        try:
            case.validate_response(response, checks=CHECKS)
        except FailureGroup as error:  # one line per failing operation is enough
            failures.append(f"{label}: {str(error).strip()[:600]}")
            raise

    return fuzz


@pytest.mark.parametrize("role", ROLES)
def test_no_server_errors_and_answers_match_the_schema(api_schema, fuzz_world, role):
    world, tokens = fuzz_world
    known = path_values(world)
    headers = {"Authorization": f"Token {tokens[role]}"}
    failures: list[str] = []

    for operation in _operations(api_schema):
        names = {p.name for p in operation.path_parameters}
        fixed = {name: known[name] for name in names if name in known}
        # The person in /network/people/{user_id}/ is a clinician.
        if operation.path.startswith("/api/v1/network/people/"):
            fixed["user_id"] = world.doctor.user.pk
        label = f"{operation.method.upper()} {operation.path} as {role}"
        # Both kinds of data: within the schema, and breaking it.
        strategy = operation.as_strategy(
            GenerationMode.POSITIVE, path_parameters=fixed
        ) | operation.as_strategy(GenerationMode.NEGATIVE, path_parameters=fixed)

        fuzz = _fuzzer(strategy, label, headers, failures)
        try:
            fuzz()
        except FailureGroup:  # collected in failures, reported together below
            pass
    assert not failures, "\n\n".join(dict.fromkeys(failures))


# Found by the fuzzer: PostgreSQL refuses NUL characters (in text and in JSON), and
# those answers were 500s. A value the database refuses is bad input: 400.
@pytest.mark.parametrize(
    "url",
    [
        "/api/v1/provinces/?legacy_code=%00",
        "/api/v1/queues/?facility=%00",
        "/api/v1/communes/?province=%00",
        "/api/v1/referrals/?status=%00",
    ],
)
def test_a_nul_character_in_a_search_is_bad_input(api_client, doctor, url):
    api_client.force_authenticate(doctor.user)

    response = api_client.get(url)

    assert response.status_code == 400
    assert response.json()["code"] == "invalid"


def test_a_nul_character_in_a_json_object_is_bad_input_and_nothing_is_stored(
    api_client, patient, doctor
):
    from consult import visit_services
    from consult.models import VisitParticipant

    visit = visit_services.visit_schedule(patient=patient, host=doctor.user, scheduled_start=None)
    visit_services.visit_open_waiting_room(visit_id=visit.pk, by=doctor.user)
    api_client.force_authenticate(patient.user)

    response = api_client.post(
        f"/api/v1/visits/{visit.pk}/check-in/",
        {"camera": True, "connection": {"rtt\u0000": 1}},
        format="json",
    )

    assert response.status_code == 400
    member = VisitParticipant.objects.get(visit=visit, user=patient.user)
    assert member.checked_in_at is None
