"""REST endpoints of privacy/: the notice, a patient's consent, their data download
and their requests; a clinician's record of a paper consent form; the
coordinators' worklist of requests.

Thin: parse, call one service or selector, serialise. Who may do what is
checked in the services and selectors; errors are ``DomainError``s that the
project's handler turns into 400/403/404/409.
"""

from __future__ import annotations

from typing import Any

from django.utils import timezone
from django.utils.translation import gettext as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
)
from rest_framework import serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from privacy import selectors, services
from privacy.models import ConsentRecord, DataRequest, Purpose
from privacy.notices import CURRENT_NOTICE
from telehealth.errors import AccessDenied
from telehealth.models import Commune, PatientProfile, Sex, User
from telehealth.selectors import patient_get_for_user

# --- Output -------------------------------------------------------------------------------


class PurposeOut(serializers.Serializer):
    code = serializers.CharField()
    label = serializers.CharField()


class NoticeOut(serializers.Serializer):
    version = serializers.CharField()
    published = serializers.DateField()
    title = serializers.CharField(help_text="In the language of the request.")
    text = serializers.CharField(help_text="In the language of the request.")
    title_vi = serializers.CharField()
    text_vi = serializers.CharField()
    title_en = serializers.CharField()
    text_en = serializers.CharField()
    purposes = PurposeOut(many=True)


def notice_data() -> dict[str, Any]:
    notice = CURRENT_NOTICE
    return {
        "version": notice.version,
        "published": notice.published,
        "title": notice.title(),
        "text": notice.text(),
        "title_vi": notice.title_vi,
        "text_vi": notice.text_vi,
        "title_en": notice.title_en,
        "text_en": notice.text_en,
        "purposes": [{"code": p, "label": Purpose(p).label} for p in notice.purposes],
    }


class ConsentRecordOut(serializers.ModelSerializer):
    action_label = serializers.CharField(source="get_action_display")
    method_label = serializers.CharField(source="get_method_display")
    recorded_by = serializers.SerializerMethodField()

    class Meta:
        model = ConsentRecord
        fields = [
            "id",
            "decided_at",
            "recorded_at",
            "notice_version",
            "action",
            "action_label",
            "purposes",
            "given",
            "withdrawn",
            "method",
            "method_label",
            "recorded_by",
            "note",
        ]

    def get_recorded_by(self, record: ConsentRecord) -> str | None:
        return record.recorded_by.display_name if record.recorded_by else None


class PurposeStateOut(serializers.Serializer):
    purpose = serializers.CharField()
    label = serializers.CharField()
    agreed = serializers.BooleanField(help_text="In the patient's latest decision.")
    allowed = serializers.BooleanField(help_text="Agreed, and not held back by a restriction.")
    state = serializers.CharField(help_text="given, not_given, never or restricted.")


class RestrictionOut(serializers.Serializer):
    reason = serializers.CharField()
    since = serializers.DateTimeField()
    until = serializers.DateTimeField(allow_null=True)


class ConsentStateOut(serializers.Serializer):
    patient_id = serializers.IntegerField()
    current_notice_version = serializers.CharField()
    answered_notice_version = serializers.CharField(allow_null=True)
    needs_answer = serializers.BooleanField(
        help_text="The patient never answered, or answered an older notice."
    )
    purposes = PurposeStateOut(many=True)
    restriction = RestrictionOut(allow_null=True)
    history = ConsentRecordOut(many=True)


def consent_state(patient: PatientProfile) -> dict[str, Any]:
    """The patient's consent as the page and the API show it."""
    history = list(selectors.consent_history(patient=patient))
    current = history[0] if history else None
    restriction = selectors.restriction_active(patient=patient)
    agreed = set(current.purposes) if current else set()
    purposes = []
    for purpose in CURRENT_NOTICE.purposes:
        status_ = selectors.consent_status(patient=patient, purpose=purpose)
        purposes.append(
            {
                "purpose": purpose,
                "label": Purpose(purpose).label,
                "agreed": purpose in agreed,
                "allowed": status_.allowed,
                "state": status_.state,
            }
        )
    return {
        "patient_id": patient.pk,
        "current_notice_version": CURRENT_NOTICE.version,
        "answered_notice_version": current.notice_version if current else None,
        "needs_answer": current is None or current.notice_version != CURRENT_NOTICE.version,
        "purposes": purposes,
        "restriction": (
            {
                "reason": restriction.reason,
                "since": restriction.starts_at,
                "until": restriction.ends_at,
            }
            if restriction
            else None
        ),
        "history": ConsentRecordOut(history, many=True).data,
    }


