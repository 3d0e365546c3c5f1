"""REST endpoints of video visits: thin views over consult.visit_services and visit_selectors."""

from __future__ import annotations

from django.http import FileResponse
from django.utils.translation import gettext as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, extend_schema_field, inline_serializer
from rest_framework import serializers, status
from rest_framework.parsers import MultiPartParser
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from consult import visit_selectors as selectors
from consult import visit_services as services
from consult.models import Visit, VisitParticipant, VisitRecording
from telehealth import selectors as kernel_selectors
from telehealth.errors import DomainError
from telehealth.models import User


class VisitParticipantOut(serializers.ModelSerializer):
    user = serializers.IntegerField(source="user_id")
    name = serializers.CharField(source="user.display_name")
    role_label = serializers.CharField(source="get_role_display")
    state_label = serializers.CharField(source="get_state_display")

    class Meta:
        model = VisitParticipant
        fields = [
            "user",
            "name",
            "role",
            "role_label",
            "state",
            "state_label",
            "checked_in_at",
            "device_check",
            "admitted_at",
            "audio_only",
            "recording_consent",
        ]


class VisitOut(serializers.ModelSerializer):
    patient = serializers.SerializerMethodField()
    host = serializers.SerializerMethodField()
    participants = serializers.SerializerMethodField()
    thread = serializers.IntegerField(source="thread_id")
    room = serializers.CharField()
    state_label = serializers.CharField(source="get_state_display")

    class Meta:
        model = Visit
        fields = [
            "id",
            "state",
            "state_label",
            "source",
            "scheduled_start",
            "started_at",
            "ended_at",
            "max_participants",
            "patient",
            "host",
            "participants",
            "thread",
            "room",
            "notes",
            "summary",
        ]

    def get_patient(self, visit: Visit) -> dict:
        return {"id": visit.patient_id, "name": visit.patient.user.display_name}

    def get_host(self, visit: Visit) -> dict:
        return {"id": visit.host_id, "name": visit.host.display_name}

    def get_participants(self, visit: Visit) -> list[dict]:
        return VisitParticipantOut(selectors.visit_participants(visit=visit), many=True).data


class VisitDetailOut(VisitOut):
    """One visit, with whether it is being recorded now (every page shows it)."""

    recording = serializers.SerializerMethodField()

    class Meta(VisitOut.Meta):
        fields = [*VisitOut.Meta.fields, "recording"]

    @extend_schema_field(
        inline_serializer(
            "VisitRecordingRunning",
            {
                "id": serializers.UUIDField(),
                "started_at": serializers.DateTimeField(),
                "started_by": serializers.CharField(),
            },
            allow_null=True,
        )
    )
    def get_recording(self, visit: Visit) -> dict | None:
        running = selectors.visit_recording_running(visit=visit)
        if running is None:
            return None
        return {
            "id": str(running.pk),
            "started_at": running.started_at,
            "started_by": running.started_by.display_name,
        }


def _visit_out(request: Request, visit_id: int) -> dict:
    return VisitDetailOut(
        selectors.visit_get_for_user(user=request.user, visit_id=visit_id, request=request)
    ).data


def _user(user_id: int, field: str = "user_id") -> User:
    user = User.objects.filter(pk=user_id, is_active=True).first()
    if user is None:
        raise DomainError(
            _("No such person."), code="invalid", fields={field: [_("No such person.")]}
        )
    return user


class VisitListView(APIView):
    """My visits; POST starts an ad hoc visit with a patient I care for (waiting room open)."""

    class VisitStartInput(serializers.Serializer):
        patient_id = serializers.IntegerField()
        source = serializers.CharField(max_length=80, required=False, allow_blank=True)

    @extend_schema(responses=VisitOut(many=True))
    def get(self, request: Request) -> Response:
        visits = selectors.visit_list_for_user(user=request.user)[:100]
        return Response(VisitOut(visits, many=True).data)

    @extend_schema(request=VisitStartInput, responses={201: VisitOut})
    def post(self, request: Request) -> Response:
        data = self.VisitStartInput(data=request.data)
        data.is_valid(raise_exception=True)
        patient = kernel_selectors.patient_get_for_user(
            user=request.user,
            patient_id=data.validated_data["patient_id"],
            purpose="start a video visit",
            request=request,
        )
        visit = services.visit_schedule(
            patient=patient,
            host=request.user,
            scheduled_start=None,
            source=data.validated_data.get("source", ""),
            open_now=True,
        )
        return Response(_visit_out(request, visit.pk), status=status.HTTP_201_CREATED)


