"""REST endpoints of appointments, referrals, queues and the coordinator board.

Thin: parse, call one service or selector, serialise. Permissions come from
relationships (the patient, the referring and receiving clinicians, their
coordinators) and are checked in the services and selectors; errors are
``DomainError``s that the project's handler turns into 400/403/404/409.
"""

from __future__ import annotations

from typing import Any

from django.utils import timezone
from django.utils.translation import gettext as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    extend_schema,
    extend_schema_field,
    inline_serializer,
)
from rest_framework import serializers, status
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from scheduler import appointment_selectors, appointment_services, fhir, selectors, services
from scheduler.models import (
    Appointment,
    CounterReferral,
    Queue,
    Referral,
    ReferralEvent,
    RoutingDecision,
    Schedule,
    Slot,
    WaitlistEntry,
)
from telehealth.audit import audit_record
from telehealth.errors import DomainError
from telehealth.models import AuditEvent

# --- Output -------------------------------------------------------------------------------


class PersonOut(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()


class FacilityOut(serializers.Serializer):
    code = serializers.CharField()
    name = serializers.CharField()
    level = serializers.IntegerField()


class SpecialtyOut(serializers.Serializer):
    code = serializers.CharField()
    name = serializers.CharField()


def _facility(facility) -> dict | None:  # type: ignore[no-untyped-def]
    if facility is None:
        return None
    return {"code": facility.code, "name": facility.name, "level": facility.level}


class ReferralOut(serializers.ModelSerializer):
    status = serializers.CharField(help_text="FHIR Task.status code.")
    priority = serializers.CharField(help_text="routine, urgent or emergency.")
    requested_mode = serializers.CharField(help_text="remote_first or physical.")
    routing_state = serializers.CharField(help_text="'', pending, routed or no_slot.")
    status_label = serializers.CharField(source="get_status_display")
    routing_label = serializers.CharField(source="get_routing_state_display")
    patient = serializers.SerializerMethodField()
    requester = serializers.SerializerMethodField()
    requesting_facility = serializers.SerializerMethodField()
    target_facility = serializers.SerializerMethodField()
    specialty = serializers.SerializerMethodField()
    ticket = serializers.CharField(source="ticket_label")
    overdue = serializers.SerializerMethodField()

    class Meta:
        model = Referral
        fields = [
            "id",
            "status",
            "status_label",
            "status_reason",
            "priority",
            "requested_mode",
            "reason",
            "patient",
            "requester",
            "requesting_facility",
            "target_facility",
            "specialty",
            "routing_state",
            "routing_label",
            "ticket",
            "queue_day",
            "accept_due_at",
            "contact_due_at",
            "overdue",
            "escalation_level",
            "created_at",
            "requested_at",
            "routed_at",
            "accepted_at",
            "scheduled_for",
            "completed_at",
            "thread_id",
        ]

    def get_patient(self, referral: Referral) -> PersonOut:
        return {"id": referral.patient_id, "name": referral.patient.user.display_name}

    def get_requester(self, referral: Referral) -> PersonOut:
        return {"id": referral.requester_id, "name": referral.requester.display_name}

    def get_requesting_facility(self, referral: Referral) -> FacilityOut:
        return _facility(referral.requesting_facility)

    @extend_schema_field(FacilityOut(allow_null=True))
    def get_target_facility(self, referral: Referral) -> dict | None:
        return _facility(referral.target_facility)

    def get_specialty(self, referral: Referral) -> SpecialtyOut:
        return {"code": referral.specialty.code, "name": referral.specialty.name}

    def get_overdue(self, referral: Referral) -> bool:
        now = timezone.now()
        if referral.routing_state == "no_slot":
            return bool(referral.contact_due_at and referral.contact_due_at < now)
        return bool(
            referral.status in selectors.WAITING_STATUSES
            and referral.accept_due_at
            and referral.accept_due_at < now
        )


class ReferralEventOut(serializers.ModelSerializer):
    actor = serializers.SerializerMethodField()

    class Meta:
        model = ReferralEvent
        fields = ["at", "actor", "action", "from_status", "to_status", "note"]

    def get_actor(self, event: ReferralEvent) -> str:
        return event.actor.display_name if event.actor else _("system")


class RoutingDecisionOut(serializers.ModelSerializer):
    method = serializers.CharField()
    outcome = serializers.CharField(help_text="assigned or no_slot.")
    facility = serializers.CharField(source="facility.code", allow_null=True, default=None)

    class Meta:
        model = RoutingDecision
        fields = [
            "generation",
            "at",
            "method",
            "outcome",
            "facility",
            "queue_day",
            "ticket_number",
            "distance_km",
            "reasons",
        ]


class CounterReferralOut(serializers.ModelSerializer):
    class Meta:
        model = CounterReferral
        fields = ["care_plan", "created_at", "acknowledged_at"]


class ReferralDetailOut(ReferralOut):
    clinical_summary = serializers.CharField()
    roles = serializers.SerializerMethodField()
    queue_position = serializers.SerializerMethodField()
    history = serializers.SerializerMethodField()
    decisions = serializers.SerializerMethodField()
    counter_referral = serializers.SerializerMethodField()

    class Meta(ReferralOut.Meta):
        fields = [
            *ReferralOut.Meta.fields,
            "clinical_summary",
            "roles",
            "queue_position",
            "history",
            "decisions",
            "counter_referral",
        ]

    def get_roles(self, referral: Referral) -> list[str]:
        return sorted(self.context.get("roles", ()))

    def get_queue_position(self, referral: Referral) -> int | None:
        return selectors.queue_position(referral=referral)

    def get_history(self, referral: Referral) -> ReferralEventOut(many=True):  # type: ignore[valid-type]
        events = referral.events.select_related("actor").order_by("at", "id")
        return ReferralEventOut(events, many=True).data

    def get_decisions(self, referral: Referral) -> RoutingDecisionOut(many=True):  # type: ignore[valid-type]
        # Every party, the patient included, may read why a facility was chosen: the
        # reasons name facilities, distances and free places, nothing of other patients.
        decisions = referral.decisions.select_related("facility").order_by("generation")
        return RoutingDecisionOut(decisions, many=True).data

    @extend_schema_field(CounterReferralOut(allow_null=True))
    def get_counter_referral(self, referral: Referral) -> dict | None:
        counter = CounterReferral.objects.filter(referral=referral).first()
        return CounterReferralOut(counter).data if counter else None


class SlotOut(serializers.ModelSerializer):
    status = serializers.CharField(help_text="FHIR Slot.status code.")

    class Meta:
        model = Slot
        fields = ["id", "start", "end", "status"]


class AppointmentOut(serializers.ModelSerializer):
    status = serializers.CharField(help_text="FHIR Appointment.status code.")
    mode = serializers.CharField(help_text="video or in_person.")
    patient = serializers.SerializerMethodField()
    clinician = serializers.SerializerMethodField()
    status_label = serializers.CharField(source="get_status_display")
    join_url = serializers.SerializerMethodField()

    class Meta:
        model = Appointment
        fields = [
            "id",
            "status",
            "status_label",
            "mode",
            "start",
            "end",
            "reason",
            "patient",
            "clinician",
            "slot",
            "visit_id",
            "join_url",
            "referral",
            "rescheduled_from",
            "reschedule_count",
            "cancellation_reason",
        ]

    def get_patient(self, appointment: Appointment) -> PersonOut:
        return {"id": appointment.patient_id, "name": appointment.patient.user.display_name}

    def get_clinician(self, appointment: Appointment) -> dict:
        return {
            "id": appointment.clinician_id,
            "name": appointment.clinician.user.display_name,
            "facility": appointment.clinician.facility.name,
        }

    def get_join_url(self, appointment: Appointment) -> str | None:
        return f"/visits/{appointment.visit_id}/" if appointment.visit_id else None


class ClinicianOut(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField(source="user.display_name")
    title = serializers.CharField()
    facility = serializers.SerializerMethodField()
    specialties = serializers.SerializerMethodField()
    allows_video = serializers.BooleanField(source="schedule.allows_video")
    allows_in_person = serializers.BooleanField(source="schedule.allows_in_person")

    def get_facility(self, clinician) -> FacilityOut:  # type: ignore[no-untyped-def]
        return _facility(clinician.facility)

    def get_specialties(self, clinician) -> list[str]:  # type: ignore[no-untyped-def]
        return [s.code for s in clinician.specialties.all()]


class WaitlistOut(serializers.ModelSerializer):
    status = serializers.CharField(help_text="waiting, offered, booked, expired or cancelled.")
    mode = serializers.CharField(help_text="video or in_person.")
    clinician = serializers.CharField(source="clinician.user.display_name")
    offered_slot = SlotOut(allow_null=True)

    class Meta:
        model = WaitlistEntry
        fields = [
            "id",
            "status",
            "clinician",
            "mode",
            "not_before",
            "not_after",
            "offered_slot",
            "offer_expires_at",
            "appointment",
        ]


class QueueOut(serializers.ModelSerializer):
    facility = serializers.SerializerMethodField()
    specialty = serializers.SerializerMethodField()
    capacity = serializers.SerializerMethodField()

    class Meta:
        model = Queue
        fields = [
            "id",
            "facility",
            "specialty",
            "day",
            "last_ticket",
            "assigned_today",
            "waiting",
            "capacity",
        ]

    def get_facility(self, queue: Queue) -> FacilityOut:
        return _facility(queue.facility)

    def get_specialty(self, queue: Queue) -> SpecialtyOut:
        return {"code": queue.specialty.code, "name": queue.specialty.name}

    def get_capacity(self, queue: Queue) -> int:
        offering = queue.facility.offerings.filter(specialty_id=queue.specialty_id).first()
        return offering.daily_referral_capacity if offering else 0


class ScheduleOut(serializers.ModelSerializer):
    hours = serializers.SerializerMethodField()
    breaks = serializers.SerializerMethodField()
    exceptions = serializers.SerializerMethodField()

    class Meta:
        model = Schedule
        fields = [
            "visit_minutes",
            "buffer_minutes",
            "horizon_days",
            "allows_video",
            "allows_in_person",
            "hours",
            "breaks",
            "exceptions",
        ]

    def _weekly(self, schedule: Schedule, kind: str) -> list[dict]:
        return [
            {
                "weekday": w.weekday,
                "start": w.start_time.strftime("%H:%M"),
                "end": w.end_time.strftime("%H:%M"),
            }
            for w in schedule.weekly.filter(kind=kind)
        ]

    def get_hours(self, schedule: Schedule) -> list[dict]:
        return self._weekly(schedule, "hours")

    def get_breaks(self, schedule: Schedule) -> list[dict]:
        return self._weekly(schedule, "break")

    def get_exceptions(self, schedule: Schedule) -> list[dict]:
        return [
            {
                "id": e.pk,
                "starts_at": e.starts_at,
                "ends_at": e.ends_at,
                "kind": e.kind,
                "note": e.note,
            }
            for e in schedule.exceptions.filter(ends_at__gt=timezone.now())
        ]


# --- Input --------------------------------------------------------------------------------


class ReferralIn(serializers.Serializer):
    patient_id = serializers.IntegerField()
    specialty = serializers.CharField(max_length=40)
    reason = serializers.CharField(max_length=255)
    clinical_summary = serializers.CharField(required=False, allow_blank=True, max_length=20_000)
    priority = serializers.CharField(default="routine", help_text="routine, urgent or emergency.")
    requested_mode = serializers.CharField(
        default="remote_first", help_text="remote_first or physical."
    )
    submit = serializers.BooleanField(default=False)


class NoteIn(serializers.Serializer):
    note = serializers.CharField(required=False, allow_blank=True, max_length=255)


class ReasonIn(serializers.Serializer):
    reason = serializers.CharField(max_length=255)


class RejectIn(ReasonIn):
    reroute = serializers.BooleanField(default=False)


class AdviceIn(serializers.Serializer):
    advice = serializers.CharField(max_length=8000)


class ScheduleReferralIn(serializers.Serializer):
    slot_id = serializers.IntegerField(required=False)
    scheduled_for = serializers.DateTimeField(required=False)


class CarePlanIn(serializers.Serializer):
    care_plan = serializers.CharField(max_length=20_000)


class BulkIn(serializers.Serializer):
    referral_ids = serializers.ListField(
        child=serializers.IntegerField(), min_length=1, max_length=500
    )
    reason = serializers.CharField(max_length=255)


class BookIn(serializers.Serializer):
    slot_id = serializers.IntegerField()
    mode = serializers.CharField(help_text="video or in_person.")
    patient_id = serializers.IntegerField(required=False)
    reason = serializers.CharField(required=False, allow_blank=True, max_length=255)


class SlotIdIn(serializers.Serializer):
    slot_id = serializers.IntegerField()


class CancelIn(serializers.Serializer):
    reason = serializers.CharField(required=False, allow_blank=True, max_length=255)


class IntervalIn(serializers.Serializer):
    weekday = serializers.IntegerField(min_value=0, max_value=6)
    start = serializers.CharField()
    end = serializers.CharField()


class AvailabilityIn(serializers.Serializer):
    visit_minutes = serializers.IntegerField(required=False)
    buffer_minutes = serializers.IntegerField(required=False)
    horizon_days = serializers.IntegerField(required=False)
    allows_video = serializers.BooleanField(required=False)
    allows_in_person = serializers.BooleanField(required=False)
    hours = IntervalIn(many=True, required=False)
    breaks = IntervalIn(many=True, required=False)


class ExceptionIn(serializers.Serializer):
    starts_at = serializers.DateTimeField()
    ends_at = serializers.DateTimeField()
    kind = serializers.CharField(default="blocked", help_text="blocked or extra.")
    note = serializers.CharField(required=False, allow_blank=True, max_length=200)


class WaitlistIn(serializers.Serializer):
    clinician_id = serializers.IntegerField()
    mode = serializers.CharField(help_text="video or in_person.")
    not_before = serializers.DateTimeField(required=False)
    not_after = serializers.DateTimeField(required=False)
    patient_id = serializers.IntegerField(required=False)
    reason = serializers.CharField(required=False, allow_blank=True, max_length=255)


def _valid(serializer_class: type[serializers.Serializer], request: Request) -> dict[str, Any]:
    data = serializer_class(data=request.data)
    data.is_valid(raise_exception=True)
    return dict(data.validated_data)


def _referral_detail(request: Request, referral_id: int) -> dict:
    referral, roles = selectors.referral_get_for_user(
        user=request.user, referral_id=referral_id, request=request
    )
    return ReferralDetailOut(referral, context={"roles": roles}).data


# --- Referrals ------------------------------------------------------------------------------


class ReferralListView(APIView):
    """Referrals I have a relationship with; POST writes one (a draft, or submitted)."""

    @extend_schema(
        parameters=[
            OpenApiParameter("status", str, description="A FHIR Task status."),
            OpenApiParameter("routing", str, description="pending, routed or no_slot."),
        ],
        responses=ReferralOut(many=True),
    )
    def get(self, request: Request) -> Response:
        referrals = selectors.referral_list_for_user(user=request.user)
        if request.query_params.get("status"):
            referrals = referrals.filter(status=request.query_params["status"])
        if request.query_params.get("routing"):
            referrals = referrals.filter(routing_state=request.query_params["routing"])
        rows = list(referrals[:200])
        if any(r.patient.user_id != request.user.pk for r in rows):
            audit_record(
                actor=request.user,
                action=AuditEvent.Action.READ,
                target="scheduler.referral_list",
                reason=f"referral list ({len(rows)})",
                request=request,
            )
        return Response(ReferralOut(rows, many=True).data)

    @extend_schema(request=ReferralIn, responses={201: ReferralDetailOut})
    def post(self, request: Request) -> Response:
        data = _valid(ReferralIn, request)
        referral = services.referral_create(
            by=request.user,
            patient_id=data["patient_id"],
            specialty_code=data["specialty"],
            reason=data["reason"],
            clinical_summary=data.get("clinical_summary", ""),
            priority=data["priority"],
            requested_mode=data["requested_mode"],
            submit=data["submit"],
            request=request,
        )
        return Response(_referral_detail(request, referral.pk), status=status.HTTP_201_CREATED)


class ReferralDetailView(APIView):
    @extend_schema(responses=ReferralDetailOut)
    def get(self, request: Request, referral_id: int) -> Response:
        return Response(_referral_detail(request, referral_id))


class ReferralFhirView(APIView):
    @extend_schema(responses=OpenApiTypes.OBJECT, summary="The referral as a FHIR Bundle")
    def get(self, request: Request, referral_id: int) -> Response:
        referral, _roles = selectors.referral_get_for_user(
            user=request.user, referral_id=referral_id, purpose="FHIR export", request=request
        )
        return Response(fhir.referral_bundle(referral))


def _referral_action(name: str, serializer_class, call, doc: str):  # type: ignore[no-untyped-def]
    """A POST endpoint that runs one referral service and answers with the referral."""

    @extend_schema(request=serializer_class, responses=ReferralDetailOut, summary=doc)
    def post(self, request: Request, referral_id: int) -> Response:  # type: ignore[no-untyped-def]
        data = _valid(serializer_class, request) if serializer_class else {}
        call(request, referral_id, data)
        return Response(_referral_detail(request, referral_id))

    return type(f"Referral{name}View", (APIView,), {"post": post, "__doc__": doc})


ReferralSubmitView = _referral_action(
    "Submit",
    None,
    lambda r, pk, d: services.referral_submit(referral_id=pk, by=r.user),
    "Submit a draft: it is routed to a queue (or the no-slot worklist) by the router.",
)
ReferralReceiveView = _referral_action(
    "Receive",
    None,
    lambda r, pk, d: services.referral_receive(referral_id=pk, by=r.user),
    "The receiving clinician has opened the referral.",
)
ReferralAcceptView = _referral_action(
    "Accept",
    NoteIn,
    lambda r, pk, d: services.referral_accept(
        referral_id=pk, by=r.user, note=d.get("note", ""), request=r
    ),
    "Accept the patient (a coordinator must give a reason).",
)
ReferralRejectView = _referral_action(
    "Reject",
    RejectIn,
    lambda r, pk, d: services.referral_reject(
        referral_id=pk, by=r.user, reason=d["reason"], reroute=d["reroute"], request=r
    ),
    "Decline with a reason; with reroute the referral goes to the next facility.",
)
ReferralAdviseView = _referral_action(
    "Advise",
    AdviceIn,
    lambda r, pk, d: services.referral_advise(referral_id=pk, by=r.user, advice=d["advice"]),
    "Answer with advice in the referral's conversation instead of taking the patient.",
)
ReferralConvertView = _referral_action(
    "Convert",
    NoteIn,
    lambda r, pk, d: services.referral_convert(referral_id=pk, by=r.user, note=d.get("note", "")),
    "Turn an advice request into an accepted referral.",
)
ReferralScheduleView = _referral_action(
    "Schedule",
    ScheduleReferralIn,
    lambda r, pk, d: services.referral_schedule(
        referral_id=pk,
        by=r.user,
        slot_id=d.get("slot_id"),
        scheduled_for=d.get("scheduled_for"),
        request=r,
    ),
    "Give the patient a date, or book one of the receiving side's slots.",
)
ReferralStartView = _referral_action(
    "Start",
    None,
    lambda r, pk, d: services.referral_start(referral_id=pk, by=r.user),
    "The patient is being seen.",
)
ReferralCompleteView = _referral_action(
    "Complete",
    CarePlanIn,
    lambda r, pk, d: services.referral_complete(
        referral_id=pk, by=r.user, care_plan=d["care_plan"]
    ),
    "Treatment ended: complete with a counter-referral and care plan.",
)
ReferralCancelView = _referral_action(
    "Cancel",
    ReasonIn,
    lambda r, pk, d: services.referral_cancel(
        referral_id=pk, by=r.user, reason=d["reason"], request=r
    ),
    "Cancel, with a reason.",
)
ReferralAcknowledgeView = _referral_action(
    "Acknowledge",
    None,
    lambda r, pk, d: services.counter_referral_acknowledge(referral_id=pk, by=r.user),
    "The referring side has read the counter-referral.",
)


class ReferralAttachmentView(APIView):
    """Attach an image or PDF to the referral (stored by the messaging engine)."""

    parser_classes = [MultiPartParser]

    @extend_schema(
        request={
            "multipart/form-data": inline_serializer(
                "ReferralAttachmentIn",
                {"file": serializers.FileField(), "note": serializers.CharField(required=False)},
            )
        },
        responses={
            201: inline_serializer(
                "ReferralAttachmentOut",
                {
                    "id": serializers.UUIDField(),
                    "name": serializers.CharField(),
                    "thread": serializers.IntegerField(),
                },
            )
        },
    )
    def post(self, request: Request, referral_id: int) -> Response:
        upload = request.FILES.get("file")
        if upload is None:
            raise DomainError(
                _("Choose a file to upload."), fields={"file": [_("This field is required.")]}
            )
        attachment = services.referral_attachment_add(
            referral_id=referral_id,
            by=request.user,
            upload=upload,
            note=request.data.get("note", ""),
        )
        return Response(
            {"id": str(attachment.pk), "name": attachment.name, "thread": attachment.thread_id},
            status=status.HTTP_201_CREATED,
        )


# --- Queues and the board ---------------------------------------------------------------------


class QueueListView(APIView):
    """The queues I work in (my facility and specialties) or coordinate."""

    @extend_schema(parameters=[OpenApiParameter("facility", str)], responses=QueueOut(many=True))
    def get(self, request: Request) -> Response:
        queues = selectors.queues_for_user(
            user=request.user, facility_code=request.query_params.get("facility")
        )[:500]
        return Response(QueueOut(queues, many=True).data)


class QueueDetailView(APIView):
    """Who waits in a queue, in order (emergencies, then by deadline)."""

    @extend_schema(
        responses=inline_serializer(
            "QueueDetailOut", {"queue": QueueOut(), "waiting": ReferralOut(many=True)}
        )
    )
    def get(self, request: Request, queue_id: int) -> Response:
        queue = selectors.queue_get_for_user(user=request.user, queue_id=queue_id)
        waiting = selectors.queue_list(queue_id=queue.pk)
        audit_record(
            actor=request.user,
            action=AuditEvent.Action.READ,
            target=f"scheduler.queue:{queue.pk}",
            reason="queue list",
            request=request,
        )
        rows = ReferralOut(waiting, many=True).data
        for position, row in enumerate(rows, start=1):
            row["position"] = position
        return Response({"queue": QueueOut(queue).data, "waiting": rows})


_board_parameters = [
    OpenApiParameter("facility", str, description="A facility code in your scope."),
    OpenApiParameter("province", str, description="A province code in your scope."),
]


class BoardView(APIView):
    """The coordinator board: new, overdue, accepted and no-slot referrals, and loop closure."""

    @extend_schema(
        parameters=[
            *_board_parameters,
            OpenApiParameter("view", str, enum=list(selectors.BOARD_VIEWS)),
            OpenApiParameter("priority", str, enum=["routine", "urgent", "emergency"]),
            OpenApiParameter("specialty", str),
        ],
        responses=inline_serializer(
            "BoardOut",
            {
                "topic": serializers.CharField(),
                "counts": serializers.DictField(child=serializers.IntegerField()),
                "loop_closure": serializers.DictField(),
                "referrals": ReferralOut(many=True),
            },
        ),
    )
    def get(self, request: Request) -> Response:
        params = request.query_params
        board = selectors.board_get(
            user=request.user,
            facility_code=params.get("facility"),
            province_code=params.get("province"),
            view=params.get("view", "all"),
            priority=params.get("priority"),
            specialty_code=params.get("specialty"),
            request=request,
        )
        return Response(
            {
                "topic": board["topic"],
                "counts": board["counts"],
                "loop_closure": board["loop_closure"],
                "referrals": ReferralOut(board["referrals"], many=True).data,
            }
        )


class BoardLoadView(APIView):
    """Today's load of each facility and specialty in scope (the heat table)."""

    @extend_schema(parameters=_board_parameters, responses=OpenApiTypes.OBJECT)
    def get(self, request: Request) -> Response:
        return Response(
            selectors.facility_load(
                user=request.user,
                province_code=request.query_params.get("province"),
                facility_code=request.query_params.get("facility"),
            )
        )


class BoardAcceptView(APIView):
    """Accept several waiting referrals for the facility; each is audited with the reason."""

    @extend_schema(
        request=BulkIn,
        responses=inline_serializer("BulkAcceptOut", {"accepted": serializers.ListField()}),
    )
    def post(self, request: Request) -> Response:
        data = _valid(BulkIn, request)
        accepted = services.referrals_bulk_accept(
            referral_ids=data["referral_ids"],
            by=request.user,
            reason=data["reason"],
            request=request,
        )
        return Response({"accepted": accepted})


class BoardRerouteView(APIView):
    """Send several referrals to the next facility; each is audited with the reason."""

    @extend_schema(
        request=BulkIn,
        responses=inline_serializer(
            "BulkRerouteOut",
            {"assigned": serializers.ListField(), "no_slot": serializers.ListField()},
        ),
    )
    def post(self, request: Request) -> Response:
        data = _valid(BulkIn, request)
        report = services.referrals_bulk_reroute(
            referral_ids=data["referral_ids"],
            by=request.user,
            reason=data["reason"],
            request=request,
        )
        return Response({"assigned": report.assigned, "no_slot": report.no_slot})


# --- Availability and slots -------------------------------------------------------------------


class AvailabilityView(APIView):
    """My availability (clinicians): weekly hours, breaks, visit length, buffer, exceptions."""

    @extend_schema(responses=ScheduleOut)
    def get(self, request: Request) -> Response:
        clinician = appointment_services._clinician(request.user)
        return Response(ScheduleOut(appointment_services.schedule_for(clinician=clinician)).data)

    @extend_schema(request=AvailabilityIn, responses=ScheduleOut)
    def put(self, request: Request) -> Response:
        _valid(AvailabilityIn, request)
        schedule = appointment_services.availability_set(by=request.user, data=dict(request.data))
        return Response(ScheduleOut(schedule).data)


class AvailabilityExceptionsView(APIView):
    @extend_schema(request=ExceptionIn, responses={201: ScheduleOut})
    def post(self, request: Request) -> Response:
        data = _valid(ExceptionIn, request)
        exception = appointment_services.availability_exception_add(
            by=request.user,
            starts_at=data["starts_at"],
            ends_at=data["ends_at"],
            kind=data["kind"],
            note=data.get("note", ""),
        )
        return Response(ScheduleOut(exception.schedule).data, status=status.HTTP_201_CREATED)


class AvailabilityExceptionDetailView(APIView):
    @extend_schema(responses={204: None})
    def delete(self, request: Request, exception_id: int) -> Response:
        appointment_services.availability_exception_remove(
            by=request.user, exception_id=exception_id
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


class ClinicianListView(APIView):
    """Clinicians who take bookings, by specialty or facility."""

    @extend_schema(
        parameters=[OpenApiParameter("specialty", str), OpenApiParameter("facility", str)],
        responses=ClinicianOut(many=True),
    )
    def get(self, request: Request) -> Response:
        clinicians = appointment_selectors.bookable_clinicians(
            specialty_code=request.query_params.get("specialty"),
            facility_code=request.query_params.get("facility"),
        )[:100]
        return Response(ClinicianOut(clinicians, many=True).data)


class SlotListView(APIView):
    """A clinician's free slots in a window (their own: every status, with all=1)."""

    @extend_schema(
        parameters=[
            OpenApiParameter("clinician", int, required=True),
            OpenApiParameter("from", OpenApiTypes.DATETIME),
            OpenApiParameter("to", OpenApiTypes.DATETIME),
            OpenApiParameter("all", bool),
        ],
        responses=SlotOut(many=True),
    )
    def get(self, request: Request) -> Response:
        params = request.query_params
        try:
            clinician_id = int(params.get("clinician", ""))
        except ValueError:
            raise DomainError(
                _("Invalid input."), fields={"clinician": [_("A clinician id.")]}
            ) from None
        slots = appointment_selectors.slot_list(
            user=request.user,
            clinician_id=clinician_id,
            starts_after=params.get("from"),
            starts_before=params.get("to"),
            include_all=params.get("all") in ("1", "true"),
        )[:500]
        return Response(SlotOut(slots, many=True).data)


# --- Appointments ------------------------------------------------------------------------------


class AppointmentListView(APIView):
    """My appointments (as patient, booker or clinician); POST books a slot."""

    @extend_schema(
        parameters=[
            OpenApiParameter("day", OpenApiTypes.DATE),
            OpenApiParameter("upcoming", bool),
        ],
        responses=AppointmentOut(many=True),
    )
    def get(self, request: Request) -> Response:
        appointments = appointment_selectors.appointment_list_for_user(
            user=request.user,
            day=request.query_params.get("day"),
            upcoming=request.query_params.get("upcoming") in ("1", "true"),
        )[:200]
        return Response(AppointmentOut(appointments, many=True).data)

    @extend_schema(request=BookIn, responses={201: AppointmentOut})
    def post(self, request: Request) -> Response:
        data = _valid(BookIn, request)
        appointment = appointment_services.appointment_book(
            by=request.user,
            slot_id=data["slot_id"],
            mode=data["mode"],
            patient_id=data.get("patient_id"),
            reason=data.get("reason", ""),
            request=request,
        )
        return Response(AppointmentOut(appointment).data, status=status.HTTP_201_CREATED)


class AppointmentDetailView(APIView):
    @extend_schema(responses=AppointmentOut)
    def get(self, request: Request, appointment_id: int) -> Response:
        appointment = appointment_selectors.appointment_get_for_user(
            user=request.user, appointment_id=appointment_id, request=request
        )
        return Response(AppointmentOut(appointment).data)


class AppointmentFhirView(APIView):
    @extend_schema(responses=OpenApiTypes.OBJECT, summary="The appointment as a FHIR Appointment")
    def get(self, request: Request, appointment_id: int) -> Response:
        appointment = appointment_selectors.appointment_get_for_user(
            user=request.user, appointment_id=appointment_id, request=request
        )
        return Response(fhir.appointment_resource(appointment))


def _appointment_action(name: str, serializer_class, call, doc: str):  # type: ignore[no-untyped-def]
    @extend_schema(request=serializer_class, responses=AppointmentOut, summary=doc)
    def post(self, request: Request, appointment_id: int) -> Response:  # type: ignore[no-untyped-def]
        data = _valid(serializer_class, request) if serializer_class else {}
        appointment = call(request, appointment_id, data)
        return Response(AppointmentOut(appointment).data)

    return type(f"Appointment{name}View", (APIView,), {"post": post, "__doc__": doc})


AppointmentCancelView = _appointment_action(
    "Cancel",
    CancelIn,
    lambda r, pk, d: appointment_services.appointment_cancel(
        appointment_id=pk, by=r.user, reason=d.get("reason", "")
    ),
    "Cancel (the patient side until 2 hours before; the clinic with a reason).",
)
AppointmentRescheduleView = _appointment_action(
    "Reschedule",
    SlotIdIn,
    lambda r, pk, d: appointment_services.appointment_reschedule(
        appointment_id=pk, by=r.user, slot_id=d["slot_id"]
    ),
    "Move to another free slot of the same clinician (at most twice).",
)
AppointmentArriveView = _appointment_action(
    "Arrive",
    None,
    lambda r, pk, d: appointment_services.appointment_arrive(appointment_id=pk, by=r.user),
    "The patient has arrived.",
)
AppointmentFulfilView = _appointment_action(
    "Fulfil",
    None,
    lambda r, pk, d: appointment_services.appointment_fulfil(appointment_id=pk, by=r.user),
    "The visit took place.",
)
AppointmentNoShowView = _appointment_action(
    "NoShow",
    None,
    lambda r, pk, d: appointment_services.appointment_no_show(appointment_id=pk, by=r.user),
    "The patient did not come.",
)


# --- The waiting list ---------------------------------------------------------------------------


class WaitlistView(APIView):
    @extend_schema(responses=WaitlistOut(many=True))
    def get(self, request: Request) -> Response:
        return Response(
            WaitlistOut(
                appointment_selectors.waitlist_for_user(user=request.user)[:100], many=True
            ).data
        )

    @extend_schema(request=WaitlistIn, responses={201: WaitlistOut})
    def post(self, request: Request) -> Response:
        data = _valid(WaitlistIn, request)
        entry = appointment_services.waitlist_join(
            by=request.user,
            clinician_id=data["clinician_id"],
            mode=data["mode"],
            not_before=data.get("not_before"),
            not_after=data.get("not_after"),
            patient_id=data.get("patient_id"),
            reason=data.get("reason", ""),
            request=request,
        )
        return Response(WaitlistOut(entry).data, status=status.HTTP_201_CREATED)


class WaitlistAcceptView(APIView):
    @extend_schema(request=None, responses=AppointmentOut)
    def post(self, request: Request, entry_id: int) -> Response:
        appointment = appointment_services.waitlist_accept(entry_id=entry_id, by=request.user)
        return Response(AppointmentOut(appointment).data)


class WaitlistDeclineView(APIView):
    @extend_schema(request=None, responses=WaitlistOut)
    def post(self, request: Request, entry_id: int) -> Response:
        return Response(
            WaitlistOut(
                appointment_services.waitlist_decline(entry_id=entry_id, by=request.user)
            ).data
        )


class WaitlistCancelView(APIView):
    @extend_schema(request=None, responses=WaitlistOut)
    def post(self, request: Request, entry_id: int) -> Response:
        return Response(
            WaitlistOut(
                appointment_services.waitlist_cancel(entry_id=entry_id, by=request.user)
            ).data
        )
