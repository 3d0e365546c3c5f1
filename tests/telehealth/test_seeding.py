"""``manage.py seed_network``: a realistic demo network, built once, with working demo logins."""

from __future__ import annotations

import re
from io import StringIO

import pytest
from django.conf import settings as django_settings
from django.core.management import CommandError, call_command
from django.db.models import Exists, OuterRef
from django.test import Client
from django.urls import reverse

from telehealth.models import (
    CareRelationship,
    ClinicianProfile,
    CoordinatorAssignment,
    Facility,
    FacilityLevel,
    FacilitySpecialty,
    PatientProfile,
    Province,
    User,
)
from telehealth.seeding import (
    DEMO_LOGINS,
    FAMILY_NAMES_NORTH,
    facility_limits,
    geography_from_database,
    network_seed,
    plan_network,
)

SMALL = {
    "seed": 7,
    "facilities": 150,
    "doctors": 200,
    "health_workers": None,
    "patients": 150,
    "coordinators": None,
}


@pytest.fixture
def small_network(db):
    return network_seed(**SMALL)


@pytest.fixture
def debug_on(settings):
    settings.DEBUG = True
    return settings


def _snapshot() -> dict[str, int]:
    return {
        "facilities": Facility.objects.count(),
        "offerings": FacilitySpecialty.objects.count(),
        "users": User.objects.count(),
        "clinicians": ClinicianProfile.objects.count(),
        "coordinators": CoordinatorAssignment.objects.count(),
        "patients": PatientProfile.objects.count(),
        "care": CareRelationship.objects.count(),
    }


def test_the_network_has_the_facilities_asked_for_in_every_province(small_network):
    # given a seed asking for 150 facilities (see the fixture)
    # when it has run
    # then there are exactly 150, and every province has a general hospital, a district
    # centre and a commune station
    assert Facility.objects.count() == 150
    assert small_network.facilities == 150
    for province in Province.objects.all():
        levels = set(province.facilities.values_list("level", flat=True))
        assert {FacilityLevel.PROVINCIAL, FacilityLevel.DISTRICT, FacilityLevel.COMMUNE} <= levels
    assert set(Facility.objects.values_list("level", flat=True)) == set(FacilityLevel.values)
    assert Province.objects.filter(facilities__isnull=True).count() == 0


def test_asking_for_fewer_facilities_than_a_complete_network_builds_the_smallest_one(db):
    # given a request below the smallest network that covers the whole country
    minimum, _maximum = facility_limits(geography_from_database())
    # when seeding
    network_seed(**{**SMALL, "facilities": 10, "doctors": 20, "patients": 5})
    # then that smallest network is built, never less
    assert Facility.objects.count() == minimum
    assert Province.objects.filter(facilities__isnull=True).count() == 0


def test_central_hospitals_are_the_real_ones_in_their_provinces(small_network):
    # given a seeded network, then the national hospitals are where they really are
    expected = {
        "Bệnh viện Bạch Mai": "01",
        "Bệnh viện Hữu nghị Việt Đức": "01",
        "Bệnh viện K": "01",
        "Bệnh viện Nhi Trung ương": "01",
        "Bệnh viện Phụ sản Trung ương": "01",
        "Bệnh viện Mắt Trung ương": "01",
        "Bệnh viện Nội tiết Trung ương": "01",
        "Bệnh viện Trung ương Huế": "46",
        "Bệnh viện Chợ Rẫy": "79",
        "Bệnh viện Thống Nhất": "79",
        "Bệnh viện Đa khoa Trung ương Cần Thơ": "92",
        "Bệnh viện Đa khoa Trung ương Quảng Nam": "48",
        "Bệnh viện Trung ương Thái Nguyên": "19",
    }
    central = dict(
        Facility.objects.filter(level=FacilityLevel.CENTRAL).values_list("name", "province__code")
    )
    for name, province_code in expected.items():
        assert central.get(name) == province_code, name
    assert not Facility.objects.filter(level=FacilityLevel.CENTRAL, is_telehealth_hub=False)
    bach_mai = Facility.objects.get(name="Bệnh viện Bạch Mai")
    assert bach_mai.offerings.count() >= 20
    assert bach_mai.search_name == "benh vien bach mai"