class VisitDetailView(APIView):
    @extend_schema(responses=VisitOut)
    def get(self, request: Request, visit_id: int) -> Response:
        return Response(_visit_out(request, visit_id))


class VisitOpenView(APIView):
    @extend_schema(request=None, responses=VisitOut)
    def post(self, request: Request, visit_id: int) -> Response:
        services.visit_open_waiting_room(visit_id=visit_id, by=request.user)
        return Response(_visit_out(request, visit_id))


class VisitCheckInView(APIView):
    class CheckInInput(serializers.Serializer):
        camera = serializers.BooleanField(required=False)
        microphone = serializers.BooleanField(required=False)
        connection = serializers.DictField(required=False)

    @extend_schema(request=CheckInInput, responses=VisitParticipantOut)
    def post(self, request: Request, visit_id: int) -> Response:
        data = self.CheckInInput(data=request.data)
        data.is_valid(raise_exception=True)
        member = services.visit_check_in(
            visit_id=visit_id, user=request.user, device_check=dict(data.validated_data)
        )
        return Response(VisitParticipantOut(member).data)


class _UserActionInput(serializers.Serializer):
    user_id = serializers.IntegerField()


class VisitAdmitView(APIView):
    @extend_schema(request=_UserActionInput, responses=VisitOut)
    def post(self, request: Request, visit_id: int) -> Response:
        data = _UserActionInput(data=request.data)
        data.is_valid(raise_exception=True)
        services.visit_admit(
            visit_id=visit_id, user_id=data.validated_data["user_id"], by=request.user
        )
        return Response(_visit_out(request, visit_id))


class VisitRemoveView(APIView):
    @extend_schema(request=_UserActionInput, responses=VisitOut)
    def post(self, request: Request, visit_id: int) -> Response:
        data = _UserActionInput(data=request.data)
        data.is_valid(raise_exception=True)
        services.visit_remove(
            visit_id=visit_id, user_id=data.validated_data["user_id"], by=request.user
        )
        return Response(_visit_out(request, visit_id))


class VisitInviteView(APIView):
    class InviteInput(serializers.Serializer):
        user_id = serializers.IntegerField()
        role = serializers.ChoiceField(
            choices=[
                c for c in VisitParticipant.Role.choices if c[0] != VisitParticipant.Role.PATIENT
            ]
        )

    @extend_schema(request=InviteInput, responses={201: VisitOut})
    def post(self, request: Request, visit_id: int) -> Response:
        data = self.InviteInput(data=request.data)
        data.is_valid(raise_exception=True)
        services.visit_invite(
            visit_id=visit_id,
            user=_user(data.validated_data["user_id"]),
            role=data.validated_data["role"],
            by=request.user,
        )
        return Response(_visit_out(request, visit_id), status=status.HTTP_201_CREATED)


class VisitJoinView(APIView):
    """For an admitted participant: the relay node, a short-lived join token, ICE servers."""

    @extend_schema(
        request=None,
        responses=inline_serializer(
            "VisitJoin",
            {
                "relay": serializers.CharField(),
                "room": serializers.CharField(),
                "participant": serializers.CharField(),
                "token": serializers.CharField(),
                "expires_in": serializers.IntegerField(),
                "ice_servers": serializers.ListField(),
                "audio_only": serializers.BooleanField(),
                "admitted": serializers.ListField(),
            },
        ),
    )
    def post(self, request: Request, visit_id: int) -> Response:
        return Response(services.visit_join(visit_id=visit_id, user=request.user))


