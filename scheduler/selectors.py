"""Reads of referrals, queues and the coordinator board, with who may see what.

Who may see a referral (its patient's data): the patient; the referring
clinician; clinicians of the receiving facility who hold the referral's
specialty (or who already took it); and coordinators whose scope (a facility,
or a whole province) covers the referring or the receiving facility. Reads of
one referral are audited against its patient; a refused read is audited as
``denied`` and answered like a missing one (``NotFound``).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from django.db.models import Count, F, Q, QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _

from scheduler.models import PRIORITY_RANK, Priority, Queue, Referral
from telehealth.audit import audit_record
from telehealth.errors import AccessDenied, DomainError, NotFound
from telehealth.models import AuditEvent, Facility, FacilitySpecialty, Province, User
from telehealth.selectors import coordinator_scope

WAITING_STATUSES = (Referral.Status.REQUESTED, Referral.Status.RECEIVED)
ACCEPTED_OR_LATER = (
    Referral.Status.ACCEPTED,
    Referral.Status.READY,
    Referral.Status.IN_PROGRESS,
    Referral.Status.COMPLETED,
)
OPEN_STATUSES = (
    Referral.Status.DRAFT,
    Referral.Status.REQUESTED,
    Referral.Status.RECEIVED,
    Referral.Status.ACCEPTED,
    Referral.Status.READY,
    Referral.Status.IN_PROGRESS,
)


# --- Who is who ------------------------------------------------------------------------


def clinician_of(user: User):  # type: ignore[no-untyped-def]
    return getattr(user, "clinician_profile", None) if user.is_authenticated else None


def is_receiving_clinician(user: User, referral: Referral) -> bool:
    """A clinician of the receiving facility who holds the specialty, or who took the referral."""
    if referral.receiving_clinician_id is not None and referral.receiving_clinician_id == user.pk:
        return True
    clinician = clinician_of(user)
    if clinician is None or referral.target_facility_id is None:
        return False
    if clinician.facility_id != referral.target_facility_id:
        return False
    return clinician.specialties.filter(pk=referral.specialty_id).exists()


def referral_roles(*, user: User, referral: Referral) -> set[str]:
    """The relationships ``user`` has with ``referral`` (empty: none)."""
    roles: set[str] = set()
    if not user.is_authenticated or not user.is_active:
        return roles
    if referral.patient.user_id == user.pk:
        roles.add("patient")
    if referral.requester_id == user.pk:
        roles.add("requester")
    if is_receiving_clinician(user, referral):
        roles.add("receiving")
    scope = coordinator_scope(user=user)
    if not scope.empty:
        if scope.covers(referral.requesting_facility):
            roles.add("referring_coordinator")
        if scope.covers(referral.target_facility):
            roles.add("receiving_coordinator")
    return roles


def _referral_base() -> QuerySet[Referral]:
    return Referral.objects.select_related(
        "patient__user",
        "requester",
        "requesting_facility__province",
        "target_facility__province",
        "specialty",
        "receiving_clinician",
    )


def referral_get_for_user(
    *, user: User, referral_id: int, purpose: str = "read a referral", request: Any = None
) -> tuple[Referral, set[str]]:
    """The referral and the user's roles in it; audited. ``NotFound`` when not theirs."""
    referral = _referral_base().filter(pk=referral_id).first()
    if referral is None:
        raise NotFound(_("No such referral."))
    roles = referral_roles(user=user, referral=referral)
    if not roles:
        audit_record(
            actor=user,
            action=AuditEvent.Action.DENIED,
            target=f"scheduler.referral:{referral.pk}",
            patient=referral.patient,
            reason=purpose,
            request=request,
        )
        raise NotFound(_("No such referral."))
    audit_record(
        actor=user,
        action=AuditEvent.Action.READ,
        target=f"scheduler.referral:{referral.pk}",
        patient=referral.patient,
        reason=f"{purpose} ({', '.join(sorted(roles))})",
        request=request,
    )
    return referral, roles


def referral_list_for_user(*, user: User) -> QuerySet[Referral]:
    """Referrals the user has a relationship with, newest first (patient, referrer,
    receiving clinician, coordinator of either side)."""
    visible = Q(patient__user=user) | Q(requester=user) | Q(receiving_clinician=user)
    clinician = clinician_of(user)
    if clinician is not None:
        visible |= Q(
            target_facility_id=clinician.facility_id,
            specialty__in=clinician.specialties.all(),
        )
    scope = coordinator_scope(user=user)
    if not scope.empty:
        visible |= scope.facilities_q("requesting_facility") | scope.facilities_q("target_facility")
    return _referral_base().filter(visible).order_by("-created_at", "-id")


