"""Server-rendered pages of the kernel: home, profile, the expired-session page and
readable error pages. Each reads through the selectors (which check access) and
writes through the services; the apps' own pages live in their apps."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Q
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods

from consult import visit_selectors
from consult.models import Visit
from scheduler import appointment_selectors
from scheduler import selectors as referral_selectors
from scheduler.models import Appointment, Referral
from scheduler.policy import local_today
from telehealth import selectors, services
from telehealth.api.serializers import MeUpdateSerializer
from telehealth.audit import audit_record
from telehealth.context_processors import CLINICIAN_ROLES
from telehealth.errors import DomainError
from telehealth.models import AuditEvent, Role, User

# The home page is a summary: a few rows each, and a link to the full page.
HOME_ROWS = 5
OPEN_VISIT_STATES = (Visit.State.SCHEDULED, Visit.State.WAITING, Visit.State.IN_PROGRESS)
# A draft has not been sent yet: nothing the patient can wait for.
OPEN_REFERRAL_STATUSES = tuple(
    s for s in referral_selectors.OPEN_STATUSES if s != Referral.Status.DRAFT
)


@login_required
def home(request: HttpRequest) -> HttpResponse:
    """Who I am and where I work, then what each of my roles needs first: a patient's
    upcoming visits and open referrals, a clinician's day, a coordinator's board."""
    person = selectors.user_get_profile(user_id=request.user.pk)
    roles = person.roles
    context: dict[str, Any] = {"person": person, "roles": sorted(roles)}
    if Role.PATIENT in roles:
        context["patient_home"] = _patient_home(person)
    if roles & CLINICIAN_ROLES:
        context["clinician_home"] = _clinician_home(request, person)
    if Role.COORDINATOR in roles:
        context["coordinator_home"] = _coordinator_home(request, person)
    return render(request, "telehealth/home.html", context)


def _patient_home(user: User) -> dict[str, Any]:
    """My upcoming appointments and video visits, my open referrals and my place in
    each queue. Only rows about this patient: a patient who also books for others
    (a health worker, a parent) sees those elsewhere, never here."""
    appointments = list(
        appointment_selectors.appointment_list_for_user(user=user, upcoming=True).filter(
            patient__user=user, status__in=Appointment.ACTIVE
        )[:HOME_ROWS]
    )
    # A video appointment already links its visit; list only the other open visits.
    linked = [a.visit_id for a in appointments if a.visit_id]
    visits = list(
        visit_selectors.visit_list_for_user(user=user)
        .filter(patient__user=user, state__in=OPEN_VISIT_STATES)
        .exclude(pk__in=linked)
        .order_by("scheduled_start", "created_at")[:HOME_ROWS]
    )
    referrals = referral_selectors.referral_list_for_user(user=user).filter(
        patient__user=user, status__in=OPEN_REFERRAL_STATUSES
    )[:HOME_ROWS]
    return {
        "appointments": appointments,
        "visits": visits,
        "referrals": [
            {"referral": r, "position": referral_selectors.queue_position(referral=r)}
            for r in referrals
        ],
    }


def _clinician_home(request: HttpRequest, user: User) -> dict[str, Any]:
    """Today's visits (booked appointments and the video visits I host that are
    open now) and how many referrals wait in my queues."""
    clinician = user.clinician_profile
    today = local_today()
    appointments = list(
        appointment_selectors.appointment_list_for_user(user=user, day=today.isoformat())
        .filter(clinician=clinician)
        .exclude(status__in=[Appointment.Status.CANCELLED, Appointment.Status.ERROR])
    )
    linked = [a.visit_id for a in appointments if a.visit_id]
    visits = list(
        visit_selectors.visit_list_for_user(user=user)
        .filter(host=user)
        .filter(
            Q(state__in=[Visit.State.WAITING, Visit.State.IN_PROGRESS])
            | Q(state=Visit.State.SCHEDULED, scheduled_start__date=today)
        )
        .exclude(pk__in=linked)
        .order_by("scheduled_start", "created_at")[: HOME_ROWS * 2]
    )
    others = {a.patient_id for a in appointments} | {v.patient_id for v in visits}
    others.discard(getattr(getattr(user, "patient_profile", None), "pk", None))
    if others:
        # Like every list of other people's records: one audit event per read.
        audit_record(
            actor=user,
            action=AuditEvent.Action.READ,
            target="telehealth.home:today",
            reason=f"home page, today's visits ({len(appointments) + len(visits)})",
            request=request,
        )
    # The queues' own counters: a number, not the waiting patients' records.
    queues = list(referral_selectors.queues_for_user(user=user).filter(facility=clinician.facility))
    return {
        "appointments": appointments,
        "visits": visits,
        "has_queues": bool(queues),
        "waiting": sum(q.waiting for q in queues),
    }


def _coordinator_home(request: HttpRequest, user: User) -> dict[str, Any] | None:
    """The board's counts for the coordinator's default scope (one audited board read)."""
    try:
        board = referral_selectors.board_get(user=user, limit=0, request=request)
    except DomainError:
        return None
    return {"counts": board["counts"], "loop_closure": board["loop_closure"]}


# The profile form shows Django REST framework's field messages, and its Vietnamese
# catalogue lacks these two; ours has them. Listed so that makemessages keeps them.
_DRF_MESSAGES = (
    gettext_noop("Ensure this field has no more than {max_length} characters."),
    gettext_noop('"{input}" is not a valid choice.'),
)


@login_required
@require_http_methods(["GET", "POST"])
def profile(request: HttpRequest) -> HttpResponse:
    """What I may change about myself: the fields and checks of ``PATCH /api/v1/me/``.

    The page's script saves through that API. Without scripts the form posts
    here and goes through the same serializer and service, so both ways accept
    and refuse the same things with the same messages."""
    person = selectors.user_get_profile(user_id=request.user.pk)
    errors: dict[str, list[str]] = {}
    values = {name: getattr(person, name) for name in MeUpdateSerializer.Meta.fields}
    if request.method == "POST":
        data = {
            name: request.POST[name]
            for name in MeUpdateSerializer.Meta.fields
            if name in request.POST
        }
        values.update(data)
        checked = MeUpdateSerializer(instance=person, data=data, partial=True)
        if checked.is_valid():
            services.user_profile_update(user=request.user, data=checked.validated_data)
            messages.success(request, _("Your profile was saved."))
            return redirect("profile")
        errors = {name: [str(m) for m in found] for name, found in checked.errors.items()}
    return render(
        request,
        "telehealth/profile.html",
        {
            "person": person,
            "roles": sorted(person.roles),
            "values": values,
            "errors": errors,
            "languages": User._meta.get_field("preferred_language").choices,
            "strings": {
                "saved": _("Your profile was saved."),
                "invalid": _("Please correct the fields marked below."),
                "error": _("Something went wrong. Please try again."),
            },
        },
        status=400 if errors else 200,
    )


@never_cache
def session_expired(request: HttpRequest) -> HttpResponse:
    """Where a page goes when its session is gone (the socket closed with 4401, or an
    API call answered 401): say so plainly, and sign in again back to ``next``."""
    next_path = request.GET.get("next", "")
    safe = url_has_allowed_host_and_scheme(
        next_path, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    )
    # Coming back to the sign-in or to this page would only loop.
    if not safe or next_path.startswith((reverse("login"), reverse("session-expired"))):
        next_path = reverse("home")
    return render(
        request,
        "registration/session_expired.html",
        {"sign_in_url": f"{reverse('login')}?{urlencode({'next': next_path})}"},
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
