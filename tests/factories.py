"""Factories for the kernel's models. Reference data (provinces, communes, specialties)
comes from the migration; factories pick from it rather than inventing places."""

from __future__ import annotations

import factory
from django.contrib.auth.hashers import make_password

from telehealth.models import (
    ClinicianProfile,
    Commune,
    CoordinatorAssignment,
    Facility,
    FacilityLevel,
    FacilitySpecialty,
    PatientProfile,
    Province,
    Specialty,
    User,
)

PASSWORD = "correct-Horse-battery-9"
# Hashed once with the configured (Argon2) hasher: tests sign in for real,
# without paying for a hash per user.
_PASSWORD_HASH = None


def password_hash() -> str:
    global _PASSWORD_HASH
    if _PASSWORD_HASH is None:
        _PASSWORD_HASH = make_password(PASSWORD)
    return _PASSWORD_HASH


def province(code: str = "01") -> Province:
    return Province.objects.get(code=code)


def specialty(code: str) -> Specialty:
    return Specialty.objects.get(code=code)


class FacilityFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Facility
        skip_postgeneration_save = True

    code = factory.Sequence(lambda n: f"T{n:05d}")
    name = factory.Sequence(lambda n: f"Bệnh viện Thử nghiệm {n}")
    level = FacilityLevel.PROVINCIAL
    province = factory.LazyFunction(province)
    latitude = factory.LazyAttribute(lambda o: o.province.latitude)
    longitude = factory.LazyAttribute(lambda o: o.province.longitude)
    is_telehealth_hub = False

    @factory.post_generation
    def offers(self, create: bool, extracted: dict[str, int] | None, **kwargs: object) -> None:
        """``offers={"cardiology": 20}``: specialties with daily referral capacity."""
        if create and extracted:
            for code, capacity in extracted.items():
                FacilitySpecialty.objects.create(
                    facility=self, specialty=specialty(code), daily_referral_capacity=capacity
                )


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    full_name = factory.Sequence(lambda n: f"Nguyễn Văn {n}")
    password = factory.LazyFunction(password_hash)


class PatientFactory(factory.django.DjangoModelFactory):
    """A patient profile; ``.user`` signs in.

    Like every patient of the seed, one who agreed to the current privacy notice,
    every purpose (``consent=False``: one who never answered; ``consent=["care"]``:
    only these purposes)."""

    class Meta:
        model = PatientProfile
        skip_postgeneration_save = True

    user = factory.SubFactory(UserFactory, username=factory.Sequence(lambda n: f"patient{n}"))
    sex = "female"
    home_commune = factory.LazyFunction(lambda: Commune.objects.order_by("code").first())

    @factory.post_generation
    def consent(self, create: bool, extracted: list[str] | bool | None, **kwargs: object) -> None:
        if not create or extracted is False:
            return
        from privacy.services import consent_import

        consent_import(
            patient_ids=[self.pk], purposes=None if extracted in (None, True) else extracted
        )


class ClinicianFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ClinicianProfile
        skip_postgeneration_save = True

    user = factory.SubFactory(UserFactory, username=factory.Sequence(lambda n: f"doctor{n}"))
    kind = ClinicianProfile.Kind.DOCTOR
    facility = factory.SubFactory(FacilityFactory)
    licence_number = factory.Sequence(lambda n: f"CCHN-{n:06d}")

    @factory.post_generation
    def specialty_codes(self, create: bool, extracted: list[str] | None, **kwargs: object) -> None:
        if create and extracted:
            self.specialties.set([specialty(code) for code in extracted])


class CoordinatorFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = CoordinatorAssignment

    user = factory.SubFactory(UserFactory, username=factory.Sequence(lambda n: f"coord{n}"))
    facility = None
    province = factory.LazyFunction(province)


def sign_in(client, username: str, password: str = PASSWORD) -> None:
    """Sign in through the real sign-in page (django-axes needs the request, so
    ``Client.login`` cannot be used)."""
    response = client.post("/login/", {"username": username, "password": password})
    assert response.status_code == 302, f"sign-in as {username} failed"
