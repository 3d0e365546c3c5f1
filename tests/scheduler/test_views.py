"""The pages: booking and my referrals for patients, the doctor's day, the coordinator
board with its heat table. Vietnamese by default."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from scheduler import appointment_services, services
from scheduler.models import Slot
from tests.factories import ClinicianFactory, PatientFactory
from tests.scheduler.conftest import province_coordinator, submitted_referral, weekly_schedule

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.scheduler.urls")]


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_the_booking_page_lists_clinicians_and_my_appointments_in_vietnamese():
    doctor = ClinicianFactory(specialty_codes=["cardiology"], user__full_name="Trần Văn Tâm")
    schedule = weekly_schedule(doctor)
    appointment_services.slots_generate(schedule_id=schedule.pk)
    patient = PatientFactory()
    slot = Slot.objects.filter(
        schedule=schedule, start__gt=timezone.now() + timedelta(hours=3)
    ).first()
    appointment_services.appointment_book(by=patient.user, slot_id=slot.pk, mode="video")

    page = _client(patient.user).get("/appointments/?specialty=cardiology").content.decode()

    assert "Đặt lịch khám" in page
    assert "Trần Văn Tâm" in page
    assert "Lịch hẹn sắp tới của tôi" in page
    assert "khám qua video" in page
    assert "js/scheduler_booking.js" in page


def test_my_referrals_shows_my_place_in_the_queue(network):
    submitted_referral(network)
    mine = submitted_referral(network)

    page = _client(mine.patient.user).get("/referrals/").content.decode()

    assert "Chuyển tuyến của tôi" in page
    assert "Vị trí của bạn trong hàng đợi" in page
    assert '<dd class="position"><strong>2</strong>' in page
    assert "Trung tâm Y tế Gần" in page


def test_a_referral_on_the_no_slot_worklist_says_who_will_call_and_when(db):
    from tests.scheduler.conftest import build_network

    network = build_network({"near": 0, "far": 0, "provincial": 0, "central": 0})
    referral = submitted_referral(network)

    page = _client(referral.patient.user).get("/referrals/").content.decode()

    assert "Chưa cơ sở nào còn chỗ hôm nay" in page


def test_the_doctors_day_shows_the_queue_and_todays_visits(network):
    referral = submitted_referral(network, priority="urgent")

    page = _client(network.cardiologist_near.user).get("/doctor/day/").content.decode()

    assert "Hàng đợi chuyển tuyến: Tim mạch" in page
    assert referral.patient.user.display_name in page
    assert "Trả lời bằng tư vấn" in page
    assert "Hôm nay không có lượt khám." in page


def test_the_doctors_day_is_for_clinicians_only():
    response = _client(PatientFactory().user).get("/doctor/day/")

    assert response.status_code == 403


def test_the_board_shows_counts_loop_closure_and_the_heat_table(network):
    coordinator = province_coordinator()
    referral = submitted_referral(network)
    services.referral_accept(referral_id=referral.pk, by=network.cardiologist_near.user)
    services.referral_complete(
        referral_id=referral.pk, by=network.cardiologist_near.user, care_plan="Ổn"
    )
    submitted_referral(network, priority="emergency")

    page = _client(coordinator).get("/coordinator/board/").content.decode()

    assert "Bảng điều phối" in page
    assert 'data-topic="board.province.01"' in page
    assert "Tỷ lệ khép vòng bằng phiếu chuyển ngược" in page
    assert "100%" in page
    assert "Tải của cơ sở hôm nay" in page
    # Trung tâm Y tế Gần: both cardiology places taken today (the completed one and the emergency).
    # (the load is a class in tenths: the Content-Security-Policy forbids style attributes)
    assert 'class="heat-cell heat-10" title="2/2, 1 đang chờ"' in page
    assert "js/scheduler_board.js" in page


def test_the_board_is_for_coordinators_only(network):
    assert _client(network.referrer.user).get("/coordinator/board/").status_code == 403


def test_the_referral_form_offers_only_my_patients_in_vietnamese(network):
    from tests.scheduler.conftest import patient_of

    mine = patient_of(network.referrer, user__full_name="Đỗ Thị Mận")
    ended = patient_of(network.referrer, user__full_name="Vũ Văn Cũ")
    ended.care_relationships.update(ends_at=timezone.now() - timedelta(days=1))
    someone_elses = patient_of(network.cardiologist_near, user__full_name="Phạm Văn Khác")

    page = _client(network.referrer.user).get("/referrals/new/").content.decode()

    assert "Tạo phiếu chuyển tuyến" in page
    assert f'<option value="{mine.pk}">Đỗ Thị Mận' in page
    assert "Vũ Văn Cũ" not in page
    assert someone_elses.user.display_name not in page
    assert '<label for="reason">Lý do chuyển tuyến' in page
    assert 'value="emergency"' in page and "Cấp cứu" in page
    assert 'value="remote_first" checked' in page
    assert "js/scheduler_referral_new.js" in page


def test_the_referral_form_only_offers_specialties_someone_offers(network):
    from tests.scheduler.conftest import patient_of

    patient_of(network.referrer)

    page = _client(network.referrer.user).get("/referrals/new/").content.decode()

    assert '<option value="cardiology">Tim mạch</option>' in page
    assert 'value="dermatology"' not in page


def test_reading_my_patients_for_the_referral_form_is_audited(network):
    from telehealth.models import AuditEvent
    from tests.scheduler.conftest import patient_of

    patient_of(network.referrer)
    patient_of(network.referrer)

    _client(network.referrer.user).get("/referrals/new/")

    event = AuditEvent.objects.filter(actor=network.referrer.user).order_by("-pk").first()
    assert event.action == AuditEvent.Action.READ
    assert event.target == "patients:in_my_care"
    assert "(2 patients)" in event.reason


def test_a_clinician_with_no_patients_is_told_why_the_form_is_empty(network):
    page = _client(network.cardiologist_provincial.user).get("/referrals/new/").content.decode()

    assert "Bạn chưa có bệnh nhân nào" in page
    assert 'id="referral-form"' not in page


def test_the_referral_form_is_for_clinicians_only():
    assert _client(PatientFactory().user).get("/referrals/new/").status_code == 403
    assert Client().get("/referrals/new/").status_code == 302  # to the sign-in page


def test_the_doctors_day_links_to_the_referral_form(network):
    page = _client(network.referrer.user).get("/doctor/day/").content.decode()

    assert 'href="/referrals/new/"' in page


def test_a_referral_is_received_not_agreed_to_in_vietnamese(network):
    """The network app's catalogue comes first and says "Chấp nhận" (a mentorship)."""
    submitted_referral(network)

    day = _client(network.cardiologist_near.user).get("/doctor/day/").content.decode()
    board = _client(province_coordinator()).get("/coordinator/board/").content.decode()

    assert 'data-action="accept">Tiếp nhận</button>' in day
    assert 'data-bulk="accept">Tiếp nhận các phiếu đã chọn</button>' in board


