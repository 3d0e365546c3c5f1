from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from telehealth import services
from telehealth.models import (
    AuditEvent,
    BreakGlassAccess,
    CareRelationship,
    ClinicianProfile,
    Commune,
    CoordinatorAssignment,
    Facility,
    FacilitySpecialty,
    LegacyProvince,
    PatientProfile,
    PrivacyOfficerAssignment,
    Province,
    Specialty,
    User,
)


class LegacyProvinceInline(admin.TabularInline):
    model = LegacyProvince
    extra = 0


@admin.register(Province)
class ProvinceAdmin(admin.ModelAdmin):
    list_display = ["code", "name", "is_city"]
    search_fields = ["code", "name", "short_name"]
    inlines = [LegacyProvinceInline]


@admin.register(Commune)
class CommuneAdmin(admin.ModelAdmin):
    list_display = ["code", "name", "kind", "province"]
    list_filter = ["province"]
    search_fields = ["code", "name"]


@admin.register(Specialty)
class SpecialtyAdmin(admin.ModelAdmin):
    list_display = ["code", "name_vi", "name_en"]
    search_fields = ["code", "name_vi", "name_en"]


class FacilitySpecialtyInline(admin.TabularInline):
    model = FacilitySpecialty
    extra = 0
    autocomplete_fields = ["specialty"]


@admin.register(Facility)
class FacilityAdmin(admin.ModelAdmin):
    list_display = ["code", "name", "level", "province", "is_telehealth_hub", "is_active"]
    list_filter = ["level", "is_telehealth_hub", "is_active", "province"]
    search_fields = ["code", "name", "search_name"]
    autocomplete_fields = ["parent", "commune", "province"]
    list_select_related = ["province"]
    inlines = [FacilitySpecialtyInline]


class PatientProfileInline(admin.StackedInline):
    model = PatientProfile
    extra = 0
    autocomplete_fields = ["home_commune"]


class ClinicianProfileInline(admin.StackedInline):
    model = ClinicianProfile
    extra = 0
    autocomplete_fields = ["facility", "specialties"]


class CoordinatorAssignmentInline(admin.TabularInline):
    model = CoordinatorAssignment
    extra = 0
    autocomplete_fields = ["facility", "province"]


class PrivacyOfficerAssignmentInline(admin.TabularInline):
    """How a person becomes a facility's privacy officer (reviews its break-glass accesses)."""

    model = PrivacyOfficerAssignment
    extra = 0
    autocomplete_fields = ["facility"]


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    list_display = ["username", "full_name", "email", "is_active", "is_staff"]
    search_fields = ["username", "full_name", "email"]
    fieldsets = (
        *DjangoUserAdmin.fieldsets,
        (_("Telehealth"), {"fields": ("full_name", "phone", "preferred_language")}),
    )
    inlines = [
        PatientProfileInline,
        ClinicianProfileInline,
        CoordinatorAssignmentInline,
        PrivacyOfficerAssignmentInline,
    ]
    actions = ["deactivate"]

    @admin.action(description=_("Deactivate: sign out everywhere and revoke API tokens"))
    def deactivate(self, request, queryset):  # type: ignore[no-untyped-def]
        count = 0
        for user in queryset:
            services.user_deactivate(
                user=user, by=request.user, reason="admin action", request=request
            )
            count += 1
        self.message_user(
            request,
            ngettext(
                "%(count)d account deactivated; its sessions, sockets and API token were closed.",
                "%(count)d accounts deactivated; their sessions, sockets and API tokens "
                "were closed.",
                count,
            )
            % {"count": count},
        )

    def save_model(self, request, obj, form, change):  # type: ignore[no-untyped-def]
        # Unticking "active" on the form: the save signal closes everything
        # (telehealth.signals); from here it also records who did it.
        obj._th_deactivated_by = request.user
        obj._th_deactivation_reason = "admin form"
        super().save_model(request, obj, form, change)


@admin.register(CareRelationship)
class CareRelationshipAdmin(admin.ModelAdmin):
    list_display = ["patient", "member", "kind", "source", "starts_at", "ends_at"]
    list_filter = ["kind"]
    raw_id_fields = ["patient", "member", "granted_by"]


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    """Read-only: the audit log is append-only, even for administrators."""

    list_display = ["at", "actor_label", "action", "target", "reason", "ip_address"]
    list_filter = ["action"]
    search_fields = ["actor_label", "target"]
    date_hierarchy = "at"

    def has_add_permission(self, request):  # type: ignore[no-untyped-def]
        return False

    def has_change_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False

    def has_delete_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False


@admin.register(BreakGlassAccess)
class BreakGlassAccessAdmin(admin.ModelAdmin):
    """Read-only: emergency accesses are opened by doctors and reviewed by their
    facility's privacy officers (telehealth.services), never edited here."""

    list_display = ["started_at", "doctor", "patient", "facility", "ends_at", "review_state"]
    list_filter = ["review_state"]
    raw_id_fields = ["doctor", "patient", "facility", "relationship", "reviewed_by"]
    date_hierarchy = "started_at"

    def has_add_permission(self, request):  # type: ignore[no-untyped-def]
        return False

    def has_change_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False

    def has_delete_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False
