"""Every write of a referral: create, submit, route, receive, accept, reject, advise,
convert, schedule, start, complete (with the counter-referral), cancel, re-route,
escalate and the batch re-optimisation.

``referral_route`` / ``referral_route_many`` are the only code that assigns a
referral to a queue (one private core, ``_route``). Every status change writes
a ``ReferralEvent``; every routing decision a ``RoutingDecision`` with its
reasons; every coordinator action an audit event with who and why.

Locks, always in this order, so two transactions never wait on each other in
a circle: referral rows (ascending id) → queue rows (ascending id) → the audit
chain's advisory lock (``audit_record`` and ``care_relationship_grant`` are
called last in a transaction). The router takes referral rows with
``SKIP LOCKED``: a referral another worker is routing is skipped, never routed
twice; the one routing it commits or rolls back, and a rolled-back one stays
``pending`` for the redelivered task or the sweeper.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from privacy import services as privacy_services
from scheduler import routing
from scheduler.events import Outbox, board_topics
from scheduler.models import (
    PRIORITY_RANK,
    CounterReferral,
    Priority,
    Queue,
    Referral,
    ReferralEvent,
    RoutingDecision,
)
from scheduler.policy import local_today, service_levels
from scheduler.selectors import (
    WAITING_STATUSES,
    coordinator_scope,
    is_receiving_clinician,
    referral_roles,
)
from telehealth import services as kernel_services
from telehealth.audit import audit_record
from telehealth.dispatch import send_task_on_commit
from telehealth.errors import (
    AccessDenied,
    Conflict,
    DomainError,
    NotFound,
)
from telehealth.models import (
    AuditEvent,
    CareRelationship,
    ClinicianProfile,
    Facility,
    Specialty,
    User,
)

logger = logging.getLogger(__name__)

S = Referral.Status
R = Referral.RoutingState
M = RoutingDecision.Method

MAX_REASON = 255
MAX_SUMMARY = 20_000
# How many candidates per referral are read from the database in the first pass;
# the rest only when all of these are full.
SNAPSHOT_DEPTH = 8
ROUTE_ATTEMPTS = 4


def _source(referral_id: int) -> str:
    return f"scheduler.referral:{referral_id}"


def _event(
    referral: Referral,
    *,
    actor: User | None,
    action: str,
    from_status: str = "",
    to_status: str = "",
    note: str = "",
) -> ReferralEvent:
    return ReferralEvent.objects.create(
        referral=referral,
        actor=actor,
        action=action,
        from_status=from_status,
        to_status=to_status,
        note=note[:2000],
    )


def _locked(referral_id: int) -> Referral:
    referral = (
        Referral.objects.select_for_update(of=("self",))
        .select_related("patient__user", "requesting_facility", "target_facility", "specialty")
        .filter(pk=referral_id)
        .first()
    )
    if referral is None:
        raise NotFound(_("No such referral."))
    return referral


def _require(roles: set[str], allowed: set[str]) -> None:
    if not roles & allowed:
        if not roles:
            raise NotFound(_("No such referral."))
        raise AccessDenied(_("You cannot do this with this referral."))


def _require_status(referral: Referral, allowed: Iterable[str], action: str) -> None:
    if referral.status not in allowed:
        raise Conflict(
            _("A referral that is %(status)s cannot be %(action)s.")
            % {"status": referral.get_status_display(), "action": action},
            code="invalid_state",
        )


def _text(value: Any, name: str, *, required: bool, limit: int = MAX_REASON) -> str:
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise DomainError(_("Invalid input."), fields={name: [_("Text is required.")]})
    value = value.strip()
    if required and not value:
        raise DomainError(_("Invalid input."), fields={name: [_("This field is required.")]})
    if len(value) > limit:
        raise DomainError(
            _("Invalid input."),
            fields={name: [_("At most %(n)d characters.") % {"n": limit}]},
        )
    return value


def _audit_coordinator(
    *, user: User, referral: Referral, action: str, why: str, request: Any = None
) -> None:
    audit_record(
        actor=user,
        action=AuditEvent.Action.UPDATE,
        target=f"{_source(referral.pk)}:{action}",
        patient=referral.patient,
        reason=why,
        request=request,
    )


def _outbox_status(outbox: Outbox, referral: Referral, name: str) -> None:
    """Tell both boards and the people concerned that a referral changed."""
    topics = board_topics(
        facility_code=referral.requesting_facility.code,
        province_id=referral.requesting_facility.province_id,
    )
    if referral.target_facility is not None:
        topics += board_topics(
            facility_code=referral.target_facility.code,
            province_id=referral.target_facility.province_id,
        )
    outbox.board(sorted(set(topics)), name, referral.pk)
    data = {"referral": referral.pk, "status": referral.status}
    outbox.user(referral.patient.user_id, name, data)
    outbox.user(referral.requester_id, name, data)


def _grant(referral: Referral, member: User, by: User | None) -> None:
    """The receiving side may see the patient's record while the referral lasts.

    A facility that never cared for the patient gets it only with the patient's
    consent to sharing on referral, or for an emergency (vital interests, audited):
    ``privacy.services.referral_sharing_check`` raises ``ConsentRequired`` (409)
    otherwise, which rolls the action back."""
    if member.pk == referral.patient.user_id:
        return
    privacy_services.referral_sharing_check(
        patient=referral.patient,
        member=member,
        emergency=referral.priority == Priority.EMERGENCY,
        source=_source(referral.pk),
        by=by,
    )
    kernel_services.care_relationship_grant(
        patient=referral.patient,
        member=member,
        kind=CareRelationship.Kind.REFERRAL,
        source=_source(referral.pk),
        granted_by=by,
        reason=_("receiving side of a referral"),
    )


# After a completed referral the treating side keeps access this long, to answer
# questions about its counter-referral; then it ends by itself.
REFERRAL_FOLLOW_UP = timedelta(days=30)


def _end_grants(referral: Referral, by: User | None, *, after: timedelta | None = None) -> None:
    """The receiving side's access to the patient's record ends with its part in the
    referral: at once when it is cancelled, rejected or routed elsewhere, ``after``
    the follow-up window when it is completed."""
    source = _source(referral.pk)
    members = CareRelationship.objects.filter(
        patient_id=referral.patient_id,
        kind=CareRelationship.Kind.REFERRAL,
        source=source,
        ends_at__isnull=True,
    ).select_related("member")
    for relationship in members:
        if after is not None:
            kernel_services.care_relationship_grant(
                patient=referral.patient,
                member=relationship.member,
                kind=CareRelationship.Kind.REFERRAL,
                source=source,
                ends_at=timezone.now() + after,
                granted_by=by,
                reason=_("follow-up after a completed referral"),
            )
            continue
        kernel_services.care_relationship_end(
            patient=referral.patient,
            member=relationship.member,
            kind=CareRelationship.Kind.REFERRAL,
            source=source,
            ended_by=by,
        )


def _leave_queue(referral: Referral, *, free_capacity: bool) -> None:
    """The referral stops waiting in its queue (accepted, answered, rejected, cancelled).

    Locks the queue row (after the referral's, as everywhere). ``free_capacity``
    gives today's place back when the queue did not use it (rejected, cancelled).
    """
    if referral.queue_id is None or referral.routing_state != R.ROUTED:
        return
    if referral.status not in (S.REQUESTED, S.RECEIVED):
        # Accepted or answered with advice: it left the queue's wait then already.
        return
    queue = Queue.objects.select_for_update().get(pk=referral.queue_id)
    queue.waiting = max(queue.waiting - 1, 0)
    fields = ["waiting"]
    if free_capacity and queue.day == referral.queue_day == local_today():
        queue.assigned_today = max(queue.assigned_today - 1, 0)
        fields.append("assigned_today")
    queue.save(update_fields=fields)


# --- Create and submit ---------------------------------------------------------------


def referral_create(
    *,
    by: User,
    patient_id: Any,
    specialty_code: Any,
    reason: Any,
    clinical_summary: Any = "",
    priority: Any = Priority.ROUTINE,
    requested_mode: Any = Referral.Mode.REMOTE_FIRST,
    submit: bool = False,
    request: Any = None,
) -> Referral:
    """A doctor or health worker writes a referral for a patient they may see (a draft).

    With ``submit`` it is submitted in the same call (see ``referral_submit``).
    The patient is read through the kernel's access helper (audited); a
    clinician with no relationship with the patient gets ``NotFound``.
    """
    from telehealth.selectors import patient_get_for_user

    clinician = getattr(by, "clinician_profile", None)
    if clinician is None:
        raise AccessDenied(_("Only doctors and health workers can refer a patient."))
    fields: dict[str, list[str]] = {}
    if priority not in Priority.values:
        fields["priority"] = [_("One of: routine, urgent, emergency.")]
    if requested_mode not in Referral.Mode.values:
        fields["requested_mode"] = [_("One of: remote_first, physical.")]
    specialty = (
        Specialty.objects.filter(code=specialty_code).first()
        if isinstance(specialty_code, str)
        else None
    )
    if specialty is None:
        fields["specialty"] = [_("Unknown specialty.")]
    if not isinstance(patient_id, int) or isinstance(patient_id, bool):
        fields["patient_id"] = [_("A patient id is required.")]
    try:
        reason = _text(reason, "reason", required=True)
    except DomainError as exc:
        fields.update(exc.fields)
    try:
        summary = _text(clinical_summary, "clinical_summary", required=False, limit=MAX_SUMMARY)
    except DomainError as exc:
        fields.update(exc.fields)
    if fields:
        raise DomainError(_("The referral has invalid fields."), fields=fields)
    with transaction.atomic():
        patient = patient_get_for_user(
            user=by, patient_id=patient_id, purpose="write a referral", request=request
        )
        referral = Referral.objects.create(
            patient=patient,
            requester=by,
            requesting_facility=clinician.facility,
            specialty=specialty,
            priority=priority,
            requested_mode=requested_mode,
            reason=reason,
            clinical_summary=summary,
        )
        _event(referral, actor=by, action="created", to_status=S.DRAFT)
        if submit:
            referral_submit(referral_id=referral.pk, by=by)
            referral.refresh_from_db()
    return referral


def referral_submit(*, referral_id: int, by: User) -> Referral:
    """Draft → requested, and ask for routing after commit.

    Routing runs in a Celery task (``scheduler.tasks.route_referral``). An
    emergency is also routed in this process right after commit, so it is in
    a queue before the answer returns; the task then finds nothing to do.
    """
    with transaction.atomic():
        referral = _locked(referral_id)
        if referral.requester_id != by.pk:
            _require(referral_roles(user=by, referral=referral), {"requester"})
        _require_status(referral, [S.DRAFT], _("submitted"))
        now = timezone.now()
        referral.status = S.REQUESTED
        referral.requested_at = now
        referral.routing_state = R.PENDING
        referral.save(update_fields=["status", "requested_at", "routing_state"])
        _event(referral, actor=by, action="submitted", from_status=S.DRAFT, to_status=S.REQUESTED)
        _enqueue_route(referral.pk, emergency=referral.priority == Priority.EMERGENCY)
    return referral


def _enqueue_route(referral_id: int, *, emergency: bool) -> None:
    from scheduler.tasks import route_referral

    if emergency:

        def route_now() -> None:
            try:
                referral_route(referral_id=referral_id)
            except Exception:  # the task below routes it; never fail the submission
                logger.exception("inline routing of emergency referral %s failed", referral_id)

        transaction.on_commit(route_now)
    # With the broker down the referral stays pending: the sweeper (route_sweep, every
    # minute) routes it, so the submission still succeeds.
    send_task_on_commit(
        route_referral, referral_id, what=f"routing task for referral {referral_id}"
    )


# --- Routing: the one way into a queue ---------------------------------------------------


@dataclass
class RouteReport:
    assigned: list[int] = field(default_factory=list)
    no_slot: list[int] = field(default_factory=list)
    # Not pending (already routed, cancelled…): nothing to do.
    skipped: list[int] = field(default_factory=list)
    # Pending but held by another transaction right now (another worker routing it,
    # or the orphaned connection of a killed worker): the caller tries again later.
    busy: list[int] = field(default_factory=list)
    # Still pending after the attempts (queues filled up under us); the sweeper retries.
    deferred: list[int] = field(default_factory=list)


@dataclass(slots=True)
class _Assignment:
    """A referral's new routing columns (written in one statement per batch)."""

    pk: int
    routing_state: str
    route_generation: int
    target_facility_id: int | None
    queue_id: int | None
    queue_day: Any
    ticket_number: int | None
    routed_at: datetime
    accept_due_at: datetime | None
    no_slot_since: datetime | None
    contact_due_at: datetime | None
    escalation_level: int
    escalated_at: datetime | None


@dataclass(slots=True)
class _Decision:
    referral_id: int
    generation: int
    at: datetime
    method: str
    outcome: str
    reasons: dict
    decided_by_id: int | None
    facility_id: int | None = None
    queue_day: Any = None
    ticket_number: int | None = None
    distance_km: float | None = None


_ROUTE_FIELDS = (
    "id",
    "priority",
    "requested_at",
    "requesting_facility_id",
    "specialty_id",
    "excluded_facility_ids",
    "queue_id",
    "queue_day",
    "route_generation",
    "accept_due_at",
    "no_slot_since",
    "contact_due_at",
    "escalation_level",
    "escalated_at",
    "requester_id",
)


def referral_route(
    *, referral_id: int, method: str = M.FIRST, by: User | None = None
) -> RoutingDecision | None:
    """Route one pending referral; return its decision, or None if it was not pending.

    Idempotent: a referral that is not ``pending`` (already routed, on the
    worklist, cancelled) or that another worker holds is left alone.
    """
    referral_route_many(referral_ids=[referral_id], method=method, by=by)
    referral = Referral.objects.filter(pk=referral_id).values_list("route_generation").first()
    if referral is None:
        return None
    return RoutingDecision.objects.filter(referral_id=referral_id, generation=referral[0]).first()


def referral_route_many(
    *,
    referral_ids: Iterable[int],
    method: str = M.FIRST,
    by: User | None = None,
    plan: dict[int, int] | None = None,
) -> RouteReport:
    """Route pending referrals: each to a queue with a ticket, or to the no-slot worklist.

    Guarantees: exactly one decision per referral and generation (unique
    constraint); a referral held by another transaction is skipped
    (``SKIP LOCKED``), never waited for or routed twice; tickets come from the
    queue's daily counter under its row lock; capacity is re-checked under that
    lock, and a referral whose queue filled up meanwhile is routed again in a
    fresh transaction (up to ``ROUTE_ATTEMPTS``, then left ``pending`` for the
    sweeper). ``plan`` (referral id → facility id) is the batch optimiser's
    proposal; it is followed when the facility still has room, else the usual
    choice applies. Events go out after commit.
    """
    report = RouteReport()
    todo = sorted(set(int(i) for i in referral_ids))
    for _attempt in range(ROUTE_ATTEMPTS):
        if not todo:
            break
        with transaction.atomic():
            todo = _route(todo, method=method, by=by, plan=plan or {}, report=report)
    report.deferred.extend(todo)
    if report.skipped:
        still_pending = set(
            Referral.objects.filter(pk__in=report.skipped, routing_state=R.PENDING).values_list(
                "pk", flat=True
            )
        )
        report.busy = [i for i in report.skipped if i in still_pending]
        report.skipped = [i for i in report.skipped if i not in still_pending]
    return report


def _route(
    ids: list[int], *, method: str, by: User | None, plan: dict[int, int], report: RouteReport
) -> list[int]:
    """One routing transaction. Returns the ids to try again (their queue filled up)."""
    rows = list(
        Referral.objects.select_for_update(skip_locked=True, of=("self",))
        .filter(pk__in=ids, routing_state=R.PENDING)
        .order_by("pk")
        .values(*_ROUTE_FIELDS)
    )
    got = {row["id"] for row in rows}
    report.skipped.extend(i for i in ids if i not in got and i not in report.skipped)
    if not rows:
        return []
    index = routing.network_index(facility_ids={r["requesting_facility_id"] for r in rows})
    levels = service_levels()
    now = timezone.now()
    today = local_today(now)
    # Emergencies first, then by age: the batch itself is a small queue.
    rows.sort(
        key=lambda r: (PRIORITY_RANK.get(r["priority"], 9), r["requested_at"] or now, r["id"])
    )

    options: dict[int, list[routing.Candidate]] = {}
    complete: dict[int, bool] = {}
    for row in rows:
        emergency = row["priority"] == Priority.EMERGENCY
        excluded = set(row["excluded_facility_ids"] or [])
        found, done = routing.candidates(
            index,
            origin_id=row["requesting_facility_id"],
            specialty_id=row["specialty_id"],
            emergency=emergency,
            excluded=excluded,
        )
        options[row["id"]] = found
        complete[row["id"]] = done

    # A snapshot of the queues the first candidates belong to (one query).
    state = _queue_snapshot(
        {
            (o.facility_id, row["specialty_id"])
            for row in rows
            for o in options[row["id"]][:SNAPSHOT_DEPTH]
        }
        | {(f, row["specialty_id"]) for row in rows if (f := plan.get(row["id"]))},
        today,
        index,
    )
    # Referrals being re-routed give their place back before anyone chooses.
    old_queues = {
        q["pk"]: q
        for q in Queue.objects.filter(
            pk__in={row["queue_id"] for row in rows if row["queue_id"] is not None}
        ).values("pk", "facility_id", "specialty_id")
    }
    for row in rows:
        old = old_queues.get(row["queue_id"])
        if old is not None:
            place = state.get(old["specialty_id"], {}).get(old["facility_id"])
            if place is not None:
                place.waiting -= 1
                if row["queue_day"] == today:
                    place.remaining += 1
    # Referrals whose first candidates are all full read their deeper candidates'
    # queues now, in one query for the batch, not one each.
    deep: dict[int, list[routing.Candidate]] = {}
    deep_keys: set[tuple[int, int]] = set()
    for row in rows:
        rid = row["id"]
        first = options[rid][:SNAPSHOT_DEPTH]
        by_facility = state.get(row["specialty_id"], {})
        if rid in plan or any(
            (q := by_facility.get(o.facility_id)) is None or q.remaining > 0 for o in first
        ):
            continue
        deeper = options[rid]
        if not complete[rid]:
            deeper, _done = routing.candidates(
                index,
                origin_id=row["requesting_facility_id"],
                specialty_id=row["specialty_id"],
                emergency=row["priority"] == Priority.EMERGENCY,
                excluded=set(row["excluded_facility_ids"] or []),
                full=True,
            )
        deep[rid] = deeper
        deep_keys |= {
            (o.facility_id, row["specialty_id"])
            for o in deeper[SNAPSHOT_DEPTH:]
            if o.facility_id not in by_facility
        }
    for specialty_id, fresh in _queue_snapshot(deep_keys, today, index).items():
        state.setdefault(specialty_id, {}).update(fresh)

    choices: dict[int, routing.Choice] = {}
    for row in rows:
        rid = row["id"]
        emergency = row["priority"] == Priority.EMERGENCY
        excluded = set(row["excluded_facility_ids"] or [])
        by_facility = state.setdefault(row["specialty_id"], {})
        choice = _planned_choice(index, row, plan.get(rid), by_facility)
        if choice is None and method == M.BATCH and row["queue_id"] is not None:
            choices[rid] = routing.Choice(facility_id=None, reasons={}, over_capacity=False)
            continue  # the plan no longer fits: leave it where it is (restored below)
        if choice is None:
            first = options[rid][:SNAPSHOT_DEPTH]
            choice = routing.choose(
                index,
                origin_id=row["requesting_facility_id"],
                emergency=emergency,
                options=first,
                state=by_facility,
                excluded=excluded,
                complete=complete[rid] and len(options[rid]) <= SNAPSHOT_DEPTH,
            )
            if choice.facility_id is None or choice.over_capacity:
                deeper = deep.get(rid) or options[rid]
                if rid not in deep and not complete[rid]:
                    deeper, _done = routing.candidates(
                        index,
                        origin_id=row["requesting_facility_id"],
                        specialty_id=row["specialty_id"],
                        emergency=emergency,
                        excluded=excluded,
                        full=True,
                    )
                if len(deeper) > len(first):
                    fresh = _queue_snapshot(
                        {
                            (o.facility_id, row["specialty_id"])
                            for o in deeper
                            if o.facility_id not in by_facility
                        },
                        today,
                        index,
                    )
                    by_facility.update(fresh.get(row["specialty_id"], {}))
                    choice = routing.choose(
                        index,
                        origin_id=row["requesting_facility_id"],
                        emergency=emergency,
                        options=deeper,
                        state=by_facility,
                        excluded=excluded,
                        complete=True,
                    )
        choices[rid] = choice
        if choice.facility_id is not None:
            place = by_facility.get(choice.facility_id)
            if place is None:
                place = by_facility[choice.facility_id] = routing.QueueState(
                    remaining=index.capacity(choice.facility_id, row["specialty_id"]), waiting=0
                )
            place.remaining -= 1
            place.waiting += 1

    # Lock the chosen queues and the queues being left, in id order.
    wanted = {
        (c.facility_id, row["specialty_id"])
        for row in rows
        if (c := choices[row["id"]]).facility_id is not None
    }
    queue_ids = _queue_ids(wanted, state)
    locked = {
        q.pk: q
        for q in Queue.objects.select_for_update()
        .filter(pk__in=set(queue_ids.values()) | set(old_queues))
        .order_by("pk")
    }
    for queue in locked.values():
        if queue.day != today:
            queue.day, queue.last_ticket, queue.assigned_today = today, 0, 0

    def release(row: dict, sign: int) -> None:
        old = locked.get(row["queue_id"])
        if old is not None:
            old.waiting = max(old.waiting - sign, 0)
            if row["queue_day"] == today:
                old.assigned_today = max(old.assigned_today - sign, 0)

    retry: list[int] = []
    restore: list[int] = []
    updates: list[_Assignment] = []
    decisions: list[_Decision] = []
    outbox = Outbox()
    tell_patient: dict[int, dict] = {}
    moving = [row for row in rows if row["queue_id"] is not None]
    for row in moving:
        if not (method == M.BATCH and choices[row["id"]].facility_id is None):
            release(row, +1)
    for row in rows:
        rid = row["id"]
        choice = choices[rid]
        emergency = row["priority"] == Priority.EMERGENCY
        deadlines = levels[row["priority"]]
        queue = None
        if method == M.BATCH and choice.facility_id is None and row["queue_id"] is not None:
            restore.append(rid)
            continue
        if choice.facility_id is not None:
            queue = locked[queue_ids[(choice.facility_id, row["specialty_id"])]]
            capacity = index.capacity(choice.facility_id, row["specialty_id"])
            if queue.assigned_today >= capacity and not (emergency and choice.over_capacity):
                if row["queue_id"] is not None:
                    release(row, -1)  # it keeps its old place until the next attempt
                retry.append(rid)  # filled up since the snapshot: choose again
                continue
        generation = row["route_generation"] + 1
        # The first decision's deadline counts from submission (a routing task that
        # waited does not buy time); a later one, after a re-route the sweeper picked
        # up, gives the new facility its own full window.
        first = method == M.FIRST and row["route_generation"] == 0
        started = row["requested_at"] if first and row["requested_at"] else now
        origin = index.position.get(row["requesting_facility_id"])
        origin_topics = (
            board_topics(
                facility_code=index.codes[origin],
                province_id=int(index.province_ids[origin]),
                watched=row["requesting_facility_id"] in index.watched,
            )
            if origin is not None
            else []
        )
        if queue is None:
            # Still on the worklist after a retry: its contact deadline and escalation
            # stand; a retry must never push the deadline out.
            stays = row["no_slot_since"] is not None and row["contact_due_at"] is not None
            contact_due = row["contact_due_at"] if stays else deadlines.contact_due(started)
            updates.append(
                _Assignment(
                    pk=rid,
                    routing_state=R.NO_SLOT,
                    route_generation=generation,
                    target_facility_id=None,
                    queue_id=None,
                    queue_day=None,
                    ticket_number=None,
                    routed_at=now,
                    accept_due_at=None,
                    no_slot_since=row["no_slot_since"] or now,
                    contact_due_at=contact_due,
                    escalation_level=row["escalation_level"] if stays else 0,
                    escalated_at=row["escalated_at"] if stays else None,
                )
            )
            decisions.append(
                _Decision(
                    referral_id=rid,
                    generation=generation,
                    at=now,
                    method=method,
                    outcome=RoutingDecision.Outcome.NO_SLOT,
                    reasons={**choice.reasons, "contact_by": contact_due.isoformat()},
                    decided_by_id=by.pk if by is not None else None,
                )
            )
            report.no_slot.append(rid)
            outbox.board(origin_topics, "referral.no_slot", rid)
            outbox.user(row["requester_id"], "referral.no_slot", {"referral": rid})
            continue
        queue.last_ticket += 1
        queue.assigned_today += 1
        queue.waiting += 1
        ticket = queue.last_ticket
        accept_due = (
            row["accept_due_at"]
            if method == M.BATCH and row["accept_due_at"]
            else deadlines.accept_due(started)
        )
        updates.append(
            _Assignment(
                pk=rid,
                routing_state=R.ROUTED,
                route_generation=generation,
                target_facility_id=choice.facility_id,
                queue_id=queue.pk,
                queue_day=today,
                ticket_number=ticket,
                routed_at=now,
                accept_due_at=accept_due,
                no_slot_since=None,
                contact_due_at=None,
                escalation_level=0,
                escalated_at=None,
            )
        )
        decisions.append(
            _Decision(
                referral_id=rid,
                generation=generation,
                at=now,
                method=method,
                outcome=RoutingDecision.Outcome.ASSIGNED,
                facility_id=choice.facility_id,
                queue_day=today,
                ticket_number=ticket,
                distance_km=choice.distance_km,
                reasons={**choice.reasons, "accept_by": accept_due.isoformat()},
                decided_by_id=by.pk if by is not None else None,
            )
        )
        report.assigned.append(rid)
        target_topics = board_topics(
            facility_code=index.code(choice.facility_id),
            province_id=int(index.province_ids[index.position[choice.facility_id]]),
            watched=choice.facility_id in index.watched,
        )
        outbox.board(target_topics, "referral.routed", rid)
        if row["queue_id"] is not None:
            outbox.board(origin_topics, "referral.rerouted", rid)
        if emergency or row["queue_id"] is not None:
            # The patient hears at once when it is urgent for them (an emergency) or
            # when they were moved; otherwise "my referrals" shows the queue on load.
            # One channel-layer send per referral would cost more than routing it.
            tell_patient[rid] = {
                "referral": rid,
                "facility": index.code(choice.facility_id),
                "ticket": ticket,
            }

    if tell_patient:
        for rid, user_id in Referral.objects.filter(pk__in=list(tell_patient)).values_list(
            "pk", "patient__user_id"
        ):
            outbox.user(user_id, "referral.routed", tell_patient[rid])
    if restore:
        Referral.objects.filter(pk__in=restore).update(routing_state=R.ROUTED)
    if updates:
        # The assignment time is when it is written, not when the batch was read.
        stamp = timezone.now()
        for update in updates:
            update.routed_at = stamp
        for decision in decisions:
            decision.at = stamp
        _write_routing(list(locked.values()), updates, decisions)
        outbox.send_on_commit()
    return retry


_QUEUE_UPDATE = (
    "UPDATE scheduler_queue SET day = %s, last_ticket = %s, assigned_today = %s, waiting = %s "
    "WHERE id = %s"
)
_REFERRAL_UPDATE = (
    "UPDATE scheduler_referral SET routing_state = %s, route_generation = %s, "
    "target_facility_id = %s, queue_id = %s, queue_day = %s, ticket_number = %s, "
    "routed_at = %s, accept_due_at = %s, no_slot_since = %s, contact_due_at = %s, "
    "escalation_level = %s, escalated_at = %s WHERE id = %s"
)


def _write_routing(
    queues: list[Queue], referrals: list[_Assignment], decisions: list[_Decision]
) -> None:
    """Write the batch's counters and decisions with one prepared statement each.

    ``executemany`` (pipelined by psycopg 3) instead of ``bulk_update``: the
    ORM's CASE … WHEN form costs more than the whole routing decision.
    """
    from django.db import connection

    ops = connection.ops
    if connection.vendor == "postgresql":
        _write_routing_postgres(queues, referrals, decisions)
        return
    with connection.cursor() as cursor:
        cursor.executemany(
            _QUEUE_UPDATE,
            [
                (
                    ops.adapt_datefield_value(q.day),
                    q.last_ticket,
                    q.assigned_today,
                    q.waiting,
                    q.pk,
                )
                for q in queues
            ],
        )
        cursor.executemany(
            _REFERRAL_UPDATE,
            [
                (
                    r.routing_state,
                    r.route_generation,
                    r.target_facility_id,
                    r.queue_id,
                    ops.adapt_datefield_value(r.queue_day),
                    r.ticket_number,
                    ops.adapt_datetimefield_value(r.routed_at),
                    ops.adapt_datetimefield_value(r.accept_due_at),
                    ops.adapt_datetimefield_value(r.no_slot_since),
                    ops.adapt_datetimefield_value(r.contact_due_at),
                    r.escalation_level,
                    ops.adapt_datetimefield_value(r.escalated_at),
                    r.pk,
                )
                for r in referrals
            ],
        )
    RoutingDecision.objects.bulk_create([RoutingDecision(**asdict(d)) for d in decisions])


_REFERRAL_UPDATE_PG = (
    "UPDATE scheduler_referral AS r SET routing_state = v.state, route_generation = v.generation,"
    " target_facility_id = v.facility, queue_id = v.queue, queue_day = v.day,"
    " ticket_number = v.ticket, routed_at = v.routed_at, accept_due_at = v.accept_due,"
    " no_slot_since = v.no_slot_since, contact_due_at = v.contact_due,"
    " escalation_level = v.escalation, escalated_at = v.escalated_at"
    " FROM unnest(%s::bigint[], %s::varchar[], %s::int[], %s::bigint[], %s::bigint[],"
    " %s::date[], %s::int[], %s::timestamptz[], %s::timestamptz[], %s::timestamptz[],"
    " %s::timestamptz[], %s::int[], %s::timestamptz[]) AS v(id, state, generation, facility,"
    " queue, day, ticket, routed_at, accept_due, no_slot_since, contact_due, escalation,"
    " escalated_at) WHERE r.id = v.id"
)
_QUEUE_UPDATE_PG = (
    "UPDATE scheduler_queue AS q SET day = v.day, last_ticket = v.last_ticket,"
    " assigned_today = v.assigned, waiting = v.waiting"
    " FROM unnest(%s::bigint[], %s::date[], %s::int[], %s::int[], %s::int[])"
    " AS v(id, day, last_ticket, assigned, waiting) WHERE q.id = v.id"
)


def _pg_cursor():  # type: ignore[no-untyped-def]
    """A psycopg cursor with server-side binding on Django's connection (same transaction).

    Django's default client-side binding renders every array element into the SQL
    text in Python; for a batch that costs more than the statement itself.
    """
    import psycopg
    from django.db import connection

    connection.ensure_connection()
    return psycopg.Cursor(connection.connection)


def _write_routing_postgres(
    queues: list[Queue], referrals: list[_Assignment], decisions: list[_Decision]
) -> None:
    """One statement for the queues, one for the referrals, one COPY for the decisions."""
    import json

    with _pg_cursor() as cursor:
        if queues:
            cursor.execute(
                _QUEUE_UPDATE_PG,
                [
                    [q.pk for q in queues],
                    [q.day for q in queues],
                    [q.last_ticket for q in queues],
                    [q.assigned_today for q in queues],
                    [q.waiting for q in queues],
                ],
            )
        cursor.execute(
            _REFERRAL_UPDATE_PG,
            [
                [r.pk for r in referrals],
                [r.routing_state for r in referrals],
                [r.route_generation for r in referrals],
                [r.target_facility_id for r in referrals],
                [r.queue_id for r in referrals],
                [r.queue_day for r in referrals],
                [r.ticket_number for r in referrals],
                [r.routed_at for r in referrals],
                [r.accept_due_at for r in referrals],
                [r.no_slot_since for r in referrals],
                [r.contact_due_at for r in referrals],
                [r.escalation_level for r in referrals],
                [r.escalated_at for r in referrals],
            ],
        )
        with cursor.copy(
            "COPY scheduler_routingdecision (referral_id, generation, at, method, outcome,"
            " facility_id, queue_day, ticket_number, distance_km, reasons, decided_by_id)"
            " FROM STDIN"
        ) as copy:
            for d in decisions:
                copy.write_row(
                    (
                        d.referral_id,
                        d.generation,
                        d.at,
                        d.method,
                        d.outcome,
                        d.facility_id,
                        d.queue_day,
                        d.ticket_number,
                        d.distance_km,
                        json.dumps(d.reasons, ensure_ascii=False),
                        d.decided_by_id,
                    )
                )


def _planned_choice(
    index: routing.NetworkIndex,
    row: dict,
    facility_id: int | None,
    by_facility: dict[int, routing.QueueState],
) -> routing.Choice | None:
    """Follow the optimiser's plan when the planned facility still has room."""
    if facility_id is None:
        return None
    queue = by_facility.get(facility_id)
    remaining = (
        queue.remaining if queue is not None else index.capacity(facility_id, row["specialty_id"])
    )
    if remaining <= 0:
        return None
    origin = index.position[row["requesting_facility_id"]]
    target = index.position[facility_id]
    distance = float(
        routing.haversine_km(
            index.latitudes[[origin]],
            index.longitudes[[origin]],
            index.latitudes[[target]],
            index.longitudes[[target]],
        )[0, 0]
    )
    return routing.Choice(
        facility_id=facility_id,
        distance_km=distance,
        reasons={
            "rule": "batch re-optimisation (transportation problem)",
            "facility": index.code(facility_id),
            "level": index.level(facility_id),
            "distance_km": round(distance, 1),
            "remaining_today": remaining,
            "waiting": queue.waiting if queue is not None else 0,
        },
    )


def _queue_rows(keys: set[tuple[int, int]]) -> list[tuple]:
    """(id, facility, specialty, day, assigned_today, waiting) of existing queue rows."""
    from django.db import connection

    if not keys:
        return []
    if connection.vendor == "postgresql":
        facilities, specialties = zip(*sorted(keys), strict=True)
        with _pg_cursor() as cursor:
            # A join with the key list uses the (facility, specialty) unique index.
            cursor.execute(
                "SELECT q.id, q.facility_id, q.specialty_id, q.day, q.assigned_today, q.waiting "
                "FROM scheduler_queue q JOIN unnest(%s::bigint[], %s::bigint[]) AS k(f, s) "
                "ON q.facility_id = k.f AND q.specialty_id = k.s",
                [list(facilities), list(specialties)],
            )
            return cursor.fetchall()
    by_specialty: dict[int, set[int]] = {}
    for facility_id, specialty_id in keys:
        by_specialty.setdefault(specialty_id, set()).add(facility_id)
    condition = Q()
    for specialty_id, facility_ids in by_specialty.items():
        condition |= Q(specialty_id=specialty_id, facility_id__in=facility_ids)
    return list(
        Queue.objects.filter(condition).values_list(
            "pk", "facility_id", "specialty_id", "day", "assigned_today", "waiting"
        )
    )


def _queue_snapshot(
    keys: set[tuple[int, int]], today, index: routing.NetworkIndex
) -> dict[int, dict[int, routing.QueueState]]:
    """Remaining capacity today, waiting count and row id of the given (facility,
    specialty) queues, as {specialty: {facility: state}}; one query."""
    state: dict[int, dict[int, routing.QueueState]] = {}
    for facility_id, specialty_id in keys:
        state.setdefault(specialty_id, {})[facility_id] = routing.QueueState(
            remaining=index.capacity(facility_id, specialty_id), waiting=0
        )
    for pk, facility_id, specialty_id, day, assigned, waiting in _queue_rows(keys):
        used = assigned if day == today else 0
        state[specialty_id][facility_id] = routing.QueueState(
            remaining=index.capacity(facility_id, specialty_id) - used,
            waiting=waiting,
            queue_id=pk,
        )
    return state


def _queue_ids(
    keys: set[tuple[int, int]], state: dict[int, dict[int, routing.QueueState]]
) -> dict[tuple[int, int], int]:
    """The queue row of each (facility, specialty): from the snapshot, else read or created."""
    found: dict[tuple[int, int], int] = {}
    for facility_id, specialty_id in keys:
        known = state.get(specialty_id, {}).get(facility_id)
        if known is not None and known.queue_id is not None:
            found[(facility_id, specialty_id)] = known.queue_id
    missing = keys - set(found)
    if missing:
        Queue.objects.bulk_create(
            [Queue(facility_id=f, specialty_id=s) for f, s in sorted(missing)],
            ignore_conflicts=True,
        )
        found.update({(f, s): pk for pk, f, s, *_rest in _queue_rows(missing)})
    return found


# --- The receiving side -----------------------------------------------------------------


def _receiving_action(
    referral_id: int, by: User, *, allowed_roles: set[str], request: Any = None
) -> tuple[Referral, set[str]]:
    referral = _locked(referral_id)
    roles = referral_roles(user=by, referral=referral)
    _require(roles, allowed_roles)
    return referral, roles


def referral_receive(*, referral_id: int, by: User) -> Referral:
    """The receiving clinician opens the referral: requested → received. Idempotent."""
    with transaction.atomic():
        referral, _roles = _receiving_action(referral_id, by, allowed_roles={"receiving"})
        if referral.status == S.RECEIVED:
            return referral
        _require_status(referral, [S.REQUESTED], _("received"))
        if referral.routing_state != R.ROUTED:
            raise Conflict(_("This referral is not in a queue."), code="not_routed")
        referral.status = S.RECEIVED
        referral.received_at = timezone.now()
        referral.save(update_fields=["status", "received_at"])
        _event(referral, actor=by, action="received", from_status=S.REQUESTED, to_status=S.RECEIVED)
        outbox = Outbox()
        _outbox_status(outbox, referral, "referral.received")
        outbox.send_on_commit()
        _grant(referral, by, by)
    return referral


def referral_accept(*, referral_id: int, by: User, note: Any = "", request: Any = None) -> Referral:
    """The receiving side takes the patient: requested/received → accepted.

    A receiving clinician or a coordinator of the receiving facility may accept;
    a coordinator must say why (audited). The referral leaves the queue; the
    place it took today stays used.
    """
    note = _text(note, "note", required=False)
    with transaction.atomic():
        referral, roles = _receiving_action(
            referral_id, by, allowed_roles={"receiving", "receiving_coordinator"}
        )
        if referral.status == S.ACCEPTED:
            return referral
        _require_status(referral, [S.REQUESTED, S.RECEIVED], _("accepted"))
        if referral.routing_state != R.ROUTED:
            raise Conflict(_("This referral is not in a queue."), code="not_routed")
        as_coordinator = "receiving" not in roles
        if as_coordinator and not note:
            raise DomainError(
                _("Say why you accept on the facility's behalf."),
                fields={"note": [_("This field is required.")]},
            )
        _leave_queue(referral, free_capacity=False)
        before = referral.status
        referral.status = S.ACCEPTED
        referral.accepted_at = timezone.now()
        fields = ["status", "accepted_at"]
        if not as_coordinator:
            referral.receiving_clinician = by
            fields.append("receiving_clinician")
        referral.save(update_fields=fields)
        _event(
            referral,
            actor=by,
            action="accepted",
            from_status=before,
            to_status=S.ACCEPTED,
            note=note,
        )
        outbox = Outbox()
        _outbox_status(outbox, referral, "referral.accepted")
        outbox.send_on_commit()
        if as_coordinator:
            _audit_coordinator(
                user=by, referral=referral, action="accept", why=note, request=request
            )
        else:
            _grant(referral, by, by)
    return referral


def referral_reject(
    *, referral_id: int, by: User, reason: Any, reroute: bool = False, request: Any = None
) -> Referral:
    """The receiving side declines, with a reason: → rejected.

    ``reroute``: "we cannot take it, send it elsewhere": the referral is routed
    again at once, never to this facility. Without it the rejection stands and
    the referrer reads the reason (for example "manage locally").
    """
    reason = _text(reason, "reason", required=True)
    with transaction.atomic():
        referral, roles = _receiving_action(
            referral_id, by, allowed_roles={"receiving", "receiving_coordinator"}
        )
        _require_status(referral, [S.REQUESTED, S.RECEIVED], _("rejected"))
        if referral.routing_state != R.ROUTED:
            raise Conflict(_("This referral is not in a queue."), code="not_routed")
        before = referral.status
        _end_grants(referral, by)
        _event(
            referral,
            actor=by,
            action="rejected",
            from_status=before,
            to_status=S.REJECTED,
            note=reason,
        )
        outbox = Outbox()
        if reroute:
            excluded = sorted({*referral.excluded_facility_ids, referral.target_facility_id})
            referral.excluded_facility_ids = excluded
            referral.status = S.REQUESTED
            referral.status_reason = reason
            referral.routing_state = R.PENDING
            referral.received_at = None
            referral.save(
                update_fields=[
                    "excluded_facility_ids",
                    "status",
                    "status_reason",
                    "routing_state",
                    "received_at",
                ]
            )
            _event(
                referral,
                actor=by,
                action="rerouted",
                from_status=S.REJECTED,
                to_status=S.REQUESTED,
                note=reason,
            )
            referral_route_many(referral_ids=[referral.pk], method=M.REJECTION, by=by)
            referral.refresh_from_db()
        else:
            _leave_queue(referral, free_capacity=True)
            referral.status = S.REJECTED
            referral.status_reason = reason
            referral.closed_at = timezone.now()
            referral.save(update_fields=["status", "status_reason", "closed_at"])
        _outbox_status(outbox, referral, "referral.rejected")
        outbox.send_on_commit()
        if "receiving" not in roles:
            _audit_coordinator(
                user=by, referral=referral, action="reject", why=reason, request=request
            )
    return referral


def referral_thread_open(*, referral_id: int, by: User) -> int:
    """The referral's advice conversation (consult thread of kind ``referral``), opened once.

    The referrer and the receiving side are participants; attachments live in it.
    """
    from consult import services as messaging
    from consult.models import Participant, Thread

    with transaction.atomic():
        referral = _locked(referral_id)
        roles = referral_roles(user=by, referral=referral)
        _require(roles, {"requester", "receiving"})
        return _thread(referral, by, messaging, Thread, Participant)


def _thread(referral: Referral, by: User, messaging, Thread, Participant) -> int:
    if referral.thread_id is None:
        role = getattr(referral.requester, "clinician_profile", None)
        thread = messaging.thread_open(
            kind=Thread.Kind.REFERRAL,
            created_by=referral.requester,
            participants=[(referral.requester, role.kind if role else Participant.Role.MEMBER)],
            subject=_("Referral #%(id)d: %(reason)s")
            % {"id": referral.pk, "reason": referral.reason},
            context=_source(referral.pk),
            patient=referral.patient,
        )
        referral.thread_id = thread.pk
        referral.save(update_fields=["thread_id"])
    if by.pk != referral.requester_id:
        messaging.thread_participant_add(
            thread_id=referral.thread_id,
            user=by,
            role=Participant.Role.SPECIALIST,
            added_by=None,
        )
    return referral.thread_id


def referral_attachment_add(*, referral_id: int, by: User, upload: Any, note: Any = "") -> Any:
    """Attach a file (image or PDF) to the referral, through the messaging engine's store."""
    from consult import services as messaging

    note = _text(note, "note", required=False)
    thread_id = referral_thread_open(referral_id=referral_id, by=by)
    with transaction.atomic():
        attachment = messaging.attachment_upload(user=by, thread_id=thread_id, upload=upload)
        messaging.message_send(
            user=by,
            thread_id=thread_id,
            client_id=f"referral-{referral_id}-att-{attachment.pk}"[:64],
            body=note,
            attachment_ids=[str(attachment.pk)],
        )
        attachment.refresh_from_db()
    return attachment


def referral_advise(*, referral_id: int, by: User, advice: Any) -> Referral:
    """Advice first: the specialist answers in the conversation instead of taking the patient.

    requested/received → in-progress (advice given). The referral leaves the
    queue (it was answered). The referrer may close it with the advice, or the
    specialist converts it into a referral (``referral_convert``).
    """
    from consult import services as messaging
    from consult.models import Participant, Thread

    advice = _text(advice, "advice", required=True, limit=8000)
    with transaction.atomic():
        referral, _roles = _receiving_action(referral_id, by, allowed_roles={"receiving"})
        _require_status(referral, [S.REQUESTED, S.RECEIVED], _("answered with advice"))
        if referral.routing_state != R.ROUTED:
            raise Conflict(_("This referral is not in a queue."), code="not_routed")
        _leave_queue(referral, free_capacity=False)
        before = referral.status
        referral.status = S.IN_PROGRESS
        referral.advised_at = timezone.now()
        referral.receiving_clinician = by
        referral.save(update_fields=["status", "advised_at", "receiving_clinician"])
        _event(
            referral,
            actor=by,
            action="advised",
            from_status=before,
            to_status=S.IN_PROGRESS,
            note=advice,
        )
        thread_id = _thread(referral, by, messaging, Thread, Participant)
        count = ReferralEvent.objects.filter(referral=referral, action="advised").count()
        messaging.message_send(
            user=by,
            thread_id=thread_id,
            client_id=f"referral-{referral.pk}-advice-{count}",
            body=advice,
        )
        outbox = Outbox()
        _outbox_status(outbox, referral, "referral.advised")
        outbox.send_on_commit()
        _grant(referral, by, by)
    return referral


def referral_convert(*, referral_id: int, by: User, note: Any = "") -> Referral:
    """Turn an advice request into a referral: the patient is accepted for a physical visit."""
    note = _text(note, "note", required=False)
    with transaction.atomic():
        referral, _roles = _receiving_action(referral_id, by, allowed_roles={"receiving"})
        if referral.advised_at is None:
            raise Conflict(
                _("Only a request answered with advice can be converted."), code="invalid_state"
            )
        _require_status(referral, [S.IN_PROGRESS], _("converted"))
        referral.status = S.ACCEPTED
        referral.requested_mode = Referral.Mode.PHYSICAL
        referral.accepted_at = timezone.now()
        referral.save(update_fields=["status", "requested_mode", "accepted_at"])
        _event(
            referral,
            actor=by,
            action="converted",
            from_status=S.IN_PROGRESS,
            to_status=S.ACCEPTED,
            note=note,
        )
        outbox = Outbox()
        _outbox_status(outbox, referral, "referral.accepted")
        outbox.send_on_commit()
    return referral


def referral_schedule(
    *,
    referral_id: int,
    by: User,
    scheduled_for: datetime | None = None,
    slot_id: Any = None,
    request: Any = None,
) -> Referral:
    """accepted → ready ("scheduled"): a date for the patient, or a booked slot.

    With ``slot_id`` an appointment is booked for the patient with that slot's
    clinician (a video visit when the referral asked for remote consultation
    first, in person otherwise).
    """
    from scheduler import appointment_services

    if slot_id is None and scheduled_for is None:
        raise DomainError(
            _("Give a slot or a date."), fields={"slot_id": [_("This field is required.")]}
        )
    with transaction.atomic():
        referral, _roles = _receiving_action(
            referral_id, by, allowed_roles={"receiving", "receiving_coordinator"}
        )
        _require_status(referral, [S.ACCEPTED, S.READY], _("scheduled"))
        if slot_id is not None:
            appointment = appointment_services.appointment_book_for_referral(
                referral=referral, slot_id=slot_id, by=by
            )
            scheduled_for = appointment.start
        before = referral.status
        referral.status = S.READY
        referral.scheduled_for = scheduled_for
        referral.save(update_fields=["status", "scheduled_for"])
        _event(
            referral,
            actor=by,
            action="scheduled",
            from_status=before,
            to_status=S.READY,
            note=timezone.localtime(scheduled_for).isoformat() if scheduled_for else "",
        )
        outbox = Outbox()
        _outbox_status(outbox, referral, "referral.scheduled")
        outbox.send_on_commit()
    return referral


def referral_start(*, referral_id: int, by: User) -> Referral:
    """The patient is being seen or treated: accepted/ready → in-progress."""
    with transaction.atomic():
        referral, _roles = _receiving_action(referral_id, by, allowed_roles={"receiving"})
        _require_status(referral, [S.ACCEPTED, S.READY], _("started"))
        before = referral.status
        referral.status = S.IN_PROGRESS
        referral.save(update_fields=["status"])
        _event(referral, actor=by, action="started", from_status=before, to_status=S.IN_PROGRESS)
        outbox = Outbox()
        _outbox_status(outbox, referral, "referral.started")
        outbox.send_on_commit()
    return referral


def referral_complete(*, referral_id: int, by: User, care_plan: Any) -> Referral:
    """Treatment (or advice) ended: → completed, with a counter-referral back.

    The counter-referral goes to the referring, lower-level facility with the
    care plan; it closes the loop the board counts. The referrer may also close
    an advice-only request, with the advice as the plan.
    """
    care_plan = _text(care_plan, "care_plan", required=True, limit=MAX_SUMMARY)
    with transaction.atomic():
        referral = _locked(referral_id)
        roles = referral_roles(user=by, referral=referral)
        allowed = {"receiving"}
        if referral.advised_at is not None and referral.status == S.IN_PROGRESS:
            allowed.add("requester")
        _require(roles, allowed)
        _require_status(referral, [S.ACCEPTED, S.READY, S.IN_PROGRESS], _("completed"))
        before = referral.status
        now = timezone.now()
        referral.status = S.COMPLETED
        referral.completed_at = now
        referral.closed_at = now
        referral.save(update_fields=["status", "completed_at", "closed_at"])
        _end_grants(referral, by, after=REFERRAL_FOLLOW_UP)
        CounterReferral.objects.create(
            referral=referral,
            from_facility=referral.target_facility,
            to_facility=referral.requesting_facility,
            author=by,
            care_plan=care_plan,
        )
        _event(
            referral,
            actor=by,
            action="completed",
            from_status=before,
            to_status=S.COMPLETED,
            note=care_plan,
        )
        outbox = Outbox()
        _outbox_status(outbox, referral, "referral.completed")
        outbox.send_on_commit()
    return referral


def counter_referral_acknowledge(*, referral_id: int, by: User) -> CounterReferral:
    """The referring side has read the care plan. Idempotent."""
    with transaction.atomic():
        referral = _locked(referral_id)
        _require(referral_roles(user=by, referral=referral), {"requester", "referring_coordinator"})
        counter = CounterReferral.objects.select_for_update().filter(referral=referral).first()
        if counter is None:
            raise NotFound(_("This referral has no counter-referral yet."))
        if counter.acknowledged_at is None:
            counter.acknowledged_at = timezone.now()
            counter.save(update_fields=["acknowledged_at"])
            _event(referral, actor=by, action="counter_referral_acknowledged")
    return counter


def referral_cancel(*, referral_id: int, by: User, reason: Any, request: Any = None) -> Referral:
    """Any open referral → cancelled, with a reason, by the referrer or a coordinator of
    either side. Frees the place it held in a queue today.
    """
    reason = _text(reason, "reason", required=True)
    with transaction.atomic():
        referral = _locked(referral_id)
        roles = referral_roles(user=by, referral=referral)
        _require(roles, {"requester", "referring_coordinator", "receiving_coordinator"})
        _require_status(
            referral,
            [S.DRAFT, S.REQUESTED, S.RECEIVED, S.ACCEPTED, S.READY, S.IN_PROGRESS],
            _("cancelled"),
        )
        _leave_queue(referral, free_capacity=referral.status in WAITING_STATUSES)
        before = referral.status
        referral.status = S.CANCELLED
        referral.status_reason = reason
        referral.closed_at = timezone.now()
        fields = ["status", "status_reason", "closed_at"]
        if referral.routing_state in (R.PENDING, R.NO_SLOT):
            referral.routing_state = R.NONE
            fields.append("routing_state")
        referral.save(update_fields=fields)
        _end_grants(referral, by)
        _event(
            referral,
            actor=by,
            action="cancelled",
            from_status=before,
            to_status=S.CANCELLED,
            note=reason,
        )
        outbox = Outbox()
        _outbox_status(outbox, referral, "referral.cancelled")
        outbox.send_on_commit()
        if "requester" not in roles:
            _audit_coordinator(
                user=by, referral=referral, action="cancel", why=reason, request=request
            )
    return referral


# --- Coordinators ----------------------------------------------------------------------------


def _coordinator_referrals(ids: Any, by: User) -> list[Referral]:
    if not isinstance(ids, list) or not ids or not all(isinstance(i, int) for i in ids):
        raise DomainError(
            _("Choose at least one referral."),
            fields={"referral_ids": [_("A list of referral ids.")]},
        )
    if len(ids) > 500:
        raise DomainError(
            _("At most 500 referrals at a time."), fields={"referral_ids": [_("Too many.")]}
        )
    scope = coordinator_scope(user=by)
    if scope.empty:
        raise AccessDenied(_("Only coordinators can do this."))
    referrals = list(
        Referral.objects.select_for_update(of=("self",))
        .select_related("patient__user", "requesting_facility", "target_facility")
        .filter(pk__in=sorted(set(ids)))
        .order_by("pk")
    )
    found = {r.pk for r in referrals}
    outside = [
        r.pk
        for r in referrals
        if not (scope.covers(r.requesting_facility) or scope.covers(r.target_facility))
    ]
    missing = sorted(set(ids) - found) + outside
    if missing:
        raise DomainError(
            _("Some referrals are not on your board."),
            code="not_found",
            fields={"referral_ids": [str(i) for i in missing]},
        )
    return referrals


def referrals_bulk_accept(
    *, referral_ids: Any, by: User, reason: Any, request: Any = None
) -> list[int]:
    """A coordinator accepts several waiting referrals for their facility; each audited."""
    reason = _text(reason, "reason", required=True)
    accepted = []
    with transaction.atomic():
        referrals = _coordinator_referrals(referral_ids, by)
        scope = coordinator_scope(user=by)
        refused = [
            r.pk
            for r in referrals
            if not scope.covers(r.target_facility)
            or r.status not in WAITING_STATUSES
            or r.routing_state != R.ROUTED
        ]
        if refused:
            raise Conflict(
                _("Only referrals waiting in one of your queues can be accepted."),
                code="invalid_state",
                fields={"referral_ids": [str(i) for i in refused]},
            )
        # Every queue row first, in id order: each accept below writes an audit event,
        # whose lock must come after the queue locks (the order the single-referral
        # actions use), or two coordinators' transactions could deadlock.
        list(
            Queue.objects.select_for_update()
            .filter(pk__in={r.queue_id for r in referrals})
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        for referral in referrals:
            referral_accept(referral_id=referral.pk, by=by, note=reason, request=request)
            accepted.append(referral.pk)
    return accepted


def referrals_bulk_reroute(
    *, referral_ids: Any, by: User, reason: Any, request: Any = None
) -> RouteReport:
    """A coordinator sends referrals elsewhere (never back to where they are); each audited.

    Waiting referrals (not yet accepted) and those on the no-slot worklist can be
    re-routed; the current facility is excluded from now on.
    """
    reason = _text(reason, "reason", required=True)
    with transaction.atomic():
        referrals = _coordinator_referrals(referral_ids, by)
        refused = [
            r.pk
            for r in referrals
            if not (
                (r.status in WAITING_STATUSES and r.routing_state == R.ROUTED)
                or (r.status == S.REQUESTED and r.routing_state == R.NO_SLOT)
            )
        ]
        if refused:
            raise Conflict(
                _("Only waiting referrals and the no-slot worklist can be re-routed."),
                code="invalid_state",
                fields={"referral_ids": [str(i) for i in refused]},
            )
        for referral in referrals:
            _make_pending_for_reroute(referral, by=by, note=reason)
        report = referral_route_many(
            referral_ids=[r.pk for r in referrals], method=M.COORDINATOR, by=by
        )
        for referral in referrals:
            _audit_coordinator(
                user=by, referral=referral, action="reroute", why=reason, request=request
            )
    return report


def _make_pending_for_reroute(referral: Referral, *, by: User | None, note: str) -> None:
    """Ask for a new routing decision, excluding the current facility. Caller holds the lock."""
    excluded = set(referral.excluded_facility_ids or [])
    if referral.target_facility_id is not None:
        excluded.add(referral.target_facility_id)
    before = referral.status
    _end_grants(referral, by)
    referral.excluded_facility_ids = sorted(excluded)
    referral.status = S.REQUESTED
    referral.received_at = None
    referral.routing_state = R.PENDING
    referral.save(update_fields=["excluded_facility_ids", "status", "received_at", "routing_state"])
    _event(
        referral,
        actor=by,
        action="reroute_requested",
        from_status=before,
        to_status=S.REQUESTED,
        note=note,
    )


# --- Beat: service levels, the worklist, the sweeper, re-optimisation -------------------------


def _escalate(
    referral: Referral, *, now: datetime, note: str, event: str, coordinators: list[int]
) -> None:
    """Escalation level 1, once (the caller holds the referral's row lock): recorded in
    the history and told, after commit, to both boards and to the coordinators."""
    referral.escalation_level = 1
    referral.escalated_at = now
    referral.save(update_fields=["escalation_level", "escalated_at"])
    _event(referral, actor=None, action="escalated", note=note)
    outbox = Outbox()
    _outbox_status(outbox, referral, event)
    for user_id in coordinators:
        outbox.user(user_id, event, {"referral": referral.pk})
    outbox.send_on_commit()


@dataclass
class EscalationReport:
    escalated: list[int] = field(default_factory=list)
    rerouted: list[int] = field(default_factory=list)
    worklist_overdue: list[int] = field(default_factory=list)


def referral_escalate_overdue(*, now: datetime | None = None, limit: int = 500) -> EscalationReport:
    """What is overdue goes up: first to the province coordinator, then to the next facility.

    1. A waiting referral past its accept-by time (``ServiceLevel``) is escalated
       once: the receiving province's coordinators are notified, the board shows it.
    2. Still not accepted ``reroute_after_minutes`` after that, it is re-routed,
       never to the same facility again (it may land on the no-slot worklist).
    3. A no-slot referral past its contact-by time is escalated to the referring
       province's coordinators the same way.

    Each referral is handled in its own transaction and taken with SKIP LOCKED,
    so two runs (or a run and a clinician accepting) never act on it twice.
    """
    from telehealth.models import CoordinatorAssignment

    now = now or timezone.now()
    levels = service_levels()
    report = EscalationReport()

    def province_coordinators(facility: Facility) -> list[int]:
        return list(
            CoordinatorAssignment.objects.filter(
                Q(province_id=facility.province_id) | Q(facility=facility)
            ).values_list("user_id", flat=True)
        )

    overdue = list(
        Referral.objects.filter(
            status__in=WAITING_STATUSES,
            routing_state=R.ROUTED,
            escalation_level=0,
            accept_due_at__lt=now,
        )
        .order_by("accept_due_at")
        .values_list("pk", flat=True)[:limit]
    )
    for referral_id in overdue:
        with transaction.atomic():
            referral = (
                Referral.objects.select_for_update(skip_locked=True, of=("self",))
                .select_related("target_facility", "requesting_facility", "patient__user")
                .filter(
                    pk=referral_id,
                    status__in=WAITING_STATUSES,
                    routing_state=R.ROUTED,
                    escalation_level=0,
                    accept_due_at__lt=now,
                )
                .first()
            )
            if referral is None:
                continue
            _escalate(
                referral,
                now=now,
                note="accept-by time passed",
                event="referral.overdue",
                coordinators=province_coordinators(referral.target_facility),
            )
            report.escalated.append(referral.pk)

    escalated = Referral.objects.filter(
        status__in=WAITING_STATUSES, routing_state=R.ROUTED, escalation_level=1
    ).values_list("pk", "priority", "escalated_at")[:limit]
    for referral_id, priority, escalated_at in list(escalated):
        if levels[priority].reroute_due(escalated_at) > now:
            continue
        with transaction.atomic():
            referral = (
                Referral.objects.select_for_update(skip_locked=True, of=("self",))
                .filter(
                    pk=referral_id,
                    status__in=WAITING_STATUSES,
                    routing_state=R.ROUTED,
                    escalation_level=1,
                )
                .first()
            )
            if referral is None:
                continue
            _make_pending_for_reroute(referral, by=None, note="not accepted after escalation")
            referral_route_many(referral_ids=[referral.pk], method=M.ESCALATION)
            report.rerouted.append(referral.pk)

    stale = list(
        Referral.objects.filter(
            status=S.REQUESTED,
            routing_state=R.NO_SLOT,
            escalation_level=0,
            contact_due_at__lt=now,
        ).values_list("pk", flat=True)[:limit]
    )
    for referral_id in stale:
        with transaction.atomic():
            referral = (
                Referral.objects.select_for_update(skip_locked=True, of=("self",))
                .select_related("requesting_facility", "patient__user")
                .filter(pk=referral_id, routing_state=R.NO_SLOT, escalation_level=0)
                .first()
            )
            if referral is None:
                continue
            _escalate(
                referral,
                now=now,
                note="no slot: contact-by time passed",
                event="referral.no_slot_overdue",
                coordinators=province_coordinators(referral.requesting_facility),
            )
            report.worklist_overdue.append(referral.pk)
    return report


def referral_retry_no_slot(*, limit: int = 2000) -> RouteReport:
    """Try the no-slot worklist again (capacity frees up, a new day starts)."""
    ids = list(
        Referral.objects.filter(status=S.REQUESTED, routing_state=R.NO_SLOT)
        .order_by("no_slot_since")
        .values_list("pk", flat=True)[:limit]
    )
    report = RouteReport()
    for start in range(0, len(ids), 200):
        chunk = ids[start : start + 200]
        with transaction.atomic():
            taken = list(
                Referral.objects.select_for_update(skip_locked=True)
                .filter(pk__in=chunk, routing_state=R.NO_SLOT, status=S.REQUESTED)
                .values_list("pk", flat=True)
            )
            Referral.objects.filter(pk__in=taken).update(routing_state=R.PENDING)
            part = referral_route_many(referral_ids=taken, method=M.RETRY)
        report.assigned += part.assigned
        report.no_slot += part.no_slot
        report.deferred += part.deferred
    return report


def referrals_pending_stale(
    *, older_than: timedelta = timedelta(seconds=30), limit: int = 5000
) -> list[int]:
    """Referrals still waiting for a routing decision after ``older_than``: their task was
    lost (a broker restart) or deferred. The sweeper sends them to the router again."""
    cutoff = timezone.now() - older_than
    return list(
        Referral.objects.filter(routing_state=R.PENDING, requested_at__lt=cutoff)
        .order_by("requested_at")
        .values_list("pk", flat=True)[:limit]
    )


@dataclass
class ReoptimiseReport:
    considered: int = 0
    moved: list[int] = field(default_factory=list)
    cost_before: float = 0.0
    cost_after: float = 0.0


def referral_reoptimise(*, limit: int = 5000) -> ReoptimiseReport:
    """Re-optimise today's waiting routine and urgent referrals as a transportation problem.

    Referrals routed today, still ``requested`` (nobody opened them), and the
    no-slot worklist, are the demand; each queue's capacity today (what is left
    plus what these referrals hold) is the supply; arc costs are the router's
    static costs (level preference and distance). The shared min-cost-flow
    solver (``telehealth.assignment``) gives the optimum; referrals whose
    optimal facility differs from their current one are re-routed through
    ``referral_route_many`` with the plan (method ``batch``), keeping their
    accept-by time. Emergencies are never moved.
    """
    from telehealth.assignment import solve_transportation

    today = local_today()
    rows = list(
        Referral.objects.filter(
            Q(routing_state=R.ROUTED, status=S.REQUESTED, queue_day=today)
            | Q(routing_state=R.NO_SLOT, status=S.REQUESTED),
            priority__in=[Priority.ROUTINE, Priority.URGENT],
        )
        .order_by("requested_at")
        .values(
            "pk",
            "requesting_facility_id",
            "specialty_id",
            "priority",
            "target_facility_id",
            "excluded_facility_ids",
        )[:limit]
    )
    report = ReoptimiseReport(considered=len(rows))
    if not rows:
        return report
    index = routing.network_index(facility_ids={r["requesting_facility_id"] for r in rows})
    arcs_demand: list[int] = []
    arcs_supply: list[int] = []
    arcs_cost: list[int] = []
    supply_keys: dict[tuple[int, int], int] = {}
    current_cost = 0.0
    for i, row in enumerate(rows):
        options, _complete = routing.candidates(
            index,
            origin_id=row["requesting_facility_id"],
            specialty_id=row["specialty_id"],
            emergency=False,
            excluded=set(row["excluded_facility_ids"] or []),
        )
        for option in options:
            key = (option.facility_id, row["specialty_id"])
            j = supply_keys.setdefault(key, len(supply_keys))
            arcs_demand.append(i)
            arcs_supply.append(j)
            arcs_cost.append(int(option.static_cost * 10))
            if option.facility_id == row["target_facility_id"]:
                current_cost += option.static_cost
    state = _queue_snapshot(set(supply_keys), today, index)
    held: dict[tuple[int, int], int] = {}
    for row in rows:
        if row["target_facility_id"] is not None:
            key = (row["target_facility_id"], row["specialty_id"])
            held[key] = held.get(key, 0) + 1
    supply = np.zeros(len(supply_keys), dtype=np.int64)
    for key, j in supply_keys.items():
        supply[j] = max(state[key[1]][key[0]].remaining, 0) + held.get(key, 0)
    solution = solve_transportation(
        demand=np.ones(len(rows), dtype=np.int64),
        supply=supply,
        arc_demand=np.array(arcs_demand, dtype=np.int64),
        arc_supply=np.array(arcs_supply, dtype=np.int64),
        arc_cost=np.array(arcs_cost, dtype=np.int64),
        unmet_cost=int(routing.LEVEL_STEP_KM * 100),
    )
    by_index = {j: key for key, j in supply_keys.items()}
    plan: dict[int, int] = {}
    for arc in np.nonzero(solution.flow)[0]:
        row = rows[int(arcs_demand[arc])]
        facility_id = by_index[int(arcs_supply[arc])][0]
        if facility_id != row["target_facility_id"]:
            plan[row["pk"]] = facility_id
    report.cost_before = round(current_cost, 1)
    report.cost_after = round(solution.cost / 10, 1)
    if not plan:
        return report
    # Moves are made one transaction per chunk; a referral opened meanwhile is left alone.
    ids = sorted(plan)
    for start in range(0, len(ids), 200):
        chunk = ids[start : start + 200]
        with transaction.atomic():
            taken = list(
                Referral.objects.select_for_update(skip_locked=True)
                .filter(
                    Q(routing_state=R.ROUTED, status=S.REQUESTED)
                    | Q(routing_state=R.NO_SLOT, status=S.REQUESTED),
                    pk__in=chunk,
                )
                .values_list("pk", flat=True)
            )
            Referral.objects.filter(pk__in=taken).update(routing_state=R.PENDING)
            moved = referral_route_many(referral_ids=taken, method=M.BATCH, plan=plan)
            report.moved.extend(moved.assigned)
    return report


# --- For other services ------------------------------------------------------------------------


def clinicians_receiving(*, referral: Referral) -> list[ClinicianProfile]:
    """Clinicians who may take the referral at its receiving facility."""
    if referral.target_facility_id is None:
        return []
    return list(
        ClinicianProfile.objects.filter(
            facility_id=referral.target_facility_id, specialties=referral.specialty_id
        ).select_related("user")
    )


__all__ = [
    "RouteReport",
    "counter_referral_acknowledge",
    "is_receiving_clinician",
    "referral_accept",
    "referral_advise",
    "referral_attachment_add",
    "referral_cancel",
    "referral_complete",
    "referral_convert",
    "referral_create",
    "referral_escalate_overdue",
    "referral_receive",
    "referral_reject",
    "referral_reoptimise",
    "referral_retry_no_slot",
    "referral_route",
    "referral_route_many",
    "referral_schedule",
    "referral_start",
    "referral_submit",
    "referral_thread_open",
    "referrals_bulk_accept",
    "referrals_bulk_reroute",
    "referrals_pending_stale",
]
