"""Output shapes of the kernel's API. Input is parsed by small serializers next to each view."""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext as _
from rest_framework import serializers

from telehealth.models import (
    AuditEvent,
    BreakGlassAccess,
    ClinicianProfile,
    Commune,
    CoordinatorAssignment,
    Facility,
    FacilitySpecialty,
    PatientProfile,
    Province,
    Role,
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
    patient_id = serializers.IntegerField(
        source="patient_profile.id", default=None, allow_null=True
    )

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


# --- Break-glass and the access log ---------------------------------------------------


class PersonRefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField(source="display_name")


class BreakGlassOpenSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=2000, allow_blank=True, trim_whitespace=True)


class BreakGlassReviewInputSerializer(serializers.Serializer):
    decision = serializers.ChoiceField(
        choices=[BreakGlassAccess.Review.JUSTIFIED, BreakGlassAccess.Review.NOT_JUSTIFIED]
    )
    note = serializers.CharField(max_length=2000, allow_blank=True, required=False, default="")


class BreakGlassAccessSerializer(serializers.ModelSerializer):
    """One emergency access, as its privacy officer reviews it."""

    doctor = PersonRefSerializer()
    patient = serializers.SerializerMethodField()
    facility = FacilityRefSerializer()
    review_state_label = serializers.CharField(source="get_review_state_display")
    reviewed_by = PersonRefSerializer(allow_null=True)
    is_active = serializers.BooleanField()

    class Meta:
        model = BreakGlassAccess
        fields = [
            "id",
            "doctor",
            "patient",
            "facility",
            "reason",
            "started_at",
            "ends_at",
            "is_active",
            "alerted_at",
            "review_state",
            "review_state_label",
            "reviewed_by",
            "review_note",
            "reviewed_at",
        ]

    def get_patient(self, access: BreakGlassAccess) -> dict[str, Any]:
        return {"id": access.patient_id, "name": access.patient.user.display_name}


class BreakGlassOpenedSerializer(serializers.Serializer):
    access = BreakGlassAccessSerializer()
    patient = PatientSerializer()


def _actor_role(event: AuditEvent, patient: PatientProfile) -> tuple[str, str]:
    """(role, place) of who did ``event``, as the patient should read it."""
    actor = event.actor
    if actor is None:
        return _("system"), ""
    if actor.pk == patient.user_id:
        return _("you"), ""
    officer_of = list(actor.privacy_officer_assignments.all())
    if officer_of and event.target.startswith("break_glass:") and event.action == "update":
        return str(Role.PRIVACY_OFFICER.label), ", ".join(a.facility.name for a in officer_of)
    clinician = getattr(actor, "clinician_profile", None)
    if clinician is not None:
        return str(ClinicianProfile.Kind(clinician.kind).label), clinician.facility.name
    if officer_of:
        return str(Role.PRIVACY_OFFICER.label), ", ".join(a.facility.name for a in officer_of)
    scopes = list(actor.coordinator_assignments.all())
    if scopes:
        return str(Role.COORDINATOR.label), ", ".join(str(a.facility or a.province) for a in scopes)
    if actor.is_staff:
        return str(Role.ADMINISTRATOR.label), ""
    return "", ""


def _describe(event: AuditEvent) -> str:
    """What happened, in words a patient reads (the raw ``target`` stays alongside)."""
    target, action = event.target, event.action
    if target.startswith("break_glass:patient:"):
        return _("tried to open your record in an emergency and was refused")
    if target.startswith("break_glass:") and action == AuditEvent.Action.UPDATE:
        if target.endswith(":not_justified"):
            return _("reviewed an emergency access to your record: not justified")
        return _("reviewed an emergency access to your record: justified")
    if target.startswith("care_relationship:") and ":break_glass:" in target:
        if target.endswith(":ended"):
            return _("emergency access to your record ended")
        return _("opened your record with emergency access (break-glass)")
    if target.startswith("care_relationship:"):
        if target.endswith(":ended"):
            return _("access to your record ended")
        return _("was given access to your record")
    if target.endswith(":access_log"):
        if action == AuditEvent.Action.DENIED:
            return _("tried to read who accessed your record and was refused")
        return _("looked at who accessed your record")
    if action == AuditEvent.Action.DENIED:
        return _("was refused access to your record")
    if target.startswith("patient:") and action == AuditEvent.Action.READ:
        return _("opened your record")
    return str(event.get_action_display())


class AccessLogEntrySerializer(serializers.ModelSerializer):
    """One audit event about the patient, for the patient. Context: ``patient`` and
    ``break_glass`` (the patient's ``BreakGlassAccess`` rows, to mark what they cover)."""

    who = serializers.SerializerMethodField()
    role = serializers.SerializerMethodField()
    place = serializers.SerializerMethodField()
    action_label = serializers.CharField(source="get_action_display")
    description = serializers.SerializerMethodField()
    break_glass = serializers.SerializerMethodField()

    class Meta:
        model = AuditEvent
        fields = [
            "id",
            "at",
            "who",
            "role",
            "place",
            "action",
            "action_label",
            "description",
            "target",
            "reason",
            "break_glass",
        ]

    def get_who(self, event: AuditEvent) -> str:
        return event.actor.display_name if event.actor is not None else _("system")

    def get_role(self, event: AuditEvent) -> str:
        return _actor_role(event, self.context["patient"])[0]

    def get_place(self, event: AuditEvent) -> str:
        return _actor_role(event, self.context["patient"])[1]

    def get_description(self, event: AuditEvent) -> str:
        return _describe(event)

    def get_break_glass(self, event: AuditEvent) -> bool:
        """Done under, or about, an emergency access."""
        if "break_glass" in event.target or event.reason.endswith("(break_glass)"):
            return True
        return any(
            access.doctor_id == event.actor_id and access.started_at <= event.at <= access.ends_at
            for access in self.context.get("break_glass", ())
        )


class AccessLogBreakGlassSerializer(serializers.ModelSerializer):
    """An emergency access, as the patient sees it."""

    doctor = PersonRefSerializer()
    facility = FacilityRefSerializer()
    review_state_label = serializers.CharField(source="get_review_state_display")

    class Meta:
        model = BreakGlassAccess
        fields = [
            "id",
            "doctor",
            "facility",
            "reason",
            "started_at",
            "ends_at",
            "review_state",
            "review_state_label",
        ]


class ChainCheckSerializer(serializers.Serializer):
    verified = serializers.BooleanField()
    checked = serializers.IntegerField()
    first_broken = serializers.IntegerField(allow_null=True)
    scope = serializers.CharField()
