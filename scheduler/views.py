"""Pages of the scheduler: booking and "my referrals" for patients, the doctor's day,
writing a referral, the coordinator board. Server-rendered from the selectors; the
small ES modules act through the REST API and refresh a page's live part when an
event arrives."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.utils.translation import gettext as _

from consult.visit_selectors import visits_waiting_for_host
from scheduler import appointment_selectors, selectors
from scheduler.models import Priority, Referral
from scheduler.policy import doctor_day_window, local_today
from telehealth.audit import audit_record
from telehealth.errors import DomainError
from telehealth.models import AuditEvent, Province, Specialty
from telehealth.selectors import patient_list_for_user


def _strings() -> dict[str, str]:
    """What the pages' scripts show, translated here so they need no second catalogue."""
    return {
        "error": _("Something went wrong. Please try again."),
        "booked": _("Booked. You will get a reminder the day before."),
        "cancelled": _("Cancelled."),
        "confirmCancel": _("Cancel this appointment?"),
        "noSlots": _("No free times in the next 7 days. Join the waiting list?"),
        "joined": _("You are on the waiting list. We will offer you a freed time."),
        "chooseReason": _("Give a reason for your coordinator action."),
        "chooseReferrals": _("Choose at least one referral."),
        "done": _("Done."),
        "cancel": _("Cancel"),
        "required": _("Please fill this in."),
        "patient": _("Patient"),
        "rejectTitle": _("Decline the referral"),
        "rejectLabel": _("Why do you decline? The referring clinician reads this."),
        "rejectSubmit": _("Decline"),
        "adviceTitle": _("Answer with advice"),
        "adviceLabel": _("Your advice to the referring clinician"),
        "adviceSubmit": _("Send the advice"),
        "carePlanTitle": _("Finish and send the care plan"),
        "carePlanLabel": _("Care plan for the referring facility"),
        "carePlanSubmit": _("Send the care plan"),
        "offer": _("A time has become free for you:"),
        "take": _("Take it"),
        "decline": _("No, thanks"),
        "video": _("video"),
        "inPerson": _("in person"),
        "rescheduleTo": _("Move to"),
        "fixFields": _("Please correct the marked fields."),
        "notMyPatient": _("Choose one of your patients."),
        "sending": _("Sending the referral…"),
        "attaching": _("Attaching %(name)s…"),
        "fileTooLarge": _("%(name)s is larger than 10 MB."),
        "fileType": _("%(name)s is not an image (JPEG, PNG, WebP, HEIC) or a PDF."),
        "sentFilesFailed": _(
            "Referral #%(id)s was sent. A file could not be attached: %(detail)s "
            "Choose the files again, or go to your referrals without them."
        ),
        "retryFiles": _("Attach the files again"),
    }


@login_required
def appointments_page(request: HttpRequest) -> HttpResponse:
    """Book a video or in-person visit; my appointments and my waiting list."""
    specialty = request.GET.get("specialty") or ""
    name = (request.GET.get("q") or "").strip()[:80]
    clinicians = list(
        appointment_selectors.bookable_clinicians(specialty_code=specialty or None, name=name)[:60]
    )
    appointments = appointment_selectors.appointment_list_for_user(
        user=request.user, upcoming=True
    ).filter(status__in=["booked", "arrived", "checked-in"])[:50]
    return render(
        request,
        "scheduler/appointments.html",
        {
            "clinicians": clinicians,
            "specialties": Specialty.objects.order_by("code"),
            "specialty": specialty,
            "name_query": name,
            "appointments": appointments,
            "waitlist": appointment_selectors.waitlist_for_user(user=request.user)[:20],
            "is_patient": hasattr(request.user, "patient_profile"),
            "strings": _strings(),
        },
    )


@login_required
def referrals_page(request: HttpRequest) -> HttpResponse:
    """My referrals: where each is, my place in the queue, and what happened."""
    referrals = list(selectors.referral_list_for_user(user=request.user)[:100])
    rows = [{"referral": r, "position": selectors.queue_position(referral=r)} for r in referrals]
    if any(r.patient.user_id != request.user.pk for r in referrals):
        audit_record(
            actor=request.user,
            action=AuditEvent.Action.READ,
            target="scheduler.referral_list",
            reason=f"referrals page ({len(referrals)})",
            request=request,
        )
    # Coming from the referral form: say at the top where the new referral went.
    sent_id = request.GET.get("sent", "")
    sent = next((r for r in referrals if str(r.pk) == sent_id), None)
    return render(
        request,
        "scheduler/referrals.html",
        {
            "rows": rows,
            "sent": sent,
            "is_clinician": hasattr(request.user, "clinician_profile"),
            "now": timezone.now(),
            "strings": _strings(),
        },
    )


