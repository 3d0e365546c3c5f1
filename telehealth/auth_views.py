"""Signing in with a second factor: the password page, the code page, setting up and
turning off the authenticator (``telehealth.two_factor`` says who needs what).

Thin edges: each view parses, calls one service (``telehealth.services``: the code
checks, audited) and answers. A wrong code counts as a failed sign-in for
django-axes, so the (username, address) lockout covers the code page as it covers
the password page."""

from __future__ import annotations

from typing import Any

from axes.handlers.proxy import AxesProxyHandler
from django.contrib import messages
from django.contrib.auth import views as django_auth_views
from django.contrib.auth.decorators import login_required
from django.contrib.auth.signals import user_login_failed
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_http_methods, require_POST
from django_otp import login as otp_login

from telehealth import services, two_factor
from telehealth.errors import DomainError


class SignInView(django_auth_views.LoginView):
    """The password step. Someone who needs a second factor is not signed in here:
    the session holds a pending sign-in and the next page asks for the code (or,
    with no authenticator yet, sets one up)."""

    redirect_authenticated_user = True

    def form_valid(self, form: Any) -> HttpResponse:
        user = form.get_user()
        if two_factor.needs_second_factor(user):
            two_factor.pending_start(self.request, user=user, next_url=self.get_success_url())
            return redirect(two_factor.pending_next_step(user))
        return super().form_valid(form)


def _credentials(user: Any) -> dict[str, str]:
    return {"username": user.get_username()}


def _locked_out(request: HttpRequest, user: Any) -> HttpResponse | None:
    if AxesProxyHandler.is_allowed(request, _credentials(user)):
        return None
    from telehealth.views import lockout_response

    return lockout_response(request, None, _credentials(user))


def _count_failure(request: HttpRequest, user: Any) -> None:
    """A wrong code is a failed sign-in for django-axes (its middleware answers 429
    once the pair is locked)."""
    user_login_failed.send(sender=__name__, credentials=_credentials(user), request=request)


def _safe_next(request: HttpRequest, next_url: str) -> str:
    if url_has_allowed_host_and_scheme(
        next_url, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return next_url
    return "home"


@never_cache
@sensitive_post_parameters("otp")
@require_http_methods(["GET", "POST"])
def login_verify(request: HttpRequest) -> HttpResponse:
    """The second step of a sign-in: the 6-digit code of the person's authenticator."""
    user = two_factor.pending_user(request)
    if user is None:
        messages.info(request, _("Please sign in again."))
        return redirect("login")
    if two_factor.confirmed_device(user) is None:
        return redirect("totp-setup")
    error = ""
    if request.method == "POST":
        locked = _locked_out(request, user)
        if locked is not None:
            return locked
        try:
            device = services.totp_sign_in_verify(
                user=user, code=request.POST.get("otp"), request=request
            )
        except DomainError as failure:
            _count_failure(request, user)
            error = failure.message
        else:
            return redirect(
                _safe_next(request, two_factor.pending_complete(request, user=user, device=device))
            )
    return render(
        request,
        "registration/totp_verify.html",
        {"error": error},
        status=400 if error else 200,
    )


@never_cache
@sensitive_post_parameters("otp")
@require_http_methods(["GET", "POST"])
def totp_setup(request: HttpRequest) -> HttpResponse:
    """Set up an authenticator: a QR code and the key to type, then a code to confirm.

    Reached signed in (turning it on from the profile page), or half signed in
    (the role requires it and the person has none yet: nothing else works until
    it is done)."""
    pending = not request.user.is_authenticated
    user = two_factor.pending_user(request) if pending else request.user
    if user is None:
        return redirect("login")
    if not two_factor.totp_offered(user):
        raise Http404
    if two_factor.confirmed_device(user) is not None:
        return redirect("login-verify" if pending else "profile")
    device = services.totp_device_start(user=user)
    error = ""
    if request.method == "POST":
        if pending and (locked := _locked_out(request, user)) is not None:
            return locked
        try:
            device = services.totp_device_confirm(
                user=user, code=request.POST.get("otp"), request=request
            )
        except DomainError as failure:
            if pending:
                _count_failure(request, user)
            error = failure.message
        else:
            if pending:
                next_url = two_factor.pending_complete(request, user=user, device=device)
                messages.success(request, _("Two-step sign-in is on."))
                return redirect(_safe_next(request, next_url))
            otp_login(request, device)
            messages.success(request, _("Two-step sign-in is on."))
            return redirect("profile")
    return render(
        request,
        "registration/totp_setup.html",
        {
            "pending": pending,
            "required": two_factor.totp_required(user),
            "qr_svg": two_factor.qr_svg(device),
            "secret": two_factor.secret_for_display(device),
            "error": error,
        },
        status=400 if error else 200,
    )


@login_required
@sensitive_post_parameters("otp")
@require_POST
def totp_disable(request: HttpRequest) -> HttpResponse:
    """Turn two-step sign-in off from the profile page: a current code is required."""
    try:
        services.totp_disable(user=request.user, code=request.POST.get("otp"), request=request)
    except DomainError as failure:
        messages.error(request, failure.message)
    else:
        messages.success(request, _("Two-step sign-in is off."))
    return redirect("profile")


def two_factor_status(user: Any) -> dict[str, bool]:
    """What the profile page shows about two-step sign-in."""
    return {
        "offered": two_factor.totp_offered(user),
        "enabled": two_factor.confirmed_device(user) is not None,
        "required": two_factor.totp_required(user),
    }
