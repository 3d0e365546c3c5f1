"""Every API error has one shape: {"code", "detail", "fields"}. Never a 500 for bad input,
and a 503 (retry) rather than a 500 while Redis, the broker or the database is unreachable."""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import DataError
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler
from rest_framework.views import set_rollback

from telehealth.errors import DomainError, is_service_unavailable

logger = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5


def unavailable_body() -> dict[str, Any]:
    from django.utils.translation import gettext

    return {
        "code": "unavailable",
        "detail": gettext("The service is briefly unavailable. Please try again in a moment."),
        "fields": {},
    }


def _fields(detail: Any) -> dict[str, Any]:
    if isinstance(detail, dict):
        return {key: value for key, value in detail.items() if key != "non_field_errors"}
    return {}


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if is_service_unavailable(exc):
        logger.warning("service unavailable: %s: %s", type(exc).__name__, exc)
        return Response(
            unavailable_body(),
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
    if isinstance(exc, DomainError):
        return Response(
            {"code": exc.code, "detail": exc.message, "fields": exc.fields}, status=exc.status
        )
    if isinstance(exc, DataError):
        # The database refused a value the request carried (a NUL character in a search
        # or a JSON object, a number out of range): bad input, answered 400. Logged, so
        # a value the code itself got wrong still shows.
        from django.utils.translation import gettext

        logger.warning("a request value was refused by the database: %s", exc)
        set_rollback()
        return Response(
            {
                "code": "invalid",
                "detail": gettext(
                    "The request contains a value that cannot be stored or searched for "
                    "(for example a NUL character)."
                ),
                "fields": {},
            },
            status=status.HTTP_400_BAD_REQUEST,
        )
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(
            exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
        )
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()

    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        detail = exc.detail
        non_field = detail.get("non_field_errors") if isinstance(detail, dict) else detail
        message = (
            " ".join(str(m) for m in non_field)
            if isinstance(non_field, list) and non_field
            else "The request has invalid fields."
        )
        response.data = {"code": "invalid", "detail": message, "fields": _fields(detail)}
        response.status_code = status.HTTP_400_BAD_REQUEST
    elif isinstance(exc, exceptions.APIException):
        codes = exc.get_codes()
        response.data = {
            "code": codes if isinstance(codes, str) else "error",
            "detail": str(exc.detail),
            "fields": {},
        }
    return response
