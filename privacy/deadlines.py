"""Deadlines of a patient's data request (Decree 356/2025/ND-CP; docs/privacy.md).

Two clocks start when a request is received:

* **respond by**: the end of the second working day after the day of receipt
  (``PRIVACY_REQUEST_RESPOND_WORKING_DAYS``). A coordinator responds by taking the
  request (the patient sees it is in progress) or refusing it with a reason.
  Working days are Monday to Friday except Vietnam's public holidays (Tết
  included), plus the Saturdays made working days in exchange for a bridge
  holiday, from the ``holidays`` package's calendar.
* **complete by**: the end of the day a number of days after receipt, by kind
  (``PRIVACY_REQUEST_COMPLETE_DAYS``); a coordinator may extend it once, by
  ``PRIVACY_REQUEST_EXTENSION_DAYS``, saying why.

Both are the end of a day in ``TIME_ZONE`` (Vietnam), wherever the server runs.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import holidays
from django.conf import settings

# Fills itself in for any year asked about (expand=True is the default).
_VIETNAM = holidays.country_holidays("VN")


def is_working_day(day: date) -> bool:
    """Monday to Friday but public holidays, and the Saturdays the government makes
    working days in exchange for a bridge holiday (the calendar knows both)."""
    return _VIETNAM.is_working_day(day)


def _local() -> ZoneInfo:
    return ZoneInfo(settings.TIME_ZONE)


def _end_of(day: date) -> datetime:
    return datetime.combine(day, time.max, tzinfo=_local())


def working_days_after(received: datetime, days: int) -> datetime:
    """The end of the ``days``-th working day after the day ``received`` falls on in
    Vietnam (that day itself is not counted, whatever the hour)."""
    day = received.astimezone(_local()).date()
    counted = 0
    while counted < days:
        day += timedelta(days=1)
        if is_working_day(day):
            counted += 1
    return _end_of(day)


def respond_by(received: datetime) -> datetime:
    return working_days_after(received, settings.PRIVACY_REQUEST_RESPOND_WORKING_DAYS)


def extended(due: datetime) -> datetime:
    """The completion deadline after the one extension the decree allows."""
    days = settings.PRIVACY_REQUEST_EXTENSION_DAYS
    return _end_of(due.astimezone(_local()).date() + timedelta(days=days))


def complete_by(received: datetime, kind: str) -> datetime:
    days = settings.PRIVACY_REQUEST_COMPLETE_DAYS[kind]
    return _end_of(received.astimezone(_local()).date() + timedelta(days=days))
