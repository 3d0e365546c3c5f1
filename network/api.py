"""REST endpoints of the doctor network: thin views that parse, call one service or
selector, and serialise. Mounted under /api/v1/ (see network/urls.py)."""

from __future__ import annotations

import csv
import uuid
from collections.abc import Iterator
from typing import Any

from django.http import StreamingHttpResponse
from django.utils import timezone
from django.utils.translation import gettext as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    inline_serializer,
)
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from network import selectors, services
from network.models import (
    AssignmentProposal,
    AssignmentRun,
    CaseConference,
    Mentorship,
)
from telehealth import selectors as kernel_selectors
from telehealth.api.pagination import PageNumberPagination
from telehealth.audit import audit_record
from telehealth.errors import AccessDenied, DomainError
from telehealth.models import AuditEvent, ClinicianProfile

# --- Output shapes ----------------------------------------------------------------------


class NetworkFacilityOut(serializers.Serializer):
    code = serializers.CharField()
    name = serializers.CharField()
    level = serializers.IntegerField()
    province = serializers.CharField(source="province.name")


class NetworkPersonOut(serializers.Serializer):
    """Public directory data of a clinician."""

    id = serializers.IntegerField(source="user_id")
    name = serializers.CharField(source="user.display_name")
    title = serializers.CharField()
    kind = serializers.CharField()
    level = serializers.IntegerField(source="facility.level")
    facility = NetworkFacilityOut()


class NetworkPersonDetailOut(NetworkPersonOut):
    specialties = serializers.SerializerMethodField()

    def get_specialties(self, clinician: ClinicianProfile) -> list[str]:
        return sorted(s.code for s in clinician.specialties.all())


class MentorshipEventOut(serializers.Serializer):
    at = serializers.DateTimeField()
    state = serializers.CharField()
    actor = serializers.IntegerField(source="actor_id", allow_null=True)
    note = serializers.CharField()


class MentorshipOut(serializers.Serializer):
    id = serializers.IntegerField()
    state = serializers.CharField()
    source = serializers.CharField()
    mentor = NetworkPersonOut()
    mentee = NetworkPersonOut()
    mentee_level = serializers.IntegerField()
    my_role = serializers.SerializerMethodField()
    awaiting = serializers.SerializerMethodField(help_text="Who must answer a waiting request.")
    requested_by = serializers.IntegerField(source="requested_by_id")
    message = serializers.CharField()
    requested_at = serializers.DateTimeField()
    responded_at = serializers.DateTimeField(allow_null=True)
    ended_at = serializers.DateTimeField(allow_null=True)
    end_reason = serializers.CharField()
    end_note = serializers.CharField()
    thread = serializers.IntegerField(source="thread_id", allow_null=True)

    def get_my_role(self, mentorship: Mentorship) -> str | None:
        user = self.context.get("user")
        if user is None:
            return None
        if mentorship.mentor.user_id == user.pk:
            return "mentor"
        if mentorship.mentee.user_id == user.pk:
            return "mentee"
        return None

    def get_awaiting(self, mentorship: Mentorship) -> int | None:
        if mentorship.state != Mentorship.State.REQUESTED:
            return None
        return selectors.responder_id(mentorship)


class MentorshipDetailOut(MentorshipOut):
    history = MentorshipEventOut(source="events.all", many=True)


class QuotaGaugeOut(serializers.Serializer):
    mentee_level = serializers.IntegerField()
    quota = serializers.IntegerField()
    accepted = serializers.IntegerField()
    requested = serializers.IntegerField()
    free = serializers.IntegerField()
    over = serializers.IntegerField()


class NetworkOverviewOut(serializers.Serializer):
    me = NetworkPersonDetailOut(allow_null=True)
    policy = serializers.CharField()
    can_mentor = serializers.BooleanField()
    can_be_mentored = serializers.BooleanField()
    gauges = QuotaGaugeOut(many=True)
    mentorships = MentorshipOut(many=True)


