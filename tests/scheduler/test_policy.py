"""The doctor's day window: local days, widened across a midnight."""

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from scheduler.policy import LOCAL_TZ, doctor_day_window


def _local(*args: int) -> datetime:
    return datetime(*args, tzinfo=LOCAL_TZ)


def test_at_noon_the_day_is_the_local_day():
    # given noon in Hà Nội
    now = _local(2026, 12, 1, 12, 0)
    # when the day's window is taken
    start, end = doctor_day_window(now)
    # then it is midnight to midnight, local time
    assert (start, end) == (_local(2026, 12, 1), _local(2026, 12, 2))


def test_late_in_the_evening_the_day_reaches_past_midnight():
    # given 23:55 local time, which is 16:55 UTC
    now = _local(2026, 12, 1, 23, 55)
    # when the day's window is taken
    start, end = doctor_day_window(now)
    # then a visit at 00:05 tomorrow is in it, and the day still starts this midnight
    assert start == _local(2026, 12, 1)
    assert end == now + timedelta(hours=4)
    assert start <= _local(2026, 12, 2, 0, 5) < end


def test_just_after_midnight_the_day_still_holds_the_last_evening():
    # given 00:05 local time
    now = _local(2026, 12, 2, 0, 5)
    # when the day's window is taken
    start, end = doctor_day_window(now)
    # then the patient still waiting for the 23:50 visit is on it, and the day runs to midnight
    assert start == now - timedelta(hours=2)
    assert start <= _local(2026, 12, 1, 23, 50)
    assert end == _local(2026, 12, 3)


def test_the_window_does_not_depend_on_the_servers_zone():
    # given the same instant written in UTC
    now = datetime(2026, 12, 1, 5, 0, tzinfo=LOCAL_TZ).astimezone(ZoneInfo("UTC"))
    # when the day's window is taken
    start, _ = doctor_day_window(now)
    # then the day is still Hà Nội's
    assert start == _local(2026, 12, 1)
