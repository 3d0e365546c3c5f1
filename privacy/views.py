"""Pages of privacy/: a patient's "My data & privacy" (the notice, consent with a
withdraw button per purpose, the download, requests) and the coordinators'
"Data requests" worklist with each request's page.

Plain forms that post and come back (no script needed): each POST calls one
service and redirects with a message; a refusal (``DomainError``) comes back as
the message, never as an error page. Reads go through the selectors.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date, datetime
from functools import wraps
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import FieldDoesNotExist, PermissionDenied
from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import DateField
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.text import capfirst
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST

from privacy import api, selectors, services
from privacy.models import ConsentRecord, DataRequest, Purpose
from privacy.notices import CURRENT_NOTICE, NOTICES
from telehealth.errors import AccessDenied, DomainError, NotFound
from telehealth.models import PatientProfile, Sex, User
from telehealth.services import PATIENT_CORRECTABLE_USER


def _patient(request: HttpRequest) -> PatientProfile:
    """The signed-in person's own patient record; people who are not patients get 403."""
    patient = PatientProfile.objects.select_related("user").filter(user=request.user).first()
    if patient is None:
        raise PermissionDenied
    return patient


def _message(error: DomainError) -> str:
    details = [str(m) for found in error.fields.values() for m in found if isinstance(m, str)]
    if error.message == _("Invalid input.") and details:
        return " ".join(details)
    return error.message


def _acts(back: Callable[[HttpRequest, Any], str]) -> Callable:
    """A POST that calls a service: success → the message it returns; a ``DomainError``
    → its message; either way back to ``back(request, kwargs)``. Unknown or not
    yours → 404, as everywhere; not for your role → 403."""

    def decorate(view: Callable[..., str]) -> Callable[..., HttpResponse]:
        @wraps(view)
        @login_required
        @require_POST
        def wrapper(request: HttpRequest, **kwargs: Any) -> HttpResponse:
            try:
                done = view(request, **kwargs)
                if done:
                    messages.success(request, done)
            except NotFound as error:
                raise Http404(error.message) from None
            except AccessDenied:
                raise PermissionDenied from None
            except DomainError as error:
                messages.error(request, _message(error))
            return redirect(back(request, kwargs))

        return wrapper

    return decorate


def _to_privacy(request: HttpRequest, kwargs: Any) -> str:
    return reverse("privacy")


def _to_request(request: HttpRequest, kwargs: Any) -> str:
    return reverse("privacy-request", args=[kwargs["request_id"]])


# --- The patient's page ------------------------------------------------------------------


@login_required
@require_GET
def privacy_page(request: HttpRequest) -> HttpResponse:
    """The notice to read and answer, my consent per purpose (withdraw or give), my
    restriction, the download, my requests and what deletion would keep."""
    patient = _patient(request)
    requests = list(selectors.data_request_list_for_patient(patient=patient)[:50])
    other = "vi" if (request.LANGUAGE_CODE or "vi").startswith("en") else "en"
    return render(
        request,
        "privacy/privacy.html",
        {
            "notice": CURRENT_NOTICE,
            "paragraphs": CURRENT_NOTICE.paragraphs(),
            "other_title": CURRENT_NOTICE.title(other),
            "other_paragraphs": CURRENT_NOTICE.paragraphs(other),
            "state": api.consent_state(patient),
            "history": list(selectors.consent_history(patient=patient)[:50]),
            "versions": NOTICES,
            "requests": requests,
            "open_kinds": {r.kind for r in requests if r.is_open},
            "kinds": [
                (code, label, settings.PRIVACY_REQUEST_COMPLETE_DAYS[code])
                for code, label in DataRequest.Kind.choices
            ],
            "deletion_plan": services.deletion_report(services.deletion_plan(patient=patient)),
            "respond_days": settings.PRIVACY_REQUEST_RESPOND_WORKING_DAYS,
        },
    )