@login_required
def referral_new_page(request: HttpRequest) -> HttpResponse:
    """Write a referral for one of my patients; the page's script posts it to the API."""
    if selectors.clinician_of(request.user) is None:
        raise PermissionDenied
    patients = patient_list_for_user(
        user=request.user, purpose="patients to refer", request=request
    )
    # Only specialties some active facility offers: any other could never be routed.
    specialties = sorted(
        Specialty.objects.filter(offerings__facility__is_active=True).distinct(),
        key=lambda s: s.name,
    )
    chosen = request.GET.get("patient", "")
    return render(
        request,
        "scheduler/referral_new.html",
        {
            "patients": patients,
            "chosen_patient": chosen if any(str(p.pk) == chosen for p in patients) else "",
            "specialties": specialties,
            "priorities": Priority.choices,
            "modes": Referral.Mode.choices,
            "strings": _strings(),
        },
    )


@login_required
def doctor_day_page(request: HttpRequest) -> HttpResponse:
    """The doctor's day: today's visits (and the night's, past a midnight, see
    ``policy.doctor_day_window``) and the referral queues they answer."""
    clinician = getattr(request.user, "clinician_profile", None)
    if clinician is None:
        raise PermissionDenied
    today = local_today()
    appointments = appointment_selectors.appointment_list_for_user(
        user=request.user, between=doctor_day_window()
    ).filter(clinician=clinician)
    appointments = list(appointments)
    # Patients already in a video visit's waiting room, for the host to admit; the page
    # watches these visits' topics and refreshes when someone checks in.
    visit_ids = [a.visit_id for a in appointments if a.visit_id]
    waiting = visits_waiting_for_host(host=request.user, visit_ids=visit_ids)
    for appointment in appointments:
        appointment.waiting_names = waiting.get(appointment.visit_id, [])
    queues = []
    for queue in selectors.queues_for_user(user=request.user).filter(facility=clinician.facility):
        waiting = selectors.queue_list(queue_id=queue.pk, limit=50)
        queues.append({"queue": queue, "waiting": waiting})
    in_care = selectors.referrals_in_care_of(user=request.user)
    shown = len(appointments) + sum(len(q["waiting"]) for q in queues) + len(in_care)
    if shown:
        # Other people's visits and referrals on one page: one audit event per read.
        audit_record(
            actor=request.user,
            action=AuditEvent.Action.READ,
            target=f"scheduler.doctor_day:{clinician.facility.code}",
            reason=f"doctor's day ({shown} rows)",
            request=request,
        )
    return render(
        request,
        "scheduler/doctor_day.html",
        {
            "clinician": clinician,
            "today": today,
            "appointments": appointments,
            "watched_visits": visit_ids,
            "queues": queues,
            "in_care": in_care,
            "now": timezone.now(),
            "strings": _strings(),
        },
    )


@login_required
def board_page(request: HttpRequest) -> HttpResponse:
    """The coordinator board: queues, overdue, accepted, the no-slot worklist, the heat table."""
    scope = selectors.coordinator_scope(user=request.user)
    if scope.empty:
        raise PermissionDenied
    params = request.GET
    try:
        board = selectors.board_get(
            user=request.user,
            facility_code=params.get("facility") or None,
            province_code=params.get("province") or None,
            view=params.get("view") or "all",
            priority=params.get("priority") or None,
            specialty_code=params.get("specialty") or None,
            request=request,
        )
        load = selectors.facility_load(
            user=request.user,
            facility_code=params.get("facility") or None,
            province_code=params.get("province") or None,
        )
        codes = [s["code"] for s in load["specialties"]]
        for row in load["facilities"]:
            row["ordered"] = [row["cells"].get(code) for code in codes]
    except DomainError as exc:
        if exc.status == 404:
            from django.http import Http404

            raise Http404 from None
        raise PermissionDenied from None
    return render(
        request,
        "scheduler/board.html",
        {
            "board": board,
            "load": load,
            "views": [
                ("all", _("All")),
                ("new", _("New")),
                ("overdue", _("Overdue")),
                ("accepted", _("Accepted")),
                ("no_slot", _("No slot")),
            ],
            "view": params.get("view") or "all",
            "priority": params.get("priority") or "",
            "specialty": params.get("specialty") or "",
            "specialties": Specialty.objects.order_by("code"),
            "provinces": Province.objects.filter(pk__in=scope.province_ids).order_by("code"),
            "now": timezone.now(),
            "strings": _strings(),
        },
    )