# --- Queues and positions -------------------------------------------------------------


def referrals_in_care_of(*, user: User, limit: int = 50) -> list[Referral]:
    """Referrals this clinician took and is still treating (accepted, scheduled, in
    progress), for their day. The caller audits the page that shows them."""
    return list(
        Referral.objects.filter(
            receiving_clinician=user,
            status__in=[
                Referral.Status.ACCEPTED,
                Referral.Status.READY,
                Referral.Status.IN_PROGRESS,
            ],
        ).select_related("patient__user", "requesting_facility", "specialty")[:limit]
    )


def queue_order_key(referral: Referral) -> tuple:
    """Emergencies first; then by acceptance deadline (earliest first), then by age.

    Ordering by the deadline the service levels give is "priority, then age":
    a fresh urgent case goes ahead of a fresh routine one, but a routine case
    nearing its three working days goes ahead of an urgent one sent a minute
    ago, so routine cases are never starved.
    """
    return (
        0 if referral.priority == Priority.EMERGENCY else 1,
        referral.accept_due_at or referral.requested_at,
        referral.requested_at,
        referral.pk,
    )


def _queue_ordering() -> list:
    from django.db.models import Case, IntegerField, Value, When

    return [
        Case(
            When(priority=Priority.EMERGENCY, then=Value(0)),
            default=Value(1),
            output_field=IntegerField(),
        ).asc(),
        F("accept_due_at").asc(nulls_last=True),
        F("requested_at").asc(),
        F("id").asc(),
    ]


def queue_position(*, referral: Referral) -> int | None:
    """1 for the next to be seen; None when the referral is not waiting in a queue."""
    if (
        referral.routing_state != Referral.RoutingState.ROUTED
        or referral.status not in WAITING_STATUSES
        or referral.queue_id is None
    ):
        return None
    waiting = Referral.objects.filter(
        queue_id=referral.queue_id,
        status__in=WAITING_STATUSES,
        routing_state=Referral.RoutingState.ROUTED,
    )
    mine_emergency = referral.priority == Priority.EMERGENCY
    due = referral.accept_due_at
    ahead = Q(pk__lt=referral.pk) & Q(accept_due_at=due) & Q(requested_at=referral.requested_at)
    ahead |= Q(accept_due_at=due, requested_at__lt=referral.requested_at)
    ahead |= Q(accept_due_at__lt=due)
    if mine_emergency:
        ahead = Q(priority=Priority.EMERGENCY) & ahead
    else:
        ahead = Q(priority=Priority.EMERGENCY) | (~Q(priority=Priority.EMERGENCY) & ahead)
    return waiting.filter(ahead).count() + 1


def queue_list(*, queue_id: int, limit: int = 200) -> list[Referral]:
    return list(
        _referral_base()
        .filter(
            queue_id=queue_id,
            status__in=WAITING_STATUSES,
            routing_state=Referral.RoutingState.ROUTED,
        )
        .order_by(*_queue_ordering())[:limit]
    )


def queues_for_user(*, user: User, facility_code: str | None = None) -> QuerySet[Queue]:
    """Queues the user works: their facility's queues of their specialties, or a
    coordinator's facility or province."""
    clinician = clinician_of(user)
    scope = coordinator_scope(user=user)
    allowed = Q(pk__in=[])
    if clinician is not None:
        allowed |= Q(facility_id=clinician.facility_id, specialty__in=clinician.specialties.all())
    if not scope.empty:
        allowed |= scope.facilities_q("facility")
    queues = Queue.objects.filter(allowed).select_related("facility", "specialty")
    if facility_code:
        queues = queues.filter(facility__code=facility_code)
    return queues.order_by("facility__code", "specialty__code")


def queue_get_for_user(*, user: User, queue_id: int) -> Queue:
    queue = queues_for_user(user=user).filter(pk=queue_id).first()
    if queue is None:
        raise NotFound(_("No such queue."))
    return queue


# --- The coordinator board ---------------------------------------------------------------