class SuggestionOut(serializers.Serializer):
    id = serializers.IntegerField(source="user_id")
    name = serializers.CharField()
    title = serializers.CharField()
    kind = serializers.CharField()
    facility_code = serializers.CharField()
    facility_name = serializers.CharField()
    level = serializers.IntegerField()
    province = serializers.CharField()
    specialties = serializers.ListField(child=serializers.CharField())
    shared_specialties = serializers.ListField(child=serializers.CharField())
    distance_km = serializers.FloatField()
    free_places = serializers.IntegerField(allow_null=True)
    quota = serializers.IntegerField(allow_null=True)
    load = serializers.IntegerField()
    mentors = serializers.IntegerField(allow_null=True)
    on_referral_line = serializers.BooleanField()
    colleagues_linked = serializers.IntegerField()
    score = serializers.FloatField()
    reason = serializers.CharField()


class SuggestionsOut(serializers.Serializer):
    role = serializers.CharField()
    level = serializers.IntegerField(allow_null=True)
    detail = serializers.CharField()
    results = SuggestionOut(many=True)


class NetworkGraphNodeOut(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    level = serializers.IntegerField()
    kind = serializers.CharField()
    facility = serializers.CharField()
    ring = serializers.IntegerField()
    role = serializers.CharField()


class NetworkGraphEdgeOut(serializers.Serializer):
    id = serializers.IntegerField()
    source = serializers.IntegerField()
    target = serializers.IntegerField()
    state = serializers.CharField()


class NetworkGraphOut(serializers.Serializer):
    nodes = NetworkGraphNodeOut(many=True)
    edges = NetworkGraphEdgeOut(many=True)


class PolicyQuotaItem(serializers.Serializer):
    mentor_level = serializers.IntegerField(
        min_value=1, max_value=4, help_text="1 central … 4 commune"
    )
    mentee_level = serializers.IntegerField(
        min_value=1, max_value=4, help_text="1 central … 4 commune"
    )
    quota = serializers.IntegerField(min_value=0, max_value=100)


class MentoringPolicyOut(serializers.Serializer):
    id = serializers.IntegerField(allow_null=True)
    name = serializers.CharField()
    max_distance_km = serializers.IntegerField()
    quotas = PolicyQuotaItem(many=True)


def _policy_out(policy: selectors.Policy) -> dict[str, Any]:
    return {
        "id": policy.id,
        "name": policy.name,
        "max_distance_km": policy.max_distance_km,
        "quotas": [
            {"mentor_level": a, "mentee_level": b, "quota": q}
            for (a, b), q in sorted(policy.quotas.items())
        ],
    }


class AssignmentRunOut(serializers.ModelSerializer):
    province = serializers.CharField(source="province.code", allow_null=True, default=None)
    created_by = serializers.CharField(source="created_by.display_name")
    coverage = serializers.FloatField(allow_null=True)
    greedy_coverage = serializers.FloatField(allow_null=True)

    class Meta:
        model = AssignmentRun
        fields = [
            "id",
            "province",
            "state",
            "progress",
            "stage",
            "max_distance_km",
            "created_by",
            "created_at",
            "started_at",
            "finished_at",
            "mentees",
            "mentors",
            "places",
            "arcs",
            "assigned",
            "cost",
            "coverage",
            "greedy_assigned",
            "greedy_cost",
            "greedy_coverage",
            "timings",
            "error",
            "applied_at",
        ]


class AssignmentProposalOut(serializers.ModelSerializer):
    mentee_level = serializers.IntegerField()
    status = serializers.CharField()
    mentor = NetworkPersonOut()
    mentee = NetworkPersonOut()
    reason = serializers.SerializerMethodField()

    class Meta:
        model = AssignmentProposal
        fields = [
            "id",
            "mentor",
            "mentee",
            "mentee_level",
            "cost",
            "distance_km",
            "specialty_match",
            "on_referral_line",
            "status",
            "note",
            "reason",
            "mentorship",
        ]

    def get_reason(self, proposal: AssignmentProposal) -> str:
        parts = [
            _("same specialty") if proposal.specialty_match else _("a different specialty"),
            _("%(km)d km away") % {"km": round(proposal.distance_km)},
        ]
        if proposal.on_referral_line:
            parts.append(_("on the referral line"))
        return " · ".join(parts)


class CaseConferenceOut(serializers.ModelSerializer):
    organiser = serializers.CharField(source="organiser.display_name")
    organiser_id = serializers.IntegerField()
    thread = serializers.IntegerField(source="thread_id")
    patient = serializers.IntegerField(source="patient_id", allow_null=True)

    class Meta:
        model = CaseConference
        fields = [
            "id",
            "subject",
            "state",
            "organiser",
            "organiser_id",
            "thread",
            "patient",
            "created_at",
            "presented_at",
            "recommendations",
            "concluded_at",
        ]


def _page_of(name: str, item: serializers.Serializer) -> serializers.Serializer:
    """The shape of a page from telehealth.api.pagination, for the schema."""
    return inline_serializer(
        name,
        {
            "count": serializers.IntegerField(),
            "next": serializers.URLField(allow_null=True),
            "previous": serializers.URLField(allow_null=True),
            "results": item,
        },
    )


def _mentorship(user, mentorship_id: int, detail: bool = False) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    mentorship = selectors.mentorship_get_for_user(user=user, mentorship_id=mentorship_id)
    serializer = MentorshipDetailOut if detail else MentorshipOut
    return serializer(mentorship, context={"user": user}).data


# --- My network -------------------------------------------------------------------------


class OverviewView(APIView):
    """My network: me, my mentors and mentees (with history), my quota gauges."""

    @extend_schema(responses=NetworkOverviewOut)
    def get(self, request: Request) -> Response:
        overview = selectors.network_overview(user=request.user)
        data = {
            "me": overview.me,
            "policy": overview.policy.name,
            "can_mentor": overview.can_mentor,
            "can_be_mentored": overview.can_be_mentored,
            "gauges": [{**g.__dict__, "free": g.free, "over": g.over} for g in overview.gauges],
            "mentorships": overview.mentorships,
        }
        return Response(NetworkOverviewOut(data, context={"user": request.user}).data)


class GraphView(APIView):
    """My neighbourhood in the mentoring graph, two steps out."""

    @extend_schema(responses=NetworkGraphOut)
    def get(self, request: Request) -> Response:
        return Response(NetworkGraphOut(selectors.network_graph(user=request.user)).data)


class SuggestionsView(APIView):
    """Ranked people to ask, with the reason for each."""

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "role",
                OpenApiTypes.STR,
                enum=["mentor", "mentee"],
                description="Suggest mentors for me, or mentees for me.",
            ),
            OpenApiParameter("limit", OpenApiTypes.INT, description="1 to 50, default 10."),
        ],
        responses=SuggestionsOut,
    )
    def get(self, request: Request) -> Response:
        role = request.query_params.get("role") or None
        if role not in (None, "mentor", "mentee"):
            raise DomainError(_("role is mentor or mentee."), fields={"role": ["mentor|mentee"]})
        try:
            limit = min(max(int(request.query_params.get("limit", 10)), 1), 50)
        except ValueError:
            raise DomainError(_("limit is a number."), fields={"limit": ["1-50"]}) from None
        result = selectors.suggestion_list(user=request.user, role=role, limit=limit)
        return Response(SuggestionsOut(result).data)


