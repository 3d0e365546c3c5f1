"""Output shapes of the kernel's API. Input is parsed by small serializers next to each view."""

from __future__ import annotations

from rest_framework import serializers

from telehealth.models import (
    Commune,
    CoordinatorAssignment,
    Facility,
    FacilitySpecialty,
    PatientProfile,
    Province,
    Specialty,
    User,
)


class ProvinceSerializer(serializers.ModelSerializer):
    legacy_codes = serializers.SerializerMethodField()

    class Meta:
        model = Province
        fields = ["code", "name", "short_name", "is_city", "latitude", "longitude", "legacy_codes"]

    def get_legacy_codes(self, province: Province) -> list[str]:
        return [legacy.code for legacy in province.legacy_provinces.all()]


class ProvinceRefSerializer(serializers.ModelSerializer):
    class Meta:
        model = Province
        fields = ["code", "short_name"]


class CommuneSerializer(serializers.ModelSerializer):
    province = serializers.CharField(source="province.code")

    class Meta:
        model = Commune
        fields = ["code", "name", "kind", "province", "latitude", "longitude"]


class SpecialtySerializer(serializers.ModelSerializer):
    class Meta:
        model = Specialty
        fields = ["code", "name", "name_vi", "name_en"]


class FacilityRefSerializer(serializers.ModelSerializer):
    level_label = serializers.CharField(source="get_level_display")

    class Meta:
        model = Facility
        fields = ["code", "name", "level", "level_label"]


class FacilityOfferingSerializer(serializers.ModelSerializer):
    code = serializers.CharField(source="specialty.code")
    name = serializers.CharField(source="specialty.name")

    class Meta:
        model = FacilitySpecialty
        fields = ["code", "name", "daily_referral_capacity"]


class FacilityListSerializer(serializers.ModelSerializer):
    level_label = serializers.CharField(source="get_level_display")
    province = ProvinceRefSerializer()
    parent = serializers.CharField(source="parent.code", allow_null=True, default=None)

    class Meta:
        model = Facility
        fields = [
            "code",
            "name",
            "level",
            "level_label",
            "province",
            "parent",
            "latitude",
            "longitude",
            "is_telehealth_hub",
        ]


class FacilityDetailSerializer(FacilityListSerializer):
    commune = serializers.CharField(source="commune.name", allow_null=True, default=None)
    specialties = FacilityOfferingSerializer(source="offerings", many=True)

    class Meta(FacilityListSerializer.Meta):
        fields = [*FacilityListSerializer.Meta.fields, "commune", "address", "specialties"]


class ClinicianSerializer(serializers.Serializer):
    kind = serializers.CharField()
    facility = FacilityRefSerializer()
    level = serializers.IntegerField()
    specialties = SpecialtySerializer(many=True)
    licence_number = serializers.CharField(allow_null=True)
    title = serializers.CharField()


class CoordinatorScopeSerializer(serializers.ModelSerializer):
    facility = FacilityRefSerializer(allow_null=True)
    province = ProvinceRefSerializer(allow_null=True)

    class Meta:
        model = CoordinatorAssignment
        fields = ["facility", "province"]


class PatientSerializer(serializers.ModelSerializer):
    id = serializers.IntegerField(read_only=True)
    full_name = serializers.CharField(source="user.display_name")
    phone = serializers.CharField(source="user.phone")
    home_commune = CommuneSerializer(allow_null=True)

    class Meta:
        model = PatientProfile
        fields = [
            "id",
            "full_name",
            "phone",
            "date_of_birth",
            "sex",
            "health_insurance_number",
            "home_commune",
            "address",
        ]


class MeSerializer(serializers.ModelSerializer):
    roles = serializers.SerializerMethodField()
    clinician = ClinicianSerializer(source="clinician_profile", allow_null=True, default=None)
    coordinates = CoordinatorScopeSerializer(
        source="coordinator_assignments", many=True, read_only=True
    )
    patient_id = serializers.IntegerField(source="patient_profile.id", default=None)

    class Meta:
        model = User
        fields = [
            "id",
            "username",
            "full_name",
            "email",
            "phone",
            "preferred_language",
            "roles",
            "clinician",
            "coordinates",
            "patient_id",
        ]

    def get_roles(self, user: User) -> list[str]:
        return sorted(user.roles)


class MeUpdateSerializer(serializers.ModelSerializer):
    class Meta:
        model = User
        fields = ["full_name", "phone", "preferred_language"]
        extra_kwargs = {"full_name": {"required": False}}
