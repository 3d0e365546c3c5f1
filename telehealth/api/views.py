"""The kernel's REST API: thin views that parse, call one selector or service, serialise."""

from __future__ import annotations

from typing import Any

from axes.exceptions import AxesBackendPermissionDenied
from axes.handlers.proxy import AxesProxyHandler
from django.contrib.auth import authenticate
from django.contrib.auth.signals import user_login_failed
from django.db import connection
from django.utils.translation import gettext as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import generics, serializers, status
from rest_framework.authtoken.models import Token
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from telehealth import selectors, services, two_factor
from telehealth.api import serializers as out
from telehealth.api.authentication import token_expired
from telehealth.api.pagination import PageNumberPagination
from telehealth.audit import audit_verify_events
from telehealth.errors import DomainError
from telehealth.filters import FacilityFilter
from telehealth.models import BreakGlassAccess, Commune, Province, Specialty


class HealthView(APIView):
    """Liveness and database readiness, for load balancers and compose health checks."""

    permission_classes = [AllowAny]
    authentication_classes: list = []

    @extend_schema(
        responses=inline_serializer("Health", {"status": serializers.CharField()}),
    )
    def get(self, request: Request) -> Response:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return Response({"status": "ok"})


class TokenView(APIView):
    """Exchange a username and password (and the current ``otp`` code, for a person
    who uses two-step sign-in) for an API token; DELETE revokes it. A token lives
    ``API_TOKEN_MAX_AGE`` from issue (``telehealth.api.authentication``); asking
    again after that issues a new one."""

    permission_classes = [AllowAny]
    throttle_scope = "auth"

    class TokenInput(serializers.Serializer):
        username = serializers.CharField(max_length=150)
        password = serializers.CharField(max_length=256, trim_whitespace=False)
        otp = serializers.CharField(
            max_length=12,
            required=False,
            allow_blank=True,
            help_text="The 6-digit code of the authenticator, for people who use two-step sign-in.",
        )

    def get_throttles(self):  # type: ignore[no-untyped-def]
        from rest_framework.throttling import ScopedRateThrottle

        return [ScopedRateThrottle()] if self.request.method == "POST" else []

    @extend_schema(
        request=TokenInput,
        responses=inline_serializer("Token", {"token": serializers.CharField()}),
        auth=[],
    )
    def post(self, request: Request) -> Response:
        data = self.TokenInput(data=request.data)
        data.is_valid(raise_exception=True)
        # django-axes counts the failure; while the (username, address) pair is
        # locked, AxesMiddleware replaces this response with a 429.
        try:
            user = authenticate(
                request=request._request,
                username=data.validated_data["username"],
                password=data.validated_data["password"],
            )
        except AxesBackendPermissionDenied:
            user = None
        if user is None or not user.is_active:
            raise DomainError(_("Wrong username or password."), code="bad_credentials")
        if two_factor.needs_second_factor(user):
            self._check_second_factor(request, user, data.validated_data.get("otp", ""))
        token = Token.objects.filter(user=user).first()
        if token is not None and token_expired(token):
            token.delete()
        token, _created = Token.objects.get_or_create(user=user)
        return Response({"token": token.key})

    @staticmethod
    def _check_second_factor(request: Request, user: Any, otp: str) -> None:
        if two_factor.confirmed_device(user) is None:
            raise DomainError(
                _("Two-step sign-in is required for your role: set it up on the website first."),
                code="otp_enrolment_required",
            )
        if not otp:
            message = _("Enter the 6-digit code shown in your authenticator app.")
            raise DomainError(message, code="otp_required", fields={"otp": [message]})
        credentials = {"username": user.get_username()}
        if not AxesProxyHandler.is_allowed(request._request, credentials):
            locked = DomainError(
                _("Too many failed sign-ins. Try again in a few minutes."), code="locked_out"
            )
            locked.status = 429
            raise locked
        try:
            services.totp_sign_in_verify(user=user, code=otp, request=request)
        except DomainError:
            # A wrong code counts as a failed sign-in for django-axes, like a wrong password.
            user_login_failed.send(
                sender=TokenView, credentials=credentials, request=request._request
            )
            raise

    @extend_schema(responses={204: None})
    def delete(self, request: Request) -> Response:
        if request.user.is_authenticated:
            Token.objects.filter(user=request.user).delete()
        return Response(status=status.HTTP_204_NO_CONTENT)