class PersonView(APIView):
    """A clinician's public directory card."""

    @extend_schema(responses=NetworkPersonDetailOut)
    def get(self, request: Request, user_id: int) -> Response:
        return Response(NetworkPersonDetailOut(selectors.clinician_get(user_id=user_id)).data)


# --- Mentorships ------------------------------------------------------------------------


class MentorshipListView(APIView):
    """My mentorships (history included); POST asks someone to be my mentor or mentee."""

    class MentorshipRequestInput(serializers.Serializer):
        mentor = serializers.IntegerField(required=False, help_text="User id of the mentor I ask.")
        mentee = serializers.IntegerField(required=False, help_text="User id of the mentee I ask.")
        message = serializers.CharField(max_length=500, required=False, allow_blank=True)
        source = serializers.ChoiceField(
            choices=[Mentorship.Source.DIRECT, Mentorship.Source.SUGGESTION],
            default=Mentorship.Source.DIRECT,
        )

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "state", OpenApiTypes.STR, enum=Mentorship.State.values, many=True, explode=False
            )
        ],
        responses=_page_of("MentorshipPage", MentorshipOut(many=True)),
        operation_id="network_mentorships_list",
    )
    def get(self, request: Request) -> Response:
        states = [s for s in request.query_params.get("state", "").split(",") if s]
        unknown = set(states) - set(Mentorship.State.values)
        if unknown:
            raise DomainError(_("Unknown state."), fields={"state": sorted(unknown)})
        mentorships = selectors.mentorship_list_for_user(user=request.user, states=states)
        paginator = PageNumberPagination()
        page = paginator.paginate_queryset(mentorships, request, view=self)
        return paginator.get_paginated_response(
            MentorshipOut(page, many=True, context={"user": request.user}).data
        )

    @extend_schema(request=MentorshipRequestInput, responses={201: MentorshipOut})
    def post(self, request: Request) -> Response:
        data = self.MentorshipRequestInput(data=request.data)
        data.is_valid(raise_exception=True)
        mentorship = services.check_mentorship_request(
            user=request.user,
            mentor_user_id=data.validated_data.get("mentor"),
            mentee_user_id=data.validated_data.get("mentee"),
            message=data.validated_data.get("message", ""),
            source=data.validated_data["source"],
        )
        return Response(_mentorship(request.user, mentorship.pk), status=status.HTTP_201_CREATED)


