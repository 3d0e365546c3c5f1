"""privacy/deadlines.py: respond within two working days of receipt (Vietnam's
working week and public holidays), complete within the days of the request's kind;
and the worklist waits on whichever deadline is next."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone

from privacy import deadlines, selectors, services
from privacy.models import DataRequest
from tests.factories import PatientFactory

HANOI = ZoneInfo("Asia/Ho_Chi_Minh")


def at(day: str, hour: int = 10) -> datetime:
    return datetime.fromisoformat(day).replace(hour=hour, tzinfo=HANOI)


def ends(day: str) -> tuple[date, int, int]:
    return date.fromisoformat(day), 23, 59


def shape(moment: datetime) -> tuple[date, int, int]:
    local = moment.astimezone(HANOI)
    return local.date(), local.hour, local.minute


@pytest.mark.parametrize(
    ("received", "respond_by"),
    [
        # Monday → Wednesday: the day of receipt is not counted, whatever the hour.
        (at("2026-12-07", 8), "2026-12-09"),
        (at("2026-12-07", 23), "2026-12-09"),
        # Friday and Saturday → Tuesday: the weekend is not working time.
        (at("2026-12-11"), "2026-12-15"),
        (at("2026-12-12"), "2026-12-15"),
        # 18:00 UTC on Sunday is already Monday 01:00 in Vietnam: Monday's clock.
        (datetime(2026, 12, 13, 18, 0, tzinfo=ZoneInfo("UTC")), "2026-12-16"),
        # Saturday 22 August 2026 is a working day, made up for the 2 September bridge.
        (at("2026-08-21"), "2026-08-24"),
        # National Day (2 September, a Wednesday in 2026) is a holiday.
        (at("2026-09-01"), "2026-09-04"),
    ],
)
def test_respond_by_is_the_end_of_the_second_working_day_after_receipt(received, respond_by):
    assert shape(deadlines.respond_by(received)) == ends(respond_by)


def test_tet_holidays_are_not_working_days():
    # Tết Bính Ngọ: lunar new year's day is 17 February 2026.
    assert not deadlines.is_working_day(date(2026, 2, 17))
    received = at("2026-02-13")  # the Friday before
    respond_by = deadlines.respond_by(received).astimezone(HANOI).date()
    skipped = [
        received.date() + timedelta(days=n)
        for n in range(1, (respond_by - received.date()).days)
        if not deadlines.is_working_day(received.date() + timedelta(days=n))
    ]
    assert date(2026, 2, 17) in skipped and (respond_by - received.date()).days > 7


def test_complete_by_counts_the_days_of_the_kind(settings):
    received = at("2026-12-07", 15)
    # counted from the day in Vietnam: 18:00 UTC on the 6th is the 7th there
    late_utc = datetime(2026, 12, 6, 18, 0, tzinfo=ZoneInfo("UTC"))
    assert shape(deadlines.complete_by(late_utc, "restriction")) == ends("2026-12-22")

    assert shape(deadlines.complete_by(received, "restriction")) == ends("2026-12-22")
    assert shape(deadlines.complete_by(received, "correction")) == ends("2026-12-17")
    settings.PRIVACY_REQUEST_COMPLETE_DAYS = {
        **settings.PRIVACY_REQUEST_COMPLETE_DAYS,
        "deletion": 20,
    }
    assert shape(deadlines.complete_by(received, "deletion")) == ends("2026-12-27")


@pytest.mark.django_db
def test_a_request_not_responded_to_in_time_is_overdue_until_taken(coordinator):
    # given two requests received, one of them past its time to respond
    late = services.data_request_create(
        patient=(p := PatientFactory()), kind="correction", details="x", by=p.user
    )
    fresh = services.data_request_create(
        patient=(q := PatientFactory()), kind="correction", details="x", by=q.user
    )
    DataRequest.objects.filter(pk=late.pk).update(respond_by=timezone.now() - timedelta(hours=1))
    # then it leads the worklist and is the overdue list
    assert [r.pk for r in selectors.data_request_worklist(user=coordinator)] == [late.pk, fresh.pk]
    overdue = selectors.data_request_worklist(user=coordinator, state="overdue")
    assert [r.pk for r in overdue] == [late.pk] and overdue[0].is_overdue
    # when a coordinator takes it, it waits on completing, which is still ahead
    services.data_request_start(request_id=late.pk, by=coordinator)
    assert selectors.data_request_worklist(user=coordinator, state="overdue") == []
    late.refresh_from_db()
    assert not late.is_overdue and late.next_deadline == late.due_at


@pytest.mark.django_db
def test_a_coordinator_extends_the_completion_once_saying_why(patient, coordinator):
    from telehealth.errors import AccessDenied, Conflict
    from telehealth.models import AuditEvent

    made = services.data_request_create(
        patient=patient, kind="correction", details="Sai địa chỉ", by=patient.user
    )
    # the patient cannot extend their own request
    with pytest.raises(AccessDenied):
        services.data_request_extend(request_id=made.pk, by=patient.user, reason="x")

    extended = services.data_request_extend(
        request_id=made.pk, by=coordinator, reason="Chờ xác minh với xã"
    )

    assert shape(extended.due_at) == (
        timezone.localdate(made.due_at) + timedelta(days=15),
        23,
        59,
    )
    event = extended.events.get(action="extended")
    assert (event.note, event.actor) == ("Chờ xác minh với xã", coordinator)
    assert AuditEvent.objects.filter(
        target=f"privacy.data_request:{made.pk}:extended", patient=patient
    ).exists()
    audit = AuditEvent.objects.get(target=f"privacy.data_request:{made.pk}:extended")
    old, new = timezone.localtime(made.due_at), timezone.localtime(extended.due_at)
    assert f"due {old:%d/%m/%Y} -> {new:%d/%m/%Y}: Chờ xác minh với xã" == audit.reason
    # and only once
    with pytest.raises(Conflict):
        services.data_request_extend(request_id=made.pk, by=coordinator, reason="lần nữa")
    assert DataRequest.objects.get(pk=made.pk).due_at == extended.due_at


@pytest.mark.django_db
def test_a_request_already_late_is_not_extended(patient, coordinator):
    from telehealth.errors import Conflict

    made = services.data_request_create(
        patient=patient, kind="correction", details="x", by=patient.user
    )
    late = timezone.now() - timedelta(minutes=1)
    DataRequest.objects.filter(pk=made.pk).update(due_at=late)

    with pytest.raises(Conflict):
        services.data_request_extend(request_id=made.pk, by=coordinator, reason="muộn")
    assert DataRequest.objects.get(pk=made.pk).due_at == late
    # and the page does not offer what would be refused
    from django.test import Client

    from tests.factories import sign_in

    staff = Client()
    sign_in(staff, coordinator.username)
    page = staff.get(f"/privacy/requests/{made.pk}/").content.decode()
    assert "(quá hạn)" in page and 'id="extend-form"' not in page


@pytest.mark.django_db
def test_a_closed_request_is_not_extended(patient, coordinator):
    from telehealth.errors import Conflict

    made = services.data_request_create(
        patient=patient, kind="deletion", details="", by=patient.user
    )
    services.data_request_refuse(request_id=made.pk, by=coordinator, reason="Không")

    with pytest.raises(Conflict):
        services.data_request_extend(request_id=made.pk, by=coordinator, reason="x")


@pytest.mark.django_db
def test_the_patient_reads_the_new_date_and_why_on_the_page(patient, coordinator):
    from django.test import Client

    from tests.factories import sign_in

    made = services.data_request_create(
        patient=patient, kind="correction", details="Sai tên", by=patient.user
    )
    staff = Client()
    sign_in(staff, coordinator.username)
    page = staff.get(f"/privacy/requests/{made.pk}/").content.decode()
    assert 'id="extend-form"' in page

    answer = staff.post(
        f"/privacy/requests/{made.pk}/extend/", {"reason": "Chờ giấy tờ"}, follow=True
    )

    made.refresh_from_db()
    due = timezone.localtime(made.due_at).strftime("%d/%m/%Y")
    assert f"Đã gia hạn: yêu cầu nay cần hoàn tất trước {due}" in answer.content.decode()
    assert 'id="extend-form"' not in answer.content.decode()
    own = Client()
    sign_in(own, patient.user.username)
    mine = own.get(f"/privacy/requests/{made.pk}/").content.decode()
    assert "gia hạn thời hạn hoàn tất" in mine and "Chờ giấy tờ" in mine and due in mine
