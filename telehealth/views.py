"""Server-rendered pages of the kernel: the home page and readable error pages."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils.translation import gettext as _

from telehealth import selectors


@login_required
def home(request: HttpRequest) -> HttpResponse:
    """Who I am, my roles and where I work."""
    person = selectors.user_get_profile(user_id=request.user.pk)
    return render(
        request, "telehealth/home.html", {"person": person, "roles": sorted(person.roles)}
    )


def lockout_response(
    request: HttpRequest, original_response: HttpResponse | None, credentials: dict | None
) -> HttpResponse:
    """What django-axes answers while a (username, address) pair is cooling off:
    JSON for the API, a readable page for people. Always 429, never a permanent lock."""
    message = _("Too many failed sign-ins. Try again in a few minutes.")
    if request.path.startswith("/api/"):
        return JsonResponse({"code": "locked_out", "detail": message, "fields": {}}, status=429)
    return render(request, "registration/locked_out.html", status=429)


def _error(request: HttpRequest, status: int, template: str) -> HttpResponse:
    return render(request, template, status=status)


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return _error(request, 400, "errors/400.html")


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return _error(request, 403, "errors/403.html")


def page_not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return _error(request, 404, "errors/404.html")


def server_error(request: HttpRequest) -> HttpResponse:
    return _error(request, 500, "errors/500.html")