class VisitPublishedView(APIView):
    """Tell the other participants that my media is on the relay now."""

    @extend_schema(request=None, responses={204: None})
    def post(self, request: Request, visit_id: int) -> Response:
        services.visit_published(visit_id=visit_id, user=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class VisitLeaveView(APIView):
    @extend_schema(request=None, responses={204: None})
    def post(self, request: Request, visit_id: int) -> Response:
        services.visit_leave(visit_id=visit_id, user=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class VisitAudioOnlyView(APIView):
    class AudioOnlyInput(serializers.Serializer):
        audio_only = serializers.BooleanField()

    @extend_schema(request=AudioOnlyInput, responses=VisitParticipantOut)
    def post(self, request: Request, visit_id: int) -> Response:
        data = self.AudioOnlyInput(data=request.data)
        data.is_valid(raise_exception=True)
        member = services.visit_set_audio_only(
            visit_id=visit_id, user=request.user, audio_only=data.validated_data["audio_only"]
        )
        return Response(VisitParticipantOut(member).data)


class VisitConsentView(APIView):
    class ConsentInput(serializers.Serializer):
        recording = serializers.BooleanField()

    @extend_schema(request=ConsentInput, responses=VisitParticipantOut)
    def post(self, request: Request, visit_id: int) -> Response:
        data = self.ConsentInput(data=request.data)
        data.is_valid(raise_exception=True)
        member = services.visit_recording_consent(
            visit_id=visit_id, user=request.user, consent=data.validated_data["recording"]
        )
        return Response(VisitParticipantOut(member).data)


class VisitSnapshotNoticeView(APIView):
    @extend_schema(request=_UserActionInput, responses={204: None})
    def post(self, request: Request, visit_id: int) -> Response:
        data = _UserActionInput(data=request.data)
        data.is_valid(raise_exception=True)
        services.visit_snapshot_notice(
            visit_id=visit_id, by=request.user, subject_id=data.validated_data["user_id"]
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


class VisitSnapshotView(APIView):
    parser_classes = [MultiPartParser]

    @extend_schema(
        request={
            "multipart/form-data": inline_serializer(
                "SnapshotUpload",
                {
                    "image": serializers.ImageField(),
                    "user_id": serializers.IntegerField(),
                    "note": serializers.CharField(required=False),
                },
            )
        },
        responses={
            201: inline_serializer(
                "Snapshot",
                {
                    "id": serializers.UUIDField(),
                    "subject": serializers.IntegerField(),
                    "url": serializers.CharField(),
                },
            )
        },
    )
    def post(self, request: Request, visit_id: int) -> Response:
        image = request.FILES.get("image")
        try:
            subject_id = int(request.data.get("user_id", ""))
        except (TypeError, ValueError):
            subject_id = None
        if image is None or subject_id is None:
            raise DomainError(
                _("Send the image and whose video it is."),
                code="invalid",
                fields={
                    k: [_("This field is required.")]
                    for k, v in (("image", image), ("user_id", subject_id))
                    if v is None
                },
            )
        snapshot = services.visit_snapshot_store(
            visit_id=visit_id,
            by=request.user,
            subject_id=subject_id,
            image=image,
            note=str(request.data.get("note", "")),
        )
        return Response(
            {
                "id": str(snapshot.pk),
                "subject": subject_id,
                "url": f"/api/v1/snapshots/{snapshot.pk}/",
            },
            status=status.HTTP_201_CREATED,
        )


class SnapshotDownloadView(APIView):
    @extend_schema(responses={(200, "image/*"): OpenApiTypes.BINARY})
    def get(self, request: Request, snapshot_id: str) -> FileResponse:
        snapshot = selectors.snapshot_get_for_user(
            user=request.user, snapshot_id=snapshot_id, request=request
        )
        response = FileResponse(snapshot.file.open("rb"), content_type=snapshot.content_type)
        response["Cache-Control"] = "private, no-store"
        return response


class VisitRecordingStartView(APIView):
    """The host starts recording; refused unless everyone in the visit consented."""

    @extend_schema(request=None, responses=VisitDetailOut)
    def post(self, request: Request, visit_id: int) -> Response:
        services.visit_recording_start(visit_id=visit_id, by=request.user)
        return Response(_visit_out(request, visit_id))


class VisitRecordingAskView(APIView):
    """The host asks everyone who has not agreed yet; their pages show a yes/no prompt."""

    @extend_schema(
        request=None,
        responses=inline_serializer(
            "RecordingAsked", {"asked": serializers.ListField(child=serializers.IntegerField())}
        ),
    )
    def post(self, request: Request, visit_id: int) -> Response:
        asked = services.visit_recording_ask(visit_id=visit_id, by=request.user)
        return Response({"asked": asked})


class VisitRecordingStopView(APIView):
    @extend_schema(request=None, responses=VisitDetailOut)
    def post(self, request: Request, visit_id: int) -> Response:
        services.visit_recording_stop(visit_id=visit_id, by=request.user)
        return Response(_visit_out(request, visit_id))


class VisitRecordingOut(serializers.ModelSerializer):
    participant = serializers.IntegerField(source="participant_id")
    name = serializers.CharField(source="participant.display_name")
    url = serializers.SerializerMethodField()

    class Meta:
        model = VisitRecording
        fields = [
            "id",
            "participant",
            "name",
            "content_type",
            "size",
            "started_at",
            "ended_at",
            "url",
        ]

    def get_url(self, recording: VisitRecording) -> str:
        return f"/api/v1/recordings/{recording.pk}/"


class VisitRecordingListView(APIView):
    """The visit's recorded files, for its host and its patient (audited)."""

    @extend_schema(responses=VisitRecordingOut(many=True))
    def get(self, request: Request, visit_id: int) -> Response:
        recordings = selectors.visit_recording_list_for_user(
            user=request.user, visit_id=visit_id, request=request
        )
        return Response(VisitRecordingOut(recordings, many=True).data)


class VisitRecordingUploadView(APIView):
    """A relay node uploads a finished recording file.

    Authenticated by the node's recording-upload token (``Authorization:
    Bearer``, signed with the relay secret), never by a session or an API token;
    checked before the body is read.
    """

    authentication_classes: list = []
    permission_classes = [AllowAny]
    parser_classes = [MultiPartParser]

    @extend_schema(
        request={
            "multipart/form-data": inline_serializer(
                "RecordingUpload", {"file": serializers.FileField()}
            )
        },
        responses={201: VisitRecordingOut, 200: VisitRecordingOut},
    )
    def post(self, request: Request, visit_id: int) -> Response:
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        claims = services.visit_recording_upload_check(
            visit_id=visit_id,
            authorization=request.META.get("HTTP_AUTHORIZATION"),
            content_length=length,
        )
        upload = request.FILES.get("file")  # the body is read only now
        if upload is None:
            raise DomainError(
                _("Send the file."), code="invalid", fields={"file": [_("This field is required.")]}
            )
        recording, created = services.visit_recording_store(
            visit_id=visit_id, claims=claims, upload=upload
        )
        return Response(
            VisitRecordingOut(recording).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )


class RecordingDownloadView(APIView):
    """One recorded file, streamed only through the audited selector."""

    @extend_schema(responses={(200, "video/*"): OpenApiTypes.BINARY})
    def get(self, request: Request, recording_id: str) -> FileResponse:
        recording = selectors.visit_recording_get_for_user(
            user=request.user, recording_id=recording_id, request=request
        )
        extension = ".mkv" if recording.content_type == "video/x-matroska" else ".webm"
        response = FileResponse(
            recording.file.open("rb"),
            content_type=recording.content_type,
            as_attachment=True,
            filename=f"visit-{recording.visit_id}-{recording.started_at:%Y%m%d-%H%M%S}"
            f"-{recording.participant_id}{extension}",
        )
        response["Cache-Control"] = "private, no-store"
        return response


class VisitNotesView(APIView):
    class NotesInput(serializers.Serializer):
        notes = serializers.CharField(allow_blank=True, max_length=20000, trim_whitespace=False)

    @extend_schema(request=NotesInput, responses=VisitOut)
    def put(self, request: Request, visit_id: int) -> Response:
        data = self.NotesInput(data=request.data)
        data.is_valid(raise_exception=True)
        services.visit_notes_update(
            visit_id=visit_id, by=request.user, notes=data.validated_data["notes"]
        )
        return Response(_visit_out(request, visit_id))


class VisitEndView(APIView):
    class EndInput(serializers.Serializer):
        summary = serializers.CharField(
            allow_blank=True, required=False, default="", max_length=20000
        )

    @extend_schema(request=EndInput, responses=VisitOut)
    def post(self, request: Request, visit_id: int) -> Response:
        data = self.EndInput(data=request.data)
        data.is_valid(raise_exception=True)
        services.visit_end(
            visit_id=visit_id, by=request.user, summary=data.validated_data["summary"]
        )
        return Response(_visit_out(request, visit_id))


class VisitCancelView(APIView):
    class CancelInput(serializers.Serializer):
        no_show = serializers.BooleanField(required=False, default=False)

    @extend_schema(request=CancelInput, responses=VisitOut)
    def post(self, request: Request, visit_id: int) -> Response:
        data = self.CancelInput(data=request.data)
        data.is_valid(raise_exception=True)
        services.visit_cancel(
            visit_id=visit_id, by=request.user, no_show=data.validated_data["no_show"]
        )
        return Response(_visit_out(request, visit_id))