class MeView(APIView):
    """The signed-in person: who they are, their roles and where they work."""

    @extend_schema(responses=out.MeSerializer)
    def get(self, request: Request) -> Response:
        user = selectors.user_get_profile(user_id=request.user.pk)
        return Response(out.MeSerializer(user).data)

    @extend_schema(request=out.MeUpdateSerializer, responses=out.MeSerializer)
    def patch(self, request: Request) -> Response:
        allowed = set(out.MeUpdateSerializer.Meta.fields)
        unknown = sorted(set(request.data) - allowed)
        if unknown:
            raise DomainError(
                _("These fields cannot be changed here."),
                code="read_only",
                fields={name: [_("read-only")] for name in unknown},
            )
        data = out.MeUpdateSerializer(instance=request.user, data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        services.user_profile_update(user=request.user, data=data.validated_data)
        user = selectors.user_get_profile(user_id=request.user.pk)
        return Response(out.MeSerializer(user).data)


class ProvinceListView(generics.ListAPIView):
    """The 34 provinces; ``legacy_code`` finds the one an old (63-province) code merged into."""

    serializer_class = out.ProvinceSerializer
    pagination_class = None

    @extend_schema(
        parameters=[
            OpenApiParameter("legacy_code", OpenApiTypes.STR, description="A code of the 63.")
        ]
    )
    def get(self, request: Request, *args, **kwargs) -> Response:  # type: ignore[no-untyped-def]
        return super().get(request, *args, **kwargs)

    def get_queryset(self):  # type: ignore[no-untyped-def]
        legacy_code = self.request.query_params.get("legacy_code")
        queryset = Province.objects.prefetch_related("legacy_provinces")
        if legacy_code:
            return queryset.filter(legacy_provinces__code=legacy_code)
        return queryset


class ProvinceDetailView(APIView):
    """One province by today's code, or by a code from before July 2025."""

    @extend_schema(responses=out.ProvinceSerializer)
    def get(self, request: Request, code: str) -> Response:
        province = selectors.province_resolve(code=code)
        return Response(out.ProvinceSerializer(province).data)


class CommuneListView(generics.ListAPIView):
    serializer_class = out.CommuneSerializer

    @extend_schema(parameters=[OpenApiParameter("province", OpenApiTypes.STR)])
    def get(self, request: Request, *args, **kwargs) -> Response:  # type: ignore[no-untyped-def]
        return super().get(request, *args, **kwargs)

    def get_queryset(self):  # type: ignore[no-untyped-def]
        queryset = Commune.objects.select_related("province")
        province = self.request.query_params.get("province")
        return queryset.filter(province__code=province) if province else queryset


class SpecialtyListView(generics.ListAPIView):
    serializer_class = out.SpecialtySerializer
    pagination_class = None
    queryset = Specialty.objects.all()


class FacilityListView(generics.ListAPIView):
    """Search the national directory by province, level, specialty, hub and name."""

    serializer_class = out.FacilityListSerializer
    filterset_class = FacilityFilter

    def get_queryset(self):  # type: ignore[no-untyped-def]
        # Filtering happens in the filter backend, with the same FacilityFilter
        # that selectors.facility_list uses.
        return selectors.facility_list()


class FacilityDetailView(APIView):
    @extend_schema(responses=out.FacilityDetailSerializer)
    def get(self, request: Request, code: str) -> Response:
        return Response(out.FacilityDetailSerializer(selectors.facility_get(code=code)).data)


class PatientDetailView(APIView):
    """A patient's record, for the patient and their care team only; every read is audited."""

    @extend_schema(responses=out.PatientSerializer)
    def get(self, request: Request, patient_id: int) -> Response:
        purpose = request.query_params.get("purpose", "view record")[:120]
        patient = selectors.patient_get_for_user(
            user=request.user, patient_id=patient_id, purpose=purpose, request=request
        )
        return Response(out.PatientSerializer(patient).data)


class PatientBreakGlassView(APIView):
    """Emergency (break-glass) access: a doctor outside the care relationship opens the
    record with a stated reason, for a limited time; the facility's privacy officers
    are alerted at once and review it. Answers the access and the record."""

    @extend_schema(
        request=out.BreakGlassOpenSerializer,
        responses={201: out.BreakGlassOpenedSerializer},
    )
    def post(self, request: Request, patient_id: int) -> Response:
        data = out.BreakGlassOpenSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        access = services.break_glass_open(
            doctor=request.user,
            patient_id=patient_id,
            reason=data.validated_data["reason"],
            request=request,
        )
        patient = selectors.patient_get_for_user(
            user=request.user, patient_id=patient_id, purpose="emergency access", request=request
        )
        return Response(
            out.BreakGlassOpenedSerializer({"access": access, "patient": patient}).data,
            status=status.HTTP_201_CREATED,
        )


def access_log_rows(
    *, rows: list[Any], patient: Any, accesses: list[BreakGlassAccess]
) -> dict[str, Any]:
    """One page of a patient's access log as both the API and the page show it: the
    entries, the patient's emergency accesses, and the integrity check of the rows
    (``audit_verify_events``: each row and its neighbours, not a walk of the whole log)."""
    broken = audit_verify_events(rows)
    context = {"patient": patient, "break_glass": accesses}
    return {
        "results": out.AccessLogEntrySerializer(rows, many=True, context=context).data,
        "break_glass": out.AccessLogBreakGlassSerializer(accesses, many=True).data,
        "chain": {
            "verified": broken is None,
            "checked": len(rows),
            "first_broken": broken,
            "scope": "page",
        },
    }


class PatientAccessLogView(APIView):
    """Who accessed my record (for the patient only; anyone else: 404, audited): the
    audit events about me, newest first and paged, my emergency accesses, and whether
    this page's rows verify against the audit log's hash chain."""

    @extend_schema(
        parameters=[
            OpenApiParameter("page", OpenApiTypes.INT),
            OpenApiParameter("page_size", OpenApiTypes.INT),
        ],
        responses=inline_serializer(
            "AccessLogPage",
            {
                "count": serializers.IntegerField(),
                "next": serializers.CharField(allow_null=True),
                "previous": serializers.CharField(allow_null=True),
                "results": out.AccessLogEntrySerializer(many=True),
                "break_glass": out.AccessLogBreakGlassSerializer(many=True),
                "chain": out.ChainCheckSerializer(),
            },
        ),
    )
    def get(self, request: Request, patient_id: int) -> Response:
        patient, events, accesses = selectors.patient_access_log(
            user=request.user, patient_id=patient_id, request=request
        )
        paginator = PageNumberPagination()
        rows = paginator.paginate_queryset(events, request, view=self) or []
        page = access_log_rows(rows=list(rows), patient=patient, accesses=accesses)
        response = paginator.get_paginated_response(page["results"])
        response.data["break_glass"] = page["break_glass"]
        response.data["chain"] = page["chain"]
        return response


class BreakGlassReviewListView(generics.ListAPIView):
    """Emergency accesses at my facilities, for their privacy officers: pending first."""

    serializer_class = out.BreakGlassAccessSerializer
    filter_backends: list = []

    @extend_schema(
        parameters=[
            OpenApiParameter("state", OpenApiTypes.STR, enum=list(BreakGlassAccess.Review.values))
        ]
    )
    def get(self, request: Request, *args, **kwargs) -> Response:  # type: ignore[no-untyped-def]
        return super().get(request, *args, **kwargs)

    def get_queryset(self):  # type: ignore[no-untyped-def]
        state = self.request.query_params.get("state") or None
        if state is not None and state not in BreakGlassAccess.Review.values:
            raise DomainError(
                _("Unknown review state."),
                code="invalid",
                fields={
                    "state": [_("Choose one of: %s.") % ", ".join(BreakGlassAccess.Review.values)]
                },
            )
        return selectors.break_glass_review_list(
            officer=self.request.user, state=state, request=self.request
        )


class BreakGlassReviewView(APIView):
    """A privacy officer's verdict on an emergency access: justified, or not justified
    (with a note; ends the access at once if it still runs)."""

    @extend_schema(
        request=out.BreakGlassReviewInputSerializer, responses=out.BreakGlassAccessSerializer
    )
    def post(self, request: Request, access_id: int) -> Response:
        data = out.BreakGlassReviewInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        access = services.break_glass_review(
            reviewer=request.user,
            access_id=access_id,
            justified=data.validated_data["decision"] == BreakGlassAccess.Review.JUSTIFIED,
            note=data.validated_data["note"],
            request=request,
        )
        return Response(out.BreakGlassAccessSerializer(access).data)