class MentorshipDetailView(APIView):
    @extend_schema(responses=MentorshipDetailOut)
    def get(self, request: Request, mentorship_id: int) -> Response:
        return Response(_mentorship(request.user, mentorship_id, detail=True))


class MentorshipNoteInput(serializers.Serializer):
    note = serializers.CharField(max_length=500, required=False, allow_blank=True)


class MentorshipAcceptView(APIView):
    """Accept a request that waits for me; the mentorship's conversation opens."""

    @extend_schema(request=None, responses=MentorshipOut)
    def post(self, request: Request, mentorship_id: int) -> Response:
        services.check_mentorship_answer(
            user=request.user, mentorship_id=mentorship_id, accept=True
        )
        return Response(_mentorship(request.user, mentorship_id))


class MentorshipDeclineView(APIView):
    @extend_schema(request=MentorshipNoteInput, responses=MentorshipOut)
    def post(self, request: Request, mentorship_id: int) -> Response:
        data = MentorshipNoteInput(data=request.data)
        data.is_valid(raise_exception=True)
        services.check_mentorship_answer(
            user=request.user,
            mentorship_id=mentorship_id,
            accept=False,
            note=data.validated_data.get("note", ""),
        )
        return Response(_mentorship(request.user, mentorship_id))


class MentorshipEndView(APIView):
    """End a mentorship (either party) or withdraw my waiting request."""

    class MentorshipEndInput(serializers.Serializer):
        reason = serializers.ChoiceField(choices=Mentorship.EndReason.choices)
        note = serializers.CharField(max_length=500, required=False, allow_blank=True)

    @extend_schema(request=MentorshipEndInput, responses=MentorshipOut)
    def post(self, request: Request, mentorship_id: int) -> Response:
        data = self.MentorshipEndInput(data=request.data)
        data.is_valid(raise_exception=True)
        services.check_mentorship_end(
            user=request.user,
            mentorship_id=mentorship_id,
            reason=data.validated_data["reason"],
            note=data.validated_data.get("note", ""),
        )
        return Response(_mentorship(request.user, mentorship_id))


# --- Policy -----------------------------------------------------------------------------


class PolicyView(APIView):
    """The active mentoring policy; administrators replace it with PUT (the old one is kept)."""

    class MentoringPolicyInput(serializers.Serializer):
        name = serializers.CharField(max_length=120)
        max_distance_km = serializers.IntegerField(min_value=1, max_value=3000)
        quotas = PolicyQuotaItem(many=True)
        note = serializers.CharField(max_length=255, required=False, allow_blank=True)

    @extend_schema(responses=MentoringPolicyOut)
    def get(self, request: Request) -> Response:
        return Response(_policy_out(selectors.policy_active()))

    @extend_schema(request=MentoringPolicyInput, responses=MentoringPolicyOut)
    def put(self, request: Request) -> Response:
        if not request.user.is_staff:
            raise AccessDenied(_("Only administrators can change the mentoring policy."))
        data = self.MentoringPolicyInput(data=request.data)
        data.is_valid(raise_exception=True)
        services.check_policy_replace(
            user=request.user,
            name=data.validated_data["name"],
            max_distance_km=data.validated_data["max_distance_km"],
            quotas={
                (int(q["mentor_level"]), int(q["mentee_level"])): q["quota"]
                for q in data.validated_data["quotas"]
            },
            note=data.validated_data.get("note", ""),
        )
        return Response(_policy_out(selectors.policy_active()))


