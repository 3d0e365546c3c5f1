"""What every page's top bar needs: the signed-in person's roles and the links they open.

The roles cost a few queries (the profiles and the coordinator assignments), so
they are read at most once per request (cached on the request, however many
templates it renders), and only if a template actually shows the bar: ``nav``
is lazy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from django.http import HttpRequest
from django.urls import reverse
from django.utils.functional import SimpleLazyObject
from django.utils.translation import gettext as _

from telehealth.models import Role

CLINICIAN_ROLES = frozenset({Role.DOCTOR.value, Role.HEALTH_WORKER.value})


@dataclass(frozen=True)
class NavLink:
    key: str
    href: str
    label: str
    current: bool = False


@dataclass(frozen=True)
class Navigation:
    roles: frozenset[str]
    links: tuple[NavLink, ...]

    @property
    def is_patient(self) -> bool:
        return Role.PATIENT.value in self.roles

    @property
    def is_clinician(self) -> bool:
        return bool(self.roles & CLINICIAN_ROLES)

    @property
    def is_coordinator(self) -> bool:
        return Role.COORDINATOR.value in self.roles


# (key, URL name or path, label, who sees it), in the order shown. Pages that
# other changes are still adding (create a referral, conversations) are linked
# by path, so this bar works before they exist.
_LINKS: tuple[tuple[str, str, Callable[[], str], Callable[[Navigation], bool]], ...] = (
    ("appointments", "scheduler-appointments", lambda: _("Appointments"), lambda n: n.is_patient),
    ("my-day", "scheduler-doctor-day", lambda: _("My day"), lambda n: n.is_clinician),
    (
        "referrals",
        "scheduler-referrals",
        lambda: _("My referrals"),
        lambda n: n.is_patient or n.is_clinician or n.is_coordinator,
    ),
    ("referral-new", "/referrals/new/", lambda: _("Create a referral"), lambda n: n.is_clinician),
    (
        "visits",
        "visits",
        lambda: _("Video visits"),
        lambda n: n.is_patient or n.is_clinician,
    ),
    (
        "conversations",
        "/conversations/",
        lambda: _("Conversations"),
        lambda n: n.is_patient or n.is_clinician,
    ),
    ("network", "network", lambda: _("My network"), lambda n: n.is_clinician),
    ("board", "scheduler-board", lambda: _("Coordinator board"), lambda n: n.is_coordinator),
    (
        "coverage",
        "network-coverage",
        lambda: _("Mentoring coverage"),
        # Staff see the whole country's coverage (network.selectors.coordinator_scope).
        lambda n: n.is_coordinator or Role.ADMINISTRATOR.value in n.roles,
    ),
    ("patients", "telehealth-patients", lambda: _("Patients"), lambda n: n.is_clinician),
    (
        "break-glass-review",
        "telehealth-break-glass-review",
        lambda: _("Emergency access review"),
        lambda n: Role.PRIVACY_OFFICER.value in n.roles,
    ),
    (
        "access-log",
        "telehealth-access-log",
        lambda: _("Who accessed my record"),
        lambda n: n.is_patient,
    ),
    (
        "privacy-worklist",
        "privacy-worklist",
        lambda: _("Data requests"),
        lambda n: n.is_coordinator,
    ),
    ("privacy", "privacy", lambda: _("My data & privacy"), lambda n: n.is_patient),
    ("profile", "profile", lambda: _("Profile"), lambda n: True),
)


def navigation_for(*, roles: frozenset[str], path: str) -> Navigation:
    """The links a person with ``roles`` sees, the one for ``path`` marked current.

    The current link is the longest one ``path`` starts with, so on
    /network/coverage/ it is "coverage", not "my network"."""
    probe = Navigation(roles=roles, links=())
    shown = [
        (key, target if target.startswith("/") else reverse(target), label)
        for key, target, label, who in _LINKS
        if who(probe)
    ]
    matching = [href for _key, href, _label in shown if path.startswith(href)]
    current = max(matching, key=len, default=None)
    return Navigation(
        roles=roles,
        links=tuple(
            NavLink(key=key, href=href, label=label(), current=href == current)
            for key, href, label in shown
        ),
    )


def user_roles(request: HttpRequest) -> frozenset[str]:
    """The request's user's roles, read at most once per request."""
    cached = getattr(request, "_telehealth_roles", None)
    if cached is None:
        user = request.user
        cached = frozenset(user.roles) if user.is_authenticated else frozenset()
        request._telehealth_roles = cached  # type: ignore[attr-defined]
    return cached


def navigation(request: HttpRequest) -> dict[str, object]:
    """``nav`` for the templates: roles and top-bar links (empty for anonymous visitors)."""
    return {
        "nav": SimpleLazyObject(
            lambda: navigation_for(roles=user_roles(request), path=request.path)
        )
    }