class RequestPatientOut(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()


class RequestEventOut(serializers.Serializer):
    at = serializers.DateTimeField()
    by = serializers.CharField(allow_null=True)
    action = serializers.CharField()
    from_status = serializers.CharField()
    to_status = serializers.CharField()
    note = serializers.CharField()


class KeptOut(serializers.Serializer):
    item = serializers.CharField()
    what = serializers.CharField()
    count = serializers.IntegerField(allow_null=True)
    why = serializers.CharField()


class DeletionReportOut(serializers.Serializer):
    erased = serializers.ListField(child=serializers.CharField())
    kept = KeptOut(many=True)
    retention_until = serializers.CharField(allow_null=True)


class DataRequestOut(serializers.ModelSerializer):
    kind_label = serializers.CharField(source="get_kind_display")
    status_label = serializers.CharField(source="get_status_display")
    overdue = serializers.BooleanField(source="is_overdue")
    patient = serializers.SerializerMethodField()
    handler = serializers.SerializerMethodField()
    report = serializers.SerializerMethodField()
    events = serializers.SerializerMethodField()

    class Meta:
        model = DataRequest
        fields = [
            "id",
            "kind",
            "kind_label",
            "status",
            "status_label",
            "details",
            "patient",
            "created_at",
            "respond_by",
            "due_at",
            "overdue",
            "started_at",
            "closed_at",
            "handler",
            "outcome",
            "result",
            "report",
            "events",
        ]

    @extend_schema_field(RequestPatientOut)
    def get_patient(self, data_request: DataRequest) -> dict[str, Any]:
        return {"id": data_request.patient_id, "name": data_request.patient.user.display_name}

    def get_handler(self, data_request: DataRequest) -> str | None:
        return data_request.handler.display_name if data_request.handler else None

    @extend_schema_field(DeletionReportOut(allow_null=True))
    def get_report(self, data_request: DataRequest) -> dict[str, Any] | None:
        if data_request.kind != DataRequest.Kind.DELETION or not data_request.result:
            return None
        return services.deletion_report(data_request.result)

    @extend_schema_field(RequestEventOut(many=True))
    def get_events(self, data_request: DataRequest) -> list[dict[str, Any]]:
        return [
            {
                "at": e.at,
                "by": e.actor.display_name if e.actor else None,
                "action": e.action,
                "from_status": e.from_status,
                "to_status": e.to_status,
                "note": e.note,
            }
            for e in data_request.events.all()  # prefetched in order (privacy.selectors)
        ]


# --- Input --------------------------------------------------------------------------------

_PURPOSE = serializers.ChoiceField(choices=Purpose.choices)


class ConsentAnswerIn(serializers.Serializer):
    notice_version = serializers.CharField(max_length=20)
    purposes = serializers.ListField(child=_PURPOSE, allow_empty=True, max_length=10)


class ConsentPurposeIn(serializers.Serializer):
    purpose = _PURPOSE


class PaperConsentIn(ConsentAnswerIn):
    signed_at = serializers.DateTimeField(
        required=False, help_text="When the patient signed the form (default: now)."
    )
    note = serializers.CharField(
        max_length=255, required=False, allow_blank=True, help_text="The form's reference."
    )


class DataRequestIn(serializers.Serializer):
    kind = serializers.ChoiceField(choices=DataRequest.Kind.choices)
    details = serializers.CharField(
        max_length=services.MAX_DETAILS,
        required=False,
        allow_blank=True,
        help_text="What is wrong and what it should say (required for a correction), or why.",
    )


class CorrectionsIn(serializers.Serializer):
    """The identity and contact details a correction may change; give only those to change."""

    full_name = serializers.CharField(max_length=150, required=False)
    phone = serializers.RegexField(
        r"^\+?[0-9 .-]{6,20}$", max_length=20, required=False, allow_blank=True
    )
    date_of_birth = serializers.DateField(required=False, allow_null=True)
    sex = serializers.ChoiceField(choices=Sex.choices, required=False)
    health_insurance_number = serializers.CharField(max_length=20, required=False, allow_blank=True)
    address = serializers.CharField(max_length=255, required=False, allow_blank=True)
    home_commune = serializers.SlugRelatedField(
        slug_field="code", queryset=Commune.objects.all(), required=False, allow_null=True
    )

    def validate_date_of_birth(self, value: Any) -> Any:
        if value is not None and value > timezone.localdate():
            raise serializers.ValidationError(_("A date of birth cannot be in the future."))
        return value


class CompleteIn(serializers.Serializer):
    outcome = serializers.CharField(
        max_length=services.MAX_OUTCOME, help_text="What was done: the patient reads this."
    )
    corrections = CorrectionsIn(required=False)


class RefuseIn(serializers.Serializer):
    reason = serializers.CharField(
        max_length=services.MAX_OUTCOME, help_text="Why not: the patient reads this."
    )


class ExtendIn(serializers.Serializer):
    reason = serializers.CharField(
        max_length=services.MAX_OUTCOME,
        help_text="Why more time is needed: the patient reads this with the new date.",
    )


def _valid(serializer_class: type[serializers.Serializer], request: Request) -> dict[str, Any]:
    data = serializer_class(data=request.data)
    data.is_valid(raise_exception=True)
    return data.validated_data


def patient_of(user: User) -> PatientProfile:
    """The signed-in person's own patient record, or 403 for people who are not patients."""
    patient = (
        PatientProfile.objects.select_related("user").filter(user=user).first()
        if user.is_authenticated
        else None
    )
    if patient is None:
        raise AccessDenied(_("This is for patients: you have no patient record here."))
    return patient


def _request_out(data_request: DataRequest) -> dict[str, Any]:
    return DataRequestOut(data_request).data


# --- Views --------------------------------------------------------------------------------


class NoticeView(APIView):
    """The current privacy notice, in Vietnamese and English; anyone may read it."""

    permission_classes = [AllowAny]

    @extend_schema(responses=NoticeOut, auth=[])
    def get(self, request: Request) -> Response:
        return Response(NoticeOut(notice_data()).data)


class ConsentView(APIView):
    """My consent: each purpose, any restriction, and every decision; POST answers the notice."""

    @extend_schema(responses=ConsentStateOut)
    def get(self, request: Request) -> Response:
        return Response(consent_state(patient_of(request.user)))

    @extend_schema(request=ConsentAnswerIn, responses={201: ConsentStateOut})
    def post(self, request: Request) -> Response:
        patient = patient_of(request.user)
        data = _valid(ConsentAnswerIn, request)
        services.consent_answer(
            patient=patient,
            purposes=data["purposes"],
            notice_version=data["notice_version"],
            method=ConsentRecord.Method.API,
            by=request.user,
            request=request,
        )
        return Response(consent_state(patient), status=status.HTTP_201_CREATED)


class _ConsentChangeView(APIView):
    give = True

    @extend_schema(request=ConsentPurposeIn, responses=ConsentStateOut)
    def post(self, request: Request) -> Response:
        patient = patient_of(request.user)
        data = _valid(ConsentPurposeIn, request)
        change = services.consent_give if self.give else services.consent_withdraw
        change(
            patient=patient,
            purpose=data["purpose"],
            method=ConsentRecord.Method.API,
            by=request.user,
            request=request,
        )
        return Response(consent_state(patient))


class ConsentGiveView(_ConsentChangeView):
    """Agree to one more purpose (idempotent)."""

    give = True


class ConsentWithdrawView(_ConsentChangeView):
    """Withdraw one purpose: a new record; what it stops, it stops at once (idempotent)."""

    give = False


class PatientConsentView(APIView):
    """A patient's consent, for a clinician who may see them; POST records a signed paper form."""

    @extend_schema(responses=ConsentStateOut)
    def get(self, request: Request, patient_id: int) -> Response:
        patient = patient_get_for_user(
            user=request.user, patient_id=patient_id, purpose="consent", request=request
        )
        return Response(consent_state(patient))

    @extend_schema(request=PaperConsentIn, responses={201: ConsentStateOut})
    def post(self, request: Request, patient_id: int) -> Response:
        patient = patient_get_for_user(
            user=request.user, patient_id=patient_id, purpose="record consent", request=request
        )
        data = _valid(PaperConsentIn, request)
        services.consent_answer(
            patient=patient,
            purposes=data["purposes"],
            notice_version=data["notice_version"],
            method=ConsentRecord.Method.PAPER,
            by=request.user,
            decided_at=data.get("signed_at"),
            note=data.get("note", ""),
            request=request,
        )
        return Response(consent_state(patient), status=status.HTTP_201_CREATED)


class ExportView(APIView):
    """Download all my data as JSON (audited as an export of my record)."""

    @extend_schema(
        responses={200: OpenApiResponse(OpenApiTypes.OBJECT, description="The whole download.")}
    )
    def get(self, request: Request) -> Response:
        patient_of(request.user)
        data = services.patient_data_export(user=request.user, request=request)
        response = Response(data)
        day = timezone.localdate().isoformat()
        response["Content-Disposition"] = f'attachment; filename="my-health-data-{day}.json"'
        return response


class DataRequestListView(APIView):
    """My requests about my data, newest first; POST makes one."""

    @extend_schema(responses=DataRequestOut(many=True))
    def get(self, request: Request) -> Response:
        patient = patient_of(request.user)
        rows = selectors.data_request_list_for_patient(patient=patient)[:100]
        return Response(DataRequestOut(rows, many=True).data)

    @extend_schema(request=DataRequestIn, responses={201: DataRequestOut})
    def post(self, request: Request) -> Response:
        patient = patient_of(request.user)
        data = _valid(DataRequestIn, request)
        created = services.data_request_create(
            patient=patient,
            kind=data["kind"],
            details=data.get("details", ""),
            by=request.user,
            request=request,
        )
        return Response(_request_out(created), status=status.HTTP_201_CREATED)


class DataRequestDetailView(APIView):
    """One request, with its history: for the patient, and coordinators whose scope covers them."""

    @extend_schema(responses=DataRequestOut)
    def get(self, request: Request, request_id: int) -> Response:
        found, _role = selectors.data_request_get_for_user(
            user=request.user, request_id=request_id, request=request
        )
        return Response(_request_out(found))


class DataRequestStartView(APIView):
    """A coordinator takes the request: received → in progress."""

    @extend_schema(request=None, responses=DataRequestOut)
    def post(self, request: Request, request_id: int) -> Response:
        done = services.data_request_start(request_id=request_id, by=request.user, request=request)
        return Response(_request_out(done))


class DataRequestCompleteView(APIView):
    """A coordinator finishes the request (a correction applies ``corrections``; a deletion
    erases contact details and the account and keeps the medical record restricted)."""

    @extend_schema(request=CompleteIn, responses=DataRequestOut)
    def post(self, request: Request, request_id: int) -> Response:
        data = _valid(CompleteIn, request)
        done = services.data_request_complete(
            request_id=request_id,
            by=request.user,
            outcome=data["outcome"],
            corrections=data.get("corrections"),
            request=request,
        )
        return Response(_request_out(done))


class DataRequestRefuseView(APIView):
    """A coordinator refuses the request with a reason the patient reads."""

    @extend_schema(request=RefuseIn, responses=DataRequestOut)
    def post(self, request: Request, request_id: int) -> Response:
        data = _valid(RefuseIn, request)
        done = services.data_request_refuse(
            request_id=request_id, by=request.user, reason=data["reason"], request=request
        )
        return Response(_request_out(done))


class DataRequestExtendView(APIView):
    """A coordinator extends the request's completion once (Decree 356/2025), saying
    why; the patient reads the reason and the new date."""

    @extend_schema(request=ExtendIn, responses=DataRequestOut)
    def post(self, request: Request, request_id: int) -> Response:
        data = _valid(ExtendIn, request)
        done = services.data_request_extend(
            request_id=request_id, by=request.user, reason=data["reason"], request=request
        )
        return Response(_request_out(done))


class DeletionPlanView(APIView):
    """What deleting my data would erase and keep, and why, before I ask."""

    @extend_schema(responses=DeletionReportOut)
    def get(self, request: Request) -> Response:
        patient = patient_of(request.user)
        return Response(services.deletion_report(services.deletion_plan(patient=patient)))


class RestrictionLiftView(APIView):
    """Lift the restriction I asked for."""

    @extend_schema(request=None, responses=ConsentStateOut)
    def post(self, request: Request) -> Response:
        patient = patient_of(request.user)
        services.restriction_lift(patient=patient, by=request.user, request=request)
        return Response(consent_state(patient))


class WorklistView(APIView):
    """Coordinators: requests of the patients my scope covers (open by due time, overdue,
    or closed)."""

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "state",
                str,
                enum=list(selectors.WORKLIST_STATES),
                description="open (default), overdue or closed.",
            )
        ],
        responses=DataRequestOut(many=True),
    )
    def get(self, request: Request) -> Response:
        if selectors.coordinator_scope(user=request.user).empty:
            raise AccessDenied(_("Only coordinators handle data requests."))
        state = request.query_params.get("state", "open")
        if state not in selectors.WORKLIST_STATES:
            state = "open"
        rows = selectors.data_request_worklist(user=request.user, state=state, request=request)
        return Response(DataRequestOut(rows, many=True).data)