# --- Coverage ---------------------------------------------------------------------------

_COVERAGE_PARAMETERS = [
    OpenApiParameter(
        "province",
        OpenApiTypes.STR,
        description="Province code; empty: my province, or the country.",
    ),
    OpenApiParameter("facility", OpenApiTypes.STR, description="Facility code."),
    OpenApiParameter("specialty", OpenApiTypes.STR, description="Specialty code."),
]


def _coverage_rows(request: Request) -> tuple[Any, list[selectors.CoverageRow]]:
    province = selectors.scope_province(
        user=request.user, code=request.query_params.get("province") or None
    )
    rows = selectors.coverage_rows(
        province=province,
        facility_code=request.query_params.get("facility") or None,
        specialty_code=request.query_params.get("specialty") or None,
    )
    return province, rows


class CoverageView(APIView):
    """Coverage by province, facility and specialty; who has no mentor; mentors under or
    over quota (over-quota is reported, never cut). Coordinators see their province."""

    @extend_schema(parameters=_COVERAGE_PARAMETERS, responses=OpenApiTypes.OBJECT)
    def get(self, request: Request) -> Response:
        province, rows = _coverage_rows(request)
        summary = selectors.coverage_summary(rows=rows)
        summary["province"] = province.code if province else None
        summary["policy"] = _policy_out(selectors.policy_active())
        return Response(summary)


CSV_COLUMNS = [
    "province",
    "facility_code",
    "facility",
    "level",
    "person_id",
    "name",
    "kind",
    "specialties",
    "role",
    "mentors",
    "places_used",
    "quota",
    "status",
]


class _Echo:
    def write(self, value: str) -> str:
        return value


class CoverageExportView(APIView):
    """The coverage report as CSV: one row per mentee and per mentor in scope."""

    @extend_schema(
        parameters=_COVERAGE_PARAMETERS,
        responses={(200, "text/csv"): OpenApiResponse(OpenApiTypes.STR)},
    )
    def get(self, request: Request) -> StreamingHttpResponse:
        province, rows = _coverage_rows(request)
        audit_record(
            actor=request.user,
            action=AuditEvent.Action.EXPORT,
            target=f"network.coverage:{province.code if province else 'national'}",
            reason="coverage report (CSV)",
            request=request,
        )
        writer = csv.writer(_Echo())

        def lines() -> Iterator[str]:
            yield "\ufeff"  # so spreadsheet programs read the Vietnamese names as UTF-8
            yield writer.writerow(CSV_COLUMNS)
            for row in rows:
                yield writer.writerow(
                    [
                        row.province_code,
                        row.facility_code,
                        row.facility_name,
                        row.level,
                        row.user_id,
                        row.name,
                        row.kind,
                        " ".join(row.specialties),
                        row.role,
                        row.mentors if row.role == "mentee" else "",
                        " ".join(f"{k}:{v}" for k, v in sorted(row.used.items())),
                        " ".join(f"{k}:{v}" for k, v in sorted(row.quota.items())),
                        row.status,
                    ]
                )

        name = f"coverage-{province.code if province else 'national'}-{timezone.localdate()}.csv"
        response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="{name}"'
        return response


# --- Auto-assignment ------------------------------------------------------------


class RunListView(APIView):
    """Auto-assignment runs I may manage; POST starts one (a Celery job with progress)."""

    class AssignmentRunInput(serializers.Serializer):
        province = serializers.CharField(
            required=False, allow_blank=True, allow_null=True, help_text="Empty: the whole country."
        )
        max_distance_km = serializers.IntegerField(required=False, min_value=10, max_value=3000)

    @extend_schema(responses=AssignmentRunOut(many=True))
    def get(self, request: Request) -> Response:
        if not selectors.coordinator_scope(user=request.user).any:
            raise AccessDenied(_("Only coordinators can see coverage and auto-assignment."))
        runs = selectors.run_list_for_user(user=request.user)[:50]
        return Response(AssignmentRunOut(runs, many=True).data)

    @extend_schema(request=AssignmentRunInput, responses={202: AssignmentRunOut})
    def post(self, request: Request) -> Response:
        data = self.AssignmentRunInput(data=request.data)
        data.is_valid(raise_exception=True)
        province = selectors.scope_province(
            user=request.user, code=data.validated_data.get("province") or None, manage=True
        )
        run = services.check_assignment_run_create(
            user=request.user,
            province=province,
            max_distance_km=data.validated_data.get("max_distance_km"),
        )
        run = selectors.run_get_for_user(user=request.user, run_id=run.pk)
        return Response(AssignmentRunOut(run).data, status=status.HTTP_202_ACCEPTED)