def test_referrals_go_one_level_up(small_network):
    # given a seeded network, then each facility's parent is one level above it:
    # commune station → district centre (same province) → the province's general
    # hospital → a central hub; central hubs have none
    for facility in Facility.objects.select_related("parent"):
        if facility.level == FacilityLevel.CENTRAL:
            assert facility.parent is None
            continue
        assert facility.parent.level == facility.level - 1, facility.code
        if facility.level in (FacilityLevel.COMMUNE, FacilityLevel.DISTRICT):
            assert facility.parent.province_id == facility.province_id, facility.code
        if facility.level == FacilityLevel.DISTRICT:
            assert facility.parent.code.endswith("-001")  # the general hospital


def test_commune_stations_are_named_and_placed_after_their_commune(small_network):
    # given a seeded network, then each commune station sits in its own commune
    stations = Facility.objects.filter(level=FacilityLevel.COMMUNE).select_related("commune")
    communes = [s.commune_id for s in stations]
    assert len(communes) == len(set(communes))
    for station in stations:
        assert station.name == f"Trạm Y tế {station.commune.name}"
        assert station.code == f"TYT-{station.commune.code}"
        assert station.province_id == station.commune.province_id
        assert abs(station.latitude - station.commune.latitude) < 0.01
        assert abs(station.longitude - station.commune.longitude) < 0.01


def test_doctors_practise_only_specialties_their_facility_offers(small_network):
    # given a seeded network
    through = ClinicianProfile.specialties.through
    offered = FacilitySpecialty.objects.filter(
        facility_id=OuterRef("clinicianprofile__facility_id"), specialty_id=OuterRef("specialty_id")
    )
    # then no doctor holds a specialty their facility does not offer
    assert not through.objects.exclude(Exists(offered)).exists()
    # and every seeded doctor holds one or two
    doctors = ClinicianProfile.objects.filter(
        kind=ClinicianProfile.Kind.DOCTOR, user__username__startswith="bs"
    )
    assert doctors.count() == 200
    for doctor in doctors.prefetch_related("specialties"):
        assert 1 <= len(doctor.specialties.all()) <= 2
        assert re.fullmatch(r"CCHN-\d{6}", doctor.licence_number)
        assert doctor.title in {"BS.", "ThS.BS.", "TS.BS.", "PGS.TS.BS."}


def test_health_workers_staff_every_commune_station_by_default(small_network):
    # given the default of one health worker per commune station
    stations = Facility.objects.filter(level=FacilityLevel.COMMUNE)
    # then each station has one
    for station in stations:
        assert station.clinicians.filter(
            kind=ClinicianProfile.Kind.HEALTH_WORKER, user__username__startswith="ytx"
        ).exists(), station.code


def test_every_patient_has_a_primary_clinician_at_a_commune_station_in_their_province(
    small_network,
):
    # given a seeded network
    patients = PatientProfile.objects.filter(user__username__startswith="bn")
    assert patients.count() == 150
    # then each patient has a primary relationship with a clinician at a commune station
    # of their own province
    for patient in patients.select_related("home_commune"):
        primary = patient.care_relationships.select_related(
            "member__clinician_profile__facility"
        ).get(kind=CareRelationship.Kind.PRIMARY, source="seed")
        facility = primary.member.clinician_profile.facility
        assert facility.level == FacilityLevel.COMMUNE
        assert facility.province_id == patient.home_commune.province_id


