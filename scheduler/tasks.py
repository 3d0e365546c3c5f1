"""Celery tasks of the scheduler: thin, take ids, idempotent. Each calls one service.

Routing runs with the project's Celery settings: acks late, reject on worker
lost, prefetch 1, and (with Redis) a 60 s visibility timeout, so a task whose
worker dies is delivered again; the service makes the second delivery a no-op
for what the first one committed.
"""

from __future__ import annotations

from celery import shared_task

# Referrals another transaction holds are tried again shortly; after this many
# tries the sweeper (route_sweep, every minute) still finds them.
ROUTE_RETRIES = 20

# The periodic sweeps are acknowledged when they start, unlike routing: one can run
# longer than the broker's visibility timeout (60 s with Redis), which would hand it
# to a second worker while the first is still at it. A sweep lost with its worker
# costs nothing: the next beat tick sweeps the same rows again.
SWEEP = {"acks_late": False}


@shared_task(name="scheduler.route_referral", bind=True, max_retries=ROUTE_RETRIES)
def route_referral(self, referral_id: int) -> str:  # type: ignore[no-untyped-def]
    """Route one submitted referral (no-op if it is not waiting for routing)."""
    return _route(self, [referral_id], single=True)["result"]


@shared_task(name="scheduler.route_referrals", bind=True, max_retries=ROUTE_RETRIES)
def route_referrals(self, referral_ids: list[int]) -> dict:  # type: ignore[no-untyped-def]
    """Route a batch of submitted referrals; exactly once each (see ``referral_route_many``).

    Batching is only a transport saving: the service locks and decides per
    referral, so a referral in two batches (or two deliveries of one batch) is
    still routed once.
    """
    return _route(self, referral_ids)


def _route(task, referral_ids: list[int], single: bool = False) -> dict:  # type: ignore[no-untyped-def]
    from scheduler.services import referral_route_many

    report = referral_route_many(referral_ids=referral_ids)
    again = report.busy + report.deferred
    if again and task.request.retries < ROUTE_RETRIES and not task.request.is_eager:
        # A new message for just these (this one is acknowledged): another
        # transaction holds them now, for example a killed worker's connection
        # that the database has not closed yet.
        raise task.retry(
            args=(again[0],) if single else (again,),
            countdown=min(1 + task.request.retries, 10),
        )
    return {
        "result": ("assigned" if report.assigned else "no_slot" if report.no_slot else "skipped"),
        "assigned": len(report.assigned),
        "no_slot": len(report.no_slot),
        "skipped": len(report.skipped),
        "busy": len(report.busy),
        "deferred": len(report.deferred),
    }


@shared_task(name="scheduler.route_sweep", **SWEEP)
def route_sweep() -> int:
    """Beat, every minute: send referrals still waiting for routing back to the router
    (a lost task message, a deferred referral). Returns how many."""
    from scheduler.services import referrals_pending_stale

    ids = referrals_pending_stale()
    for start in range(0, len(ids), 200):
        route_referrals.delay(ids[start : start + 200])
    return len(ids)


@shared_task(name="scheduler.retry_no_slot", **SWEEP)
def retry_no_slot() -> int:
    """Beat, every 15 minutes: try the no-slot worklist again."""
    from scheduler.services import referral_retry_no_slot

    return len(referral_retry_no_slot().assigned)


@shared_task(name="scheduler.escalate_overdue", **SWEEP)
def escalate_overdue() -> dict[str, int]:
    """Beat, every minute: alert province coordinators, then re-route, what is overdue."""
    from scheduler.services import referral_escalate_overdue

    report = referral_escalate_overdue()
    return {
        "escalated": len(report.escalated),
        "rerouted": len(report.rerouted),
        "worklist_overdue": len(report.worklist_overdue),
    }


@shared_task(name="scheduler.reoptimise", **SWEEP)
def reoptimise() -> int:
    """Beat, every 15 minutes: re-optimise today's waiting routine and urgent referrals."""
    from scheduler.services import referral_reoptimise

    return len(referral_reoptimise().moved)


@shared_task(name="scheduler.send_reminders", **SWEEP)
def send_reminders() -> int:
    """Beat, every minute: the day-before and fifteen-minute reminders that are due."""
    from scheduler.appointment_services import appointment_reminders_send

    return appointment_reminders_send()


@shared_task(name="scheduler.mark_no_shows", **SWEEP)
def mark_no_shows() -> dict[str, int]:
    """Beat, every 5 minutes: settle appointments that are over (fulfilled or no-show)."""
    from scheduler.appointment_services import appointments_mark_no_shows

    return appointments_mark_no_shows()


@shared_task(name="scheduler.offer_freed_slot")
def offer_freed_slot(slot_id: int) -> int | None:
    """Offer a freed slot to the waiting list (no-op if it is no longer free)."""
    from scheduler.appointment_services import waitlist_offer_slot

    entry = waitlist_offer_slot(slot_id=slot_id)
    return entry.pk if entry is not None else None


@shared_task(name="scheduler.expire_offers", **SWEEP)
def expire_offers() -> int:
    """Beat, every minute: waiting-list offers not taken in time move on."""
    from scheduler.appointment_services import waitlist_expire_offers

    return waitlist_expire_offers()


@shared_task(name="scheduler.generate_slots", **SWEEP)
def generate_slots() -> int:
    """Beat, nightly: extend every schedule's slots to its horizon."""
    from scheduler.appointment_services import slots_generate_all

    return slots_generate_all()