class RunDetailView(APIView):
    @extend_schema(responses=AssignmentRunOut)
    def get(self, request: Request, run_id: int) -> Response:
        return Response(
            AssignmentRunOut(selectors.run_get_for_user(user=request.user, run_id=run_id)).data
        )


class ProposalListView(APIView):
    """A run's proposals, page by page, with the reason for each."""

    @extend_schema(
        parameters=[
            OpenApiParameter("status", OpenApiTypes.STR, enum=AssignmentProposal.Status.values),
            OpenApiParameter("page", OpenApiTypes.INT),
            OpenApiParameter("page_size", OpenApiTypes.INT),
        ],
        responses=_page_of("AssignmentProposalPage", AssignmentProposalOut(many=True)),
        operation_id="network_assignment_runs_proposals_list",
    )
    def get(self, request: Request, run_id: int) -> Response:
        run = selectors.run_get_for_user(user=request.user, run_id=run_id)
        wanted = request.query_params.get("status") or None
        if wanted is not None and wanted not in AssignmentProposal.Status.values:
            raise DomainError(_("Unknown status."), fields={"status": [wanted]})
        proposals = selectors.proposal_list(run=run, status=wanted)
        paginator = PageNumberPagination()
        page = paginator.paginate_queryset(proposals, request, view=self)
        return paginator.get_paginated_response(AssignmentProposalOut(page, many=True).data)


class ReviewView(APIView):
    """Accept or reject proposals (all still proposed, when no ids are given)."""

    class ProposalReviewInput(serializers.Serializer):
        decision = serializers.ChoiceField(choices=["accept", "reject"])
        proposal_ids = serializers.ListField(
            child=serializers.IntegerField(), required=False, allow_null=True, max_length=50_000
        )

    @extend_schema(
        request=ProposalReviewInput,
        responses=OpenApiResponse(
            OpenApiTypes.OBJECT, description='{"changed": n}: how many proposals changed.'
        ),
    )
    def post(self, request: Request, run_id: int) -> Response:
        data = self.ProposalReviewInput(data=request.data)
        data.is_valid(raise_exception=True)
        changed = services.check_proposals_review(
            user=request.user,
            run_id=run_id,
            decision=data.validated_data["decision"],
            proposal_ids=data.validated_data.get("proposal_ids"),
        )
        return Response({"changed": changed})


class ApplyView(APIView):
    """Send the accepted proposals as mentorship requests (a Celery job)."""

    @extend_schema(request=None, responses={202: AssignmentRunOut})
    def post(self, request: Request, run_id: int) -> Response:
        services.check_assignment_apply(user=request.user, run_id=run_id)
        run = selectors.run_get_for_user(user=request.user, run_id=run_id)
        return Response(AssignmentRunOut(run).data, status=status.HTTP_202_ACCEPTED)


# --- Case conferences -------------------------------------------------------------------


def _conference(request: Request, conference_id: int) -> CaseConference:
    conference = selectors.case_conference_get_for_user(
        user=request.user, conference_id=conference_id
    )
    if conference.patient_id is not None:
        # Its subject and recommendations are about a patient: every read is audited.
        audit_record(
            actor=request.user,
            action=AuditEvent.Action.READ,
            target=f"network.case_conference:{conference.pk}",
            patient=conference.patient,
            reason="case conference",
            request=request,
        )
    return conference