def _board_scope_facilities(
    *, user: User, facility_code: str | None, province_code: str | None
) -> tuple[QuerySet[Facility], str]:
    """The facilities a board shows, checked against the user's coordinator scope."""
    scope = coordinator_scope(user=user)
    if scope.empty:
        raise AccessDenied(_("Only coordinators have a board."))
    if facility_code:
        facility = Facility.objects.filter(code=facility_code).first()
        if facility is None or not scope.covers(facility):
            raise NotFound(_("No such facility on your board."))
        return Facility.objects.filter(pk=facility.pk), f"board.facility.{facility.code}"
    if province_code:
        province = Province.objects.filter(code=province_code).first()
        if province is None or province.pk not in scope.province_ids:
            raise NotFound(_("No such province on your board."))
        return Facility.objects.filter(province=province), f"board.province.{province.code}"
    if scope.province_ids:
        province = Province.objects.filter(pk__in=scope.province_ids).order_by("code").first()
        return Facility.objects.filter(province=province), f"board.province.{province.code}"
    facility = Facility.objects.filter(pk__in=scope.facility_ids).order_by("code").first()
    return Facility.objects.filter(pk=facility.pk), f"board.facility.{facility.code}"


BOARD_VIEWS = ("new", "overdue", "accepted", "no_slot", "all")


def board_get(
    *,
    user: User,
    facility_code: str | None = None,
    province_code: str | None = None,
    view: str = "all",
    priority: str | None = None,
    specialty_code: str | None = None,
    limit: int = 200,
    request: Any = None,
) -> dict[str, Any]:
    """The coordinator board: referrals in scope by view, counts, loop closure, load.

    Views: ``new`` (in a queue, not overdue), ``overdue`` (past the accept-by
    time, not accepted), ``accepted`` (accepted today or later in the workflow,
    open), ``no_slot`` (the worklist of referrals from these facilities no
    facility could take), ``all``. One audit event per board read.
    """
    if view not in BOARD_VIEWS:
        raise DomainError(
            _("Unknown view."), fields={"view": [_("One of: %s.") % ", ".join(BOARD_VIEWS)]}
        )
    if priority and priority not in Priority.values:
        raise DomainError(_("Unknown priority."), fields={"priority": [_("Unknown priority.")]})
    facilities, topic = _board_scope_facilities(
        user=user, facility_code=facility_code, province_code=province_code
    )
    now = timezone.now()
    incoming = Referral.objects.filter(target_facility__in=facilities)
    outgoing = Referral.objects.filter(requesting_facility__in=facilities)
    waiting = incoming.filter(
        status__in=WAITING_STATUSES, routing_state=Referral.RoutingState.ROUTED
    )
    views = {
        "new": waiting.filter(accept_due_at__gte=now),
        "overdue": waiting.filter(accept_due_at__lt=now),
        "accepted": incoming.filter(
            status__in=(
                Referral.Status.ACCEPTED,
                Referral.Status.READY,
                Referral.Status.IN_PROGRESS,
            )
        ),
        "no_slot": outgoing.filter(routing_state=Referral.RoutingState.NO_SLOT).exclude(
            status__in=(Referral.Status.CANCELLED, Referral.Status.COMPLETED)
        ),
    }
    counts = {name: query.count() for name, query in views.items()}
    if view == "all":
        chosen = (views["new"] | views["overdue"] | views["accepted"] | views["no_slot"]).distinct()
    else:
        chosen = views[view]
    if priority:
        chosen = chosen.filter(priority=priority)
    if specialty_code:
        chosen = chosen.filter(specialty__code=specialty_code)
    rows = list(
        chosen.select_related(
            "patient__user", "requesting_facility", "target_facility", "specialty"
        ).order_by(*_queue_ordering())[:limit]
    )
    audit_record(
        actor=user,
        action=AuditEvent.Action.READ,
        target=topic,
        reason=f"coordinator board ({view})",
        request=request,
    )
    return {
        "topic": topic,
        "counts": counts,
        "loop_closure": loop_closure(facilities=facilities),
        "referrals": rows,
        "now": now,
    }


def loop_closure(*, facilities: QuerySet[Facility], days: int = 90) -> dict[str, Any]:
    """Share of referrals received in scope (last ``days``) whose loop a counter-referral closed.

    The denominator is every referral the facilities accepted (accepted or later
    in the workflow); the numerator those with a counter-referral back.
    """
    since = timezone.now() - timedelta(days=days)
    accepted = Referral.objects.filter(
        target_facility__in=facilities,
        status__in=ACCEPTED_OR_LATER,
        accepted_at__gte=since,
    )
    totals = accepted.aggregate(
        total=Count("id"), closed=Count("id", filter=Q(counter_referral__isnull=False))
    )
    total, closed = totals["total"], totals["closed"]
    return {
        "accepted": total,
        "closed": closed,
        "share": round(closed / total, 3) if total else None,
        "days": days,
    }


