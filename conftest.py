"""Root fixtures, shared by every test folder.

With TELEHEALTH_TEST_REQUIRE_SERVICES=1 (set by .ci/run) a missing PostgreSQL
or Redis fails the run at once instead of letting tests skip.
"""

from __future__ import annotations

import os

import pytest


def pytest_configure(config: pytest.Config) -> None:
    from django.conf import settings

    # Sockets run their queries on pool threads; persistent connections there
    # would outlive each test and keep the test database from being dropped.
    settings.DATABASES["default"]["CONN_MAX_AGE"] = 0
    if os.environ.get("TELEHEALTH_TEST_REQUIRE_SERVICES") != "1":
        return
    database_url = os.environ.get("DATABASE_URL", "")
    redis_url = os.environ.get("REDIS_URL", "")
    if not database_url.startswith(("postgres://", "postgresql://")):
        pytest.exit("TELEHEALTH_TEST_REQUIRE_SERVICES=1 but DATABASE_URL is not PostgreSQL", 3)
    if not redis_url:
        pytest.exit("TELEHEALTH_TEST_REQUIRE_SERVICES=1 but REDIS_URL is not set", 3)
    import psycopg
    import redis

    try:
        # The server must answer; the test database itself is created by pytest-django.
        psycopg.connect(
            database_url.replace("postgres://", "postgresql://", 1),
            dbname="postgres",
            connect_timeout=5,
        ).close()
    except Exception as exc:
        pytest.exit(f"PostgreSQL is required and unreachable: {exc}", 3)
    try:
        redis.Redis.from_url(redis_url, socket_connect_timeout=5).ping()
    except Exception as exc:
        pytest.exit(f"Redis is required and unreachable: {exc}", 3)


def _services_required() -> bool:
    return os.environ.get("TELEHEALTH_TEST_REQUIRE_SERVICES") == "1"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked postgres/redis skip when the service is not configured (local runs on
    the embedded default), and never skip when services are required (CI)."""
    from django.conf import settings

    if _services_required():
        return
    for item in items:
        if "postgres" in item.keywords and not settings.DATABASE_IS_POSTGRES:
            item.add_marker(pytest.mark.skip(reason="needs DATABASE_URL=postgres://..."))
        if "redis" in item.keywords and not settings.REDIS_URL:
            item.add_marker(pytest.mark.skip(reason="needs REDIS_URL"))


@pytest.fixture
def api_client():
    from rest_framework.test import APIClient

    return APIClient()


@pytest.fixture
def celery_eager():
    """Run Celery tasks in-process for the duration of a test."""
    from telehealth.celery import app

    previous = app.conf.task_always_eager
    app.conf.task_always_eager = True
    yield app
    app.conf.task_always_eager = previous


@pytest.fixture
def patient(db):
    from tests.factories import PatientFactory

    return PatientFactory()


@pytest.fixture
def doctor(db):
    from tests.factories import ClinicianFactory

    return ClinicianFactory(specialty_codes=["internal-medicine"])


@pytest.fixture(autouse=True)
def _reference_data_after_flush(request: pytest.FixtureRequest) -> None:
    """Transactional tests empty every table afterwards; reload the reference data
    (provinces, communes, specialties) that the migration put there."""
    marker = request.node.get_closest_marker("django_db")
    transactional = "transactional_db" in request.fixturenames or (
        marker is not None and marker.kwargs.get("transaction")
    )
    if not transactional:
        return
    request.getfixturevalue("transactional_db")
    from telehealth.models import Commune, LegacyProvince, Province, Specialty
    from telehealth.reference import reference_data_load

    if not Commune.objects.exists() or not Specialty.objects.exists():
        reference_data_load(
            Province=Province, LegacyProvince=LegacyProvince, Commune=Commune, Specialty=Specialty
        )


@pytest.fixture(autouse=True)
def _fresh_realtime_state():
    """Hubs and presence stores belong to one event loop; every test gets new ones."""
    yield
    from consult.hub import reset_hubs
    from consult.presence import reset_presence

    reset_hubs()
    reset_presence()


@pytest.fixture(scope="session", autouse=True)
def _end_stray_connections(request: pytest.FixtureRequest, django_db_setup, django_db_blocker):
    """Pool threads of async tests may still hold a PostgreSQL connection when the
    session ends; end them so the test database can be dropped."""
    yield
    from django.db import connection

    if connection.vendor == "postgresql":
        with django_db_blocker.unblock(), connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