@_acts(_to_privacy)
def consent_answer(request: HttpRequest) -> str:
    services.consent_answer(
        patient=_patient(request),
        purposes=request.POST.getlist("purposes"),
        notice_version=request.POST.get("notice_version", ""),
        method=ConsentRecord.Method.WEB,
        by=request.user,
        request=request,
    )
    return _("Your answer is recorded. You can change it here at any time.")


def _purpose(value: str) -> str:
    if value not in Purpose.values:
        raise NotFound(_("No such purpose."))
    return value


@_acts(_to_privacy)
def consent_give(request: HttpRequest, purpose: str) -> str:
    services.consent_give(
        patient=_patient(request),
        purpose=_purpose(purpose),
        method=ConsentRecord.Method.WEB,
        by=request.user,
        request=request,
    )
    return _("You agreed to: %(purpose)s.") % {"purpose": Purpose(purpose).label}


@_acts(_to_privacy)
def consent_withdraw(request: HttpRequest, purpose: str) -> str:
    services.consent_withdraw(
        patient=_patient(request),
        purpose=_purpose(purpose),
        method=ConsentRecord.Method.WEB,
        by=request.user,
        request=request,
    )
    return _("You withdrew your consent to: %(purpose)s. It applies from now on.") % {
        "purpose": Purpose(purpose).label
    }


@login_required
@require_GET
def export_download(request: HttpRequest) -> HttpResponse:
    """All my data as a JSON file (audited as an export)."""
    _patient(request)
    data = services.patient_data_export(user=request.user, request=request)
    body = json.dumps(data, cls=DjangoJSONEncoder, ensure_ascii=False, indent=2)
    response = HttpResponse(body, content_type="application/json; charset=utf-8")
    day = timezone.localdate().isoformat()
    response["Content-Disposition"] = f'attachment; filename="my-health-data-{day}.json"'
    response["Cache-Control"] = "no-store"
    return response


@_acts(_to_privacy)
def restriction_lift(request: HttpRequest) -> str:
    lifted = services.restriction_lift(patient=_patient(request), by=request.user, request=request)
    return _("The restriction is lifted.") if lifted else _("There was no restriction to lift.")


@_acts(_to_privacy)
def request_create(request: HttpRequest) -> str:
    created = services.data_request_create(
        patient=_patient(request),
        kind=request.POST.get("kind", ""),
        details=request.POST.get("details", ""),
        by=request.user,
        request=request,
    )
    return _(
        "Your request #%(id)s is received. A coordinator responds by %(respond)s and "
        "completes it by %(due)s."
    ) % {
        "id": created.pk,
        "respond": timezone.localtime(created.respond_by).strftime("%d/%m/%Y"),
        "due": timezone.localtime(created.due_at).strftime("%d/%m/%Y"),
    }


# --- A request, for its patient or a coordinator -------------------------------------------


