"""REST endpoints of the messaging engine: thin views over its services and selectors."""

from __future__ import annotations

from django.http import FileResponse
from django.utils.translation import gettext as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from consult import selectors, services
from consult.models import Participant, Thread
from telehealth import selectors as kernel_selectors
from telehealth.errors import DomainError, NotFound
from telehealth.models import User


class ParticipantOut(serializers.Serializer):
    id = serializers.IntegerField(source="user_id")
    name = serializers.CharField(source="user.display_name")
    role = serializers.CharField()
    is_host = serializers.BooleanField()
    read_seq = serializers.IntegerField()


class ThreadOut(serializers.ModelSerializer):
    participants = ParticipantOut(source="active_participants", many=True)
    unread = serializers.IntegerField()
    read_seq = serializers.IntegerField(source="my_read_seq")
    patient_id = serializers.IntegerField(allow_null=True)

    class Meta:
        model = Thread
        fields = [
            "id",
            "kind",
            "subject",
            "context",
            "patient_id",
            "created_at",
            "last_seq",
            "last_message_at",
            "is_closed",
            "read_seq",
            "unread",
            "participants",
        ]


class MessageOut(serializers.Serializer):
    thread = serializers.IntegerField()
    seq = serializers.IntegerField()
    id = serializers.IntegerField()
    client_id = serializers.CharField()
    sender = inline_serializer(
        "Sender", {"id": serializers.IntegerField(), "name": serializers.CharField()}
    )
    kind = serializers.CharField()
    body = serializers.CharField()
    attachments = serializers.ListField(child=serializers.DictField())
    created_at = serializers.CharField()


class HistoryOut(serializers.Serializer):
    results = MessageOut(many=True)
    has_more = serializers.BooleanField()


def _thread_out(user: User, thread_id: int) -> dict:
    thread = selectors.thread_list_for_user(user=user).filter(pk=thread_id).first()
    if thread is None:
        raise NotFound(_("No such conversation."))
    return ThreadOut(thread).data


class ThreadListView(APIView):
    """My conversations, newest activity first, with unread counts; POST opens one."""

    class ThreadOpenInput(serializers.Serializer):
        kind = serializers.ChoiceField(
            choices=[Thread.Kind.CONSULTATION, Thread.Kind.CASE_CONFERENCE]
        )
        subject = serializers.CharField(max_length=200, required=False, allow_blank=True)
        patient_id = serializers.IntegerField(required=False, allow_null=True)
        participant_ids = serializers.ListField(
            child=serializers.IntegerField(), min_length=1, max_length=30
        )

    @extend_schema(responses=ThreadOut(many=True))
    def get(self, request: Request) -> Response:
        threads = selectors.thread_list_for_user(user=request.user)[:200]
        return Response(ThreadOut(threads, many=True).data)

    @extend_schema(request=ThreadOpenInput, responses={201: ThreadOut})
    def post(self, request: Request) -> Response:
        data = self.ThreadOpenInput(data=request.data)
        data.is_valid(raise_exception=True)
        thread = services.thread_open_by_user(
            user=request.user,
            kind=data.validated_data["kind"],
            subject=data.validated_data.get("subject", ""),
            patient=(
                kernel_selectors.patient_get_for_user(
                    user=request.user,
                    patient_id=data.validated_data["patient_id"],
                    purpose="open a conversation",
                    request=request,
                )
                if data.validated_data.get("patient_id")
                else None
            ),
            participant_ids=data.validated_data["participant_ids"],
        )
        return Response(_thread_out(request.user, thread.pk), status=status.HTTP_201_CREATED)


class ThreadDetailView(APIView):
    @extend_schema(responses=ThreadOut)
    def get(self, request: Request, thread_id: int) -> Response:
        return Response(_thread_out(request.user, thread_id))


class ParticipantsView(APIView):
    class ParticipantAddInput(serializers.Serializer):
        user_id = serializers.IntegerField()
        role = serializers.ChoiceField(choices=Participant.Role.choices)

    @extend_schema(request=ParticipantAddInput, responses={201: ThreadOut})
    def post(self, request: Request, thread_id: int) -> Response:
        data = self.ParticipantAddInput(data=request.data)
        data.is_valid(raise_exception=True)
        selectors.thread_get_for_user(user=request.user, thread_id=thread_id)
        user = User.objects.filter(pk=data.validated_data["user_id"], is_active=True).first()
        if user is None:
            raise DomainError(
                _("No such person."), code="invalid", fields={"user_id": [_("No such person.")]}
            )
        services.thread_participant_add(
            thread_id=thread_id,
            user=user,
            role=data.validated_data["role"],
            added_by=request.user,
        )
        return Response(_thread_out(request.user, thread_id), status=status.HTTP_201_CREATED)


