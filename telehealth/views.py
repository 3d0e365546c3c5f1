"""Server-rendered pages of the kernel: home, profile, the expired-session page and
readable error pages. Each reads through the selectors (which check access) and
writes through the services; the apps' own pages live in their apps."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import Q
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import formats, timezone
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
from scheduler.policy import doctor_day_window, local_today
from telehealth import selectors, services
from telehealth.api.serializers import MeUpdateSerializer
from telehealth.audit import audit_record
from telehealth.auth_views import two_factor_status
from telehealth.context_processors import CLINICIAN_ROLES, user_roles
from telehealth.errors import Conflict, DomainError, NotFound
from telehealth.models import AuditEvent, BreakGlassAccess, ClinicianProfile, Role, User

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
    day = doctor_day_window()
    appointments = list(
        appointment_selectors.appointment_list_for_user(user=user, between=day)
        .filter(clinician=clinician)
        .exclude(status__in=[Appointment.Status.CANCELLED, Appointment.Status.ERROR])
    )
    linked = [a.visit_id for a in appointments if a.visit_id]
    visits = list(
        visit_selectors.visit_list_for_user(user=user)
        .filter(host=user)
        .filter(
            Q(state__in=[Visit.State.WAITING, Visit.State.IN_PROGRESS])
            | Q(
                state=Visit.State.SCHEDULED,
                scheduled_start__gte=day[0],
                scheduled_start__lt=day[1],
            )
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
        "today": local_today(),
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
            "two_factor": two_factor_status(person),
            "strings": {
                "saved": _("Your profile was saved."),
                "invalid": _("Please correct the fields marked below."),
                "error": _("Something went wrong. Please try again."),
            },
        },
        status=400 if errors else 200,
    )


# --- Patient records, break-glass, the access log --------------------------------------

ACCESS_LOG_PAGE_SIZE = 50
REVIEW_PAGE_SIZE = 50


def _is_doctor(user: User) -> bool:
    clinician = ClinicianProfile.objects.filter(user_id=user.pk).only("kind").first()
    return clinician is not None and clinician.kind == ClinicianProfile.Kind.DOCTOR


@login_required
def patients_page(request: HttpRequest) -> HttpResponse:
    """A clinician's way to a record: open one by its number, or pick from the patients
    in my care (one audited list read)."""
    if not (user_roles(request) & CLINICIAN_ROLES):
        raise Http404
    number = request.GET.get("patient", "").strip()
    error = ""
    if number:
        if number.isascii() and number.isdigit() and 0 < int(number) < 2**31:
            return redirect("telehealth-patient-record", patient_id=int(number))
        error = _("A patient number is digits only.")
    patients = selectors.patient_list_for_user(
        user=request.user, purpose="patients page", request=request
    )
    return render(
        request,
        "telehealth/patients.html",
        {"patients": patients, "number": number, "error": error},
        status=400 if error else 200,
    )


def _record_context(request: HttpRequest, patient_id: int) -> tuple[dict[str, Any], int]:
    purpose = request.GET.get("purpose", "view record")[:120]
    try:
        patient = selectors.patient_get_for_user(
            user=request.user, patient_id=patient_id, purpose=purpose, request=request
        )
    except NotFound:
        # The same page whether the patient is missing or out of reach: it names nobody.
        return {
            "patient_id": patient_id,
            "refused": True,
            "can_break_glass": _is_doctor(request.user),
            "min_reason": services.BREAK_GLASS_REASON_MIN_LENGTH,
            "hours": settings.TELEHEALTH_BREAK_GLASS_MINUTES / 60,
        }, 404
    relationship = selectors.care_relationship_active(user=request.user, patient=patient)
    return {
        "patient_id": patient_id,
        "patient": patient,
        "relationship": relationship,
        "is_self": patient.user_id == request.user.pk,
    }, 200


@login_required
def patient_record_page(request: HttpRequest, patient_id: int) -> HttpResponse:
    """A patient's record through ``patient_get_for_user`` (authorised, audited). Refused,
    a doctor sees the emergency access form; anyone else the plain "not found"."""
    context, status = _record_context(request, patient_id)
    return render(request, "telehealth/patient_record.html", context, status=status)


@login_required
@require_http_methods(["POST"])
def patient_break_glass(request: HttpRequest, patient_id: int) -> HttpResponse:
    """The emergency access form: ``services.break_glass_open``, then the record."""
    reason = request.POST.get("reason", "")
    try:
        access = services.break_glass_open(
            doctor=request.user, patient_id=patient_id, reason=reason, request=request
        )
    except Conflict as error:
        messages.info(request, error.message)
        return redirect("telehealth-patient-record", patient_id=patient_id)
    except DomainError as error:
        context = {
            "patient_id": patient_id,
            "refused": True,
            "can_break_glass": error.code != "not_a_doctor",
            "min_reason": services.BREAK_GLASS_REASON_MIN_LENGTH,
            "hours": settings.TELEHEALTH_BREAK_GLASS_MINUTES / 60,
            "reason": reason,
            "error": error.message,
        }
        return render(request, "telehealth/patient_record.html", context, status=error.status)
    messages.warning(
        request,
        _(
            "Emergency access granted until %(until)s. Your facility's privacy officer "
            "has been told and will review it; the patient sees it in their access log."
        )
        % {"until": formats.date_format(timezone.localtime(access.ends_at), "DATETIME_FORMAT")},
    )
    return redirect(
        f"{reverse('telehealth-patient-record', args=[patient_id])}?purpose=emergency+access"
    )


@login_required
def access_log_page(request: HttpRequest) -> HttpResponse:
    """Who accessed my record: my audit events, newest first, and my emergency accesses.
    Only ever the signed-in patient's own (there is no patient number to change)."""
    from telehealth.api.views import access_log_rows

    patient_profile = getattr(request.user, "patient_profile", None)
    if patient_profile is None:
        raise Http404
    patient, events, accesses = selectors.patient_access_log(
        user=request.user, patient_id=patient_profile.pk, request=request
    )
    page = Paginator(events, ACCESS_LOG_PAGE_SIZE).get_page(request.GET.get("page"))
    rows = list(page.object_list)
    shown = access_log_rows(rows=rows, patient=patient, accesses=accesses)
    return render(
        request,
        "telehealth/access_log.html",
        {
            "page": page,
            "entries": [
                {**entry, "event": row} for row, entry in zip(rows, shown["results"], strict=True)
            ],
            "accesses": accesses,
            "chain": shown["chain"],
        },
    )