def _stored_date(value: str) -> date | str:
    """A date kept in a result as ISO text, or a moment's ISO text (shown as its date
    in Vietnam, not in UTC); text that is neither is shown as it is."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return value
    if timezone.is_aware(moment):
        return timezone.localtime(moment).date()
    return moment.date()


def _corrections(result: dict[str, Any] | None) -> list[tuple[str, Any, Any]]:
    """What a correction changed, as (field as people read it, before, after); a
    choice shows its label ("Nữ", not "female"), a date reads as a date (dd/mm/yyyy)."""
    rows = []
    for name, (before, after) in ((result or {}).get("corrected") or {}).items():
        model = User if name in PATIENT_CORRECTABLE_USER else PatientProfile
        try:
            field = model._meta.get_field(name)
        except FieldDoesNotExist:  # a field since renamed: its stored name
            rows.append((name, before, after))
            continue
        if isinstance(field, DateField):
            rows.append(
                (
                    capfirst(field.verbose_name),
                    _local_date(before),
                    _local_date(after),
                )
            )
            continue
        labels = {str(value): label for value, label in field.flatchoices}
        rows.append(
            (
                capfirst(field.verbose_name),
                labels.get(before, before),
                labels.get(after, after),
            )
        )
    return rows


def _local_date(value: str | None) -> str | None:
    stored = _stored_date(value) if value else value
    return stored.strftime("%d/%m/%Y") if isinstance(stored, date) else stored


@login_required
@require_GET
def request_page(request: HttpRequest, request_id: int) -> HttpResponse:
    try:
        found, role = selectors.data_request_get_for_user(
            user=request.user, request_id=request_id, request=request
        )
    except NotFound as error:
        raise Http404(error.message) from None
    plan = None
    if role == "coordinator" and found.kind == DataRequest.Kind.DELETION and found.is_open:
        plan = services.deletion_report(services.deletion_plan(patient=found.patient))
    report = (
        services.deletion_report(found.result)
        if found.kind == DataRequest.Kind.DELETION and found.result
        else None
    )
    if report and report["retention_until"]:  # ISO text in the result; a date on the page
        report["retention_until"] = _stored_date(report["retention_until"])
    return render(
        request,
        "privacy/request.html",
        {
            "r": found,
            "role": role,
            "events": found.events.all(),  # prefetched by the selector, in order
            "plan": plan,
            "report": report,
            "corrected": _corrections(found.result),
            "sexes": Sex.choices,
            "extension_days": settings.PRIVACY_REQUEST_EXTENSION_DAYS,
        },
    )


@_acts(_to_request)
def request_start(request: HttpRequest, request_id: int) -> str:
    services.data_request_start(request_id=request_id, by=request.user, request=request)
    return _("You are handling this request.")


@_acts(_to_request)
def request_complete(request: HttpRequest, request_id: int) -> str:
    # The form's correction fields: a field left empty is not a correction.
    given = {
        name: request.POST[name]
        for name in api.CorrectionsIn().fields
        if request.POST.get(name, "").strip()
    }
    corrections = None
    if given:
        checked = api.CorrectionsIn(data=given)
        if not checked.is_valid():
            raise DomainError(_("Invalid input."), fields=checked.errors)
        corrections = dict(checked.validated_data)
    services.data_request_complete(
        request_id=request_id,
        by=request.user,
        outcome=request.POST.get("outcome", ""),
        corrections=corrections,
        request=request,
    )
    return _("The request is done; the patient can read what was done.")


@_acts(_to_request)
def request_refuse(request: HttpRequest, request_id: int) -> str:
    services.data_request_refuse(
        request_id=request_id,
        by=request.user,
        reason=request.POST.get("reason", ""),
        request=request,
    )
    return _("The request is refused; the patient can read why.")


@_acts(_to_request)
def request_extend(request: HttpRequest, request_id: int) -> str:
    done = services.data_request_extend(
        request_id=request_id,
        by=request.user,
        reason=request.POST.get("reason", ""),
        request=request,
    )
    return _("Extended: the request is now due by %(due)s; the patient can read why.") % {
        "due": timezone.localtime(done.due_at).strftime("%d/%m/%Y")
    }


# --- The coordinators' worklist ------------------------------------------------------------


@login_required
@require_GET
def worklist_page(request: HttpRequest) -> HttpResponse:
    """Requests of the patients my scope covers: open by due time (overdue first in
    red), only the overdue ones, or those closed."""
    if selectors.coordinator_scope(user=request.user).empty:
        raise PermissionDenied
    state = request.GET.get("state", "open")
    if state not in selectors.WORKLIST_STATES:
        state = "open"
    rows = selectors.data_request_worklist(user=request.user, state=state, request=request)
    return render(
        request,
        "privacy/worklist.html",
        {
            "rows": rows,
            "state": state,
            "overdue": sum(1 for r in rows if r.is_overdue),
            "respond_days": settings.PRIVACY_REQUEST_RESPOND_WORKING_DAYS,
        },
    )