class ConferenceListView(APIView):
    """Case conferences I take part in; POST (a mentor) opens one."""

    class CaseConferenceOpenInput(serializers.Serializer):
        subject = serializers.CharField(max_length=200)
        mentee_ids = serializers.ListField(
            child=serializers.IntegerField(), min_length=1, max_length=30
        )
        colleague_ids = serializers.ListField(
            child=serializers.IntegerField(), required=False, max_length=30
        )
        patient_id = serializers.IntegerField(required=False, allow_null=True)

    @extend_schema(responses=CaseConferenceOut(many=True))
    def get(self, request: Request) -> Response:
        conferences = selectors.case_conference_list_for_user(user=request.user)[:100]
        return Response(CaseConferenceOut(conferences, many=True).data)

    @extend_schema(request=CaseConferenceOpenInput, responses={201: CaseConferenceOut})
    def post(self, request: Request) -> Response:
        data = self.CaseConferenceOpenInput(data=request.data)
        data.is_valid(raise_exception=True)
        patient_id = data.validated_data.get("patient_id")
        patient = (
            kernel_selectors.patient_get_for_user(
                user=request.user,
                patient_id=patient_id,
                purpose="case conference",
                request=request,
            )
            if patient_id
            else None
        )
        conference = services.check_case_conference_open(
            user=request.user,
            subject=data.validated_data["subject"],
            mentee_user_ids=data.validated_data["mentee_ids"],
            colleague_user_ids=data.validated_data.get("colleague_ids", []),
            patient=patient,
        )
        return Response(
            CaseConferenceOut(_conference(request, conference.pk)).data,
            status=status.HTTP_201_CREATED,
        )


class ConferenceDetailView(APIView):
    @extend_schema(responses=CaseConferenceOut)
    def get(self, request: Request, conference_id: int) -> Response:
        return Response(CaseConferenceOut(_conference(request, conference_id)).data)


class PresentView(APIView):
    """Post the case presentation: text and files uploaded to the conference's thread
    (POST /api/v1/threads/{thread}/attachments/) first."""

    class CaseConferencePresentInput(serializers.Serializer):
        body = serializers.CharField(max_length=8000, allow_blank=True)
        attachment_ids = serializers.ListField(
            child=serializers.CharField(), required=False, max_length=10
        )
        client_id = serializers.CharField(max_length=64, required=False)

    @extend_schema(request=CaseConferencePresentInput, responses=CaseConferenceOut)
    def post(self, request: Request, conference_id: int) -> Response:
        data = self.CaseConferencePresentInput(data=request.data)
        data.is_valid(raise_exception=True)
        services.check_case_conference_present(
            user=request.user,
            conference_id=conference_id,
            body=data.validated_data["body"],
            attachment_ids=data.validated_data.get("attachment_ids", []),
            client_id=data.validated_data.get("client_id") or f"present-{uuid.uuid4()}",
        )
        return Response(CaseConferenceOut(_conference(request, conference_id)).data)


class InviteView(APIView):
    class CaseConferenceInviteInput(serializers.Serializer):
        user_ids = serializers.ListField(
            child=serializers.IntegerField(), min_length=1, max_length=30
        )

    @extend_schema(request=CaseConferenceInviteInput, responses=CaseConferenceOut)
    def post(self, request: Request, conference_id: int) -> Response:
        data = self.CaseConferenceInviteInput(data=request.data)
        data.is_valid(raise_exception=True)
        services.check_case_conference_invite(
            user=request.user, conference_id=conference_id, user_ids=data.validated_data["user_ids"]
        )
        return Response(CaseConferenceOut(_conference(request, conference_id)).data)


class ConcludeView(APIView):
    """Record the recommendations and close the conference."""

    class CaseConferenceConcludeInput(serializers.Serializer):
        recommendations = serializers.CharField(max_length=7000)
        client_id = serializers.CharField(max_length=64, required=False)

    @extend_schema(request=CaseConferenceConcludeInput, responses=CaseConferenceOut)
    def post(self, request: Request, conference_id: int) -> Response:
        data = self.CaseConferenceConcludeInput(data=request.data)
        data.is_valid(raise_exception=True)
        services.check_case_conference_conclude(
            user=request.user,
            conference_id=conference_id,
            recommendations=data.validated_data["recommendations"],
            client_id=data.validated_data.get("client_id") or f"conclude-{uuid.uuid4()}",
        )
        return Response(CaseConferenceOut(_conference(request, conference_id)).data)