def test_people_have_vietnamese_names_and_readable_usernames(small_network):
    # given a seeded network
    family_names = {name for name, _ in FAMILY_NAMES_NORTH}
    patterns = {"bs": r"bs\d{6}", "ytx": r"ytx\d{6}", "bn": r"bn\d{6}", "dp": r"dp\d{6}"}
    seeded = User.objects.exclude(username__startswith="demo.")
    # then each name is a Vietnamese full name: family name first, then middle and given
    for username, full_name in seeded.values_list("username", "full_name"):
        assert any(re.fullmatch(pattern, username) for pattern in patterns.values()), username
        words = full_name.split()
        assert len(words) >= 3
        assert words[0] in family_names
    patient = PatientProfile.objects.filter(user__username="bn000001").get()
    assert 0 <= (2026 - patient.date_of_birth.year) <= 96
    assert patient.sex in {"female", "male"}
    assert re.fullmatch(r"(0\d{9})", patient.user.phone)
    assert patient.health_insurance_number == "" or re.fullmatch(
        r"[A-Z]{2}\d{13}", patient.health_insurance_number
    )


def test_coordinators_cover_every_province_and_every_hospital_by_default(small_network):
    # given the default number of coordinators
    assignments = CoordinatorAssignment.objects.exclude(user__username__startswith="demo.")
    # then every province and every central or provincial hospital has one
    assert set(assignments.filter(province__isnull=False).values_list("province", flat=True)) == (
        set(Province.objects.values_list("id", flat=True))
    )
    hospitals = Facility.objects.filter(level__lte=FacilityLevel.PROVINCIAL)
    assert set(assignments.filter(facility__isnull=False).values_list("facility", flat=True)) == (
        set(hospitals.values_list("id", flat=True))
    )


def test_the_same_seed_plans_the_same_network_and_another_seed_a_different_one(db):
    # given the same geography
    geography = geography_from_database()
    sizes = {k: v for k, v in SMALL.items() if k != "seed"}

    def plan(seed: int) -> tuple[list, list, list]:
        network = plan_network(geography=geography, seed=seed, **sizes)
        return (
            [(f.code, f.name, f.parent_code, f.latitude, f.offerings) for f in network.facilities],
            [
                (c.person.username, c.person.full_name, c.specialty_codes)
                for c in network.clinicians
            ],
            [
                (p.person.username, p.person.full_name, p.primary_clinician_username)
                for p in network.patients
            ],
        )

    # when planning twice with one seed and once with another
    first, again, other = plan(7), plan(7), plan(8)
    # then the same seed gives the same codes, names and people, another seed does not
    assert first == again
    station_codes = {row[0] for row in first[0] if row[0].startswith("TYT-")}
    assert station_codes != {row[0] for row in other[0] if row[0].startswith("TYT-")}
    assert [row[1] for row in first[1]] != [row[1] for row in other[1]]
    assert [row[0] for row in first[1]] == [row[0] for row in other[1]]  # usernames by count


def test_a_second_run_creates_nothing_new(small_network):
    # given a seeded network
    before = _snapshot()
    # when seeding again, even with other sizes
    summary = network_seed(**{**SMALL, "seed": 99, "facilities": 300, "patients": 400})
    # then nothing is added, and the summary says what exists
    assert _snapshot() == before
    assert not summary.created_network
    assert summary.rows_inserted == 0
    assert summary.facilities == 150
    assert summary.patients == 150 + 1  # and the demo patient


def test_demo_logins_sign_in_through_the_login_page(small_network):
    # given a seeded network
    for username, _role in DEMO_LOGINS:
        client = Client()
        # when each demo login signs in with the demo password
        response = client.post(
            reverse("login"),
            {"username": username, "password": django_settings.TELEHEALTH_DEMO_PASSWORD},
        )
        # then the sign-in succeeds
        assert response.status_code == 302, username
        assert client.session.get("_auth_user_id") == str(User.objects.get(username=username).pk)


def test_seeded_people_can_sign_in_with_the_demo_password(small_network):
    # given one shared password hash for every seeded account
    client = Client()
    response = client.post(
        reverse("login"),
        {"username": "bn000001", "password": django_settings.TELEHEALTH_DEMO_PASSWORD},
    )
    assert response.status_code == 302
    assert client.session.get("_auth_user_id")


