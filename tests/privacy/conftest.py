"""Helpers for privacy/'s tests: a visit in progress with a stand-in relay node, and the
scheduler's small referral network (tests/scheduler/conftest.py) with fresh routing."""

from __future__ import annotations

import pytest

from consult import media, visit_services
from tests.factories import CoordinatorFactory, province


@pytest.fixture(autouse=True)
def _fresh_routing(monkeypatch: pytest.MonkeyPatch):
    """The router caches the network per process; these tests build their own."""
    from scheduler import policy, routing

    monkeypatch.setattr(routing, "INDEX_TTL_SECONDS", 0.0)
    monkeypatch.setattr(policy, "SERVICE_LEVELS_TTL_SECONDS", 0.0)
    routing.network_index_reset()
    yield
    routing.network_index_reset()


@pytest.fixture
def relay_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple]:
    """What the web tier asks of the relay node (no node runs here)."""
    calls: list[tuple] = []
    monkeypatch.setattr(
        media,
        "relay_recording_start",
        lambda **kw: calls.append(("start", kw["room"], kw["recording"])) or True,
    )
    monkeypatch.setattr(
        media,
        "relay_recording_stop",
        lambda **kw: calls.append(("stop", kw["room"], kw["recording"])) or True,
    )
    return calls


@pytest.fixture
def live_visit(patient, doctor):
    """A video visit in progress between ``patient`` and ``doctor``, both saying yes to
    recording it in the visit."""
    visit = visit_services.visit_schedule(patient=patient, host=doctor.user, scheduled_start=None)
    visit_services.visit_open_waiting_room(visit_id=visit.pk, by=doctor.user)
    visit_services.visit_check_in(visit_id=visit.pk, user=patient.user, device_check={})
    visit_services.visit_admit(visit_id=visit.pk, user_id=patient.user.pk, by=doctor.user)
    for user in (doctor.user, patient.user):
        visit_services.visit_recording_consent(visit_id=visit.pk, user=user, consent=True)
    visit.refresh_from_db()
    return visit


@pytest.fixture
def coordinator(db):
    """A coordinator of Hà Nội, where the factories' patients live (the first commune)."""
    from telehealth.models import Commune

    home = Commune.objects.order_by("code").first()
    return CoordinatorFactory(province=home.province).user


@pytest.fixture
def far_coordinator(db):
    """A coordinator of a province with no tie to the patient."""
    from telehealth.models import Commune

    home = Commune.objects.order_by("code").first()
    other = next(code for code in ("79", "46") if code != home.province.code)
    return CoordinatorFactory(province=province(other)).user
