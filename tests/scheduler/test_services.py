"""The referral workflow: from a draft to the counter-referral, with its recorded history,
advice first, the coordinators' actions (audited) and the service levels."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from consult.models import Message, Thread
from scheduler import selectors, services
from scheduler.models import CounterReferral, Queue, Referral, ReferralEvent, RoutingDecision
from telehealth.errors import AccessDenied, Conflict, DomainError, NotFound
from telehealth.models import AuditEvent, CareRelationship
from telehealth.selectors import patient_access_basis
from tests.factories import ClinicianFactory, PatientFactory
from tests.scheduler.conftest import (
    build_network,
    facility_coordinator,
    patient_of,
    province_coordinator,
    submitted_referral,
)

pytestmark = pytest.mark.django_db


def _history(referral: Referral) -> list[tuple[str, str, str]]:
    return list(
        ReferralEvent.objects.filter(referral=referral)
        .order_by("at", "id")
        .values_list("action", "from_status", "to_status")
    )


def test_a_health_worker_refers_a_patient_in_their_care_as_a_draft(network):
    patient = patient_of(network.referrer)

    referral = services.referral_create(
        by=network.referrer.user,
        patient_id=patient.pk,
        specialty_code="cardiology",
        reason="Đau ngực",
        priority="urgent",
        requested_mode="physical",
    )

    assert referral.status == "draft"
    assert referral.requesting_facility == network.station
    assert referral.routing_state == ""
    assert _history(referral) == [("created", "", "draft")]
    assert AuditEvent.objects.filter(
        actor=network.referrer.user, patient=patient, action="read"
    ).exists()


def test_bad_input_names_every_field(network):
    with pytest.raises(DomainError) as error:
        services.referral_create(
            by=network.referrer.user,
            patient_id="x",
            specialty_code="nope",
            reason="  ",
            priority="soon",
            requested_mode="teleport",
        )

    assert set(error.value.fields) == {
        "patient_id",
        "specialty",
        "reason",
        "priority",
        "requested_mode",
    }


def test_a_clinician_cannot_refer_a_patient_they_do_not_care_for(network):
    stranger = PatientFactory()

    with pytest.raises(NotFound):
        services.referral_create(
            by=network.referrer.user,
            patient_id=stranger.pk,
            specialty_code="cardiology",
            reason="Đau ngực",
        )


def test_a_patient_cannot_write_a_referral(network):
    patient = patient_of(network.referrer)

    with pytest.raises(AccessDenied):
        services.referral_create(
            by=patient.user, patient_id=patient.pk, specialty_code="cardiology", reason="x"
        )


def test_the_whole_loop_is_recorded_and_closed_by_a_counter_referral(network):
    referral = submitted_referral(network, mode="physical")
    doctor = network.cardiologist_near.user

    services.referral_receive(referral_id=referral.pk, by=doctor)
    services.referral_accept(referral_id=referral.pk, by=doctor, note="Nhận bệnh nhân")
    services.referral_schedule(
        referral_id=referral.pk, by=doctor, scheduled_for=timezone.now() + timedelta(days=1)
    )
    services.referral_start(referral_id=referral.pk, by=doctor)
    services.referral_complete(
        referral_id=referral.pk, by=doctor, care_plan="Tiếp tục thuốc, tái khám sau 1 tháng."
    )

    referral.refresh_from_db()
    assert referral.status == "completed"
    assert _history(referral) == [
        ("created", "", "draft"),
        ("submitted", "draft", "requested"),
        ("received", "requested", "received"),
        ("accepted", "received", "accepted"),
        ("scheduled", "accepted", "ready"),
        ("started", "ready", "in-progress"),
        ("completed", "in-progress", "completed"),
    ]
    counter = CounterReferral.objects.get(referral=referral)
    assert (counter.from_facility, counter.to_facility) == (network.district_near, network.station)
    assert counter.care_plan.startswith("Tiếp tục")
    # The receiving doctor may now read the patient's record.
    assert patient_access_basis(user=doctor, patient=referral.patient) == "referral"
    queue = Queue.objects.get(facility=network.district_near)
    assert (queue.waiting, queue.assigned_today) == (0, 1)


def test_the_board_counts_the_share_of_loops_closed(network):
    coordinator = province_coordinator()
    doctor = network.cardiologist_near.user
    closed, open_ = submitted_referral(network), submitted_referral(network)
    for referral in (closed, open_):
        services.referral_accept(referral_id=referral.pk, by=doctor)
    services.referral_start(referral_id=closed.pk, by=doctor)
    services.referral_complete(referral_id=closed.pk, by=doctor, care_plan="Kế hoạch")

    board = selectors.board_get(user=coordinator, province_code="01")

    assert board["loop_closure"] == {"accepted": 2, "closed": 1, "share": 0.5, "days": 90}


def test_a_doctor_without_the_specialty_cannot_accept(network):
    referral = submitted_referral(network)
    colleague = ClinicianFactory(facility=network.district_near, specialty_codes=["pediatrics"])

    with pytest.raises(NotFound):
        services.referral_accept(referral_id=referral.pk, by=colleague.user)


def test_accepting_a_referral_that_is_already_completed_is_refused(network):
    referral = submitted_referral(network)
    doctor = network.cardiologist_near.user
    services.referral_accept(referral_id=referral.pk, by=doctor)
    services.referral_complete(referral_id=referral.pk, by=doctor, care_plan="Xong")

    with pytest.raises(Conflict):
        services.referral_reject(referral_id=referral.pk, by=doctor, reason="muộn")


def test_a_rejection_keeps_its_reason_and_frees_the_place(network):
    referral = submitted_referral(network)

    services.referral_reject(
        referral_id=referral.pk, by=network.cardiologist_near.user, reason="Quản lý tại tuyến xã"
    )

    referral.refresh_from_db()
    assert (referral.status, referral.status_reason) == ("rejected", "Quản lý tại tuyến xã")
    queue = Queue.objects.get(facility=network.district_near)
    assert (queue.waiting, queue.assigned_today) == (0, 0)
    with pytest.raises(DomainError) as error:
        services.referral_reject(
            referral_id=referral.pk, by=network.cardiologist_near.user, reason=""
        )
    assert "reason" in error.value.fields


def test_a_rejection_with_reroute_sends_it_to_the_next_facility_never_back(network):
    referral = submitted_referral(network)

    services.referral_reject(
        referral_id=referral.pk,
        by=network.cardiologist_near.user,
        reason="Hết giường",
        reroute=True,
    )

    referral.refresh_from_db()
    assert referral.status == "requested"
    assert referral.target_facility == network.district_far
    assert network.district_near.pk in referral.excluded_facility_ids
    decisions = list(
        RoutingDecision.objects.filter(referral=referral).values_list("method", "generation")
    )
    assert decisions == [("first", 1), ("rejection", 2)]
    assert [a for a, _, _ in _history(referral)][-2:] == ["rejected", "rerouted"]


def test_advice_first_then_converted_into_a_referral(network):
    referral = submitted_referral(network)
    doctor = network.cardiologist_near.user

    services.referral_advise(
        referral_id=referral.pk, by=doctor, advice="Làm điện tâm đồ, gửi kết quả lên."
    )
    referral.refresh_from_db()
    assert referral.status == "in-progress" and referral.advised_at is not None
    thread = Thread.objects.get(pk=referral.thread_id)
    assert (thread.kind, thread.context) == ("referral", f"scheduler.referral:{referral.pk}")
    assert Message.objects.filter(
        thread=thread, sender=doctor, body__startswith="Làm điện"
    ).exists()

    services.referral_convert(referral_id=referral.pk, by=doctor, note="Cần khám trực tiếp")

    referral.refresh_from_db()
    assert (referral.status, referral.requested_mode) == ("accepted", "physical")
    assert [a for a, _, _ in _history(referral)][-2:] == ["advised", "converted"]


def test_the_referrer_can_close_an_advice_request_with_the_advice(network):
    referral = submitted_referral(network)
    services.referral_advise(
        referral_id=referral.pk, by=network.cardiologist_near.user, advice="Dùng thuốc X"
    )

    services.referral_complete(
        referral_id=referral.pk, by=network.referrer.user, care_plan="Dùng thuốc X"
    )

    referral.refresh_from_db()
    assert referral.status == "completed"
    assert CounterReferral.objects.filter(referral=referral).exists()


def test_attachments_go_through_the_messaging_engine(network, tmp_path, settings):
    from django.core.files.uploadedfile import SimpleUploadedFile

    settings.PRIVATE_MEDIA_ROOT = tmp_path
    referral = submitted_referral(network)
    pdf = SimpleUploadedFile(
        "ecg.pdf", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj<<>>endobj\n", "application/pdf"
    )

    attachment = services.referral_attachment_add(
        referral_id=referral.pk, by=network.referrer.user, upload=pdf, note="Điện tâm đồ"
    )

    referral.refresh_from_db()
    assert attachment.thread_id == referral.thread_id
    assert attachment.message.body == "Điện tâm đồ"


def test_the_referrer_cancels_and_the_place_is_freed(network):
    referral = submitted_referral(network)

    services.referral_cancel(referral_id=referral.pk, by=network.referrer.user, reason="Đỡ rồi")

    referral.refresh_from_db()
    assert referral.status == "cancelled"
    assert Queue.objects.get(facility=network.district_near).assigned_today == 0
    assert selectors.queue_position(referral=referral) is None


def test_queue_positions_put_emergencies_first_then_the_earliest_deadline(db):
    network = build_network({"near": 10})
    routine = submitted_referral(network)
    urgent = submitted_referral(network, priority="urgent")
    emergency = submitted_referral(network, priority="emergency")
    # An old routine referral whose deadline is nearer than the fresh urgent one's.
    Referral.objects.filter(pk=routine.pk).update(
        accept_due_at=timezone.now() + timedelta(minutes=30)
    )

    positions = {
        name: selectors.queue_position(referral=Referral.objects.get(pk=r.pk))
        for name, r in [("routine", routine), ("urgent", urgent), ("emergency", emergency)]
    }

    assert positions == {"emergency": 1, "routine": 2, "urgent": 3}


def test_someone_unrelated_cannot_read_a_referral_and_the_attempt_is_audited(network):
    referral = submitted_referral(network)
    stranger = ClinicianFactory()

    with pytest.raises(NotFound):
        selectors.referral_get_for_user(user=stranger.user, referral_id=referral.pk)

    assert AuditEvent.objects.filter(actor=stranger.user, action="denied").exists()


def test_each_side_sees_the_referral_with_its_role(network):
    referral = submitted_referral(network)
    coordinator = facility_coordinator(network.district_near)

    roles = {
        name: selectors.referral_get_for_user(user=user, referral_id=referral.pk)[1]
        for name, user in [
            ("patient", referral.patient.user),
            ("referrer", network.referrer.user),
            ("receiving", network.cardiologist_near.user),
            ("coordinator", coordinator),
        ]
    }

    assert roles == {
        "patient": {"patient"},
        "referrer": {"requester"},
        "receiving": {"receiving"},
        "coordinator": {"receiving_coordinator"},
    }


def test_a_coordinator_bulk_accepts_with_a_reason_each_audited(network):
    coordinator = facility_coordinator(network.district_near)
    first, second = submitted_referral(network), submitted_referral(network)

    accepted = services.referrals_bulk_accept(
        referral_ids=[first.pk, second.pk], by=coordinator, reason="Điều phối nhận thay khoa"
    )

    assert accepted == [first.pk, second.pk]
    assert set(Referral.objects.filter(pk__in=accepted).values_list("status", flat=True)) == {
        "accepted"
    }
    audits = AuditEvent.objects.filter(
        actor=coordinator, action="update", target__endswith=":accept"
    )
    assert audits.count() == 2
    assert set(audits.values_list("reason", flat=True)) == {"Điều phối nhận thay khoa"}


def test_a_coordinator_cannot_act_outside_their_scope(network):
    other = facility_coordinator(network.provincial)
    referral = submitted_referral(network)

    with pytest.raises(DomainError) as error:
        services.referrals_bulk_accept(referral_ids=[referral.pk], by=other, reason="x")

    assert error.value.fields == {"referral_ids": [str(referral.pk)]}


def test_a_province_coordinator_bulk_reroutes_and_it_is_audited(network):
    coordinator = province_coordinator()
    referral = submitted_referral(network)

    report = services.referrals_bulk_reroute(
        referral_ids=[referral.pk], by=coordinator, reason="Khoa tim quá tải"
    )

    referral.refresh_from_db()
    assert report.assigned == [referral.pk]
    assert referral.target_facility == network.district_far
    decision = RoutingDecision.objects.get(referral=referral, generation=2)
    assert (decision.method, decision.decided_by) == ("coordinator", coordinator)
    assert AuditEvent.objects.filter(
        actor=coordinator,
        target=f"scheduler.referral:{referral.pk}:reroute",
        reason="Khoa tim quá tải",
    ).exists()
    near = Queue.objects.get(facility=network.district_near)
    assert (near.waiting, near.assigned_today) == (0, 0)


def test_overdue_goes_to_the_province_coordinator_then_to_the_next_facility(network):
    referral = submitted_referral(network, priority="urgent")
    late = referral.accept_due_at + timedelta(minutes=1)

    first = services.referral_escalate_overdue(now=late)
    referral.refresh_from_db()
    assert first.escalated == [referral.pk] and first.rerouted == []
    assert referral.escalation_level == 1 and referral.target_facility == network.district_near

    again = services.referral_escalate_overdue(now=late + timedelta(minutes=5))
    assert again.escalated == [] and again.rerouted == []  # re-route only after 60 minutes

    third = services.referral_escalate_overdue(now=late + timedelta(minutes=61))
    referral.refresh_from_db()
    assert third.rerouted == [referral.pk]
    assert referral.target_facility == network.district_far
    assert referral.escalation_level == 0
    actions = [a for a, _, _ in _history(referral)]
    assert actions[-2:] == ["escalated", "reroute_requested"]
    assert RoutingDecision.objects.get(referral=referral, generation=2).method == "escalation"


def test_an_accepted_referral_is_never_escalated(network):
    referral = submitted_referral(network, priority="emergency")
    services.referral_accept(referral_id=referral.pk, by=network.cardiologist_near.user)

    report = services.referral_escalate_overdue(now=timezone.now() + timedelta(days=10))

    assert report.escalated == [] and report.rerouted == []


def test_the_no_slot_worklist_is_escalated_at_its_contact_deadline_and_retried(db):
    network = build_network({"near": 0, "far": 0, "provincial": 0, "central": 0})
    referral = submitted_referral(network)

    report = services.referral_escalate_overdue(now=referral.contact_due_at + timedelta(seconds=1))
    assert report.worklist_overdue == [referral.pk]

    network.district_near.offerings.filter(specialty__code="cardiology").update(
        daily_referral_capacity=3
    )
    retried = services.referral_retry_no_slot()

    referral.refresh_from_db()
    assert retried.assigned == [referral.pk]
    assert referral.routing_state == "routed" and referral.target_facility == network.district_near


def test_the_sweeper_finds_referrals_whose_routing_task_was_lost(network):
    referral = submitted_referral(network, route=False)
    Referral.objects.filter(pk=referral.pk).update(
        requested_at=timezone.now() - timedelta(minutes=5)
    )

    assert services.referrals_pending_stale() == [referral.pk]


def test_batch_reoptimisation_moves_referrals_to_the_optimal_facilities(db):
    # Station A (km 0) and station B (km 18); centre "near" (km 10, one place) and
    # centre "B" (km 35, one place). First come, first served gives "near" to B's
    # patient (8 km) and sends A's 35 km: 43 km in all. The optimum is 10 + 17 = 27.
    from tests.factories import FacilityFactory
    from tests.scheduler.conftest import place

    network = build_network({"near": 1, "far": 0, "provincial": 0, "central": 0})
    station_b = FacilityFactory(code="TYT-B", level=4, **place(18))
    referrer_b = ClinicianFactory(facility=station_b, kind="health_worker")
    centre_b = FacilityFactory(code="TTYT-B", level=3, offers={"cardiology": 1}, **place(35))
    from_b = submitted_referral(_with_referrer(network, referrer_b))
    from_a = submitted_referral(network)
    assert (from_b.target_facility, from_a.target_facility) == (network.district_near, centre_b)

    report = services.referral_reoptimise()

    from_a.refresh_from_db()
    from_b.refresh_from_db()
    assert (from_a.target_facility, from_b.target_facility) == (network.district_near, centre_b)
    assert set(report.moved) == {from_a.pk, from_b.pk}
    assert report.cost_after < report.cost_before
    batch = RoutingDecision.objects.filter(method="batch")
    assert batch.count() == 2
    assert {d.reasons["rule"] for d in batch} == {"batch re-optimisation (transportation problem)"}
    # Capacity is still respected and the accept-by times did not move.
    assert Queue.objects.get(facility=network.district_near).assigned_today == 1
    assert Queue.objects.get(facility=centre_b).assigned_today == 1


def _with_referrer(network, referrer):
    from dataclasses import replace

    return replace(network, referrer=referrer)


def test_granted_access_follows_the_receiving_doctor_only(network):
    referral = submitted_referral(network)

    services.referral_accept(referral_id=referral.pk, by=network.cardiologist_near.user)

    grants = CareRelationship.objects.filter(source=f"scheduler.referral:{referral.pk}")
    assert list(grants.values_list("member", "kind")) == [
        (network.cardiologist_near.user_id, "referral")
    ]


def test_retrying_the_worklist_never_pushes_the_contact_deadline_out(db):
    network = build_network({"near": 0, "far": 0, "provincial": 0, "central": 0})
    referral = submitted_referral(network)
    deadline = referral.contact_due_at

    services.referral_retry_no_slot()
    services.referral_escalate_overdue(now=deadline + timedelta(seconds=1))
    services.referral_retry_no_slot()

    referral.refresh_from_db()
    assert referral.contact_due_at == deadline
    assert referral.escalation_level == 1
    assert RoutingDecision.objects.filter(referral=referral).count() == 3


def test_a_referral_scheduled_into_a_slot_gets_a_video_appointment(network):
    from scheduler import appointment_services
    from scheduler.models import Slot
    from tests.scheduler.conftest import weekly_schedule

    referral = submitted_referral(network)  # remote consultation first
    doctor = network.cardiologist_near
    schedule = weekly_schedule(doctor)
    appointment_services.slots_generate(schedule_id=schedule.pk)
    slot = Slot.objects.filter(schedule=schedule, start__gt=timezone.now() + timedelta(hours=2))[0]
    services.referral_accept(referral_id=referral.pk, by=doctor.user)

    services.referral_schedule(referral_id=referral.pk, by=doctor.user, slot_id=slot.pk)

    referral.refresh_from_db()
    appointment = referral.appointments.get()
    assert (referral.status, referral.scheduled_for) == ("ready", slot.start)
    assert appointment.mode == "video" and appointment.visit_id is not None
    assert appointment.patient == referral.patient


def test_cancelling_an_accepted_referral_does_not_shorten_the_queue_twice(network):
    # given two referrals waiting in the same queue, one of them accepted
    first = submitted_referral(network)
    second = submitted_referral(network)
    queue = Queue.objects.get(facility=network.district_near)
    assert queue.waiting == 2
    services.referral_accept(referral_id=first.pk, by=network.cardiologist_near.user)
    # when the accepted one is cancelled later
    services.referral_cancel(referral_id=first.pk, by=network.referrer.user, reason="Đã khỏi")
    # then only the one still waiting counts as waiting
    queue.refresh_from_db()
    assert queue.waiting == 1
    assert second.queue_id == queue.pk


@pytest.mark.parametrize("ending", ["cancel", "reroute"])
def test_the_receiving_side_loses_access_when_its_part_ends(network, ending):
    # given a referral received by the near cardiologist, who may now see the patient
    referral = submitted_referral(network)
    doctor = network.cardiologist_near.user
    services.referral_receive(referral_id=referral.pk, by=doctor)
    assert patient_access_basis(user=doctor, patient=referral.patient) == "referral"
    # when the referral is cancelled, or rejected and sent to another facility
    if ending == "cancel":
        services.referral_cancel(referral_id=referral.pk, by=network.referrer.user, reason="Thôi")
    else:
        services.referral_reject(
            referral_id=referral.pk, by=doctor, reason="Hết giường", reroute=True
        )
    # then the access the referral gave ends at once
    assert patient_access_basis(user=doctor, patient=referral.patient) is None


def test_after_completion_the_treating_doctor_keeps_access_for_the_follow_up_only(network):
    # given a referral accepted and completed by the near cardiologist
    referral = submitted_referral(network)
    doctor = network.cardiologist_near.user
    services.referral_accept(referral_id=referral.pk, by=doctor)
    services.referral_complete(referral_id=referral.pk, by=doctor, care_plan="Tái khám ở xã")
    # then their access ends by itself after the follow-up window
    grant = CareRelationship.objects.get(member=doctor, kind="referral")
    assert grant.ends_at is not None
    remaining = grant.ends_at - timezone.now()
    assert timedelta(days=29) < remaining <= services.REFERRAL_FOLLOW_UP


def test_a_rerouted_referral_picked_up_by_the_sweeper_gets_a_fresh_deadline(network):
    # given an urgent referral submitted a day ago, routed once, then sent back for a
    # new decision whose task was lost (the sweeper routes it with the first method)
    referral = submitted_referral(network, priority="urgent")
    Referral.objects.filter(pk=referral.pk).update(
        routing_state="pending", requested_at=timezone.now() - timedelta(days=1)
    )
    # when it is routed again
    services.referral_route(referral_id=referral.pk)
    # then the new facility has its own two hours, not a deadline already past
    referral.refresh_from_db()
    assert referral.route_generation == 2
    assert referral.accept_due_at > timezone.now() + timedelta(minutes=100)
