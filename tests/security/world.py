"""One small world for the access-control tests: a patient with every kind of record,
and the eight kinds of people who may or may not see it.

Built through the services (as the product builds it), so each record carries the
relationships the product grants: the doctor's care relationship comes from
caring for the patient, the receiving cardiologist's from the referral, and so on.
The actors are the same for the HTTP matrix and the websocket matrix.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import time, timedelta
from typing import Any

from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from telehealth.models import CareRelationship, ClinicianProfile, FacilityLevel, User

# Things only the patient's circle may ever read: none of them may appear in an
# answer to anyone outside it, whatever the status code.
PATIENT_NAME = "Phạm Thị Kín Đáo"
SECRET_BODY = "ghi-chu-bi-mat-7Q4"
ATTACHMENT_NAME = "ket-qua-xet-nghiem-7Q4.png"

# The actors, in the column order of the matrices.
ACTORS = (
    "patient",
    "other_patient",
    "doctor",
    "unrelated_doctor",
    "mentor",
    "coord_facility",
    "coord_other",
    "anon",
)
# Who stands outside the patient's circle: nothing they are answered may name the patient.
OUTSIDERS = ("other_patient", "unrelated_doctor", "mentor", "coord_other", "anon")

PNG = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00"
    b"\x1f\x15\xc4\x89\x00\x00\x00\rIDATx\x9cc\xf8\xff\xff?\x00\x05\xfe\x02\xfe\xa7V\xbd\xfa"
    b"\x00\x00\x00\x00IEND\xaeB`\x82"
)


@dataclass
class World:
    users: dict[str, User | None]
    patient: Any
    other_patient: Any
    doctor: ClinicianProfile
    receiving: ClinicianProfile  # the cardiologist the referral was routed to
    facility: Any  # the doctor's (referring) facility
    thread: Any
    message: Any
    attachment: Any
    visit: Any
    snapshot: Any
    recording: Any
    referral: Any
    appointment: Any
    slot: Any
    waitlist_entry: Any
    availability_exception: Any
    mentorship: Any
    conference: Any
    run: Any
    queue: Any
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def secrets(self) -> tuple[str, ...]:
        return (PATIENT_NAME, SECRET_BODY, ATTACHMENT_NAME)


def build_world(*, recording: bool = True) -> World:
    """The world; ``recording=False`` skips the relay-uploaded recording (encoding a WebM)."""
    from consult import services as messaging
    from consult import visit_services
    from consult.models import Thread, VisitParticipant
    from network import services as network_services
    from scheduler import appointment_services, routing
    from scheduler import services as referrals
    from scheduler.models import LevelRule, Queue, ServiceLevel
    from scheduler.policy import policy_defaults_load
    from tests.factories import (
        ClinicianFactory,
        CoordinatorFactory,
        FacilityFactory,
        PatientFactory,
        province,
    )
    from tests.network.conftest import link
    from tests.scheduler.conftest import build_network, weekly_schedule

    policy_defaults_load(LevelRule=LevelRule, ServiceLevel=ServiceLevel)
    routing.network_index_reset()
    net = build_network()

    # The patient's doctor works at the commune station; their mentor at the central hospital.
    doctor = ClinicianFactory(
        facility=net.station,
        kind=ClinicianProfile.Kind.DOCTOR,
        specialty_codes=["general-practice"],
        user__full_name="BS. Gia Đình",
    )
    mentor = ClinicianFactory(
        facility=net.central,
        specialty_codes=["cardiology", "internal-medicine"],
        user__full_name="GS. Cố Vấn",
    )
    saigon = province("79")
    elsewhere = FacilityFactory(
        level=FacilityLevel.PROVINCIAL,
        province=saigon,
        latitude=saigon.latitude,
        longitude=saigon.longitude,
    )
    unrelated = ClinicianFactory(
        facility=elsewhere, specialty_codes=["cardiology"], user__full_name="BS. Xa Lạ"
    )
    coord_facility = CoordinatorFactory(facility=net.station, province=None).user
    coord_other = CoordinatorFactory(province=saigon).user
    patient = PatientFactory(user__full_name=PATIENT_NAME)
    other_patient = PatientFactory(user__full_name="Lê Văn Khác")
    CareRelationship.objects.create(
        patient=patient, member=doctor.user, kind=CareRelationship.Kind.PRIMARY, source="test"
    )
    # The patient agreed to every purpose of the privacy notice (recording, sharing
    # on referral...), so the records below can exist.
    privacy = _privacy()
    if privacy is not None:
        privacy.services.consent_answer(
            patient=patient,
            purposes=privacy.models.Purpose.values,
            notice_version=privacy.notices.CURRENT_NOTICE.version,
            method="web",
            by=patient.user,
        )
    mentorship = link(mentor, doctor)

    # A conversation with a message and an attachment.
    thread = messaging.thread_open(
        kind=Thread.Kind.CONSULTATION,
        created_by=doctor.user,
        participants=[(patient.user, "patient")],
        patient=patient,
        subject="Theo dõi huyết áp",
    )
    attachment = messaging.attachment_upload(
        user=doctor.user,
        thread_id=thread.pk,
        upload=SimpleUploadedFile(ATTACHMENT_NAME, PNG, "image/png"),
    )
    sent = messaging.message_send(
        user=doctor.user,
        thread_id=thread.pk,
        client_id=str(uuid.uuid4()),
        body=SECRET_BODY,
        attachment_ids=[str(attachment.pk)],
    )

    # A video visit under way, with a snapshot and (optionally) a recording.
    visit = visit_services.visit_schedule(patient=patient, host=doctor.user, scheduled_start=None)
    visit_services.visit_open_waiting_room(visit_id=visit.pk, by=doctor.user)
    visit_services.visit_check_in(visit_id=visit.pk, user=patient.user, device_check={})
    visit_services.visit_admit(visit_id=visit.pk, user_id=patient.user.pk, by=doctor.user)
    snapshot = visit_services.visit_snapshot_store(
        visit_id=visit.pk,
        by=doctor.user,
        subject_id=patient.user.pk,
        image=SimpleUploadedFile("s.png", PNG, "image/png"),
    )
    stored_recording = None
    if recording:
        stored_recording = _recording(visit, doctor.user, patient.user)
    visit.refresh_from_db()

    # A referral from the station, routed to the nearest district cardiology queue.
    referral = referrals.referral_create(
        by=doctor.user,
        patient_id=patient.pk,
        specialty_code="cardiology",
        reason="Đau ngực khi gắng sức",
        clinical_summary="Tăng huyết áp, đau ngực 2 tuần.",
    )
    referrals.referral_submit(referral_id=referral.pk, by=doctor.user)
    referrals.referral_route(referral_id=referral.pk)
    referral.refresh_from_db()
    queue = Queue.objects.get(pk=referral.queue_id)

    # The doctor's availability, an appointment and a waiting-list entry.
    schedule = weekly_schedule(doctor, hours=(time(0, 0), time(23, 59)))
    appointment_services.slots_generate(schedule_id=schedule.pk)
    exception = appointment_services.availability_exception_add(
        by=doctor.user,
        starts_at=timezone.now() + timedelta(days=6),
        ends_at=timezone.now() + timedelta(days=6, hours=1),
        note="Hội thảo",
    )
    free = schedule.slots.filter(status="free", start__gt=timezone.now() + timedelta(hours=3))
    slots = list(free.order_by("start")[:2])
    appointment = appointment_services.appointment_book(
        by=patient.user, slot_id=slots[0].pk, mode="in_person", reason="Tái khám"
    )
    entry = appointment_services.waitlist_join(
        by=patient.user, clinician_id=doctor.pk, mode="in_person"
    )

    # The mentor's case conference (about no patient), and an auto-assignment run
    # of the other province's coordinator.
    conference = network_services.do_case_conference_open(
        organiser=mentor.user,
        subject="Ca khó tuần này",
        participants=[(doctor.user, "mentee")],
        patient=None,
    )
    run = network_services.do_assignment_run_create(created_by=coord_other, province=saigon)

    # An emergency (break-glass) access by an emergency doctor who is none of the
    # actors, for the privacy officers' review routes.
    extra: dict[str, Any] = {"province_code": "01", "facility_code": net.station.code}
    from telehealth import services as kernel_services

    if hasattr(kernel_services, "break_glass_open"):
        emergency = ClinicianFactory(facility=net.provincial, user__full_name="BS. Cấp Cứu")
        access = kernel_services.break_glass_open(
            doctor=emergency.user,
            patient_id=patient.pk,
            reason="Bệnh nhân bất tỉnh tại cấp cứu, cần xem tiền sử dị ứng",
        )
        extra["break_glass_access_id"] = access.pk
    # A data-subject request of the patient (a correction), for the coordinators' routes.
    if privacy is not None:
        data_request = privacy.services.data_request_create(
            patient=patient, kind="correction", details="Sai ngày sinh", by=patient.user
        )
        extra["data_request_id"] = data_request.pk

    users: dict[str, User | None] = {
        "patient": patient.user,
        "other_patient": other_patient.user,
        "doctor": doctor.user,
        "unrelated_doctor": unrelated.user,
        "mentor": mentor.user,
        "coord_facility": coord_facility,
        "coord_other": coord_other,
        "anon": None,
    }
    assert VisitParticipant.objects.filter(visit=visit, user=patient.user).exists()
    return World(
        users=users,
        patient=patient,
        other_patient=other_patient,
        doctor=doctor,
        receiving=net.cardiologist_near,
        facility=net.station,
        thread=thread,
        message=sent.message,
        attachment=attachment,
        visit=visit,
        snapshot=snapshot,
        recording=stored_recording,
        referral=referral,
        appointment=appointment,
        slot=slots[1],
        waitlist_entry=entry,
        availability_exception=exception,
        mentorship=mentorship,
        conference=conference,
        run=run,
        queue=queue,
        extra=extra,
    )


def _privacy() -> Any:
    """The privacy app (consent, data-subject requests), where this checkout has it."""
    try:
        import privacy.models
        import privacy.notices
        import privacy.services
    except ImportError:
        return None
    return privacy


def _recording(visit: Any, host: User, patient_user: User) -> Any:
    """A recording the relay node uploaded, through the real upload endpoint."""
    from django.test import Client

    from consult import visit_services
    from consult.models import VisitParticipant, VisitRecording
    from tests.consult.test_recording import upload_token, webm

    for member in VisitParticipant.objects.filter(visit=visit).select_related("user"):
        visit_services.visit_recording_consent(visit_id=visit.pk, user=member.user, consent=True)
    session = visit_services.visit_recording_start(visit_id=visit.pk, by=host)
    data = webm(frames=3)
    token = upload_token(session, visit, patient_user, data)
    response = Client().post(
        f"/api/v1/visits/{visit.pk}/recordings/upload/",
        {"file": SimpleUploadedFile("r.webm", data, "application/octet-stream")},
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )
    assert response.status_code == 201, response.content
    visit_services.visit_recording_stop(visit_id=visit.pk, by=host)
    return VisitRecording.objects.get(session=session)
