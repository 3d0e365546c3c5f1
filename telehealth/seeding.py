"""A realistic, deterministic demo network: facilities, clinicians, coordinators and patients.

``network_seed`` is the one entry point (``manage.py seed_network`` is a thin wrapper).
Everything it builds is planned first by pure functions (``plan_network`` and helpers)
from the reference geography and a seed, then written with ``bulk_create`` in one
transaction. The same seed and sizes always give the same codes, names, usernames,
coordinates and relationships; only the database ids and creation timestamps differ.

Every seeded account shares the demo password (``settings.TELEHEALTH_DEMO_PASSWORD``),
hashed once: this is demo data and must never be loaded into a production database.
"""

from __future__ import annotations

import math
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import TextIO

import numpy as np
from django.conf import settings
from django.contrib.auth.hashers import make_password
from django.db import connection, transaction
from django.db.models import Count, Q
from django.utils import timezone

from telehealth.models import (
    CareRelationship,
    ClinicianProfile,
    Commune,
    CoordinatorAssignment,
    Facility,
    FacilityLevel,
    FacilitySpecialty,
    LegacyProvince,
    PatientProfile,
    PrivacyOfficerAssignment,
    Province,
    Sex,
    Specialty,
    User,
    search_key,
)

BATCH_SIZE = 5000
# Users are wide rows; a smaller batch keeps each INSERT statement a sensible size.
USER_BATCH_SIZE = 2000
SEED_SOURCE = "seed"
# Ages and dates of birth are computed against a fixed day, not today, so that a seed
# gives the same people whenever it is run.
REFERENCE_DATE = date(2026, 1, 1)
MAX_PEOPLE_PER_KIND = 999_999  # usernames and licence numbers carry six digits
# Any fixed number: the PostgreSQL advisory lock that stops two seeds racing.
_SEED_LOCK_KEY = 7_331_002
SEEDED_CODE_PREFIXES = ("TW-", "T-", "KV-", "TYT-")

# The sizes the national default aims at; smaller requests scale districts and extra
# provincial hospitals down in proportion.
NATIONAL_FACILITIES = 1500
COMMUNES_PER_DISTRICT_CENTRE = 9
# A specialised provincial hospital refers to a central hub of its specialty unless a
# general hub offering it is at least this much nearer.
SPECIALISED_HUB_PREFERENCE_KM = 250.0

DEMO_LOGINS: list[tuple[str, str]] = [
    ("demo.patient", "Patient"),
    ("demo.doctor.central", "Doctor, central hospital (Bạch Mai, cardiology)"),
    ("demo.doctor.provincial", "Doctor, provincial hospital"),
    ("demo.doctor.district", "Doctor, district / regional health centre"),
    ("demo.doctor.commune", "Doctor, commune health station"),
    ("demo.healthworker", "Commune health worker"),
    ("demo.coordinator", "Coordinator, Hà Nội"),
    ("demo.privacy", "Privacy officer, Bạch Mai (reviews emergency access)"),
    ("demo.admin", "Administrator"),
]


class SeedRequestError(ValueError):
    """The sizes asked for cannot be built; the message says why, for a person to read."""


# --- Reference tables -------------------------------------------------------------------

ALL_SPECIALTIES_ORDER = (
    "general-practice",
    "internal-medicine",
    "cardiology",
    "respiratory",
    "gastroenterology",
    "endocrinology",
    "nephrology",
    "neurology",
    "infectious-disease",
    "pediatrics",
    "obstetrics",
    "general-surgery",
    "orthopedics",
    "oncology",
    "emergency",
    "intensive-care",
    "dermatology",
    "ophthalmology",
    "ent",
    "psychiatry",
    "traditional-medicine",
    "radiology",
    "rehabilitation",
    "tuberculosis",
)
# A general central hub may leave out a few of these; never the others.
CENTRAL_OPTIONAL = ("psychiatry", "dermatology", "tuberculosis", "traditional-medicine", "ent")
PROVINCIAL_CORE = (
    "general-practice",
    "internal-medicine",
    "cardiology",
    "pediatrics",
    "obstetrics",
    "general-surgery",
    "emergency",
    "intensive-care",
    "radiology",
)
DISTRICT_CORE = (
    "general-practice",
    "internal-medicine",
    "pediatrics",
    "obstetrics",
    "general-surgery",
    "emergency",
    "traditional-medicine",
)
COMMUNE_CORE = ("general-practice", "traditional-medicine")


@dataclass(frozen=True)
class CentralHospital:
    province_code: str
    name: str
    latitude: float
    longitude: float
    # Empty for a general hospital (it offers nearly everything).
    focus: tuple[str, ...] = ()
    support: tuple[str, ...] = ()

    @property
    def is_general(self) -> bool:
        return not self.focus


# Ministry of Health hospitals, at their main sites, in the post-2025 provinces.
CENTRAL_HOSPITALS: tuple[CentralHospital, ...] = (
    CentralHospital("01", "Bệnh viện Bạch Mai", 21.0003, 105.8407),
    CentralHospital(
        "01",
        "Bệnh viện Hữu nghị Việt Đức",
        21.0285,
        105.8465,
        focus=("general-surgery", "orthopedics", "neurology"),
        support=("emergency", "intensive-care", "radiology", "nephrology", "cardiology"),
    ),
    CentralHospital(
        "01",
        "Bệnh viện K",
        21.0263,
        105.8457,
        focus=("oncology",),
        support=("radiology", "general-surgery", "internal-medicine", "intensive-care"),
    ),
    CentralHospital(
        "01",
        "Bệnh viện Nhi Trung ương",
        21.0247,
        105.8078,
        focus=("pediatrics",),
        support=("emergency", "intensive-care", "infectious-disease", "respiratory", "radiology"),
    ),
    CentralHospital(
        "01",
        "Bệnh viện Phụ sản Trung ương",
        21.0261,
        105.8533,
        focus=("obstetrics",),
        support=("pediatrics", "emergency", "intensive-care", "radiology"),
    ),
    CentralHospital(
        "01",
        "Bệnh viện Mắt Trung ương",
        21.0186,
        105.8487,
        focus=("ophthalmology",),
        support=("emergency", "radiology"),
    ),
    CentralHospital(
        "01",
        "Bệnh viện Nội tiết Trung ương",
        20.9410,
        105.8470,
        focus=("endocrinology",),
        support=("internal-medicine", "cardiology", "nephrology", "general-surgery"),
    ),
    CentralHospital("01", "Bệnh viện E", 21.0505, 105.7898),
    CentralHospital("01", "Bệnh viện Hữu Nghị", 21.0178, 105.8525),
    CentralHospital(
        "01",
        "Bệnh viện Phổi Trung ương",
        21.0436,
        105.8170,
        focus=("tuberculosis", "respiratory"),
        support=("infectious-disease", "intensive-care", "radiology"),
    ),
    CentralHospital(
        "01",
        "Bệnh viện Bệnh Nhiệt đới Trung ương",
        21.1338,
        105.7786,
        focus=("infectious-disease",),
        support=("intensive-care", "gastroenterology", "pediatrics", "emergency"),
    ),
    CentralHospital(
        "01",
        "Bệnh viện Da liễu Trung ương",
        21.0031,
        105.8404,
        focus=("dermatology",),
        support=("infectious-disease", "internal-medicine"),
    ),
    CentralHospital(
        "01",
        "Bệnh viện Tai Mũi Họng Trung ương",
        21.0022,
        105.8410,
        focus=("ent",),
        support=("general-surgery", "radiology"),
    ),
    CentralHospital(
        "01",
        "Bệnh viện Y học cổ truyền Trung ương",
        21.0215,
        105.8449,
        focus=("traditional-medicine",),
        support=("rehabilitation", "internal-medicine", "neurology"),
    ),
    CentralHospital(
        "01",
        "Bệnh viện Tâm thần Trung ương 1",
        20.8690,
        105.8530,
        focus=("psychiatry",),
        support=("neurology", "internal-medicine"),
    ),
    CentralHospital("19", "Bệnh viện Trung ương Thái Nguyên", 21.5930, 105.8430),
    CentralHospital("22", "Bệnh viện Việt Nam - Thụy Điển Uông Bí", 21.0390, 106.7720),
    CentralHospital(
        "25",
        "Bệnh viện 74 Trung ương",
        21.2320,
        105.7100,
        focus=("tuberculosis", "respiratory"),
        support=("infectious-disease", "radiology"),
    ),
    CentralHospital(
        "38",
        "Bệnh viện 71 Trung ương",
        19.7800,
        105.8300,
        focus=("tuberculosis", "respiratory"),
        support=("infectious-disease", "radiology"),
    ),
    CentralHospital("46", "Bệnh viện Trung ương Huế", 16.4620, 107.5880),
    CentralHospital("48", "Bệnh viện Đa khoa Trung ương Quảng Nam", 15.4350, 108.6440),
    CentralHospital(
        "52",
        "Bệnh viện Phong - Da liễu Trung ương Quy Hòa",
        13.7350,
        109.2130,
        focus=("dermatology",),
        support=("infectious-disease", "rehabilitation"),
    ),
    CentralHospital(
        "75",
        "Bệnh viện Tâm thần Trung ương 2",
        10.9480,
        106.8250,
        focus=("psychiatry",),
        support=("neurology", "internal-medicine"),
    ),
    CentralHospital("79", "Bệnh viện Chợ Rẫy", 10.7578, 106.6595),
    CentralHospital("79", "Bệnh viện Thống Nhất", 10.7916, 106.6530),
    CentralHospital("92", "Bệnh viện Đa khoa Trung ương Cần Thơ", 10.0290, 105.7560),
)

