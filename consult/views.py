"""Pages of consultations and video visits. Data comes from the API; the page only starts it."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import Q
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils.translation import gettext as _

from consult import selectors, visit_selectors
from consult.models import Participant, Thread, Visit
from telehealth.errors import NotFound
from telehealth.models import ClinicianProfile, User, name_search_pattern

# How many threads the list page shows and keeps live over the socket: each is one
# `subscribe`, so the page stays cheap for a clinician with a long history.
CONVERSATIONS_SHOWN = 50
SUMMARIES_PER_PAGE = 10
CLINICIANS_FOUND = 20


# --- My conversations --------------------------------------------------------------------


def _thread_title(thread: Thread, others: list[Participant]) -> str:
    if thread.subject:
        return thread.subject
    names = ", ".join(p.user.display_name for p in others[:3])
    return names or thread.get_kind_display()


@login_required
def conversation_list(request: HttpRequest) -> HttpResponse:
    """My threads, newest activity first, with unread counts; kept live by the page."""
    rows = []
    for thread in selectors.thread_list_for_user(user=request.user)[:CONVERSATIONS_SHOWN]:
        others = [p for p in thread.active_participants if p.user_id != request.user.pk]
        rows.append(
            {
                "thread": thread,
                "title": _thread_title(thread, others),
                "others": others,
                "unread": max(0, thread.unread),
            }
        )
    return render(
        request,
        "consult/conversation_list.html",
        {"rows": rows, "strings": _conversation_strings()},
    )


@login_required
def conversation_page(request: HttpRequest, thread_id: int) -> HttpResponse:
    """One thread. Only the frame is rendered here; history comes over REST (audited
    there, page by page) and live messages over the socket."""
    try:
        thread = selectors.thread_get_for_user(user=request.user, thread_id=thread_id)
    except NotFound:
        raise Http404 from None
    participants = selectors.participants_of(thread_id=thread.pk)
    others = [p for p in participants if p.user_id != request.user.pk]
    return render(
        request,
        "consult/conversation.html",
        {
            "thread": thread,
            "title": _thread_title(thread, others),
            "participants": participants,
            "strings": _conversation_strings(),
        },
    )


def _conversation_strings() -> dict[str, str]:
    """What conversations.js shows, translated here so the page needs no second catalogue."""
    return {
        "pending": _("Waiting to send…"),
        "pendingOffline": _("Waiting for the connection…"),
        "sent": _("Sent"),
        "seen": _("Seen"),
        "failed": _("Not sent"),
        "edit": _("Edit and resend"),
        "typingOne": _("%(name)s is typing…"),
        "typingMany": _("%(names)s are typing…"),
        "online": _("online"),
        "away": _("away"),
        "offline": _("offline"),
        "loadOlder": _("Load older messages"),
        "loading": _("Loading…"),
        "beginning": _("This is the beginning of the conversation."),
        "noMessages": _("No messages yet. Write the first one."),
        "noResults": _("No message matches."),
        "results": _("%(n)s messages found"),
        "uploading": _("uploading…"),
        "removeFile": _("Remove %(name)s"),
        "fileTooLarge": _("Files can be at most 10 MB."),
        "fileType": _("Only images (JPEG, PNG, WebP, HEIC) and PDF files can be attached."),
        "uploadFailed": _("The file could not be uploaded. Check the connection and try again."),
        "newMessage": _("New message"),
        "closed": _("This conversation is closed."),
        "removed": _("You are no longer in this conversation."),
        "error": _("Something went wrong. Please try again."),
        "you": _("You"),
    }


# --- My visit summaries ------------------------------------------------------------------


@login_required
def visit_summaries(request: HttpRequest) -> HttpResponse:
    """A patient's ended visits with what the doctor wrote for them at the end.

    The list query only finds the ids; each visit shown is then read through
    ``visit_get_for_user``, so every summary a person sees is checked and audited
    exactly like opening the visit itself."""
    ended = (
        visit_selectors.visit_list_for_user(user=request.user)
        .filter(state=Visit.State.ENDED, patient__user=request.user)
        .order_by("-ended_at", "-pk")
    )
    page = Paginator(ended, SUMMARIES_PER_PAGE).get_page(request.GET.get("page"))
    visits = [
        visit_selectors.visit_get_for_user(user=request.user, visit_id=v.pk, request=request)
        for v in page
    ]
    return render(request, "consult/visit_summaries.html", {"page": page, "visits": visits})


# --- Video visits --------------------------------------------------------------------------


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


@login_required
def visit_clinician_search(request: HttpRequest) -> JsonResponse:
    """Clinicians by name, for the host's "invite a specialist" control.

    The kernel's directory API lists facilities but has no people search yet; this
    stays here, small, until it does (then visit.js should call that instead).
    Clinicians' directory cards are public to signed-in clinicians (as
    ``/api/v1/network/people/<id>/``); other accounts are found only by their exact
    username, so nobody can list patients by typing part of a name.
    """
    if not hasattr(request.user, "clinician_profile"):
        return JsonResponse(
            {"code": "forbidden", "detail": _("Only clinicians can search the directory.")},
            status=403,
        )
    query = request.GET.get("q", "").strip()[:80]
    if len(query) < 2:
        return JsonResponse({"results": []})
    condition = Q()
    for word in query.split()[:5]:
        condition &= Q(user__full_name__iregex=name_search_pattern(word)) | Q(
            user__username__iexact=word
        )
    clinicians = (
        ClinicianProfile.objects.filter(condition, user__is_active=True)
        .exclude(user=request.user)
        .select_related("user", "facility")
        .prefetch_related("specialties")
        .order_by("user__full_name", "user_id")[:CLINICIANS_FOUND]
    )
    results: list[dict[str, Any]] = [
        {
            "id": c.user_id,
            "name": c.user.display_name,
            "title": c.title,
            "kind": c.get_kind_display(),
            "facility": c.facility.name,
            "specialties": [s.name for s in c.specialties.all()],
        }
        for c in clinicians
    ]
    account = (
        User.objects.filter(username__iexact=query, is_active=True)
        .exclude(pk__in=[r["id"] for r in results] + [request.user.pk])
        .first()
    )
    if account is not None:
        # Only the username they gave the host: a clinician typing a guessed
        # username must not learn the full name of a patient behind it.
        results.append(
            {
                "id": account.pk,
                "name": account.username,
                "title": "",
                "kind": _("account %(username)s") % {"username": account.username},
                "facility": "",
                "specialties": [],
            }
        )
    return JsonResponse({"results": results})


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
        "inviteSearching": _("Searching…"),
        "inviteNoMatch": _("Nobody found with this name."),
        "inviteChoose": _("Choose"),
        "inviteChosen": _("Chosen: %(name)s"),
        "inviteChooseFirst": _("Search and choose a person first."),
        "inviteSent": _("%(name)s was invited as %(role)s."),
    }