def test_my_referrals_says_where_the_one_just_sent_went_and_its_ticket(network):
    referral = submitted_referral(network)

    page = _client(network.referrer.user).get(f"/referrals/?sent={referral.pk}").content.decode()

    assert f"Đã gửi phiếu chuyển tuyến #{referral.pk}" in page
    assert f"Phiếu đã được chuyển đến Trung tâm Y tế Gần, số thứ tự {referral.ticket_label}" in page
    assert f'id="referral-{referral.pk}"' in page
    assert "Vị trí trong hàng đợi" in page


def test_a_referral_still_being_routed_is_marked_for_the_page_to_follow(network):
    referral = submitted_referral(network, route=False)

    page = _client(network.referrer.user).get(f"/referrals/?sent={referral.pk}").content.decode()

    assert 'data-routing="pending"' in page
    assert "Đang tìm cơ sở gần nhất có thể tiếp nhận người bệnh…" in page


def test_the_doctors_day_shows_who_waits_in_a_video_visits_waiting_room():
    # given a video visit booked for today, whose patient has checked in
    from datetime import time

    from django.utils import timezone

    from consult import visit_services
    from scheduler import appointment_services
    from scheduler.models import Slot
    from tests.factories import ClinicianFactory
    from tests.scheduler.conftest import weekly_schedule

    doctor = ClinicianFactory(user__full_name="BS. Hải")
    schedule = weekly_schedule(
        doctor, visit_minutes=5, buffer_minutes=0, hours=(time(0, 0), time(23, 59))
    )
    appointment_services.slots_generate(schedule_id=schedule.pk)
    slot = Slot.objects.filter(schedule=schedule, start__gt=timezone.now()).order_by("start")[1]
    patient = PatientFactory(user__full_name="Lý Thị Thu")
    appointment = appointment_services.appointment_book(
        by=patient.user, slot_id=slot.pk, mode="video"
    )
    visit_services.visit_open_waiting_room(visit_id=appointment.visit_id, by=doctor.user)
    visit_services.visit_check_in(visit_id=appointment.visit_id, user=patient.user, device_check={})
    # when the doctor opens their day
    page = _client(doctor.user).get("/doctor/day/").content.decode()
    # then the patient is shown waiting, and the page watches that visit for changes
    assert "Đang ở phòng chờ: Lý Thị Thu" in page
    assert f'data-visits="{appointment.visit_id}"' in page