def facility_load(
    *, user: User, province_code: str | None = None, facility_code: str | None = None
) -> dict[str, Any]:
    """Today's load of each facility and specialty in scope: the heat table.

    ``load`` is assigned today over daily capacity (can pass 1.0 when
    emergencies were taken over capacity).
    """
    from scheduler.policy import local_today

    facilities, topic = _board_scope_facilities(
        user=user, facility_code=facility_code, province_code=province_code
    )
    today = local_today()
    offerings = (
        FacilitySpecialty.objects.filter(facility__in=facilities, daily_referral_capacity__gt=0)
        .select_related("facility", "specialty")
        .order_by("facility__level", "facility__code", "specialty__code")
    )
    queues = {
        (q.facility_id, q.specialty_id): q
        for q in Queue.objects.filter(facility__in=facilities).only(
            "facility_id", "specialty_id", "day", "assigned_today", "waiting"
        )
    }
    specialties: dict[str, str] = {}
    by_facility: dict[int, dict[str, Any]] = {}
    for offering in offerings:
        queue = queues.get((offering.facility_id, offering.specialty_id))
        assigned = queue.assigned_today if queue is not None and queue.day == today else 0
        waiting = queue.waiting if queue is not None else 0
        capacity = offering.daily_referral_capacity
        specialties[offering.specialty.code] = offering.specialty.name
        row = by_facility.setdefault(
            offering.facility_id,
            {
                "code": offering.facility.code,
                "name": offering.facility.name,
                "level": offering.facility.level,
                "latitude": offering.facility.latitude,
                "longitude": offering.facility.longitude,
                "cells": {},
                "assigned": 0,
                "capacity": 0,
                "waiting": 0,
            },
        )
        row["cells"][offering.specialty.code] = {
            "capacity": capacity,
            "assigned": assigned,
            "waiting": waiting,
            "load": round(assigned / capacity, 3),
        }
        row["assigned"] += assigned
        row["capacity"] += capacity
        row["waiting"] += waiting
    rows = list(by_facility.values())
    for row in rows:
        row["load"] = round(row["assigned"] / row["capacity"], 3) if row["capacity"] else None
    return {
        "topic": topic,
        "day": today.isoformat(),
        "specialties": [{"code": c, "name": n} for c, n in sorted(specialties.items())],
        "facilities": rows,
    }


def priority_rank(priority: str) -> int:
    return PRIORITY_RANK.get(priority, 9)  # type: ignore[call-overload]


def referral_traffic_between(
    *, facility_ids: Iterable[int], since_days: int = 180, around: int | None = None
) -> dict[tuple[int, int], int]:
    """How many referrals each facility sent to each other one in the last ``since_days``:
    ``{(sending facility, receiving facility): n}``, the two directions kept apart,
    pairs with none left out.

    Only referrals between two of ``facility_ids`` count; with ``around``, only
    those that also have that facility at one end (a doctor's suggestions need
    their own facility's pairs, not the traffic among their neighbours). A
    referral counts when it was submitted in the window (``requested_at``), toward
    the facility it was last routed to, whatever became of it since: a rejected or
    cancelled one still shows two facilities working together. Drafts were never
    sent, and a referral no facility took yet has no target.

    One aggregate query, which the indexes on (requesting facility, status) and
    (target facility, status) serve. Counts only, no patient data: not audited.
    """
    ids = sorted({int(i) for i in facility_ids})
    if around is not None:
        around = int(around)
        if around not in ids:
            ids.append(around)
    if len(ids) < 2:
        return {}
    pairs = Q(requesting_facility_id__in=ids, target_facility_id__in=ids)
    if around is not None:
        pairs = Q(requesting_facility_id=around, target_facility_id__in=ids) | Q(
            target_facility_id=around, requesting_facility_id__in=ids
        )
    sent = [s for s in Referral.Status.values if s != Referral.Status.DRAFT]
    rows = (
        Referral.objects.filter(
            pairs,
            status__in=sent,
            requested_at__gte=timezone.now() - timedelta(days=since_days),
        )
        .exclude(requesting_facility_id=F("target_facility_id"))
        .values_list("requesting_facility_id", "target_facility_id")
        .annotate(n=Count("id"))
        .order_by()
    )
    return {(source, target): n for source, target, n in rows}
