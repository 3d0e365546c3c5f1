"""Administrators read the network here; changes go through the services (policy via the
API, so the old policy is kept as history)."""

from django.contrib import admin

from network.models import (
    AssignmentRun,
    CaseConference,
    MentoringPolicy,
    Mentorship,
    MentorshipEvent,
    PolicyQuota,
)


class PolicyQuotaInline(admin.TabularInline):
    model = PolicyQuota
    extra = 0


@admin.register(MentoringPolicy)
class MentoringPolicyAdmin(admin.ModelAdmin):
    list_display = ["name", "is_active", "max_distance_km", "created_at"]
    inlines = [PolicyQuotaInline]

    def has_change_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False


class MentorshipEventInline(admin.TabularInline):
    model = MentorshipEvent
    extra = 0
    can_delete = False
    readonly_fields = ["at", "actor", "state", "note"]


@admin.register(Mentorship)
class MentorshipAdmin(admin.ModelAdmin):
    list_display = ["mentor", "mentee", "mentee_level", "state", "source", "requested_at"]
    list_filter = ["state", "source", "mentee_level"]
    search_fields = ["mentor__user__full_name", "mentee__user__full_name"]
    raw_id_fields = ["mentor", "mentee", "requested_by", "ended_by", "thread"]
    inlines = [MentorshipEventInline]

    def has_change_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False


@admin.register(AssignmentRun)
class AssignmentRunAdmin(admin.ModelAdmin):
    list_display = ["pk", "province", "state", "assigned", "mentees", "cost", "greedy_cost"]
    list_filter = ["state"]

    def has_change_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False


@admin.register(CaseConference)
class CaseConferenceAdmin(admin.ModelAdmin):
    list_display = ["subject", "organiser", "state", "created_at"]
    raw_id_fields = ["organiser", "patient", "thread"]

    def has_change_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False