# Where each province's administration (and so its general hospital) sits since July 2025.
PROVINCIAL_SEATS: dict[str, tuple[float, float]] = {
    "01": (21.0285, 105.8542),  # Hà Nội
    "04": (22.6660, 106.2580),  # Cao Bằng
    "08": (21.8230, 105.2140),  # Tuyên Quang
    "11": (21.3860, 103.0170),  # Điện Biên Phủ
    "12": (22.3960, 103.4580),  # Lai Châu
    "14": (21.3270, 103.9140),  # Sơn La
    "15": (21.7050, 104.8750),  # Yên Bái, seat of the new Lào Cai
    "19": (21.5940, 105.8480),  # Thái Nguyên
    "20": (21.8530, 106.7610),  # Lạng Sơn
    "22": (20.9510, 107.0800),  # Hạ Long
    "24": (21.2730, 106.1940),  # Bắc Giang, seat of the new Bắc Ninh
    "25": (21.3220, 105.4020),  # Việt Trì
    "31": (20.8450, 106.6880),  # Hải Phòng
    "33": (20.6460, 106.0510),  # Hưng Yên
    "37": (20.2540, 105.9750),  # Ninh Bình
    "38": (19.8070, 105.7760),  # Thanh Hóa
    "40": (18.6790, 105.6810),  # Vinh
    "42": (18.3430, 105.9050),  # Hà Tĩnh
    "44": (17.4680, 106.6220),  # Đồng Hới, seat of the new Quảng Trị
    "46": (16.4630, 107.5900),  # Huế
    "48": (16.0540, 108.2020),  # Đà Nẵng
    "51": (15.1200, 108.7920),  # Quảng Ngãi
    "52": (13.7760, 109.2240),  # Quy Nhơn, seat of the new Gia Lai
    "56": (12.2380, 109.1960),  # Nha Trang
    "66": (12.6680, 108.0380),  # Buôn Ma Thuột
    "68": (11.9400, 108.4580),  # Đà Lạt
    "75": (10.9570, 106.8430),  # Biên Hòa
    "79": (10.7760, 106.7000),  # Hồ Chí Minh
    "80": (10.5350, 106.4130),  # Tân An, seat of the new Tây Ninh
    "82": (10.3600, 106.3650),  # Mỹ Tho, seat of the new Đồng Tháp
    "86": (10.2540, 105.9720),  # Vĩnh Long
    "91": (10.0120, 105.0810),  # Rạch Giá, seat of the new An Giang
    "92": (10.0340, 105.7880),  # Cần Thơ
    "96": (9.1770, 105.1520),  # Cà Mau
}


@dataclass(frozen=True)
class ProvincialSpecialisedKind:
    code_suffix: str
    name_prefix: str
    focus: tuple[str, ...]
    support: tuple[str, ...]


# In the order a province usually opens them: the first ones exist almost everywhere.
PROVINCIAL_SPECIALISED: tuple[ProvincialSpecialisedKind, ...] = (
    ProvincialSpecialisedKind(
        "SN",
        "Bệnh viện Sản - Nhi",
        ("obstetrics", "pediatrics"),
        ("emergency", "intensive-care", "radiology", "general-surgery"),
    ),
    ProvincialSpecialisedKind(
        "YHCT",
        "Bệnh viện Y học cổ truyền",
        ("traditional-medicine",),
        ("rehabilitation", "internal-medicine", "neurology"),
    ),
    ProvincialSpecialisedKind(
        "LP",
        "Bệnh viện Lao và Bệnh phổi",
        ("tuberculosis", "respiratory"),
        ("infectious-disease", "radiology"),
    ),
    ProvincialSpecialisedKind(
        "TT", "Bệnh viện Tâm thần", ("psychiatry",), ("neurology", "internal-medicine")
    ),
    ProvincialSpecialisedKind("M", "Bệnh viện Mắt", ("ophthalmology",), ("emergency",)),
    ProvincialSpecialisedKind("DL", "Bệnh viện Da liễu", ("dermatology",), ("infectious-disease",)),
    ProvincialSpecialisedKind(
        "PHCN",
        "Bệnh viện Phục hồi chức năng",
        ("rehabilitation",),
        ("traditional-medicine", "orthopedics", "neurology"),
    ),
    ProvincialSpecialisedKind(
        "UB",
        "Bệnh viện Ung bướu",
        ("oncology",),
        ("radiology", "general-surgery", "internal-medicine"),
    ),
)

# Family names with their approximate share of the population. Hoàng and Vũ are
# pronounced Huỳnh and Võ from Đà Nẵng southwards, where those spellings dominate.
FAMILY_NAMES_NORTH: tuple[tuple[str, float], ...] = (
    ("Nguyễn", 38.4),
    ("Trần", 11.0),
    ("Lê", 9.5),
    ("Phạm", 7.1),
    ("Hoàng", 4.6),
    ("Huỳnh", 0.5),
    ("Phan", 4.5),
    ("Vũ", 3.4),
    ("Võ", 0.5),
    ("Đặng", 2.1),
    ("Bùi", 2.0),
    ("Đỗ", 1.4),
    ("Hồ", 1.3),
    ("Ngô", 1.3),
    ("Dương", 1.0),
    ("Lý", 0.5),
    ("Đào", 0.4),
    ("Đinh", 0.4),
    ("Trịnh", 0.4),
    ("Lương", 0.3),
    ("Mai", 0.3),
    ("Tạ", 0.2),
)
_SOUTH_SWAP = {"Hoàng": 0.5, "Huỳnh": 4.6, "Vũ": 0.5, "Võ": 3.4}
FAMILY_NAMES_SOUTH: tuple[tuple[str, float], ...] = tuple(
    (name, _SOUTH_SWAP.get(name, weight)) for name, weight in FAMILY_NAMES_NORTH
)
SOUTHERN_PROVINCES_FROM = "48"  # province codes at or after Đà Nẵng

MIDDLE_NAMES_MALE = tuple(
    ("Văn Văn Văn Đức Minh Quốc Hữu Thanh Công Quang Xuân Hoàng Tuấn Gia Ngọc Trung").split()
)
MIDDLE_NAMES_FEMALE = tuple(
    ("Thị Thị Thị Ngọc Thu Thanh Minh Phương Kim Hồng Bích Mai Khánh Diệu Bảo").split()
)
GIVEN_NAMES_MALE = tuple(
    (
        "An Anh Bảo Bình Cường Dũng Duy Đạt Đức Hải Hiếu Hòa Hoàng Hùng Huy Khang Khoa "
        "Kiên Lâm Long Minh Nam Nghĩa Nhân Phong Phúc Quân Quang Sơn Tài Thắng Thành "
        "Thịnh Toàn Trung Tú Tuấn Việt Vinh Vũ"
    ).split()
)
GIVEN_NAMES_FEMALE = tuple(
    (
        "An Anh Chi Dung Duyên Giang Hà Hạnh Hằng Hiền Hoa Hồng Huệ Hương Huyền Lan Linh "
        "Loan Mai My Nga Ngân Ngọc Nhung Oanh Phương Quyên Tâm Thảo Thu Trang Trinh Tuyết "
        "Uyên Vân Yến"
    ).split()
)
MOBILE_PREFIXES = tuple(
    (
        "032 033 034 035 036 037 038 039 056 058 070 076 077 078 079 081 082 083 084 085 "
        "086 088 089 090 091 093 094 096 097 098"
    ).split()
)

DOCTOR_TITLES = ("BS.", "ThS.BS.", "TS.BS.", "PGS.TS.BS.")
DOCTOR_TITLE_WEIGHTS: dict[int, tuple[float, ...]] = {
    FacilityLevel.CENTRAL: (0.25, 0.35, 0.25, 0.15),
    FacilityLevel.PROVINCIAL: (0.45, 0.35, 0.15, 0.05),
    FacilityLevel.DISTRICT: (0.75, 0.22, 0.03, 0.0),
    FacilityLevel.COMMUNE: (0.93, 0.07, 0.0, 0.0),
}
DOCTOR_SHARE_BY_LEVEL: dict[int, float] = {
    FacilityLevel.CENTRAL: 0.15,
    FacilityLevel.PROVINCIAL: 0.30,
    FacilityLevel.DISTRICT: 0.35,
    FacilityLevel.COMMUNE: 0.20,
}
HEALTH_WORKER_TITLES = (("Y sĩ", 0.5), ("Điều dưỡng", 0.3), ("Hộ sinh", 0.2))

# Five-year age bands 0-4 ... 90-95, roughly Vietnam's population pyramid.
AGE_BAND_WEIGHTS = (
    7.5,
    8.0,
    7.5,
    7.0,
    7.0,
    7.5,
    8.0,
    8.0,
    7.5,
    7.0,
    6.0,
    5.5,
    4.5,
    3.5,
    2.5,
    1.5,
    1.0,
    0.6,
    0.3,
)
HEALTH_INSURANCE_COVERAGE = 0.93


