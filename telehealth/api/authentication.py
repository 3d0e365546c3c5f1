"""API tokens that expire, like sessions do.

A token lives ``API_TOKEN_MAX_AGE`` from the moment it was issued (by default the
session's absolute limit, 12 hours), however much it is used; then it is deleted
and the call is answered 401 ``token_expired``, and the client asks
``POST /api/v1/auth/token/`` for a new one (with ``otp`` when the person uses
two-step sign-in). There is no idle limit on tokens: the idle limit protects a
browser left open on a shared computer, which holds a session, not a token; and
keeping a last-use time per token would be a write on every call.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication


def token_expired(token: Any) -> bool:
    return token.created + settings.API_TOKEN_MAX_AGE <= timezone.now()


class ExpiringTokenAuthentication(TokenAuthentication):
    def authenticate_credentials(self, key: str) -> tuple[Any, Any]:
        user, token = super().authenticate_credentials(key)
        if token_expired(token):
            token.delete()
            raise exceptions.AuthenticationFailed(
                _("The token has expired. Request a new one."), code="token_expired"
            )
        return user, token