@login_required
def break_glass_review_page(request: HttpRequest) -> HttpResponse:
    """The privacy officer's review list: emergency accesses at my facilities, pending
    first, each with its verdict form. Updates arrive live (``break_glass.opened``)."""
    state = request.GET.get("state") or None
    if state not in (None, *BreakGlassAccess.Review.values):
        state = None
    try:
        accesses = selectors.break_glass_review_list(
            officer=request.user, state=state, request=request
        )
    except NotFound:
        raise Http404 from None
    page = Paginator(accesses, REVIEW_PAGE_SIZE).get_page(request.GET.get("page"))
    return render(
        request,
        "telehealth/break_glass_review.html",
        {
            "page": page,
            "state": state or "",
            "states": BreakGlassAccess.Review.choices,
            "strings": {
                "opened": _("New emergency access at your facility. Reload to review it."),
                "reload": _("Reload"),
            },
        },
    )


@login_required
@require_http_methods(["POST"])
def break_glass_review_submit(request: HttpRequest, access_id: int) -> HttpResponse:
    """A verdict from the review page: ``services.break_glass_review``."""
    decision = request.POST.get("decision", "")
    if decision not in (BreakGlassAccess.Review.JUSTIFIED, BreakGlassAccess.Review.NOT_JUSTIFIED):
        messages.error(request, _("Choose justified or not justified."))
        return redirect("telehealth-break-glass-review")
    try:
        services.break_glass_review(
            reviewer=request.user,
            access_id=access_id,
            justified=decision == BreakGlassAccess.Review.JUSTIFIED,
            note=request.POST.get("note", ""),
            request=request,
        )
    except NotFound:
        raise Http404 from None
    except DomainError as error:
        messages.error(request, error.message)
        return redirect("telehealth-break-glass-review")
    messages.success(request, _("Review saved."))
    return redirect("telehealth-break-glass-review")


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
