"""The kernel's REST API: thin views that parse, call one selector or service, serialise."""

from __future__ import annotations

from axes.exceptions import AxesBackendPermissionDenied
from django.contrib.auth import authenticate
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

from telehealth import selectors, services
from telehealth.api import serializers as out
from telehealth.errors import DomainError
from telehealth.filters import FacilityFilter
from telehealth.models import Commune, Province, Specialty


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
    """Exchange a username and password for an API token; DELETE revokes it."""

    permission_classes = [AllowAny]
    throttle_scope = "auth"

    class TokenInput(serializers.Serializer):
        username = serializers.CharField(max_length=150)
        password = serializers.CharField(max_length=256, trim_whitespace=False)

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
        token, _created = Token.objects.get_or_create(user=user)
        return Response({"token": token.key})

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
