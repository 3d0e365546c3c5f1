"""The routing policy tables' defaults, and the clock arithmetic of the service levels.

The tables themselves (``LevelRule``, ``ServiceLevel``) are in ``scheduler.models``;
migration 0002 loads the defaults below, and a coordinator with admin rights
can change them. Deadlines count working days Monday to Friday in
Asia/Ho_Chi_Minh (public holidays are not modelled yet).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from time import monotonic
from zoneinfo import ZoneInfo

from django.utils import timezone

LOCAL_TZ = ZoneInfo("Asia/Ho_Chi_Minh")

# (from level, to level, preference, farthest km or None). Levels: 1 central,
# 2 provincial, 3 district / regional, 4 commune. A commune station refers to
# its district level first, then the province, then the centre; a lateral move
# is allowed where a same-level facility nearby offers what the referrer lacks.
DEFAULT_LEVEL_RULES: list[tuple[int, int, int, float | None]] = [
    (4, 3, 0, 60.0),
    (4, 2, 1, 150.0),
    (4, 1, 2, None),
    (3, 3, 0, 40.0),
    (3, 2, 1, 150.0),
    (3, 1, 2, None),
    (2, 2, 0, 100.0),
    (2, 1, 1, None),
    (1, 1, 0, None),
]

# priority: (accept within minutes, or working days; re-route after escalation (min);
# no-slot contact within (min)).
DEFAULT_SERVICE_LEVELS: dict[str, dict[str, int | None]] = {
    "emergency": {
        "accept_within_minutes": 15,
        "accept_within_working_days": None,
        "reroute_after_minutes": 10,
        "no_slot_contact_minutes": 5,
    },
    "urgent": {
        "accept_within_minutes": 120,
        "accept_within_working_days": None,
        "reroute_after_minutes": 60,
        "no_slot_contact_minutes": 30,
    },
    "routine": {
        "accept_within_minutes": None,
        "accept_within_working_days": 3,
        "reroute_after_minutes": 24 * 60,
        "no_slot_contact_minutes": 8 * 60,
    },
}


def policy_defaults_load(*, LevelRule, ServiceLevel) -> None:
    """Insert the default rules that are missing; keep rows someone has changed.

    Takes the model classes so the data migration can pass its historical models.
    """
    existing = set(LevelRule.objects.values_list("from_level", "to_level"))
    LevelRule.objects.bulk_create(
        [
            LevelRule(from_level=f, to_level=t, preference=p, max_distance_km=km)
            for f, t, p, km in DEFAULT_LEVEL_RULES
            if (f, t) not in existing
        ]
    )
    have = set(ServiceLevel.objects.values_list("priority", flat=True))
    ServiceLevel.objects.bulk_create(
        [
            ServiceLevel(priority=priority, **values)
            for priority, values in DEFAULT_SERVICE_LEVELS.items()
            if priority not in have
        ]
    )


def local_today(now: datetime | None = None) -> date:
    return timezone.localtime(now or timezone.now(), LOCAL_TZ).date()


# A doctor's day does not stop at midnight for a doctor working the evening: "my day"
# reaches this far past now, and this far back before it, when that crosses a midnight.
DAY_LOOKAHEAD = timedelta(hours=4)
DAY_LOOKBACK = timedelta(hours=2)


def doctor_day_window(now: datetime | None = None) -> tuple[datetime, datetime]:
    """The visits a doctor's day lists: today (local time), widened to the next four hours
    and the last two when those cross a midnight, so at 23:50 the 00:05 visit is there
    and at 00:05 the patient still waiting for the 23:50 visit is too."""
    now = now or timezone.now()
    start = datetime.combine(local_today(now), datetime.min.time(), tzinfo=LOCAL_TZ)
    end = start + timedelta(days=1)
    return min(start, now - DAY_LOOKBACK), max(end, now + DAY_LOOKAHEAD)


def add_working_days(start: datetime, days: int) -> datetime:
    """``start`` plus ``days`` working days (Mon–Fri), at the same local time of day.

    A start on a weekend counts from Monday 00:00, so a referral sent on
    Saturday is due at the end of Wednesday for three working days.
    """
    local = timezone.localtime(start, LOCAL_TZ)
    if local.weekday() >= 5:
        monday = local.date() + timedelta(days=7 - local.weekday())
        local = datetime.combine(monday, time(0, 0), tzinfo=LOCAL_TZ)
    remaining = days
    while remaining > 0:
        local = local + timedelta(days=1)
        if local.weekday() < 5:
            remaining -= 1
    return local


@dataclass(frozen=True)
class Deadlines:
    accept_within_minutes: int | None
    accept_within_working_days: int | None
    reroute_after_minutes: int
    no_slot_contact_minutes: int

    def accept_due(self, start: datetime) -> datetime:
        if self.accept_within_working_days is not None:
            return add_working_days(start, self.accept_within_working_days)
        return start + timedelta(minutes=self.accept_within_minutes or 0)

    def contact_due(self, start: datetime) -> datetime:
        return start + timedelta(minutes=self.no_slot_contact_minutes)

    def reroute_due(self, escalated_at: datetime) -> datetime:
        return escalated_at + timedelta(minutes=self.reroute_after_minutes)


# Like the network index: a process re-reads the (tiny) table at most this often.
SERVICE_LEVELS_TTL_SECONDS = 1.0
_levels_cache: tuple[float, dict[str, Deadlines]] | None = None


def service_levels() -> dict[str, Deadlines]:
    """The service levels by priority, from the table (defaults for a missing row)."""
    global _levels_cache
    now = monotonic()
    if _levels_cache is not None and now - _levels_cache[0] < SERVICE_LEVELS_TTL_SECONDS:
        return _levels_cache[1]
    levels = _service_levels_read()
    _levels_cache = (now, levels)
    return levels


def _service_levels_read() -> dict[str, Deadlines]:
    from scheduler.models import ServiceLevel

    levels = {p: Deadlines(**values) for p, values in DEFAULT_SERVICE_LEVELS.items()}  # type: ignore[arg-type]
    for row in ServiceLevel.objects.all():
        levels[row.priority] = Deadlines(
            accept_within_minutes=row.accept_within_minutes,
            accept_within_working_days=row.accept_within_working_days,
            reroute_after_minutes=row.reroute_after_minutes,
            no_slot_contact_minutes=row.no_slot_contact_minutes,
        )
    return levels