# --- Geography ----------------------------------------------------------------------


@dataclass(frozen=True)
class ProvinceInfo:
    code: str
    name: str
    short_name: str
    is_city: bool
    latitude: float
    longitude: float


@dataclass(frozen=True)
class CommuneInfo:
    code: str
    name: str
    kind: str
    province_code: str
    latitude: float
    longitude: float

    @property
    def short_name(self) -> str:
        """The name without its kind: "Ba Đình" for "Phường Ba Đình"."""
        return self.name.removeprefix(f"{self.kind} ").strip() or self.name


@dataclass(frozen=True)
class Geography:
    """What the planner needs to know about the country, ordered by code."""

    provinces: tuple[ProvinceInfo, ...]
    communes: tuple[CommuneInfo, ...]
    legacy_codes_by_province: dict[str, tuple[str, ...]]
    specialty_codes: tuple[str, ...]


def geography_from_database() -> Geography:
    """The reference data as loaded by migration 0002."""
    provinces = tuple(
        ProvinceInfo(p.code, p.name, p.short_name, p.is_city, p.latitude, p.longitude)
        for p in Province.objects.order_by("code")
    )
    communes = tuple(
        CommuneInfo(code, name, kind, province_code, latitude, longitude)
        for code, name, kind, province_code, latitude, longitude in Commune.objects.order_by(
            "code"
        ).values_list("code", "name", "kind", "province__code", "latitude", "longitude")
    )
    legacy: dict[str, list[str]] = defaultdict(list)
    for code, province_code in LegacyProvince.objects.order_by("code").values_list(
        "code", "province__code"
    ):
        legacy[province_code].append(code)
    return Geography(
        provinces=provinces,
        communes=communes,
        legacy_codes_by_province={k: tuple(v) for k, v in legacy.items()},
        specialty_codes=tuple(Specialty.objects.order_by("code").values_list("code", flat=True)),
    )


# --- Plans ----------------------------------------------------------------------------


@dataclass(slots=True)
class FacilityPlan:
    code: str
    name: str
    level: int
    province_code: str
    commune_code: str | None
    latitude: float
    longitude: float
    address: str
    is_telehealth_hub: bool
    offerings: dict[str, int]  # specialty code → daily referral capacity
    # What the facility is known for; its parent is chosen among hubs that offer it.
    focus: tuple[str, ...] = ()
    parent_code: str | None = None


@dataclass(frozen=True, slots=True)
class PersonPlan:
    username: str
    full_name: str
    sex: str
    phone: str


@dataclass(frozen=True, slots=True)
class ClinicianPlan:
    person: PersonPlan
    kind: str
    facility_code: str
    specialty_codes: tuple[str, ...]
    licence_number: str
    title: str


@dataclass(frozen=True, slots=True)
class CoordinatorPlan:
    person: PersonPlan
    facility_code: str | None
    province_code: str | None


@dataclass(frozen=True, slots=True)
class PatientPlan:
    person: PersonPlan
    date_of_birth: date
    health_insurance_number: str
    home_commune_code: str
    address: str
    primary_clinician_username: str | None


@dataclass(frozen=True)
class NetworkPlan:
    facilities: tuple[FacilityPlan, ...]
    clinicians: tuple[ClinicianPlan, ...]
    coordinators: tuple[CoordinatorPlan, ...]
    patients: tuple[PatientPlan, ...]

    def facilities_by_level(self) -> dict[int, int]:
        counts = Counter(f.level for f in self.facilities)
        return {level: counts.get(level, 0) for level in FacilityLevel.values}


@dataclass(frozen=True)
class FacilityLayout:
    """How many facilities of each kind a request turns into."""

    central: int
    provincial_general: int
    provincial_specialised: int
    district: int
    commune: int

    @property
    def total(self) -> int:
        return (
            self.central
            + self.provincial_general
            + self.provincial_specialised
            + self.district
            + self.commune
        )


@dataclass(frozen=True)
class SeedSummary:
    """What the network holds after a seed, and what this run added."""

    created_network: bool
    facilities_by_level: dict[int, int]
    doctors: int
    health_workers: int
    coordinators: int
    patients: int
    care_relationships: int
    rows_inserted: int
    demo_logins_created: int
    elapsed_seconds: float

    @property
    def facilities(self) -> int:
        return sum(self.facilities_by_level.values())

    def describe(self) -> str:
        levels = ", ".join(
            f"{FacilityLevel(level).name.lower()} {count:,}"
            for level, count in sorted(self.facilities_by_level.items())
        )
        return (
            f"{self.facilities:,} facilities ({levels}), {self.doctors:,} doctors, "
            f"{self.health_workers:,} health workers, {self.coordinators:,} coordinators, "
            f"{self.patients:,} patients"
        )


# --- Pure helpers ---------------------------------------------------------------------


def apportion(
    *,
    total: int,
    weights: Sequence[float],
    minimum: Sequence[int],
    maximum: Sequence[int],
) -> list[int]:
    """Split ``total`` into integers, one per weight, each within its bounds.

    Guarantees: the parts sum to ``total``; part i lies in [minimum[i], maximum[i]];
    what is above the minimums goes in proportion to the weights (largest remainder,
    ties to the lower index). Raises ``ValueError`` if the bounds cannot hold ``total``.
    """
    if not sum(minimum) <= total <= sum(maximum):
        raise ValueError(f"{total} does not fit between {sum(minimum)} and {sum(maximum)}")
    parts = list(minimum)
    remaining = total - sum(parts)
    while remaining > 0:
        open_indices = [i for i in range(len(parts)) if parts[i] < maximum[i]]
        open_weights = [max(float(weights[i]), 0.0) for i in open_indices]
        weight_sum = sum(open_weights)
        if weight_sum <= 0:
            open_weights = [1.0] * len(open_indices)
            weight_sum = float(len(open_indices))
        fractions: list[tuple[float, int]] = []
        granted = 0
        for i, weight in zip(open_indices, open_weights, strict=True):
            quota = remaining * weight / weight_sum
            take = min(int(quota), maximum[i] - parts[i])
            parts[i] += take
            granted += take
            fractions.append((quota - int(quota), i))
        remaining -= granted
        for _fraction, i in sorted(fractions, key=lambda item: (-item[0], item[1])):
            if remaining == 0:
                break
            if parts[i] < maximum[i]:
                parts[i] += 1
                remaining -= 1
    return parts


def haversine_km(
    latitudes_a: np.ndarray,
    longitudes_a: np.ndarray,
    latitudes_b: np.ndarray,
    longitudes_b: np.ndarray,
) -> np.ndarray:
    """Great-circle distances in km, shape (len(a), len(b))."""
    lat_a = np.radians(np.asarray(latitudes_a, dtype=float))[:, None]
    lon_a = np.radians(np.asarray(longitudes_a, dtype=float))[:, None]
    lat_b = np.radians(np.asarray(latitudes_b, dtype=float))[None, :]
    lon_b = np.radians(np.asarray(longitudes_b, dtype=float))[None, :]
    half_chord = (
        np.sin((lat_b - lat_a) / 2) ** 2
        + np.cos(lat_a) * np.cos(lat_b) * np.sin((lon_b - lon_a) / 2) ** 2
    )
    return 2 * 6371.0 * np.arcsin(np.sqrt(np.clip(half_chord, 0.0, 1.0)))


def nearest_index(
    *, latitudes: np.ndarray, longitudes: np.ndarray, to_latitudes, to_longitudes
) -> np.ndarray:
    """For each point, the index of the nearest target point (ties to the lower index)."""
    return haversine_km(latitudes, longitudes, to_latitudes, to_longitudes).argmin(axis=1)


def _rng(seed: int, stream: int) -> np.random.Generator:
    # One stream per part of the plan, so asking for more patients leaves the
    # facilities and doctors exactly as they were.
    return np.random.default_rng([seed, stream])


def _region_of(province_code: str) -> str:
    return "south" if province_code >= SOUTHERN_PROVINCES_FROM else "north"


def _province_title(province: ProvinceInfo) -> str:
    """How a hospital name ends: "tỉnh Cà Mau", or "Thành phố Hà Nội" for a city."""
    return f"Thành phố {province.short_name}" if province.is_city else f"tỉnh {province.short_name}"


def _weighted_pick(rng: np.random.Generator, options: Sequence, weights: Sequence[float]):
    probabilities = np.asarray(weights, dtype=float)
    return options[int(rng.choice(len(options), p=probabilities / probabilities.sum()))]


# --- Facilities -----------------------------------------------------------------------


def _communes_by_province(geography: Geography) -> dict[str, list[CommuneInfo]]:
    grouped: dict[str, list[CommuneInfo]] = defaultdict(list)
    for commune in geography.communes:
        grouped[commune.province_code].append(commune)
    return grouped


def _ideal_district_counts(geography: Geography) -> dict[str, int]:
    grouped = _communes_by_province(geography)
    return {
        p.code: min(
            len(grouped[p.code]), max(1, round(len(grouped[p.code]) / COMMUNES_PER_DISTRICT_CENTRE))
        )
        for p in geography.provinces
    }


