"""privacy/services.py: consent given and withdrawn (history kept, never overwritten), what a
withdrawal blocks (recording, sharing with a new facility, case conferences, new video
visits), the emergency exception, and data-subject requests from received to done."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone
from rest_framework.authtoken.models import Token

from consult import services as messaging
from consult import visit_services
from consult.models import Thread, Visit, VisitRecordingSession
from privacy import deadlines, selectors, services
from privacy.models import (
    ConsentRecord,
    DataRequest,
    ProcessingRestriction,
    Purpose,
    RecordIsAppendOnly,
)
from privacy.notices import CURRENT_NOTICE
from privacy.selectors import ConsentRequired
from scheduler import services as referrals
from scheduler.models import Referral
from telehealth.errors import AccessDenied, Conflict, DomainError, NotFound
from telehealth.models import AuditEvent, CareRelationship, ClinicianProfile, User
from telehealth.selectors import patient_access_basis
from tests.factories import ClinicianFactory, PatientFactory, UserFactory
from tests.scheduler.conftest import build_network, patient_of, submitted_referral

pytestmark = pytest.mark.django_db


def withdraw(patient, purpose):
    return services.consent_withdraw(
        patient=patient, purpose=purpose, method="web", by=patient.user
    )


def running(visit):
    return VisitRecordingSession.objects.filter(visit=visit, ended_at__isnull=True).first()


# --- Consent: given, withdrawn, kept ------------------------------------------------------


def test_answering_the_notice_records_the_version_the_purposes_how_and_who():
    patient = PatientFactory(consent=False)

    record = services.consent_answer(
        patient=patient,
        purposes=[Purpose.RECORDING, Purpose.CARE],
        notice_version=CURRENT_NOTICE.version,
        method="web",
        by=patient.user,
    )

    assert record.notice_version == CURRENT_NOTICE.version
    assert record.purposes == [Purpose.CARE, Purpose.RECORDING]  # in the notice's order
    assert record.given == [Purpose.CARE, Purpose.RECORDING]
    assert (record.method, record.recorded_by, record.action) == ("web", patient.user, "answered")
    assert AuditEvent.objects.filter(
        target=f"privacy.consent:{record.pk}:answered", patient=patient
    )


def test_withdrawing_is_a_new_record_and_every_earlier_one_is_kept(patient):
    first = selectors.consent_current(patient=patient)

    withdrawn = withdraw(patient, Purpose.CASE_DISCUSSION)
    again = services.consent_give(
        patient=patient, purpose=Purpose.CASE_DISCUSSION, method="api", by=patient.user
    )

    history = list(selectors.consent_history(patient=patient))
    assert history == [again, withdrawn, first]
    assert withdrawn.withdrawn == [Purpose.CASE_DISCUSSION]
    assert Purpose.CASE_DISCUSSION not in withdrawn.purposes
    assert again.given == [Purpose.CASE_DISCUSSION] and again.action == "given"
    first.refresh_from_db()
    assert Purpose.CASE_DISCUSSION in first.purposes  # the old decision is untouched


def test_withdrawing_what_is_already_withdrawn_records_nothing(patient):
    withdraw(patient, Purpose.RECORDING)

    withdraw(patient, Purpose.RECORDING)

    assert ConsentRecord.objects.filter(patient=patient).count() == 2


def test_consent_records_cannot_be_changed_or_deleted(patient):
    record = selectors.consent_current(patient=patient)

    with pytest.raises(RecordIsAppendOnly):
        record.save()
    with pytest.raises(RecordIsAppendOnly):
        ConsentRecord.objects.filter(patient=patient).update(purposes=[])
    with pytest.raises(RecordIsAppendOnly):
        record.delete()


@pytest.mark.postgres
def test_postgresql_refuses_a_raw_update_of_consent_records(patient):
    from django.db import DatabaseError, transaction

    with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("UPDATE privacy_consentrecord SET purposes = '[]'")


def test_a_health_worker_records_a_signed_paper_form_with_its_date():
    patient = PatientFactory(consent=False)
    worker = ClinicianFactory(kind="health_worker")
    signed = timezone.now() - timedelta(days=2)

    record = services.consent_answer(
        patient=patient,
        purposes=[Purpose.CARE, Purpose.REFERRAL_SHARING],
        notice_version=CURRENT_NOTICE.version,
        method="paper",
        by=worker.user,
        decided_at=signed,
        note="Phiếu số 12",
    )

    assert (record.method, record.recorded_by, record.decided_at) == ("paper", worker.user, signed)
    assert selectors.consent_allows(patient=patient, purpose=Purpose.REFERRAL_SHARING)


def test_only_the_patient_answers_on_the_page_and_only_clinicians_record_paper(patient, doctor):
    someone = UserFactory()
    answer = {"purposes": [Purpose.CARE], "notice_version": CURRENT_NOTICE.version}

    with pytest.raises(AccessDenied):
        services.consent_answer(patient=patient, method="web", by=someone, **answer)
    with pytest.raises(AccessDenied):
        services.consent_answer(patient=patient, method="paper", by=patient.user, **answer)
    with pytest.raises(AccessDenied):
        services.consent_withdraw(patient=patient, purpose="care", method="web", by=doctor.user)


def test_bad_answers_are_refused_with_the_field_named(patient, doctor):
    with pytest.raises(DomainError) as unknown:
        services.consent_answer(
            patient=patient, purposes=["marketing"], notice_version=CURRENT_NOTICE.version,
            method="web", by=patient.user,
        )  # fmt: skip
    with pytest.raises(DomainError) as version:
        services.consent_answer(
            patient=patient, purposes=[], notice_version="1999", method="web", by=patient.user
        )
    with pytest.raises(DomainError) as future:
        services.consent_answer(
            patient=patient, purposes=[], notice_version=CURRENT_NOTICE.version, method="paper",
            by=doctor.user, decided_at=timezone.now() + timedelta(days=1),
        )  # fmt: skip

    assert "purposes" in unknown.value.fields
    assert "notice_version" in version.value.fields
    assert "signed_at" in future.value.fields


# --- What a withdrawal blocks: recording ----------------------------------------------------


def test_recording_cannot_start_after_the_patient_withdrew_it(live_visit, patient, doctor):
    withdraw(patient, Purpose.RECORDING)

    with pytest.raises(ConsentRequired) as refused:
        visit_services.visit_recording_start(visit_id=live_visit.pk, by=doctor.user)

    assert refused.value.code == "consent_withdrawn" and refused.value.status == 409
    assert running(live_visit) is None


def test_nobody_is_asked_to_agree_to_a_recording_the_patient_refused(live_visit, patient, doctor):
    # given a patient who withdrew their consent to recordings
    withdraw(patient, Purpose.RECORDING)
    # when the host asks the visit's participants
    with pytest.raises(ConsentRequired) as refused:
        visit_services.visit_recording_ask(visit_id=live_visit.pk, by=doctor.user)
    # then the host is told why at once, and nobody is asked
    assert refused.value.code == "consent_withdrawn" and refused.value.status == 409


def test_withdrawing_during_a_recording_stops_it_at_once(
    live_visit, patient, doctor, relay_calls, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        session = visit_services.visit_recording_start(visit_id=live_visit.pk, by=doctor.user)

    with django_capture_on_commit_callbacks(execute=True):
        withdraw(patient, Purpose.RECORDING)

    session.refresh_from_db()
    assert session.ended_at is not None and session.stop_reason == "consent"
    assert relay_calls[-1] == ("stop", live_visit.room, str(session.pk))


def test_a_restriction_request_stops_a_running_recording_too(
    live_visit, patient, doctor, relay_calls, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        visit_services.visit_recording_start(visit_id=live_visit.pk, by=doctor.user)

    services.data_request_create(patient=patient, kind="restriction", details="", by=patient.user)

    assert running(live_visit) is None
    with pytest.raises(ConsentRequired) as refused:
        visit_services.visit_recording_start(visit_id=live_visit.pk, by=doctor.user)
    assert refused.value.code == "processing_restricted"


def test_giving_it_again_lets_recording_start(live_visit, patient, doctor, relay_calls):
    withdraw(patient, Purpose.RECORDING)
    services.consent_give(patient=patient, purpose=Purpose.RECORDING, method="web", by=patient.user)

    assert visit_services.visit_recording_start(visit_id=live_visit.pk, by=doctor.user)


def test_a_patient_who_withdrew_remote_care_gets_no_new_video_visit(patient, doctor):
    withdraw(patient, Purpose.CARE)

    with pytest.raises(ConsentRequired):
        visit_services.visit_schedule(patient=patient, host=doctor.user, scheduled_start=None)

    assert not Visit.objects.filter(patient=patient).exists()


def test_no_case_conference_about_a_patient_who_withdrew_case_discussion(patient, doctor):
    withdraw(patient, Purpose.CASE_DISCUSSION)

    with pytest.raises(ConsentRequired):
        messaging.thread_open(
            kind=Thread.Kind.CASE_CONFERENCE,
            created_by=doctor.user,
            participants=[],
            subject="Ca khó",
            patient=patient,
        )
    # a conversation about the patient's care is not a case discussion
    assert messaging.thread_open(
        kind=Thread.Kind.CONSULTATION, created_by=doctor.user, participants=[], patient=patient
    )


# --- What a withdrawal blocks: sharing with a new facility on referral -----------------------


def _receiver_at(referral: Referral):
    """A cardiologist of the facility the referral was routed to."""
    found = ClinicianProfile.objects.filter(
        facility=referral.target_facility, specialties__code="cardiology"
    ).first()
    return found or ClinicianFactory(
        facility=referral.target_facility, specialty_codes=["cardiology"]
    )


def test_a_facility_new_to_the_patient_is_refused_the_record_after_they_withdrew_sharing():
    network = build_network()
    patient = patient_of(network.referrer)
    withdraw(patient, Purpose.REFERRAL_SHARING)
    referral = submitted_referral(network, patient=patient)
    receiver = _receiver_at(referral)

    with pytest.raises(ConsentRequired) as refused:
        referrals.referral_receive(referral_id=referral.pk, by=receiver.user)

    assert refused.value.code == "consent_withdrawn"
    referral.refresh_from_db()
    assert referral.status == Referral.Status.REQUESTED  # nothing happened
    assert patient_access_basis(user=receiver.user, patient=patient) is None
    with pytest.raises(ConsentRequired):
        referrals.referral_accept(referral_id=referral.pk, by=receiver.user)


def test_an_emergency_referral_goes_ahead_on_vital_interests_and_is_audited_as_such():
    network = build_network()
    patient = patient_of(network.referrer)
    withdraw(patient, Purpose.REFERRAL_SHARING)
    referral = submitted_referral(network, patient=patient, priority="emergency")
    receiver = _receiver_at(referral)

    referrals.referral_accept(referral_id=referral.pk, by=receiver.user)

    assert patient_access_basis(user=receiver.user, patient=patient) == "referral"
    event = AuditEvent.objects.get(
        target=f"privacy.vital_interests:scheduler.referral:{referral.pk}"
    )
    assert event.patient == patient and "vital interests" in event.reason


def test_a_facility_that_cared_for_the_patient_before_still_receives_them():
    network = build_network()
    patient = patient_of(network.referrer)
    referral = submitted_referral(network, patient=patient)
    receiver = _receiver_at(referral)
    colleague = ClinicianFactory(facility=referral.target_facility)
    CareRelationship.objects.create(
        patient=patient,
        member=colleague.user,
        kind="visit",
        ends_at=timezone.now() - timedelta(days=90),
    )
    withdraw(patient, Purpose.REFERRAL_SHARING)

    referrals.referral_receive(referral_id=referral.pk, by=receiver.user)

    assert patient_access_basis(user=receiver.user, patient=patient) == "referral"
    assert not AuditEvent.objects.filter(target__startswith="privacy.vital_interests")


# --- Data-subject requests ----------------------------------------------------------------


def test_a_request_goes_received_in_progress_done_with_its_history_and_deadlines(
    patient, coordinator, settings
):
    settings.PRIVACY_REQUEST_COMPLETE_DAYS = {
        **settings.PRIVACY_REQUEST_COMPLETE_DAYS,
        "correction": 7,
    }

    made = services.data_request_create(
        patient=patient, kind="correction", details="Ngày sinh sai: 02/03/1980", by=patient.user
    )
    services.data_request_start(request_id=made.pk, by=coordinator)
    done = services.data_request_complete(
        request_id=made.pk, by=coordinator, outcome="Đã sửa ngày sinh."
    )

    assert made.respond_by == deadlines.respond_by(made.created_at)
    assert made.due_at == deadlines.complete_by(made.created_at, "correction")
    received_on = timezone.localdate(made.created_at)
    assert timezone.localdate(made.due_at) == received_on + timedelta(days=7)
    assert made.created_at < made.respond_by < made.due_at
    assert (done.status, done.handler, done.outcome) == ("done", coordinator, "Đã sửa ngày sinh.")
    assert [(e.action, e.to_status) for e in done.events.order_by("id")] == [
        ("received", "received"),
        ("started", "in_progress"),
        ("done", "done"),
    ]


def test_a_request_is_completed_only_once_it_is_in_progress(patient, coordinator):
    made = services.data_request_create(
        patient=patient, kind="deletion", details="", by=patient.user
    )

    with pytest.raises(Conflict):
        services.data_request_complete(request_id=made.pk, by=coordinator, outcome="x")


def test_a_correction_must_say_what_is_wrong_and_one_of_a_kind_is_open_at_a_time(patient):
    with pytest.raises(DomainError) as empty:
        services.data_request_create(
            patient=patient, kind="correction", details=" ", by=patient.user
        )
    services.data_request_create(patient=patient, kind="deletion", details="", by=patient.user)
    with pytest.raises(Conflict) as twice:
        services.data_request_create(patient=patient, kind="deletion", details="", by=patient.user)

    assert "details" in empty.value.fields
    assert twice.value.code == "request_open"


def test_refusing_needs_a_reason_which_the_patient_reads(patient, coordinator):
    made = services.data_request_create(
        patient=patient, kind="correction", details="Tên tôi sai", by=patient.user
    )

    with pytest.raises(DomainError):
        services.data_request_refuse(request_id=made.pk, by=coordinator, reason="")
    refused = services.data_request_refuse(
        request_id=made.pk, by=coordinator, reason="Tên đúng theo căn cước."
    )

    assert (refused.status, refused.outcome) == ("refused", "Tên đúng theo căn cước.")
    with pytest.raises(Conflict):
        services.data_request_start(request_id=made.pk, by=coordinator)


def test_another_patient_or_an_unrelated_coordinator_cannot_see_or_act(patient, far_coordinator):
    made = services.data_request_create(
        patient=patient, kind="deletion", details="", by=patient.user
    )
    other = PatientFactory()

    for intruder in (other.user, far_coordinator):
        with pytest.raises(NotFound):
            selectors.data_request_get_for_user(user=intruder, request_id=made.pk)
        with pytest.raises(NotFound):
            services.data_request_start(request_id=made.pk, by=intruder)
    assert AuditEvent.objects.filter(
        action="denied", target=f"privacy.data_request:{made.pk}", actor=far_coordinator
    ).exists()
    assert selectors.data_request_worklist(user=far_coordinator) == []


def test_a_patient_does_not_handle_their_own_request(patient):
    made = services.data_request_create(
        patient=patient, kind="deletion", details="", by=patient.user
    )

    with pytest.raises(AccessDenied):
        services.data_request_start(request_id=made.pk, by=patient.user)


def test_overdue_requests_lead_the_worklist_and_make_the_overdue_list(coordinator):
    late = services.data_request_create(
        patient=(p := PatientFactory()), kind="deletion", details="", by=p.user
    )
    fresh = services.data_request_create(
        patient=(q := PatientFactory()), kind="deletion", details="", by=q.user
    )
    DataRequest.objects.filter(pk=late.pk).update(due_at=timezone.now() - timedelta(hours=1))

    open_rows = selectors.data_request_worklist(user=coordinator, state="open")
    overdue = selectors.data_request_worklist(user=coordinator, state="overdue")

    assert [r.pk for r in open_rows] == [late.pk, fresh.pk]
    assert [r.pk for r in overdue] == [late.pk]
    assert overdue[0].is_overdue and not open_rows[1].is_overdue


def test_a_correction_changes_the_record_and_keeps_the_old_value(patient, coordinator):
    made = services.data_request_create(
        patient=patient, kind="correction", details="Số điện thoại mới", by=patient.user
    )
    services.data_request_start(request_id=made.pk, by=coordinator)

    done = services.data_request_complete(
        request_id=made.pk,
        by=coordinator,
        outcome="Đã cập nhật số điện thoại.",
        corrections={"phone": "0912345678"},
    )

    patient.user.refresh_from_db()
    assert patient.user.phone == "0912345678"
    assert done.result == {"corrected": {"phone": ["", "0912345678"]}}


def test_a_restriction_applies_when_received_and_ends_when_the_patient_lifts_it(patient):
    services.data_request_create(patient=patient, kind="restriction", details="", by=patient.user)

    assert not selectors.consent_allows(patient=patient, purpose=Purpose.CASE_DISCUSSION)
    assert selectors.consent_allows(patient=patient, purpose=Purpose.CARE)

    assert services.restriction_lift(patient=patient, by=patient.user) == 1
    assert selectors.consent_allows(patient=patient, purpose=Purpose.CASE_DISCUSSION)


def test_a_refused_restriction_is_lifted(patient, coordinator):
    made = services.data_request_create(
        patient=patient, kind="restriction", details="", by=patient.user
    )

    services.data_request_refuse(request_id=made.pk, by=coordinator, reason="Không có căn cứ.")

    assert selectors.restriction_active(patient=patient) is None


# --- Deletion keeps the medical record ------------------------------------------------------


def test_deletion_erases_contact_and_account_and_keeps_the_medical_record_restricted(
    patient, doctor, coordinator
):
    user = patient.user
    User.objects.filter(pk=user.pk).update(phone="0901234567", email="lan@example.vn")
    Token.objects.create(user=user)
    visit = visit_services.visit_schedule(patient=patient, host=doctor.user, scheduled_start=None)
    Visit.objects.filter(pk=visit.pk).update(notes="Huyết áp 150/90", summary="Tăng huyết áp")
    made = services.data_request_create(
        patient=patient, kind="deletion", details="Tôi không dùng dịch vụ nữa", by=user
    )
    services.data_request_start(request_id=made.pk, by=coordinator)

    done = services.data_request_complete(
        request_id=made.pk, by=coordinator, outcome="Đã xóa thông tin liên lạc và tài khoản."
    )

    user.refresh_from_db()
    patient.refresh_from_db()
    assert (user.phone, user.email, patient.address) == ("", "", "")
    assert user.username == f"erased-{user.pk}" and not user.is_active
    assert not user.has_usable_password() and not Token.objects.filter(user=user).exists()
    # the medical record stays, as it was
    visit.refresh_from_db()
    assert (visit.notes, visit.summary) == ("Huyết áp 150/90", "Tăng huyết áp")
    assert user.full_name and patient.sex
    # … restricted: nobody opens it in the course of care, nothing new is done with it
    assert patient_access_basis(user=doctor.user, patient=patient) is None
    assert not selectors.consent_allows(patient=patient, purpose=Purpose.RECORDING)
    restriction = selectors.restriction_active(patient=patient)
    assert restriction.reason == ProcessingRestriction.Reason.RETENTION
    assert restriction.ends_at.year - timezone.now().year == 10
    # … and the patient is told what was kept and why
    kept = {row["item"]: row for row in done.result["kept"]}
    assert kept["visits"]["count"] == 1 and kept["visits"]["basis"] == "medical_record"
    assert kept["access_log"]["basis"] == "security_log"
    assert "phone" in done.result["erased"] and done.result["account_closed"]
    report = services.deletion_report(done.result)
    assert any("10" in row["why"] for row in report["kept"])


def test_the_deletion_plan_counts_what_would_be_kept_before_anything_happens(patient, doctor):
    visit_services.visit_schedule(patient=patient, host=doctor.user, scheduled_start=None)

    plan = services.deletion_plan(patient=patient)

    assert {"item": "visits", "count": 1, "basis": "medical_record"} in plan["kept"]
    assert patient.user.is_active  # nothing was erased
