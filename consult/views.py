"""Pages of consultations and video visits. Data comes from the API; the page only starts it."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.translation import gettext as _

from consult import visit_selectors
from telehealth.errors import NotFound


@login_required
def visit_list(request: HttpRequest) -> HttpResponse:
    visits = visit_selectors.visit_list_for_user(user=request.user)[:50]
    return render(request, "consult/visit_list.html", {"visits": visits})


@login_required
def visit_page(request: HttpRequest, visit_id: int) -> HttpResponse:
    """The waiting room and the call, on one page: which one shows depends on admission."""
    try:
        visit = visit_selectors.visit_get_for_user(
            user=request.user, visit_id=visit_id, request=request
        )
    except NotFound:
        raise Http404 from None
    return render(
        request,
        "consult/visit.html",
        {"visit": visit, "is_host": visit.host_id == request.user.pk, "strings": _strings()},
    )


def _strings() -> dict[str, str]:
    """What visit.js shows, translated here so the page needs no second catalogue."""
    return {
        "admit": _("Admit"),
        "camera": _("Camera"),
        "microphone": _("Microphone"),
        "remove": _("Remove"),
        "snapshot": _("Snapshot"),
        "ok": _("working"),
        "missing": _("not found"),
        "blocked": _("blocked"),
        "removed": _("The host removed you from this visit."),
        "ended": _("The visit has ended."),
        "snapshotNotice": _("The doctor is taking a picture of your video for your record."),
        "snapshotSaved": _("The picture was saved to the record."),
        "admitted": _("The doctor let you in."),
        "rejoin": _("Reconnecting the video…"),
        "unmute": _("Unmute"),
        "mute": _("Mute"),
        "cameraOn": _("Camera on"),
        "cameraOff": _("Camera off"),
        "nobody": _("Nobody is waiting."),
        "doctorOnline": _("Your doctor is online and will let you in shortly."),
        "doctorAway": _("Your doctor is away for a moment; please keep waiting."),
        "doctorOffline": _("Your doctor has not joined yet."),
        "doctorInCall": _("Your doctor is in the visit and will let you in shortly."),
        "error": _("Something went wrong. Please try again."),
    }
