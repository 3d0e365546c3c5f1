"""Celery tasks of the doctor network: thin, take ids, idempotent."""

from __future__ import annotations

from celery import shared_task

from network import services


@shared_task(name="network.tasks.assignment_run_execute")
def assignment_run_execute(run_id: int) -> int | None:
    """Compute the proposals of a queued auto-assignment run. Running it twice does
    nothing more: a run that is no longer queued is left alone."""
    run = services.do_assignment_run_execute(run_id=run_id)
    return run.assigned if run is not None else None


@shared_task(name="network.tasks.assignment_runs_sweep")
def assignment_runs_sweep() -> list[int]:
    """Runs whose task was lost (broker away, worker died) get it again (beat: every minute)."""
    return services.do_assignment_runs_sweep()


@shared_task(name="network.tasks.assignment_run_apply")
def assignment_run_apply(run_id: int, applied_by_id: int) -> str:
    """Turn a run's accepted proposals into mentorship requests; resumable."""
    return services.do_assignment_apply(
        run_id=run_id,
        applied_by_id=applied_by_id,
        on_progress=lambda percent: services.assignment_apply_progress(
            run_id=run_id, percent=percent
        ),
    ).state


@shared_task(name="network.tasks.mentorship_requests_expire")
def mentorship_requests_expire(older_than_days: int = 30) -> int:
    """End requests nobody answered within a month (beat: daily)."""
    return services.do_mentorship_requests_expire(older_than_days=older_than_days)