def test_a_patient_finds_a_doctor_by_name_without_typing_accents():
    # given two doctors taking bookings
    from tests.factories import ClinicianFactory
    from tests.scheduler.conftest import weekly_schedule

    weekly_schedule(ClinicianFactory(user__full_name="Nguyễn Thị Hằng"))
    weekly_schedule(ClinicianFactory(user__full_name="Trần Văn Bình"))
    # when a patient searches "nguyen hang" on the booking page
    page = _client(PatientFactory().user).get("/appointments/", {"q": "nguyen hang"})
    html = page.content.decode()
    # then only the matching doctor is offered
    assert "Nguyễn Thị Hằng" in html
    assert "Trần Văn Bình" not in html


def test_the_doctors_day_audits_the_visits_it_shows_even_with_empty_queues():
    # given a doctor with one booked visit today and no referral queue
    from datetime import time

    from django.utils import timezone

    from scheduler import appointment_services
    from scheduler.models import Slot
    from telehealth.models import AuditEvent
    from tests.factories import ClinicianFactory
    from tests.scheduler.conftest import weekly_schedule

    doctor = ClinicianFactory()
    schedule = weekly_schedule(
        doctor, visit_minutes=5, buffer_minutes=0, hours=(time(0, 0), time(23, 59))
    )
    appointment_services.slots_generate(schedule_id=schedule.pk)
    slot = Slot.objects.filter(schedule=schedule, start__gt=timezone.now()).order_by("start")[1]
    appointment_services.appointment_book(by=PatientFactory().user, slot_id=slot.pk, mode="video")
    # when the doctor opens their day
    _client(doctor.user).get("/doctor/day/")
    # then reading the patient's visit on it is in the audit log
    assert AuditEvent.objects.filter(
        actor=doctor.user, target__startswith="scheduler.doctor_day:"
    ).exists()


def test_late_in_the_evening_the_doctors_day_lists_the_visit_just_after_midnight(monkeypatch):
    # given a visit booked for 00:05 tomorrow, local time
    from datetime import datetime, time

    from scheduler import policy, views
    from scheduler.policy import LOCAL_TZ, local_today

    doctor = ClinicianFactory()
    schedule = weekly_schedule(
        doctor, visit_minutes=5, buffer_minutes=0, hours=(time(0, 0), time(23, 59))
    )
    appointment_services.slots_generate(schedule_id=schedule.pk)
    after_midnight = datetime.combine(
        local_today() + timedelta(days=1), time(0, 5), tzinfo=LOCAL_TZ
    )
    slot = Slot.objects.get(schedule=schedule, start=after_midnight)
    patient = PatientFactory(user__full_name="Đỗ Văn Khánh")
    appointment_services.appointment_book(by=patient.user, slot_id=slot.pk, mode="video")
    # when the doctor opens their day at 23:55 the evening before
    evening = after_midnight - timedelta(minutes=10)
    monkeypatch.setattr(views, "doctor_day_window", lambda: policy.doctor_day_window(evening))
    page = _client(doctor.user).get("/doctor/day/").content.decode()
    # then the visit is on it, with its date since it is tomorrow's
    assert "Đỗ Văn Khánh" in page
    assert after_midnight.strftime("%d/%m 00:05") in page