def _ideal_specialised_counts(geography: Geography) -> dict[str, int]:
    """Extra provincial hospitals per province: bigger provinces and cities have more."""
    grouped = _communes_by_province(geography)
    return {
        p.code: min(
            len(PROVINCIAL_SPECIALISED),
            max(0, (len(grouped[p.code]) - 30) // 25 + (2 if p.is_city else 0)),
        )
        for p in geography.provinces
    }


def _central_hospitals_for(geography: Geography) -> list[CentralHospital]:
    known = {p.code for p in geography.provinces}
    return [h for h in CENTRAL_HOSPITALS if h.province_code in known]


def facility_limits(geography: Geography) -> tuple[int, int]:
    """The fewest and the most facilities a seed can build on this geography.

    The fewest: every central hub, one general hospital, one district centre and one
    commune station per province. The most: every commune has a station, with the full
    set of district centres and specialised provincial hospitals.
    """
    provinces = len(geography.provinces)
    central = len(_central_hospitals_for(geography))
    minimum = central + 3 * provinces
    maximum = (
        central
        + provinces
        + sum(_ideal_specialised_counts(geography).values())
        + sum(_ideal_district_counts(geography).values())
        + len(geography.communes)
    )
    return minimum, maximum


def facility_layout(*, geography: Geography, facilities: int) -> FacilityLayout:
    """How many facilities of each kind ``facilities`` turns into (at least the minimum).

    Below the national size, district centres and specialised provincial hospitals
    scale down with the request; commune stations take the rest.
    """
    minimum, maximum = facility_limits(geography)
    if facilities > maximum:
        raise SeedRequestError(
            f"--facilities {facilities:,} is more than this country can hold: at most "
            f"{maximum:,} (one commune health station per commune)."
        )
    provinces = len(geography.provinces)
    central = len(_central_hospitals_for(geography))
    ideal_district = sum(_ideal_district_counts(geography).values())
    ideal_specialised = sum(_ideal_specialised_counts(geography).values())
    commune_limit = len(geography.communes)

    remaining = max(facilities, minimum) - central - provinces
    national_remaining = NATIONAL_FACILITIES - central - provinces
    scale = min(1.0, remaining / national_remaining)
    district = min(ideal_district, max(provinces, round(ideal_district * scale)))
    specialised = min(ideal_specialised, round(ideal_specialised * scale))
    commune = remaining - district - specialised
    if commune < provinces:
        shortfall = provinces - commune
        cut = min(shortfall, specialised)
        specialised -= cut
        district -= shortfall - cut
        commune = provinces
    if commune > commune_limit:
        overflow = commune - commune_limit
        extra_districts = min(overflow, ideal_district - district)
        district += extra_districts
        specialised += overflow - extra_districts
        commune = commune_limit
    return FacilityLayout(central, provinces, specialised, district, commune)


def _central_offerings(hospital: CentralHospital, rng: np.random.Generator) -> dict[str, int]:
    if hospital.is_general:
        dropped = set(
            rng.choice(CENTRAL_OPTIONAL, size=int(rng.integers(0, 3)), replace=False).tolist()
        )
        return {
            code: int(rng.integers(30, 121))
            for code in ALL_SPECIALTIES_ORDER
            if code not in dropped
        }
    offerings = {code: int(rng.integers(60, 121)) for code in hospital.focus}
    offerings.update({code: int(rng.integers(30, 61)) for code in hospital.support})
    return offerings


def _provincial_general_offerings(rng: np.random.Generator) -> dict[str, int]:
    others = [code for code in ALL_SPECIALTIES_ORDER if code not in PROVINCIAL_CORE]
    extra = int(rng.integers(10, 17)) - len(PROVINCIAL_CORE)
    chosen = set(PROVINCIAL_CORE) | set(rng.choice(others, size=extra, replace=False).tolist())
    return {code: int(rng.integers(10, 51)) for code in ALL_SPECIALTIES_ORDER if code in chosen}


def _spread_sites(
    *, latitudes: np.ndarray, longitudes: np.ndarray, count: int, rng: np.random.Generator
) -> list[int]:
    """Indices of ``count`` distinct points spread over the area: k-means centres,
    each snapped to the nearest unused point."""
    total = len(latitudes)
    if count >= total:
        return list(range(total))
    # Equirectangular projection: good enough to cluster within one province.
    points = np.column_stack(
        [latitudes, longitudes * math.cos(math.radians(float(np.mean(latitudes))))]
    )
    centres = points[rng.choice(total, size=count, replace=False)].copy()
    for _ in range(20):
        labels = ((points[:, None, :] - centres[None, :, :]) ** 2).sum(axis=2).argmin(axis=1)
        for cluster in range(count):
            members = points[labels == cluster]
            if len(members):
                centres[cluster] = members.mean(axis=0)
    distances = ((centres[:, None, :] - points[None, :, :]) ** 2).sum(axis=2)
    used: set[int] = set()
    for cluster in range(count):
        for index in np.argsort(distances[cluster], kind="stable"):
            if int(index) not in used:
                used.add(int(index))
                break
    return sorted(used)


def _nearest_commune(communes: Sequence[CommuneInfo], latitude: float, longitude: float):
    index = nearest_index(
        latitudes=np.array([latitude]),
        longitudes=np.array([longitude]),
        to_latitudes=np.array([c.latitude for c in communes]),
        to_longitudes=np.array([c.longitude for c in communes]),
    )[0]
    return communes[int(index)]


def _jitter(rng: np.random.Generator) -> tuple[float, float]:
    # About ±300 m: stations sit near, not exactly on, the commune's centroid.
    offset = rng.uniform(-0.003, 0.003, size=2)
    return float(offset[0]), float(offset[1])


def plan_facilities(*, geography: Geography, seed: int, facilities: int) -> list[FacilityPlan]:
    """The facility network: levels, places, names, codes, parents and offerings.

    Guarantees: at least ``facilities`` facilities (or the minimum, if more), in every
    province; each commune station in a distinct commune; parents follow the levels
    (commune → nearest district centre in the province → the province's general
    hospital → nearest central hub; central hubs have none).
    """
    layout = facility_layout(geography=geography, facilities=facilities)
    rng = _rng(seed, 1)
    offered = set(geography.specialty_codes)
    provinces = {p.code: p for p in geography.provinces}
    communes_of = _communes_by_province(geography)
    plans: list[FacilityPlan] = []

    def keep_offered(offerings: dict[str, int]) -> dict[str, int]:
        return {code: capacity for code, capacity in offerings.items() if code in offered}

    # Central hubs.
    central_plans: list[FacilityPlan] = []
    numbers: Counter[str] = Counter()
    for hospital in _central_hospitals_for(geography):
        numbers[hospital.province_code] += 1
        province = provinces[hospital.province_code]
        commune = _nearest_commune(
            communes_of[province.code], hospital.latitude, hospital.longitude
        )
        central_plans.append(
            FacilityPlan(
                code=f"TW-{province.code}-{numbers[province.code]:03d}",
                name=hospital.name,
                level=FacilityLevel.CENTRAL,
                province_code=province.code,
                commune_code=commune.code,
                latitude=hospital.latitude,
                longitude=hospital.longitude,
                address=f"{commune.name}, {province.name}",
                is_telehealth_hub=True,
                offerings=keep_offered(_central_offerings(hospital, rng)),
                focus=hospital.focus,
            )
        )
    plans.extend(central_plans)

    # Provincial hospitals: one general hospital each, then specialised ones.
    ideal_specialised = _ideal_specialised_counts(geography)
    candidates = sorted(
        (
            (rank, -len(communes_of[code]), code)
            for code, count in ideal_specialised.items()
            for rank in range(count)
        )
    )
    specialised_ranks: dict[str, int] = Counter(
        code for _rank, _size, code in candidates[: layout.provincial_specialised]
    )
    general_by_province: dict[str, FacilityPlan] = {}
    for province in geography.provinces:
        seat = PROVINCIAL_SEATS.get(province.code, (province.latitude, province.longitude))
        commune = _nearest_commune(communes_of[province.code], *seat)
        general = FacilityPlan(
            code=f"T-{province.code}-001",
            name=f"Bệnh viện Đa khoa {_province_title(province)}",
            level=FacilityLevel.PROVINCIAL,
            province_code=province.code,
            commune_code=commune.code,
            latitude=seat[0],
            longitude=seat[1],
            address=f"{commune.name}, {province.name}",
            is_telehealth_hub=True,
            offerings=keep_offered(_provincial_general_offerings(rng)),
        )
        general_by_province[province.code] = general
        plans.append(general)
        for number, kind in enumerate(
            PROVINCIAL_SPECIALISED[: specialised_ranks.get(province.code, 0)], start=2
        ):
            latitude_offset, longitude_offset = (rng.uniform(-0.02, 0.02, size=2)).tolist()
            latitude, longitude = seat[0] + latitude_offset, seat[1] + longitude_offset
            commune = _nearest_commune(communes_of[province.code], latitude, longitude)
            offerings = {code: int(rng.integers(20, 51)) for code in kind.focus}
            offerings.update({code: int(rng.integers(10, 31)) for code in kind.support})
            plans.append(
                FacilityPlan(
                    code=f"T-{province.code}-{number:03d}",
                    name=f"{kind.name_prefix} {_province_title(province)}",
                    level=FacilityLevel.PROVINCIAL,
                    province_code=province.code,
                    commune_code=commune.code,
                    latitude=latitude,
                    longitude=longitude,
                    address=f"{commune.name}, {province.name}",
                    is_telehealth_hub=False,
                    offerings=keep_offered(offerings),
                    focus=kind.focus,
                )
            )

    # Parents of provincial hospitals: a general hospital reports to the nearest general
    # hub. A specialised one reports to the nearest hub that offers its specialty, and
    # prefers a hub specialised in it unless a capable one is much nearer.
    central_latitudes = np.array([c.latitude for c in central_plans])
    central_longitudes = np.array([c.longitude for c in central_plans])
    for plan in plans:
        if plan.level != FacilityLevel.PROVINCIAL:
            continue
        distances = haversine_km(
            np.array([plan.latitude]),
            np.array([plan.longitude]),
            central_latitudes,
            central_longitudes,
        )[0]
        if plan.focus:
            capable = np.array(
                [all(code in hub.offerings for code in plan.focus) for hub in central_plans]
            )
            specialised = np.array(
                [bool(set(hub.focus) & set(plan.focus)) for hub in central_plans]
            )
            distances = distances - SPECIALISED_HUB_PREFERENCE_KM * specialised
        else:
            capable = np.array([not hub.focus for hub in central_plans])
        if capable.any():
            distances[~capable] = np.inf
        plan.parent_code = central_plans[int(distances.argmin())].code

    # District / regional health centres, spread over each province.
    ideal_district = _ideal_district_counts(geography)
    province_codes = [p.code for p in geography.provinces]
    district_counts = apportion(
        total=layout.district,
        weights=[ideal_district[code] - 1 for code in province_codes],
        minimum=[1] * len(province_codes),
        maximum=[ideal_district[code] for code in province_codes],
    )
    districts_by_province: dict[str, list[FacilityPlan]] = {}
    for code, count in zip(province_codes, district_counts, strict=True):
        province, communes = provinces[code], communes_of[code]
        sites = _spread_sites(
            latitudes=np.array([c.latitude for c in communes]),
            longitudes=np.array([c.longitude for c in communes]),
            count=count,
            rng=rng,
        )
        district_plans = []
        for number, site in enumerate(sites, start=1):
            commune = communes[site]
            latitude_offset, longitude_offset = _jitter(rng)
            district_plans.append(
                FacilityPlan(
                    code=f"KV-{code}-{number:03d}",
                    name=f"Trung tâm Y tế khu vực {commune.short_name}",
                    level=FacilityLevel.DISTRICT,
                    province_code=code,
                    commune_code=commune.code,
                    latitude=commune.latitude + latitude_offset,
                    longitude=commune.longitude + longitude_offset,
                    address=f"{commune.name}, {province.name}",
                    is_telehealth_hub=False,
                    offerings=keep_offered({c: int(rng.integers(3, 21)) for c in DISTRICT_CORE}),
                    parent_code=general_by_province[code].code,
                )
            )
        districts_by_province[code] = district_plans
        plans.extend(district_plans)

    # Commune health stations, in proportion to each province's communes. The commune
    # hosting the provincial general hospital always has one.
    station_counts = apportion(
        total=layout.commune,
        weights=[len(communes_of[code]) for code in province_codes],
        minimum=[1] * len(province_codes),
        maximum=[len(communes_of[code]) for code in province_codes],
    )
    for code, count in zip(province_codes, station_counts, strict=True):
        province, communes = provinces[code], communes_of[code]
        seat_commune_code = general_by_province[code].commune_code
        seat_index = next(i for i, c in enumerate(communes) if c.code == seat_commune_code)
        others = [i for i in range(len(communes)) if i != seat_index]
        chosen = sorted([seat_index, *rng.choice(others, size=count - 1, replace=False).tolist()])
        districts = districts_by_province[code]
        parent_indices = nearest_index(
            latitudes=np.array([communes[i].latitude for i in chosen]),
            longitudes=np.array([communes[i].longitude for i in chosen]),
            to_latitudes=np.array([d.latitude for d in districts]),
            to_longitudes=np.array([d.longitude for d in districts]),
        )
        for index, parent_index in zip(chosen, parent_indices, strict=True):
            commune = communes[index]
            latitude_offset, longitude_offset = _jitter(rng)
            plans.append(
                FacilityPlan(
                    code=f"TYT-{commune.code}",
                    name=f"Trạm Y tế {commune.name}",
                    level=FacilityLevel.COMMUNE,
                    province_code=code,
                    commune_code=commune.code,
                    latitude=commune.latitude + latitude_offset,
                    longitude=commune.longitude + longitude_offset,
                    address=f"{commune.name}, {province.name}",
                    is_telehealth_hub=False,
                    offerings=keep_offered({c: int(rng.integers(0, 3)) for c in COMMUNE_CORE}),
                    parent_code=districts[int(parent_index)].code,
                )
            )
    return plans


# --- People ---------------------------------------------------------------------------


class _NameMaker:
    """Vietnamese full names and phone numbers, drawn from one random stream."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.family = {
            region: (
                [name for name, _ in table],
                np.array([w for _, w in table]) / sum(w for _, w in table),
            )
            for region, table in (("north", FAMILY_NAMES_NORTH), ("south", FAMILY_NAMES_SOUTH))
        }

    def people(
        self, *, usernames: Sequence[str], province_codes: Sequence[str], female_share: float
    ) -> list[PersonPlan]:
        count = len(usernames)
        rng = self.rng
        is_female = rng.random(count) < female_share
        family_draw = rng.random(count)
        middle_draw = rng.random(count)
        given_draw = rng.random(count)
        phone_prefix = rng.integers(0, len(MOBILE_PREFIXES), size=count)
        phone_number = rng.integers(0, 10_000_000, size=count)
        cumulative = {region: np.cumsum(p) for region, (_, p) in self.family.items()}
        people = []
        for i in range(count):
            region = _region_of(province_codes[i])
            names, _ = self.family[region]
            family = names[
                min(int(np.searchsorted(cumulative[region], family_draw[i])), len(names) - 1)
            ]
            middles = MIDDLE_NAMES_FEMALE if is_female[i] else MIDDLE_NAMES_MALE
            givens = GIVEN_NAMES_FEMALE if is_female[i] else GIVEN_NAMES_MALE
            middle_index = int(middle_draw[i] * len(middles))
            given_index = int(given_draw[i] * len(givens))
            # "Hoàng Hoàng Nam" or "Lê Minh Minh" would not be given to a child.
            while middles[middle_index] == family:
                middle_index = (middle_index + 1) % len(middles)
            while givens[given_index] in (family, middles[middle_index]):
                given_index = (given_index + 1) % len(givens)
            middle, given = middles[middle_index], givens[given_index]
            people.append(
                PersonPlan(
                    username=usernames[i],
                    full_name=f"{family} {middle} {given}",
                    sex=Sex.FEMALE if is_female[i] else Sex.MALE,
                    phone=f"{MOBILE_PREFIXES[phone_prefix[i]]}{phone_number[i]:07d}",
                )
            )
        return people


def _pick_specialties(
    *, offerings: dict[str, int], level: int, rng: np.random.Generator
) -> tuple[str, ...]:
    """One or two specialties the facility offers, the busier ones more often."""
    codes = list(offerings)
    if not codes:
        return ()
    weights = np.array([offerings[c] + 1 for c in codes], dtype=float)
    if level == FacilityLevel.COMMUNE and "general-practice" in offerings:
        weights[codes.index("general-practice")] *= 6
    first = int(rng.choice(len(codes), p=weights / weights.sum()))
    chosen = [codes[first]]
    if len(codes) > 1 and rng.random() < 0.35:
        weights[first] = 0
        chosen.append(codes[int(rng.choice(len(codes), p=weights / weights.sum()))])
    return tuple(chosen)


def plan_clinicians(
    *,
    facilities: Sequence[FacilityPlan],
    seed: int,
    doctors: int,
    health_workers: int | None,
) -> list[ClinicianPlan]:
    """Doctors over the four levels (about 15/30/35/20 %), then commune health workers.

    Guarantees: each doctor has one or two specialties their facility offers; health
    workers sit at commune stations, one per station first; licence numbers are unique.
    """
    rng = _rng(seed, 2)
    names = _NameMaker(_rng(seed, 3))
    by_level: dict[int, list[FacilityPlan]] = defaultdict(list)
    for facility in facilities:
        by_level[facility.level].append(facility)
    levels = [level for level in FacilityLevel.values if by_level[level]]
    per_level = apportion(
        total=doctors,
        weights=[DOCTOR_SHARE_BY_LEVEL[level] for level in levels],
        minimum=[0] * len(levels),
        maximum=[doctors] * len(levels),
    )
    doctor_places: list[FacilityPlan] = []
    for level, level_total in zip(levels, per_level, strict=True):
        level_facilities = by_level[level]
        per_facility = apportion(
            total=level_total,
            weights=[sum(f.offerings.values()) + 1 for f in level_facilities],
            minimum=[0] * len(level_facilities),
            maximum=[level_total] * len(level_facilities),
        )
        for facility, count in zip(level_facilities, per_facility, strict=True):
            doctor_places.extend([facility] * count)

    stations = by_level[FacilityLevel.COMMUNE]
    worker_total = len(stations) if health_workers is None else health_workers
    worker_places = [stations[i % len(stations)] for i in range(worker_total)] if stations else []

    doctor_people = names.people(
        usernames=[f"bs{i:06d}" for i in range(1, len(doctor_places) + 1)],
        province_codes=[f.province_code for f in doctor_places],
        female_share=0.5,
    )
    worker_people = names.people(
        usernames=[f"ytx{i:06d}" for i in range(1, len(worker_places) + 1)],
        province_codes=[f.province_code for f in worker_places],
        female_share=0.7,
    )
    clinicians: list[ClinicianPlan] = []
    for number, (facility, person) in enumerate(
        zip(doctor_places, doctor_people, strict=True), start=1
    ):
        clinicians.append(
            ClinicianPlan(
                person=person,
                kind=ClinicianProfile.Kind.DOCTOR,
                facility_code=facility.code,
                specialty_codes=_pick_specialties(
                    offerings=facility.offerings, level=facility.level, rng=rng
                ),
                licence_number=f"CCHN-{number:06d}",
                title=_weighted_pick(rng, DOCTOR_TITLES, DOCTOR_TITLE_WEIGHTS[facility.level]),
            )
        )
    worker_titles = [t for t, _ in HEALTH_WORKER_TITLES]
    worker_weights = [w for _, w in HEALTH_WORKER_TITLES]
    for number, (facility, person) in enumerate(
        zip(worker_places, worker_people, strict=True), start=len(doctor_places) + 1
    ):
        clinicians.append(
            ClinicianPlan(
                person=person,
                kind=ClinicianProfile.Kind.HEALTH_WORKER,
                facility_code=facility.code,
                specialty_codes=(),
                licence_number=f"CCHN-{number:06d}",
                title=_weighted_pick(rng, worker_titles, worker_weights),
            )
        )
    return clinicians


def plan_coordinators(
    *,
    geography: Geography,
    facilities: Sequence[FacilityPlan],
    seed: int,
    coordinators: int | None,
) -> list[CoordinatorPlan]:
    """By default one coordinator per province, then one per central and provincial
    hospital; a different number takes those scopes in that order, round again if needed."""
    scopes: list[tuple[str | None, str | None, str]] = [
        (None, p.code, p.code) for p in geography.provinces
    ]
    scopes += [
        (f.code, None, f.province_code)
        for f in facilities
        if f.level in (FacilityLevel.CENTRAL, FacilityLevel.PROVINCIAL)
    ]
    total = len(scopes) if coordinators is None else coordinators
    chosen = [scopes[i % len(scopes)] for i in range(total)]
    people = _NameMaker(_rng(seed, 4)).people(
        usernames=[f"dp{i:06d}" for i in range(1, total + 1)],
        province_codes=[province for _f, _p, province in chosen],
        female_share=0.55,
    )
    return [
        CoordinatorPlan(person=person, facility_code=facility_code, province_code=province_code)
        for person, (facility_code, province_code, _) in zip(people, chosen, strict=True)
    ]


def _hamlet_word(commune: CommuneInfo) -> str:
    if commune.kind == "Phường":
        return "Tổ dân phố"
    if commune.province_code in ("11", "12", "14"):  # Điện Biên, Lai Châu, Sơn La
        return "Bản"
    return "Ấp" if commune.province_code >= "75" else "Thôn"


def _insurance_prefix(age: int, draw: float) -> str:
    """Vietnamese health insurance card: beneficiary group (2 letters) and benefit level."""
    if age < 6:
        return "TE1"
    if age < 18:
        return "HS4"
    groups: tuple[tuple[str, float], ...]
    if age < 60:
        groups = (("DN4", 0.40), ("GD4", 0.45), ("HC4", 0.10), ("CN2", 0.05))
    elif age < 80:
        groups = (("HT3", 0.40), ("GD4", 0.50), ("CN2", 0.10))
    else:
        groups = (("BT2", 0.60), ("HT3", 0.40))
    cumulative = 0.0
    for prefix, share in groups:
        cumulative += share
        if draw < cumulative:
            return prefix
    return groups[-1][0]


def plan_patients(
    *,
    geography: Geography,
    facilities: Sequence[FacilityPlan],
    clinicians: Sequence[ClinicianPlan],
    seed: int,
    patients: int,
) -> list[PatientPlan]:
    """Patients at home in communes, each with a primary clinician nearby.

    Home communes are weighted towards wards (denser) and communes with a station.
    The primary clinician works at the nearest commune station in the patient's
    province that has one; failing that at the nearest staffed facility in the
    province; failing that at the nearest staffed commune station anywhere.
    """
    if patients == 0:
        return []
    rng = _rng(seed, 5)
    communes = geography.communes
    province_names = {p.code: p.name for p in geography.provinces}
    staff: dict[str, list[str]] = defaultdict(list)
    for clinician in clinicians:
        staff[clinician.facility_code].append(clinician.person.username)
    staffed = [f for f in facilities if staff.get(f.code)]
    if not staffed:
        raise SeedRequestError(
            "Patients need at least one doctor or health worker to care for them."
        )
    station_communes = {f.commune_code for f in facilities if f.level == FacilityLevel.COMMUNE}

    weights = np.array(
        [
            (3.0 if c.kind == "Phường" else 1.0) * (3.0 if c.code in station_communes else 1.0)
            for c in communes
        ]
    )
    home_indices = rng.choice(len(communes), size=patients, p=weights / weights.sum())

    # The facility caring for each commune, computed once per province.
    care_facility_of_commune: dict[int, FacilityPlan] = {}
    communes_of: dict[str, list[int]] = defaultdict(list)
    for index, commune in enumerate(communes):
        communes_of[commune.province_code].append(index)
    staffed_stations = [f for f in staffed if f.level == FacilityLevel.COMMUNE]
    for province_code, indices in communes_of.items():
        candidates = (
            [f for f in staffed_stations if f.province_code == province_code]
            or [f for f in staffed if f.province_code == province_code]
            or staffed_stations
            or staffed
        )
        nearest = nearest_index(
            latitudes=np.array([communes[i].latitude for i in indices]),
            longitudes=np.array([communes[i].longitude for i in indices]),
            to_latitudes=np.array([f.latitude for f in candidates]),
            to_longitudes=np.array([f.longitude for f in candidates]),
        )
        for commune_index, candidate_index in zip(indices, nearest, strict=True):
            care_facility_of_commune[commune_index] = candidates[int(candidate_index)]

    home_province_codes = [communes[int(i)].province_code for i in home_indices]
    people = _NameMaker(_rng(seed, 6)).people(
        usernames=[f"bn{i:06d}" for i in range(1, patients + 1)],
        province_codes=home_province_codes,
        female_share=0.51,
    )
    band_weights = np.array(AGE_BAND_WEIGHTS) / sum(AGE_BAND_WEIGHTS)
    bands = rng.choice(len(AGE_BAND_WEIGHTS), size=patients, p=band_weights)
    ages = np.minimum(bands * 5 + rng.integers(0, 5, size=patients), 95)
    days_into_year = rng.integers(1, 365, size=patients)
    insured = rng.random(patients) < HEALTH_INSURANCE_COVERAGE
    group_draw = rng.random(patients)
    legacy_draw = rng.random(patients)
    hamlet_numbers = rng.integers(1, 16, size=patients)
    clinician_draw = rng.random(patients)

    plans = []
    for i, person in enumerate(people):
        commune = communes[int(home_indices[i])]
        age = int(ages[i])
        date_of_birth = REFERENCE_DATE - timedelta(days=int(age * 365.25) + int(days_into_year[i]))
        insurance = ""
        if insured[i]:
            legacy_codes = geography.legacy_codes_by_province.get(
                commune.province_code, (commune.province_code,)
            )
            legacy_code = legacy_codes[int(legacy_draw[i] * len(legacy_codes))]
            # Social insurance number: the issuing province, then eight digits unique
            # per patient (7919 is prime to 10**8, so the scramble is one-to-one).
            serial = ((i + 1) * 7919) % 100_000_000
            insurance = (
                f"{_insurance_prefix(age, group_draw[i])}{legacy_code}{legacy_code}{serial:08d}"
            )
        care_facility = care_facility_of_commune[int(home_indices[i])]
        team = staff[care_facility.code]
        plans.append(
            PatientPlan(
                person=person,
                date_of_birth=date_of_birth,
                health_insurance_number=insurance,
                home_commune_code=commune.code,
                address=(
                    f"{_hamlet_word(commune)} {hamlet_numbers[i]}, {commune.name}, "
                    f"{province_names[commune.province_code]}"
                ),
                primary_clinician_username=team[int(clinician_draw[i] * len(team))],
            )
        )
    return plans


def validate_request(
    *,
    geography: Geography,
    facilities: int,
    doctors: int,
    health_workers: int | None,
    patients: int,
    coordinators: int | None,
) -> None:
    """Raise ``SeedRequestError`` with a readable reason if the sizes cannot be built."""
    sizes = {
        "--facilities": facilities,
        "--doctors": doctors,
        "--health-workers": health_workers,
        "--patients": patients,
        "--coordinators": coordinators,
    }
    for flag, value in sizes.items():
        if value is not None and value < 0:
            raise SeedRequestError(f"{flag} must be zero or more, not {value}.")
        if value is not None and flag != "--facilities" and value > MAX_PEOPLE_PER_KIND:
            raise SeedRequestError(f"{flag} can be at most {MAX_PEOPLE_PER_KIND:,}.")
    _minimum, maximum = facility_limits(geography)
    if facilities > maximum:
        raise SeedRequestError(
            f"--facilities {facilities:,} is more than this country can hold: at most "
            f"{maximum:,} (one commune health station per commune)."
        )
    if doctors + (health_workers or 0) > MAX_PEOPLE_PER_KIND:
        raise SeedRequestError(
            f"Doctors and health workers together can be at most {MAX_PEOPLE_PER_KIND:,}."
        )
    if patients > 0 and doctors == 0 and health_workers == 0:
        raise SeedRequestError(
            "--patients needs someone to care for them: ask for doctors or health workers."
        )


def plan_network(
    *,
    geography: Geography,
    seed: int,
    facilities: int,
    doctors: int,
    health_workers: int | None,
    patients: int,
    coordinators: int | None,
) -> NetworkPlan:
    """The whole network, without touching the database. Same inputs, same plan."""
    validate_request(
        geography=geography,
        facilities=facilities,
        doctors=doctors,
        health_workers=health_workers,
        patients=patients,
        coordinators=coordinators,
    )
    facility_plans = plan_facilities(geography=geography, seed=seed, facilities=facilities)
    clinician_plans = plan_clinicians(
        facilities=facility_plans, seed=seed, doctors=doctors, health_workers=health_workers
    )
    coordinator_plans = plan_coordinators(
        geography=geography, facilities=facility_plans, seed=seed, coordinators=coordinators
    )
    patient_plans = plan_patients(
        geography=geography,
        facilities=facility_plans,
        clinicians=clinician_plans,
        seed=seed,
        patients=patients,
    )
    return NetworkPlan(
        facilities=tuple(facility_plans),
        clinicians=tuple(clinician_plans),
        coordinators=tuple(coordinator_plans),
        patients=tuple(patient_plans),
    )


# --- Writing --------------------------------------------------------------------------


def seeded_network_exists() -> bool:
    """True once a seed has created its facilities (recognised by their codes)."""
    condition = Q()
    for prefix in SEEDED_CODE_PREFIXES:
        condition |= Q(code__startswith=prefix)
    return Facility.objects.filter(condition).exists()


def _ids_by_username(users: list[User]) -> dict[str, int]:
    if all(u.pk is not None for u in users):
        return {u.username: u.pk for u in users}
    # Backends that cannot return ids from a bulk insert: read them back.
    usernames = [u.username for u in users]
    ids: dict[str, int] = {}
    for start in range(0, len(usernames), BATCH_SIZE):
        ids.update(
            User.objects.filter(username__in=usernames[start : start + BATCH_SIZE]).values_list(
                "username", "id"
            )
        )
    return ids


def _write_network(plan: NetworkPlan, *, password_hash: str, report: Callable[[str], None]) -> int:
    """Insert the plan; return the number of rows written. Call inside a transaction."""
    now = timezone.now()
    rows = 0
    province_ids = dict(Province.objects.values_list("code", "id"))
    commune_ids = dict(Commune.objects.values_list("code", "id"))
    specialty_ids = dict(Specialty.objects.values_list("code", "id"))

    facility_ids: dict[str, int] = {}
    for level in FacilityLevel.values:
        level_plans = [f for f in plan.facilities if f.level == level]
        created = Facility.objects.bulk_create(
            [
                Facility(
                    code=f.code,
                    name=f.name,
                    # bulk_create skips Facility.save(), which normally fills this in.
                    search_name=search_key(f.name),
                    level=f.level,
                    province_id=province_ids[f.province_code],
                    commune_id=commune_ids.get(f.commune_code) if f.commune_code else None,
                    parent_id=facility_ids[f.parent_code] if f.parent_code else None,
                    address=f.address,
                    latitude=f.latitude,
                    longitude=f.longitude,
                    is_telehealth_hub=f.is_telehealth_hub,
                )
                for f in level_plans
            ],
            batch_size=BATCH_SIZE,
        )
        if any(f.pk is None for f in created):
            facility_ids.update(
                Facility.objects.filter(code__in=[f.code for f in level_plans]).values_list(
                    "code", "id"
                )
            )
        else:
            facility_ids.update((f.code, f.pk) for f in created)
        rows += len(created)
    offerings = FacilitySpecialty.objects.bulk_create(
        [
            FacilitySpecialty(
                facility_id=facility_ids[f.code],
                specialty_id=specialty_ids[code],
                daily_referral_capacity=capacity,
            )
            for f in plan.facilities
            for code, capacity in f.offerings.items()
        ],
        batch_size=BATCH_SIZE,
    )
    rows += len(offerings)
    report(f"facilities: {len(plan.facilities):,} with {len(offerings):,} specialties offered")

    people = (
        [c.person for c in plan.clinicians]
        + [c.person for c in plan.coordinators]
        + [p.person for p in plan.patients]
    )
    users = User.objects.bulk_create(
        [
            User(
                username=person.username,
                full_name=person.full_name,
                phone=person.phone,
                password=password_hash,
                date_joined=now,
            )
            for person in people
        ],
        batch_size=USER_BATCH_SIZE,
    )
    user_ids = _ids_by_username(users)
    rows += len(users)
    report(f"people: {len(users):,} accounts")

    clinician_profiles = ClinicianProfile.objects.bulk_create(
        [
            ClinicianProfile(
                user_id=user_ids[c.person.username],
                kind=c.kind,
                facility_id=facility_ids[c.facility_code],
                licence_number=c.licence_number,
                title=c.title,
            )
            for c in plan.clinicians
        ],
        batch_size=BATCH_SIZE,
    )
    if any(p.pk is None for p in clinician_profiles):
        profile_ids = dict(
            ClinicianProfile.objects.filter(
                user_id__in=[user_ids[c.person.username] for c in plan.clinicians]
            ).values_list("user_id", "id")
        )
    else:
        profile_ids = {p.user_id: p.pk for p in clinician_profiles}
    through = ClinicianProfile.specialties.through
    clinician_specialties = through.objects.bulk_create(
        [
            through(
                clinicianprofile_id=profile_ids[user_ids[c.person.username]],
                specialty_id=specialty_ids[code],
            )
            for c in plan.clinicians
            for code in c.specialty_codes
        ],
        batch_size=BATCH_SIZE,
    )
    rows += len(clinician_profiles) + len(clinician_specialties)
    report(f"clinicians: {len(clinician_profiles):,}")

    assignments = CoordinatorAssignment.objects.bulk_create(
        [
            CoordinatorAssignment(
                user_id=user_ids[c.person.username],
                facility_id=facility_ids[c.facility_code] if c.facility_code else None,
                province_id=province_ids[c.province_code] if c.province_code else None,
            )
            for c in plan.coordinators
        ],
        batch_size=BATCH_SIZE,
    )
    rows += len(assignments)
    report(f"coordinators: {len(assignments):,}")

    # Each hub's privacy officer (reviews its doctors' break-glass accesses) is, in the
    # demo, the hub's own coordinator: no extra accounts, so the seed stays as fast.
    # A hub left without a coordinator (a small --coordinators) has no officer.
    hub_codes = {f.code for f in plan.facilities if f.is_telehealth_hub}
    officer_of: dict[str, str] = {}
    for c in plan.coordinators:
        if c.facility_code in hub_codes:
            officer_of.setdefault(c.facility_code, c.person.username)
    officers = PrivacyOfficerAssignment.objects.bulk_create(
        [
            PrivacyOfficerAssignment(
                user_id=user_ids[username], facility_id=facility_ids[facility_code]
            )
            for facility_code, username in sorted(officer_of.items())
        ],
        batch_size=BATCH_SIZE,
    )
    rows += len(officers)
    report(f"privacy officers: {len(officers):,} (one per hub)")

    patient_profiles = PatientProfile.objects.bulk_create(
        [
            PatientProfile(
                user_id=user_ids[p.person.username],
                date_of_birth=p.date_of_birth,
                sex=p.person.sex,
                health_insurance_number=p.health_insurance_number,
                home_commune_id=commune_ids[p.home_commune_code],
                address=p.address,
            )
            for p in plan.patients
        ],
        batch_size=BATCH_SIZE,
    )
    if any(p.pk is None for p in patient_profiles):
        patient_ids = dict(
            PatientProfile.objects.filter(
                user_id__in=[user_ids[p.person.username] for p in plan.patients]
            ).values_list("user_id", "id")
        )
    else:
        patient_ids = {p.user_id: p.pk for p in patient_profiles}
    relationships = CareRelationship.objects.bulk_create(
        [
            CareRelationship(
                patient_id=patient_ids[user_ids[p.person.username]],
                member_id=user_ids[p.primary_clinician_username],
                kind=CareRelationship.Kind.PRIMARY,
                source=SEED_SOURCE,
                starts_at=now,
            )
            for p in plan.patients
            if p.primary_clinician_username
        ],
        batch_size=BATCH_SIZE,
    )
    rows += len(patient_profiles) + len(relationships)
    report(
        f"patients: {len(patient_profiles):,} with {len(relationships):,} primary care "
        "relationships"
    )
    return rows


def _existing_summary(*, demo_logins_created: int, elapsed_seconds: float) -> SeedSummary:
    counts = dict(
        Facility.objects.values_list("level")
        .annotate(count=Count("id"))
        .values_list("level", "count")
    )
    clinicians = dict(
        ClinicianProfile.objects.values_list("kind")
        .annotate(count=Count("id"))
        .values_list("kind", "count")
    )
    return SeedSummary(
        created_network=False,
        facilities_by_level={level: counts.get(level, 0) for level in FacilityLevel.values},
        doctors=clinicians.get(ClinicianProfile.Kind.DOCTOR, 0),
        health_workers=clinicians.get(ClinicianProfile.Kind.HEALTH_WORKER, 0),
        coordinators=CoordinatorAssignment.objects.values("user").distinct().count(),
        patients=PatientProfile.objects.count(),
        care_relationships=CareRelationship.objects.count(),
        rows_inserted=0,
        demo_logins_created=demo_logins_created,
        elapsed_seconds=elapsed_seconds,
    )


# --- Demo logins ----------------------------------------------------------------------


def _demo_facility(*, level: int, preferred_name: str | None = None) -> Facility | None:
    """The first facility of a level in Hà Nội (by code), else anywhere."""
    facilities = Facility.objects.filter(level=level).order_by("code")
    if preferred_name:
        named = facilities.filter(name=preferred_name).first()
        if named is not None:
            return named
    return facilities.filter(province__code="01").first() or facilities.first()


def ensure_demo_logins(*, password_hash: str) -> int:
    """Create whatever demo login is missing; return how many accounts were created.

    Idempotent: existing demo accounts, profiles and relationships are left as they
    are. Logins whose facility level does not exist yet are skipped.
    """
    created_accounts = 0

    def account(username: str, full_name: str, **extra: object) -> User:
        nonlocal created_accounts
        user, created = User.objects.get_or_create(
            username=username,
            defaults={"full_name": full_name, "password": password_hash, **extra},
        )
        created_accounts += int(created)
        return user

    def clinician(
        username: str,
        full_name: str,
        *,
        kind: str,
        facility: Facility | None,
        specialty_code: str | None,
        licence_number: str,
        title: str,
    ) -> User | None:
        if facility is None:
            return None
        user = account(username, full_name)
        profile, _ = ClinicianProfile.objects.get_or_create(
            user=user,
            defaults={
                "kind": kind,
                "facility": facility,
                "licence_number": licence_number,
                "title": title,
            },
        )
        if specialty_code and profile.facility_id == facility.pk:
            specialty = Specialty.objects.filter(code=specialty_code).first()
            if specialty is not None:
                profile.specialties.add(specialty)
        return user

    with transaction.atomic():
        central = _demo_facility(level=FacilityLevel.CENTRAL, preferred_name="Bệnh viện Bạch Mai")
        station = _demo_facility(level=FacilityLevel.COMMUNE)
        doctor_kind = ClinicianProfile.Kind.DOCTOR
        clinician(
            "demo.doctor.central",
            "Nguyễn Quang Minh",
            kind=doctor_kind,
            facility=central,
            specialty_code="cardiology",
            licence_number="CCHN-DEMO-01",
            title="PGS.TS.BS.",
        )
        clinician(
            "demo.doctor.provincial",
            "Trần Thị Thu Hà",
            kind=doctor_kind,
            facility=_demo_facility(level=FacilityLevel.PROVINCIAL),
            specialty_code="internal-medicine",
            licence_number="CCHN-DEMO-02",
            title="ThS.BS.",
        )
        clinician(
            "demo.doctor.district",
            "Lê Văn Hùng",
            kind=doctor_kind,
            facility=_demo_facility(level=FacilityLevel.DISTRICT),
            specialty_code="general-practice",
            licence_number="CCHN-DEMO-03",
            title="BS.",
        )
        commune_doctor = clinician(
            "demo.doctor.commune",
            "Phạm Thị Lan",
            kind=doctor_kind,
            facility=station,
            specialty_code="general-practice",
            licence_number="CCHN-DEMO-04",
            title="BS.",
        )
        health_worker = clinician(
            "demo.healthworker",
            "Hoàng Thị Mai",
            kind=ClinicianProfile.Kind.HEALTH_WORKER,
            facility=station,
            specialty_code=None,
            licence_number="CCHN-DEMO-05",
            title="Y sĩ",
        )

        coordinator = account("demo.coordinator", "Vũ Đức Thắng")
        hanoi = Province.objects.filter(code="01").first() or Province.objects.first()
        if hanoi is not None and not coordinator.coordinator_assignments.exists():
            CoordinatorAssignment.objects.create(user=coordinator, province=hanoi)

        account("demo.admin", "Quản trị viên", is_staff=True, is_superuser=True)

        if central is not None:
            privacy = account("demo.privacy", "Bùi Thị Ngọc")
            PrivacyOfficerAssignment.objects.get_or_create(user=privacy, facility=central)

        patient_user = account("demo.patient", "Đỗ Thị Hương")
        home_commune = station.commune if station is not None else None
        patient, _ = PatientProfile.objects.get_or_create(
            user=patient_user,
            defaults={
                "date_of_birth": date(1968, 5, 14),
                "sex": Sex.FEMALE,
                "health_insurance_number": "GD4010100000001",
                "home_commune": home_commune,
                "address": (
                    f"Tổ dân phố 3, {home_commune.name}, {home_commune.province.name}"
                    if home_commune is not None
                    else ""
                ),
            },
        )
        for member in (health_worker, commune_doctor):
            if member is not None:
                CareRelationship.objects.get_or_create(
                    patient=patient,
                    member=member,
                    kind=CareRelationship.Kind.PRIMARY,
                    source=SEED_SOURCE,
                )
    return created_accounts


# --- Entry point ----------------------------------------------------------------------


def network_seed(
    *,
    seed: int,
    facilities: int,
    doctors: int,
    health_workers: int | None,
    patients: int,
    coordinators: int | None,
    stdout: TextIO | None = None,
) -> SeedSummary:
    """Build the demo network once, and make sure the demo logins exist.

    ``health_workers`` and ``coordinators`` default (None) to one per commune station,
    and one per province plus one per central and provincial hospital.

    Guarantees: if no seeded network exists, the whole network is written in one
    transaction (all or nothing) from ``plan_network``; if one exists, nothing of it
    is created again and the summary describes what is there. Either way the demo
    logins exist afterwards. Raises ``SeedRequestError`` for sizes that cannot be built.
    """
    started = time.perf_counter()

    def report(line: str) -> None:
        if stdout is not None:
            stdout.write(f"{line}\n")

    geography = geography_from_database()
    validate_request(
        geography=geography,
        facilities=facilities,
        doctors=doctors,
        health_workers=health_workers,
        patients=patients,
        coordinators=coordinators,
    )
    password_hash = make_password(settings.TELEHEALTH_DEMO_PASSWORD)

    plan: NetworkPlan | None = None
    rows = 0
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_SEED_LOCK_KEY])
        if not seeded_network_exists():
            report(f"Planning the network (seed {seed})…")
            plan = plan_network(
                geography=geography,
                seed=seed,
                facilities=facilities,
                doctors=doctors,
                health_workers=health_workers,
                patients=patients,
                coordinators=coordinators,
            )
            report(f"  planned in {time.perf_counter() - started:.1f}s; writing…")
            rows = _write_network(
                plan,
                password_hash=password_hash,
                report=lambda line: report(f"  {line} ({time.perf_counter() - started:.1f}s)"),
            )

    demo_created = ensure_demo_logins(password_hash=password_hash)
    elapsed = time.perf_counter() - started
    if plan is None:
        summary = _existing_summary(demo_logins_created=demo_created, elapsed_seconds=elapsed)
        report(f"Network already seeded, nothing created: {summary.describe()}.")
    else:
        summary = SeedSummary(
            created_network=True,
            facilities_by_level=plan.facilities_by_level(),
            doctors=sum(c.kind == ClinicianProfile.Kind.DOCTOR for c in plan.clinicians),
            health_workers=sum(
                c.kind == ClinicianProfile.Kind.HEALTH_WORKER for c in plan.clinicians
            ),
            coordinators=len(plan.coordinators),
            patients=len(plan.patients),
            care_relationships=sum(1 for p in plan.patients if p.primary_clinician_username),
            rows_inserted=rows,
            demo_logins_created=demo_created,
            elapsed_seconds=elapsed,
        )
        report(
            f"Seeded {summary.describe()}: {rows:,} rows in {elapsed:.1f}s "
            f"({rows / max(elapsed, 1e-9):,.0f} rows/s)."
        )
    report(f"Demo logins: {demo_created} created, {len(DEMO_LOGINS)} available.")
    return summary