class ParticipantDetailView(APIView):
    @extend_schema(responses={204: None})
    def delete(self, request: Request, thread_id: int, user_id: int) -> Response:
        selectors.thread_get_for_user(user=request.user, thread_id=thread_id)
        services.thread_participant_remove(
            thread_id=thread_id, user_id=user_id, removed_by=request.user
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


class MessagesView(APIView):
    """History, cursor-paginated by sequence number (audited); POST sends like the socket does."""

    class MessageSendInput(serializers.Serializer):
        client_id = serializers.CharField(max_length=64)
        body = serializers.CharField(
            allow_blank=True, required=False, default="", trim_whitespace=False
        )
        attachments = serializers.ListField(child=serializers.CharField(), required=False)

    @extend_schema(
        parameters=[
            OpenApiParameter("before", OpenApiTypes.INT, description="Messages before this seq."),
            OpenApiParameter("after", OpenApiTypes.INT, description="Messages after this seq."),
            OpenApiParameter("limit", OpenApiTypes.INT, description="At most 200."),
        ],
        responses=HistoryOut,
    )
    def get(self, request: Request, thread_id: int) -> Response:
        page = selectors.message_history(
            user=request.user,
            thread_id=thread_id,
            before=request.query_params.get("before"),
            after=request.query_params.get("after"),
            limit=request.query_params.get("limit", 50),
            request=request,
        )
        return Response({"results": page.messages, "has_more": page.has_more})

    @extend_schema(request=MessageSendInput, responses={201: MessageOut, 200: MessageOut})
    def post(self, request: Request, thread_id: int) -> Response:
        data = self.MessageSendInput(data=request.data)
        data.is_valid(raise_exception=True)
        result = services.message_send(
            user=request.user,
            thread_id=thread_id,
            client_id=data.validated_data["client_id"],
            body=data.validated_data["body"],
            attachment_ids=data.validated_data.get("attachments"),
        )
        return Response(result.frame, status=201 if result.created else 200)


class SearchView(APIView):
    @extend_schema(
        parameters=[OpenApiParameter("q", OpenApiTypes.STR, required=True)],
        responses=MessageOut(many=True),
    )
    def get(self, request: Request, thread_id: int) -> Response:
        return Response(
            selectors.message_search(
                user=request.user,
                thread_id=thread_id,
                query=request.query_params.get("q"),
                request=request,
            )
        )


class ReadView(APIView):
    class ReadMarkInput(serializers.Serializer):
        seq = serializers.IntegerField(min_value=0)

    @extend_schema(
        request=ReadMarkInput,
        responses=inline_serializer("ReadMark", {"read_seq": serializers.IntegerField()}),
    )
    def post(self, request: Request, thread_id: int) -> Response:
        data = self.ReadMarkInput(data=request.data)
        data.is_valid(raise_exception=True)
        mark = services.thread_mark_read(
            user=request.user, thread_id=thread_id, seq=data.validated_data["seq"]
        )
        return Response({"read_seq": mark})


class AttachmentUploadView(APIView):
    parser_classes = [MultiPartParser]

    @extend_schema(
        request={
            "multipart/form-data": inline_serializer(
                "AttachmentUpload", {"file": serializers.FileField()}
            )
        },
        responses={
            201: inline_serializer(
                "Attachment",
                {
                    "id": serializers.UUIDField(),
                    "name": serializers.CharField(),
                    "content_type": serializers.CharField(),
                    "size": serializers.IntegerField(),
                    "url": serializers.CharField(),
                },
            )
        },
    )
    def post(self, request: Request, thread_id: int) -> Response:
        upload = request.FILES.get("file")
        if upload is None:
            raise DomainError(
                _("Choose a file to upload."),
                code="invalid",
                fields={"file": [_("This field is required.")]},
            )
        attachment = services.attachment_upload(
            user=request.user, thread_id=thread_id, upload=upload
        )
        from consult.frames import attachment_frame

        return Response(attachment_frame(attachment), status=status.HTTP_201_CREATED)


class AttachmentDownloadView(APIView):
    # Served with the type sniffed at upload (consult.services.attachment_upload).
    @extend_schema(
        responses={
            (200, "image/*"): OpenApiTypes.BINARY,
            (200, "application/pdf"): OpenApiTypes.BINARY,
        }
    )
    def get(self, request: Request, attachment_id: str) -> FileResponse:
        attachment = selectors.attachment_get_for_user(
            user=request.user, attachment_id=attachment_id, request=request
        )
        response = FileResponse(
            attachment.file.open("rb"),
            as_attachment=attachment.content_type == "application/pdf",
            filename=attachment.name,
            content_type=attachment.content_type,
        )
        response["Cache-Control"] = "private, no-store"
        response["X-Content-Type-Options"] = "nosniff"
        return response
