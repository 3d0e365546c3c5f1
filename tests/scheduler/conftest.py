"""Helpers for the scheduler's tests: a small referral network in Hà Nội, referrals, schedules.

The network: a commune health station (level 4) and, going outwards, two
district centres (level 3, about 10 and 30 km away), a provincial hospital
(level 2, about 15 km) and a central hospital (level 1, about 20 km), all
offering cardiology with small daily capacities, so tests can fill them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import time

import pytest
from django.utils import timezone

from scheduler.models import Referral, Schedule, WeeklyHours
from telehealth.models import CareRelationship, ClinicianProfile, Facility, FacilityLevel
from tests.factories import (
    ClinicianFactory,
    CoordinatorFactory,
    FacilityFactory,
    PatientFactory,
    province,
)

BASE_LAT, BASE_LON = 21.0, 105.8
KM = 1 / 111.0  # degrees of latitude per km


@pytest.fixture(autouse=True)
def _policy_and_network_cache(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch):
    """Transactional tests elsewhere empty every table, the policy tables too; put the
    defaults back. The router caches the network and the service levels per process
    for a second: tests change them and want the change seen at once."""
    from scheduler import policy, routing

    monkeypatch.setattr(routing, "INDEX_TTL_SECONDS", 0.0)
    monkeypatch.setattr(policy, "SERVICE_LEVELS_TTL_SECONDS", 0.0)
    routing.network_index_reset()
    uses_db = {"db", "transactional_db", "django_db_setup"} & set(request.fixturenames)
    marker = request.node.get_closest_marker("django_db")
    if uses_db or marker is not None:
        transactional = "transactional_db" in request.fixturenames or (
            marker is not None and marker.kwargs.get("transaction")
        )
        request.getfixturevalue("transactional_db" if transactional else "db")
        from scheduler.models import LevelRule, ServiceLevel
        from scheduler.policy import policy_defaults_load

        policy_defaults_load(LevelRule=LevelRule, ServiceLevel=ServiceLevel)
    yield
    routing.network_index_reset()


def place(km_north: float, km_east: float = 0.0) -> dict[str, float]:
    return {"latitude": BASE_LAT + km_north * KM, "longitude": BASE_LON + km_east * KM}


@dataclass
class Network:
    station: Facility
    district_near: Facility
    district_far: Facility
    provincial: Facility
    central: Facility
    referrer: ClinicianProfile
    cardiologist_near: ClinicianProfile
    cardiologist_provincial: ClinicianProfile

    @property
    def all(self) -> list[Facility]:
        return [
            self.station,
            self.district_near,
            self.district_far,
            self.provincial,
            self.central,
        ]


def build_network(capacity: dict[str, int] | None = None) -> Network:
    capacity = {"near": 2, "far": 3, "provincial": 5, "central": 50, **(capacity or {})}
    hanoi = province("01")
    station = FacilityFactory(
        code="TYT-T1",
        name="Trạm Y tế xã Thử",
        level=FacilityLevel.COMMUNE,
        province=hanoi,
        offers={"general-practice": 5},
        **place(0),
    )
    near = FacilityFactory(
        code="TTYT-GAN",
        name="Trung tâm Y tế Gần",
        level=FacilityLevel.DISTRICT,
        province=hanoi,
        offers={"cardiology": capacity["near"], "general-practice": 10},
        **place(10),
    )
    far = FacilityFactory(
        code="TTYT-XA",
        name="Trung tâm Y tế Xa",
        level=FacilityLevel.DISTRICT,
        province=hanoi,
        offers={"cardiology": capacity["far"]},
        **place(30),
    )
    provincial = FacilityFactory(
        code="BV-TINH",
        name="Bệnh viện Tỉnh",
        level=FacilityLevel.PROVINCIAL,
        province=hanoi,
        offers={"cardiology": capacity["provincial"]},
        **place(-15),
    )
    central = FacilityFactory(
        code="BV-TW",
        name="Bệnh viện Trung ương",
        level=FacilityLevel.CENTRAL,
        province=hanoi,
        offers={"cardiology": capacity["central"]},
        **place(-20),
    )
    referrer = ClinicianFactory(
        facility=station, kind=ClinicianProfile.Kind.HEALTH_WORKER, user__full_name="Y sĩ Hoa"
    )
    cardiologist_near = ClinicianFactory(
        facility=near, specialty_codes=["cardiology"], user__full_name="BS. Gần"
    )
    cardiologist_provincial = ClinicianFactory(
        facility=provincial, specialty_codes=["cardiology"], user__full_name="BS. Tỉnh"
    )
    return Network(
        station=station,
        district_near=near,
        district_far=far,
        provincial=provincial,
        central=central,
        referrer=referrer,
        cardiologist_near=cardiologist_near,
        cardiologist_provincial=cardiologist_provincial,
    )


@pytest.fixture
def network(db) -> Network:
    return build_network()


def patient_of(clinician: ClinicianProfile, **kwargs):
    """A patient in the clinician's care (a primary care relationship)."""
    patient = PatientFactory(**kwargs)
    CareRelationship.objects.create(
        patient=patient, member=clinician.user, kind=CareRelationship.Kind.PRIMARY, source="test"
    )
    return patient


def submitted_referral(
    network: Network,
    *,
    priority: str = "routine",
    specialty: str = "cardiology",
    mode: str = "remote_first",
    patient=None,
    route: bool = True,
) -> Referral:
    """A referral from the commune station, submitted (and routed, unless ``route=False``)."""
    from scheduler import services

    patient = patient or patient_of(network.referrer)
    referral = services.referral_create(
        by=network.referrer.user,
        patient_id=patient.pk,
        specialty_code=specialty,
        reason="Đau ngực khi gắng sức",
        clinical_summary="Nam 58 tuổi, tăng huyết áp, đau ngực 2 tuần.",
        priority=priority,
        requested_mode=mode,
    )
    services.referral_submit(referral_id=referral.pk, by=network.referrer.user)
    if route:
        services.referral_route(referral_id=referral.pk)
    referral.refresh_from_db()
    return referral


def province_coordinator(code: str = "01"):
    return CoordinatorFactory(province=province(code)).user


def facility_coordinator(facility: Facility):
    return CoordinatorFactory(facility=facility, province=None).user


def weekly_schedule(
    clinician: ClinicianProfile,
    *,
    visit_minutes: int = 20,
    buffer_minutes: int = 10,
    hours: tuple[time, time] = (time(8, 0), time(11, 0)),
    lunch: tuple[time, time] | None = None,
    weekdays: range = range(7),
) -> Schedule:
    schedule = Schedule.objects.create(
        clinician=clinician,
        visit_minutes=visit_minutes,
        buffer_minutes=buffer_minutes,
        horizon_days=7,
        updated_at=timezone.now(),
    )
    for weekday in weekdays:
        WeeklyHours.objects.create(
            schedule=schedule, weekday=weekday, start_time=hours[0], end_time=hours[1]
        )
        if lunch:
            WeeklyHours.objects.create(
                schedule=schedule,
                weekday=weekday,
                start_time=lunch[0],
                end_time=lunch[1],
                kind=WeeklyHours.Kind.BREAK,
            )
    return schedule
