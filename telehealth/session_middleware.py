"""Session security for every request: idle and absolute limits, and the second factor.

Runs after ``AuthenticationMiddleware``. For a signed-in session:

* past either limit (``telehealth.session_security``) the person is signed out
  (``logout``: the session is deleted, a sign-out audited with the reason, its
  sockets closed with 4401) and a page goes to ``/session-expired/?next=…``, an
  API call gets a 401 ``{"code": "session_expired"}`` (static/js/realtime.js
  sends the page to the same place);
* otherwise the use is recorded, at most once per ``SESSION_ACTIVITY_RESOLUTION``
  (requests marked ``X-Telehealth-Background: 1``, a page re-reading itself on a
  timer, do not count as use);
* a session that lacks a second factor its user needs (checked at most once per
  resolution) becomes a pending sign-in again: pages go to the code or enrolment
  page, API calls get a 401 ``{"code": "otp_required"}``.

Token-authenticated API calls carry no session; their expiry is
``telehealth.api.authentication.ExpiringTokenAuthentication``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from urllib.parse import urlencode

from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, SESSION_KEY, logout
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.translation import gettext as _

from telehealth import session_security, two_factor

BACKGROUND_HEADER = "HTTP_X_TELEHEALTH_BACKGROUND"


def _is_api(request: HttpRequest) -> bool:
    return request.path.startswith("/api/")


def _passes_through(request: HttpRequest) -> bool:
    """Pages that an expired or half-signed-in session may still reach as anonymous."""
    return request.path.startswith(
        (
            settings.STATIC_URL,
            reverse("login"),
            reverse("logout"),
            reverse("session-expired"),
            reverse("login-verify"),
            reverse("totp-setup"),
            "/i18n/",
        )
    )


class SessionSecurityMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self._check(request)
        if response is not None:
            return response
        return self.get_response(request)

    def _check(self, request: HttpRequest) -> HttpResponse | None:
        session = request.session
        if SESSION_KEY not in session:
            return None  # anonymous, or a sign-in waiting for its code
        user = request.user
        if not user.is_authenticated:
            return None  # a stale or foreign session: Django treats it as anonymous
        now = time.time()
        reason = session_security.session_expiry_reason(session, now=now)
        if reason is not None:
            request.th_sign_out_reason = session_security.REASON_LABELS[reason]  # type: ignore[attr-defined]
            logout(request)
            return self._expired(request)
        if not request.META.get(BACKGROUND_HEADER):
            # Saved by SessionMiddleware when it changed: at most once per resolution.
            session_security.session_touch(session, now=now)
        checked = float(session.get(two_factor.CHECKED_KEY) or 0)
        if now - checked >= settings.SESSION_ACTIVITY_RESOLUTION.total_seconds():
            if not two_factor.second_factor_satisfied(user=user, session=session):
                return self._second_factor_missing(request, user)
            session[two_factor.CHECKED_KEY] = int(now)
        return None

    def _expired(self, request: HttpRequest) -> HttpResponse | None:
        if _is_api(request):
            if request.META.get("HTTP_AUTHORIZATION"):
                return None  # a token came too: it decides
            return JsonResponse(
                {
                    "code": "session_expired",
                    "detail": _("Your session has ended. Please sign in again."),
                    "fields": {},
                },
                status=401,
            )
        if _passes_through(request):
            return None
        return redirect(f"{reverse('session-expired')}?{urlencode({'next': self._next(request)})}")

    def _second_factor_missing(self, request: HttpRequest, user) -> HttpResponse | None:  # type: ignore[no-untyped-def]
        backend = request.session.get(BACKEND_SESSION_KEY)
        request.th_sign_out_reason = "second factor required"  # type: ignore[attr-defined]
        logout(request)
        user.backend = backend
        two_factor.pending_start(request, user=user, next_url=self._next(request))
        if _is_api(request):
            return JsonResponse(
                {
                    "code": "otp_required",
                    "detail": _("Enter the code from your authenticator app to continue."),
                    "fields": {},
                },
                status=401,
            )
        if _passes_through(request):
            return None
        return redirect(two_factor.pending_next_step(user))

    @staticmethod
    def _next(request: HttpRequest) -> str:
        return request.get_full_path() if request.method in ("GET", "HEAD") else request.path
