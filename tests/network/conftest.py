"""Helpers for the doctor network's tests: clinicians at each level, links between them."""

from __future__ import annotations

import pytest

from network import services
from network.models import Mentorship
from telehealth.models import ClinicianProfile, FacilityLevel
from tests.factories import ClinicianFactory, CoordinatorFactory, FacilityFactory, province


def clinician(
    level: int,
    *,
    kind: str = ClinicianProfile.Kind.DOCTOR,
    specialties: tuple[str, ...] = ("internal-medicine",),
    province_code: str = "01",
    latitude: float | None = None,
    longitude: float | None = None,
    facility=None,
    name: str | None = None,
) -> ClinicianProfile:
    """A clinician at a new facility of ``level`` (or at ``facility``)."""
    if facility is None:
        where = province(province_code)
        facility = FacilityFactory(
            level=level,
            province=where,
            latitude=where.latitude if latitude is None else latitude,
            longitude=where.longitude if longitude is None else longitude,
        )
    extra = {"user__full_name": name} if name else {}
    return ClinicianFactory(
        facility=facility,
        kind=kind,
        specialty_codes=list(specialties) if kind == ClinicianProfile.Kind.DOCTOR else None,
        **extra,
    )


def link(mentor: ClinicianProfile, mentee: ClinicianProfile, *, accept: bool = True) -> Mentorship:
    """A mentorship asked for by the mentee, accepted by the mentor (unless told not to)."""
    mentorship = services.do_mentorship_request(
        mentor=mentor, mentee=mentee, requested_by=mentee.user
    )
    if accept:
        mentorship = services.do_mentorship_accept(
            mentorship_id=mentorship.pk, accepted_by=mentor.user
        )
    return mentorship


@pytest.fixture
def central(db):
    return clinician(FacilityLevel.CENTRAL, specialties=("cardiology", "internal-medicine"))


@pytest.fixture
def provincial(db):
    return clinician(FacilityLevel.PROVINCIAL, specialties=("cardiology",))


@pytest.fixture
def district(db):
    return clinician(FacilityLevel.DISTRICT)


@pytest.fixture
def commune_worker(db):
    return clinician(FacilityLevel.COMMUNE, kind=ClinicianProfile.Kind.HEALTH_WORKER)


@pytest.fixture
def coordinator(db):
    """A coordinator of Hà Nội (province 01)."""
    return CoordinatorFactory(province=province("01")).user


@pytest.fixture
def notifications(monkeypatch):
    """Live notifications sent by network.services, as (user id, name, data)."""
    sent: list[tuple[int, str, dict]] = []
    monkeypatch.setattr(
        services,
        "notify_user_on_commit",
        lambda user_id, *, name, data: sent.append((user_id, name, data)),
    )
    return sent