def test_demo_accounts_hold_the_roles_their_names_promise(small_network):
    # given a seeded network
    def user(username: str) -> User:
        return User.objects.select_related("clinician_profile__facility").get(username=username)

    central = user("demo.doctor.central").clinician_profile
    assert central.facility.name == "Bệnh viện Bạch Mai"
    assert list(central.specialties.values_list("code", flat=True)) == ["cardiology"]
    for username, level in (
        ("demo.doctor.provincial", FacilityLevel.PROVINCIAL),
        ("demo.doctor.district", FacilityLevel.DISTRICT),
        ("demo.doctor.commune", FacilityLevel.COMMUNE),
    ):
        profile = user(username).clinician_profile
        assert profile.kind == ClinicianProfile.Kind.DOCTOR
        assert profile.facility.level == level
        assert profile.facility.province.code == "01"
    health_worker = user("demo.healthworker").clinician_profile
    assert health_worker.kind == ClinicianProfile.Kind.HEALTH_WORKER
    assert health_worker.facility == user("demo.doctor.commune").clinician_profile.facility
    assert user("demo.coordinator").coordinator_assignments.get().province.code == "01"
    admin = user("demo.admin")
    assert admin.is_staff
    assert admin.is_superuser
    # and the demo patient is cared for by the demo commune team
    patient = User.objects.get(username="demo.patient").patient_profile
    members = set(
        patient.care_relationships.filter(kind=CareRelationship.Kind.PRIMARY).values_list(
            "member__username", flat=True
        )
    )
    assert members == {"demo.healthworker", "demo.doctor.commune"}


def test_missing_demo_logins_come_back_on_the_next_run(small_network):
    # given a seeded network whose demo administrator was renamed away
    User.objects.filter(username="demo.admin").update(username="someone.else")
    # when seeding again
    summary = network_seed(**SMALL)
    # then the administrator is back, and nothing else was created
    assert summary.demo_logins_created == 1
    assert User.objects.filter(username="demo.admin", is_superuser=True).exists()


def test_the_command_prints_progress_and_a_summary(db, debug_on):
    # given an empty network
    out = StringIO()
    # when running the command
    call_command(
        "seed_network", facilities=150, doctors=40, patients=30, coordinators=5, stdout=out
    )
    # then it reports what it built and the demo logins
    output = out.getvalue()
    assert "150 facilities" in output
    assert "40 doctors" in output
    assert "30 patients" in output
    assert "demo.doctor.central" in output
    assert CoordinatorAssignment.objects.exclude(user__username__startswith="demo.").count() == 5


def test_demo_only_on_an_empty_database_builds_the_smallest_network_and_no_crowd(db, debug_on):
    # given an empty network
    minimum, _maximum = facility_limits(geography_from_database())
    # when asking only for the demo logins
    call_command("seed_network", demo_only=True, stdout=StringIO())
    # then there are facilities for them to work in, the demo logins, and nobody else
    assert Facility.objects.count() == minimum
    assert set(User.objects.values_list("username", flat=True)) == {u for u, _ in DEMO_LOGINS}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"doctors": -1}, "--doctors must be zero or more"),
        ({"patients": -5}, "--patients must be zero or more"),
        ({"facilities": 99_999}, "at most"),
        ({"patients": 10, "doctors": 0, "health_workers": 0}, "care for them"),
        ({"demo_only": True, "patients": 5}, "--demo-only cannot be combined with --patients"),
    ],
)
def test_impossible_requests_are_refused_with_a_clear_message(db, debug_on, options, message):
    # given an empty network, when asking for something that cannot be built
    with pytest.raises(CommandError, match=message):
        call_command("seed_network", stdout=StringIO(), **options)
    # then nothing was created
    assert not Facility.objects.exists()
    assert not User.objects.exists()


def test_the_command_refuses_to_run_outside_debug(db, settings):
    # given production settings
    settings.DEBUG = False
    # when seeding, then it refuses: every seeded account has the public demo password
    with pytest.raises(CommandError, match="DEBUG"):
        call_command("seed_network", demo_only=True, stdout=StringIO())
    assert not User.objects.exists()
