"""Pages of the doctor network. The data comes from the API; a page only starts its script."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.translation import gettext as _

from network import selectors
from network.models import AssignmentProposal, AssignmentRun, Mentorship
from telehealth.models import FacilityLevel, Province


def _levels() -> dict[str, str]:
    return {str(value): str(label) for value, label in FacilityLevel.choices}


@login_required
def my_network(request: HttpRequest) -> HttpResponse:
    """ "My network": mentors and mentees by level, quota gauges, requests, suggestions,
    the neighbourhood graph, conversations and case conferences."""
    me = selectors.clinician_of(request.user)
    return render(
        request,
        "network/my_network.html",
        {
            "me": me,
            "strings": {
                **_common_strings(),
                "levels": _levels(),
                "endReasons": {k: str(v) for k, v in Mentorship.EndReason.choices},
                "states": {k: str(v) for k, v in Mentorship.State.choices},
            },
        },
    )


@login_required
def coverage(request: HttpRequest) -> HttpResponse:
    """The coordinators' page: coverage of their province and auto-assignment review."""
    scope = selectors.coordinator_scope(user=request.user)
    if not scope.any:
        raise PermissionDenied
    provinces = (
        Province.objects.all()
        if scope.national
        else Province.objects.filter(pk__in=scope.read_province_ids)
    )
    return render(
        request,
        "network/coverage.html",
        {
            "provinces": provinces,
            "national": scope.national,
            "manage_codes": sorted(
                Province.objects.filter(pk__in=scope.manage_province_ids).values_list(
                    "code", flat=True
                )
            )
            if not scope.national
            else [p.code for p in provinces],
            "strings": {
                **_common_strings(),
                "levels": _levels(),
                "runStates": {k: str(v) for k, v in AssignmentRun.State.choices},
                "proposalStatuses": {k: str(v) for k, v in AssignmentProposal.Status.choices},
                "stages": {
                    "read": _("reading the network"),
                    "arcs": _("building candidate pairs"),
                    "solve": _("optimising"),
                    "greedy": _("computing the greedy baseline"),
                    "store": _("storing the proposals"),
                    "done": _("done"),
                    "failed": _("failed"),
                },
                "applyStopped": _(
                    "Sending the requests stopped after several attempts; the proposals "
                    "not yet sent are still accepted. Ask the administrator to look at "
                    "the worker's log."
                ),
            },
        },
    )


def _common_strings() -> dict[str, str]:
    """What the scripts show, translated here so the pages need no second catalogue."""
    return {
        "error": _("Something went wrong. Please try again."),
        "loading": _("Loading…"),
        "accept": _("Accept"),
        "decline": _("Decline"),
        "withdraw": _("Withdraw"),
        "end": _("End"),
        "ask": _("Send a request"),
        "asked": _("Request sent"),
        "chat": _("Conversation"),
        "online": _("online"),
        "away": _("away"),
        "offline": _("offline"),
        "noMentors": _("You have no mentor yet. The suggestions below can help."),
        "noMentees": _("You mentor nobody yet."),
        "noPending": _("No requests are waiting."),
        "noSuggestions": _("No suggestions right now."),
        "noConferences": _("No case conferences yet."),
        "noMessages": _("No messages yet. Say hello!"),
        "waitingForYou": _("waiting for your answer"),
        "waitingForThem": _("waiting for their answer"),
        "mentor": _("mentor"),
        "mentee": _("mentee"),
        "me": _("me"),
        "of": _("of"),
        "free": _("free"),
        "over": _("over quota"),
        "pending": _("waiting"),
        "endReason": _("Why does it end?"),
        "requested": _("New mentoring request"),
        "acceptedNotice": _("A mentorship was accepted"),
        "declinedNotice": _("A request was declined"),
        "endedNotice": _("A mentorship ended"),
        "invitedNotice": _("You were invited to a case conference"),
        "recommendations": _("Recommendations"),
        "conclude": _("Record recommendations and close"),
        "concluded": _("concluded"),
        "open": _("open"),
        "present": _("Post the presentation"),
        "coverage": _("Coverage"),
        "mentees": _("Mentees"),
        "covered": _("With a mentor"),
        "mentors": _("Mentors"),
        "places": _("Places"),
        "used": _("Used"),
        "overQuota": _("Over quota"),
        "underQuota": _("Under quota"),
        "noMentor": _("No mentor"),
        "nobody": _("Nobody."),
        "province": _("Province"),
        "facility": _("Facility"),
        "specialty": _("Specialty"),
        "level": _("Level"),
        "name": _("Name"),
        "run": _("Run"),
        "state": _("State"),
        "assigned": _("Assigned"),
        "cost": _("Total cost"),
        "greedyCost": _("Greedy baseline cost"),
        "greedyAssigned": _("Greedy baseline assigned"),
        "solveTime": _("Solve time"),
        "totalTime": _("Total time"),
        "reason": _("Reason"),
        "status": _("Status"),
        "previous": _("Previous"),
        "next": _("Next"),
        "page": _("Page"),
        "acceptSelected": _("Accept selected"),
        "rejectSelected": _("Reject selected"),
        "acceptAll": _("Accept all proposed"),
        "apply": _("Send accepted as requests"),
        "applied": _("The requests are being sent."),
        "started": _("The auto-assignment has started."),
        "national": _("Whole country"),
        "you": _("You"),
        "send": _("Send"),
        "close": _("Close"),
        "cancel": _("Cancel"),
    }
