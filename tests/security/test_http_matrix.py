"""The HTTP permission matrix: every route of the URL conf, every method it answers,
every actor, with the outcome declared here and checked for real.

A route added to the URL conf without a case here fails
``test_every_route_has_a_case`` (and its own row) with its name, and a method
added to a view without a check fails too. Outcomes are one token per actor, in
this column order:

    patient  other_patient  doctor  unrelated_doctor  mentor  coord_facility  coord_other  anon

(see ``tests/security/matrix.py`` for the tokens). "doctor" is the patient's
doctor (care relationship, host of the visit, referrer); "mentor" mentors that
doctor in the network and has no relationship with the patient;
"coord_facility" coordinates the doctor's facility, "coord_other" another
province. Allowed writes run and are rolled back; refused ones must change
nothing. Nobody outside the patient's circle is ever answered with the
patient's name, the message text or the attachment's name.

Run with SECURITY_MATRIX_DISCOVER=1 to print what each actor gets instead of
asserting (for declaring a new route's row after reading its code).
"""

from __future__ import annotations

import os
from datetime import timedelta
from http.cookies import SimpleCookie
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import transaction
from django.test import Client
from django.utils import timezone

from tests.factories import PASSWORD
from tests.security.matrix import (
    DELETE,
    GET,
    MAY_CHANGE_WHEN_REFUSED,
    PATCH,
    POST,
    PUT,
    Case,
    Check,
    all_routes,
    fill,
    leaks,
    perform,
    refused,
)
from tests.security.world import ACTORS, OUTSIDERS, PNG, World, build_world

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]

DISCOVER = os.environ.get("SECURITY_MATRIX_DISCOVER") == "1"

# Shorthands for rows that repeat. Column order: see the module docstring.
API_ANY = "200 200 200 200 200 200 200 401"  # any signed-in person
PUBLIC = "200 200 200 200 200 200 200 200"
PAGE_ANY = "200 200 200 200 200 200 200 login"


def png(name: str = "x.png") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, PNG, "image/png")


def soon(hours: int) -> str:
    return (timezone.now() + timedelta(hours=hours)).isoformat()


# Values for the converters of the routes; a case may override them.
def path_values(world: World) -> dict[str, Any]:
    return {
        "thread_id": world.thread.pk,
        "user_id": world.patient.user.pk,
        "attachment_id": world.attachment.pk,
        "visit_id": world.visit.pk,
        "snapshot_id": world.snapshot.pk,
        "recording_id": world.recording.pk,
        "mentorship_id": world.mentorship.pk,
        "run_id": world.run.pk,
        "conference_id": world.conference.pk,
        "referral_id": world.referral.pk,
        "queue_id": world.queue.pk,
        "exception_id": world.availability_exception.pk,
        "appointment_id": world.appointment.pk,
        "entry_id": world.waitlist_entry.pk,
        "patient_id": world.patient.pk,
        "access_id": world.extra.get("break_glass_access_id", 0),
        "request_id": world.extra.get("data_request_id", 0),
        "purpose": "recording",
    }


def notice_version(world: World) -> str:
    from privacy.notices import CURRENT_NOTICE

    return CURRENT_NOTICE.version


def u(actor: str):  # the user id of an actor, for bodies
    return lambda w: w.users[actor].pk


# Each route's row: the name of the URL pattern (or its route when unnamed) → Case.
# Bodies may be callables of the world. A body value that is a callable is called too.
CASES: dict[str, Case] = {
    # --- kernel API --------------------------------------------------------------------
    "api-health": Case([GET(PUBLIC)]),
    "api-token": Case(
        [
            POST(
                "200 200 200 200 200 200 200 200",
                lambda w: {"username": w.patient.user.username, "password": PASSWORD},
            ),
            DELETE("204 204 204 204 204 204 204 204"),
        ]
    ),
    "api-me": Case([GET(API_ANY), PATCH(API_ANY, {"phone": "0912345678"})]),
    "api-province-list": Case([GET(API_ANY)]),
    "api-province-detail": Case([GET(API_ANY)], kwargs={"code": "01"}),
    "api-commune-list": Case([GET(API_ANY)]),
    "api-specialty-list": Case([GET(API_ANY)]),
    "api-facility-list": Case([GET(API_ANY)]),
    "api-facility-detail": Case([GET(API_ANY)], kwargs={"code": lambda w: w.facility.code}),
    "api-patient-detail": Case([GET("200 404 200 404 404 404 404 401")]),
    # Break-glass (emergency access): any doctor outside the care relationship may open
    # the record with a stated reason (audited, alerted, reviewed); so those two may
    # see the patient's name here. Everyone else is refused.
    "api-patient-break-glass": Case(
        [
            POST(
                "403 403 409 201 201 403 403 401",
                {"reason": "Bệnh nhân bất tỉnh tại cấp cứu, cần xem tiền sử dị ứng"},
                reveals=("unrelated_doctor", "mentor"),
            )
        ]
    ),
    # Who accessed my record: the patient only.
    "api-patient-access-log": Case([GET("200 404 404 404 404 404 404 401")]),
    # The review list and verdicts are the privacy officers' (none of these actors).
    "api-break-glass-list": Case([GET("404 404 404 404 404 404 404 401")]),
    "api-break-glass-review": Case(
        [
            POST(
                "404 404 404 404 404 404 404 401",
                {"decision": "justified", "note": "Đúng quy trình"},
            )
        ]
    ),
    # --- conversations -----------------------------------------------------------------
    "api-thread-list": Case(
        [
            GET(API_ANY),
            POST(
                "400 404 201 404 404 404 404 401",
                lambda w: {
                    "kind": "consultation",
                    "subject": "x",
                    "patient_id": w.patient.pk,
                    "participant_ids": [w.receiving.user.pk],
                },
            ),
        ]
    ),
    "api-thread-detail": Case([GET("200 404 200 404 404 404 404 401")]),
    "api-thread-participants": Case(
        [
            POST(
                "403 404 201 404 404 404 404 401",
                {"user_id": u("unrelated_doctor"), "role": "specialist"},
            ),
        ]
    ),
    "api-thread-participant": Case([DELETE("204 404 204 404 404 404 404 401")]),
    "api-thread-messages": Case(
        [
            GET("200 404 200 404 404 404 404 401"),
            POST("201 404 201 404 404 404 404 401", {"client_id": "m-1", "body": "Chào"}),
        ]
    ),
    "api-thread-search": Case([GET("200 404 200 404 404 404 404 401", query="?q=bi-mat")]),
    "api-thread-read": Case([POST("200 404 200 404 404 404 404 401", {"seq": 1})]),
    "api-thread-attachments": Case(
        [POST("201 404 201 404 404 404 404 401", lambda w: {"file": png()}, multipart=True)]
    ),
    "api-attachment-download": Case([GET("200 404 200 404 404 404 404 401")]),
    # --- visits ------------------------------------------------------------------------
    "api-visit-list": Case(
        [
            GET(API_ANY),
            POST("403 404 201 404 404 404 404 401", lambda w: {"patient_id": w.patient.pk}),
        ]
    ),
    "api-visit-detail": Case([GET("200 404 200 404 404 404 404 401")]),
    "api-visit-open": Case([POST("403 404 200 404 404 404 404 401")]),
    "api-visit-check-in": Case([POST("200 404 200 404 404 404 404 401", {"camera": True})]),
    "api-visit-admit": Case([POST("403 404 409 404 404 404 404 401", {"user_id": u("patient")})]),
    "api-visit-remove": Case([POST("403 404 200 404 404 404 404 401", {"user_id": u("patient")})]),
    "api-visit-invite": Case(
        [
            POST(
                "403 404 201 404 404 404 404 401",
                {"user_id": u("unrelated_doctor"), "role": "specialist"},
            )
        ]
    ),
    "api-visit-join": Case([POST("200 404 200 404 404 404 404 401")]),
    "api-visit-leave": Case([POST("204 404 204 404 404 404 404 401")]),
    "api-visit-published": Case([POST("204 404 204 404 404 404 404 401")]),
    "api-visit-audio-only": Case([POST("200 404 200 404 404 404 404 401", {"audio_only": True})]),
    "api-visit-consent": Case([POST("200 404 200 404 404 404 404 401", {"recording": False})]),
    "api-visit-snapshot-notice": Case(
        [POST("403 404 204 404 404 404 404 401", {"user_id": u("patient")})]
    ),
    "api-visit-snapshots": Case(
        [
            POST(
                "403 404 201 404 404 404 404 401",
                lambda w: {"user_id": w.patient.user.pk, "image": png()},
                multipart=True,
            ),
        ]
    ),
    "api-visit-recording-ask": Case([POST("403 404 200 404 404 404 404 401")]),
    "api-visit-recording-start": Case([POST("403 404 200 404 404 404 404 401")]),
    "api-visit-recording-stop": Case([POST("403 404 200 404 404 404 404 401")]),
    "api-visit-recordings": Case([GET("200 404 200 404 404 404 404 401")]),
    # Only the relay node's signed upload token opens it; no session does.
    "api-visit-recording-upload": Case(
        [POST("401 401 401 401 401 401 401 401", lambda w: {"file": png("r.webm")}, multipart=True)]
    ),
    "api-visit-notes": Case([PUT("403 404 200 404 404 404 404 401", {"notes": "Ổn"})]),
    "api-visit-end": Case([POST("403 404 200 404 404 404 404 401", {"summary": "Xong"})]),
    "api-visit-cancel": Case([POST("403 404 409 404 404 404 404 401")]),
    "api-snapshot-download": Case([GET("200 404 200 404 404 404 404 401")]),
    "api-recording-download": Case([GET("200 404 200 404 404 404 404 401")]),
    # --- the doctor network ------------------------------------------------------------
    "api-network-me": Case([GET(API_ANY)]),
    "api-network-graph": Case([GET(API_ANY)]),
    "api-network-suggestions": Case([GET("403 403 200 200 200 403 403 401")]),
    "api-network-person": Case([GET(API_ANY)], kwargs={"user_id": lambda w: w.doctor.user.pk}),
    "api-network-mentorships": Case(
        [
            GET(API_ANY),
            POST("403 403 409 201 400 403 403 401", {"mentor": u("mentor")}),
        ]
    ),
    "api-network-mentorship": Case([GET("404 404 200 404 200 200 404 401")]),
    "api-network-mentorship-accept": Case([POST("404 404 200 404 200 404 404 401")]),
    "api-network-mentorship-decline": Case([POST("404 404 409 404 409 404 404 401")]),
    "api-network-mentorship-end": Case(
        [POST("404 404 200 404 200 404 404 401", {"reason": "completed"})]
    ),
    "api-network-policy": Case(
        [
            GET(API_ANY),
            PUT(
                "403 403 403 403 403 403 403 401",
                {"name": "Chính sách thử", "max_distance_km": 200},
            ),
        ]
    ),
    "api-network-coverage": Case([GET("403 403 403 403 403 200 200 401")]),
    "api-network-coverage-export": Case([GET("403 403 403 403 403 200 200 401")]),
    "api-network-runs": Case(
        [
            GET("403 403 403 403 403 200 200 401"),
            POST("403 403 403 403 403 403 202 401", {"province": "79"}),
        ]
    ),
    "api-network-run": Case([GET("404 404 404 404 404 404 200 401")]),
    "api-network-run-proposals": Case([GET("404 404 404 404 404 404 200 401")]),
    "api-network-run-review": Case(
        [POST("404 404 404 404 404 404 409 401", {"decision": "reject"})]
    ),
    "api-network-run-apply": Case([POST("404 404 404 404 404 404 409 401")]),
    "api-network-conferences": Case(
        [
            GET(API_ANY),
            POST(
                "403 403 403 403 201 403 403 401",
                {"subject": "Ca mới", "mentee_ids": [u("doctor")]},
            ),
        ]
    ),
    "api-network-conference": Case([GET("404 404 200 404 200 404 404 401")]),
    "api-network-conference-present": Case(
        [POST("404 404 404 404 200 404 404 401", {"body": "Ca bệnh"})]
    ),
    "api-network-conference-invite": Case(
        [POST("404 404 404 404 200 404 404 401", {"user_ids": [u("unrelated_doctor")]})]
    ),
    "api-network-conference-conclude": Case(
        [POST("404 404 404 404 200 404 404 401", {"recommendations": "Theo dõi"})]
    ),
    # --- referrals, queues, the board --------------------------------------------------
    "api-referral-list": Case(
        [
            GET(API_ANY),
            POST(
                "403 403 201 404 404 403 403 401",
                lambda w: {"patient_id": w.patient.pk, "specialty": "cardiology", "reason": "x"},
            ),
        ]
    ),
    "api-referral-detail": Case([GET("200 404 200 404 404 200 404 401")]),
    "api-referral-submit": Case([POST("403 404 409 404 404 403 404 401")]),
    "api-referral-receive": Case([POST("403 404 403 404 404 403 404 401")]),
    "api-referral-accept": Case([POST("403 404 403 404 404 403 404 401", {"note": "Nhận"})]),
    "api-referral-reject": Case(
        [POST("403 404 403 404 404 403 404 401", {"reason": "Không phù hợp"})]
    ),
    "api-referral-advise": Case(
        [POST("403 404 403 404 404 403 404 401", {"advice": "Dùng thuốc"})]
    ),
    "api-referral-convert": Case([POST("403 404 403 404 404 403 404 401")]),
    "api-referral-schedule": Case(
        [POST("403 404 403 404 404 403 404 401", {"scheduled_for": soon(48)})]
    ),
    "api-referral-start": Case([POST("403 404 403 404 404 403 404 401")]),
    "api-referral-complete": Case(
        [POST("403 404 403 404 404 403 404 401", {"care_plan": "Tái khám"})]
    ),
    "api-referral-cancel": Case(
        [POST("403 404 200 404 404 200 404 401", {"reason": "Bệnh nhân khỏi"})]
    ),
    "api-referral-acknowledge": Case([POST("403 404 404 404 404 404 404 401")]),
    "api-referral-attachments": Case(
        [POST("403 404 201 404 404 403 404 401", lambda w: {"file": png()}, multipart=True)]
    ),
    "api-referral-fhir": Case([GET("200 404 200 404 404 200 404 401")]),
    "api-queue-list": Case([GET(API_ANY)]),
    "api-queue-detail": Case([GET("404 404 404 404 404 404 404 401")]),
    "api-board": Case([GET("403 403 403 403 403 200 200 401")]),
    "api-board-load": Case([GET("403 403 403 403 403 200 200 401")]),
    "api-board-accept": Case(
        [
            POST(
                "403 403 403 403 403 409 400 401",
                lambda w: {"referral_ids": [w.referral.pk], "reason": "Nhận"},
            )
        ]
    ),
    "api-board-reroute": Case(
        [
            POST(
                "403 403 403 403 403 200 400 401",
                lambda w: {"referral_ids": [w.referral.pk], "reason": "Đầy"},
            )
        ]
    ),
    # --- availability, slots, appointments, the waiting list ----------------------------
    "api-availability": Case(
        [
            GET("403 403 200 200 200 403 403 401"),
            PUT("403 403 200 200 200 403 403 401", {"visit_minutes": 30}),
        ]
    ),
    "api-availability-exceptions": Case(
        [
            POST(
                "403 403 201 201 201 403 403 401",
                lambda w: {"starts_at": soon(24 * 5), "ends_at": soon(24 * 5 + 1)},
            )
        ]
    ),
    "api-availability-exception": Case([DELETE("403 403 204 404 404 403 403 401")]),
    "api-bookable-clinicians": Case([GET(API_ANY)]),
    "api-slot-list": Case(
        [GET("200 200 200 200 200 200 200 401", query="?clinician={doctor_profile}")],
    ),
    "api-appointment-list": Case(
        [
            GET(API_ANY),
            POST(
                "201 404 201 404 404 404 404 401",
                lambda w: {"slot_id": w.slot.pk, "mode": "in_person", "patient_id": w.patient.pk},
            ),
        ]
    ),
    "api-appointment-detail": Case([GET("200 404 200 404 404 404 404 401")]),
    "api-appointment-cancel": Case([POST("200 404 200 404 404 404 404 401", {"reason": "Bận"})]),
    "api-appointment-reschedule": Case(
        [POST("200 404 200 404 404 404 404 401", lambda w: {"slot_id": w.slot.pk})]
    ),
    "api-appointment-arrive": Case([POST("403 404 200 404 404 404 404 401")]),
    "api-appointment-fulfil": Case([POST("403 404 200 404 404 404 404 401")]),
    "api-appointment-no-show": Case([POST("403 404 409 404 404 404 404 401")]),
    "api-appointment-fhir": Case([GET("200 404 200 404 404 404 404 401")]),
    "api-waitlist": Case(
        [
            GET(API_ANY),
            POST(
                "409 404 409 404 404 404 404 401",
                lambda w: {
                    "clinician_id": w.doctor.pk,
                    "mode": "video",
                    "patient_id": w.patient.pk,
                },
            ),
        ]
    ),
    "api-waitlist-accept": Case([POST("409 404 404 404 404 404 404 401")]),
    "api-waitlist-decline": Case([POST("409 404 404 404 404 404 404 401")]),
    "api-waitlist-cancel": Case([POST("200 404 404 404 404 404 404 401")]),
    # --- privacy: consent, the patient's data, data-subject requests -------------------
    # My consent, my data, my requests: the patient's own (people who are not patients
    # are refused); requests are handled by coordinators whose scope covers the patient.
    "api-privacy-notice": Case([GET("200 200 200 200 200 200 200 200")]),
    "api-privacy-consent": Case(
        [
            GET("200 200 403 403 403 403 403 401"),
            POST(
                "201 201 403 403 403 403 403 401",
                lambda w: {"notice_version": notice_version(w), "purposes": ["care"]},
            ),
        ]
    ),
    "api-privacy-consent-give": Case(
        [POST("200 200 403 403 403 403 403 401", {"purpose": "case_discussion"})]
    ),
    "api-privacy-consent-withdraw": Case(
        [POST("200 200 403 403 403 403 403 401", {"purpose": "recording"})]
    ),
    "api-privacy-export": Case([GET("200 200 403 403 403 403 403 401")]),
    "api-privacy-deletion-plan": Case([GET("200 200 403 403 403 403 403 401")]),
    "api-privacy-restriction-lift": Case([POST("200 200 403 403 403 403 403 401")]),
    "api-privacy-request-list": Case(
        [
            GET("200 200 403 403 403 403 403 401"),
            POST(
                "201 201 403 403 403 403 403 401", {"kind": "deletion", "details": "Xoá giúp tôi"}
            ),
        ]
    ),
    "api-privacy-request-detail": Case([GET("200 404 404 404 404 200 404 401")]),
    "api-privacy-request-start": Case([POST("403 404 404 404 404 200 404 401")]),
    "api-privacy-request-complete": Case(
        [POST("403 404 404 404 404 409 404 401", {"outcome": "Đã sửa"})]
    ),
    "api-privacy-request-refuse": Case(
        [POST("403 404 404 404 404 200 404 401", {"reason": "Không đúng"})]
    ),
    "api-privacy-request-extend": Case(
        [POST("403 404 404 404 404 200 404 401", {"reason": "Cần thêm thời gian"})]
    ),
    "api-privacy-worklist": Case([GET("403 403 403 403 403 200 200 401")]),
    # A patient's consent for a clinician who may see them (and a signed paper form).
    "api-patient-consent": Case(
        [
            GET("200 404 200 404 404 404 404 401"),
            POST(
                "403 404 201 404 404 404 404 401",
                lambda w: {"notice_version": notice_version(w), "purposes": ["care"]},
            ),
        ]
    ),
    "privacy": Case([GET("200 200 403 403 403 403 403 login")]),
    "privacy-consent": Case(
        [
            POST(
                "302 302 403 403 403 403 403 login",
                lambda w: {"notice_version": notice_version(w), "purposes": ["care"]},
                multipart=True,
            )
        ]
    ),
    "privacy-consent-give": Case([POST("302 302 403 403 403 403 403 login", {}, multipart=True)]),
    "privacy-consent-withdraw": Case(
        [POST("302 302 403 403 403 403 403 login", {}, multipart=True)]
    ),
    "privacy-export": Case([GET("200 200 403 403 403 403 403 login")]),
    "privacy-restriction-lift": Case(
        [POST("302 302 403 403 403 403 403 login", {}, multipart=True)]
    ),
    "privacy-request-new": Case(
        [
            POST(
                "302 302 403 403 403 403 403 login",
                {"kind": "deletion", "details": "Xoá"},
                multipart=True,
            )
        ]
    ),
    "privacy-request": Case([GET("200 404 404 404 404 200 404 login")]),
    "privacy-request-start": Case([POST("403 404 404 404 404 302 404 login", {}, multipart=True)]),
    "privacy-request-complete": Case(
        [POST("403 404 404 404 404 302 404 login", {"outcome": "Đã sửa"}, multipart=True)]
    ),
    "privacy-request-refuse": Case(
        [POST("403 404 404 404 404 302 404 login", {"reason": "Không đúng"}, multipart=True)]
    ),
    "privacy-request-extend": Case(
        [
            POST(
                "403 404 404 404 404 302 404 login",
                {"reason": "Cần thêm thời gian"},
                multipart=True,
            )
        ]
    ),
    "privacy-worklist": Case([GET("403 403 403 403 403 200 200 login")]),
    # --- schema, docs, language: public by design, declared all the same ---------------
    "api-schema": Case([GET("200 200 200 200 200 200 200 200")]),
    "api-docs": Case([GET("200 200 200 200 200 200 200 200")]),
    "set_language": Case(
        [
            GET("302 302 302 302 302 302 302 302"),
            POST("302 302 302 302 302 302 302 302", {"language": "en"}, multipart=True),
        ]
    ),
    # --- pages -------------------------------------------------------------------------
    "home": Case([GET(PAGE_ANY)]),
    "profile": Case(
        [
            GET(PAGE_ANY),
            POST("302 302 302 302 302 302 302 login", {"phone": "0912"}, multipart=True),
        ]
    ),
    "telehealth-patients": Case([GET("404 404 200 200 200 404 404 login")]),
    "telehealth-patient-record": Case([GET("200 404 200 404 404 404 404 login")]),
    "telehealth-patient-break-glass": Case(
        [
            POST(
                "403 403 302 302 302 403 403 login",
                {"reason": "Bệnh nhân bất tỉnh tại cấp cứu, cần xem tiền sử dị ứng"},
                multipart=True,
                reveals=("unrelated_doctor", "mentor"),
            )
        ]
    ),
    "telehealth-access-log": Case([GET("200 200 404 404 404 404 404 login")]),
    "telehealth-break-glass-review": Case([GET("404 404 404 404 404 404 404 login")]),
    "telehealth-break-glass-review-submit": Case(
        [
            POST(
                "404 404 404 404 404 404 404 login",
                {"decision": "justified", "note": "x"},
                multipart=True,
            )
        ]
    ),
    # Two-step sign-in: the second step of signing in, and each person's own set-up.
    "login-verify": Case(
        [
            GET("login login login login login login login login"),
            POST(
                "login login login login login login login login", {"otp": "000000"}, multipart=True
            ),
        ]
    ),
    "totp-setup": Case(
        [
            GET("404 404 200 200 200 200 200 login"),
            # A wrong code is refused, but the person's own unconfirmed authenticator
            # (its secret) is kept between showing the QR code and confirming it.
            POST(
                "404 404 400 400 400 400 400 login",
                {"otp": "000000"},
                multipart=True,
                may_write=("otp_totp_totpdevice",),
            ),
        ]
    ),
    "totp-disable": Case(
        [POST("302 302 302 302 302 302 302 login", {"otp": "000000"}, multipart=True)]
    ),
    "session-expired": Case([GET("200 200 200 200 200 200 200 200")]),
    "visits": Case([GET(PAGE_ANY)]),
    "visit": Case([GET("200 404 200 404 404 404 404 login")]),
    "conversations": Case([GET(PAGE_ANY)]),
    "conversation": Case([GET("200 404 200 404 404 404 404 login")]),
    "visit-summaries": Case([GET(PAGE_ANY)]),
    "visit-clinician-search": Case([GET("403 403 200 200 200 403 403 login", query="?q=Gia")]),
    "network": Case([GET(PAGE_ANY)]),
    "network-coverage": Case([GET("403 403 403 403 403 200 200 login")]),
    "scheduler-appointments": Case([GET(PAGE_ANY)]),
    "scheduler-referrals": Case([GET(PAGE_ANY)]),
    "scheduler-referral-new": Case([GET("403 403 200 200 200 403 403 login")]),
    "scheduler-doctor-day": Case([GET("403 403 200 200 200 403 403 login")]),
    "scheduler-board": Case([GET("403 403 403 403 403 200 200 login")]),
    "login": Case(
        [
            GET("302 302 302 302 302 302 302 200"),
            POST(
                "302 302 302 302 302 302 302 200",
                {"username": "nobody", "password": "x"},
                multipart=True,
            ),
            # LoginView answers PUT like POST.
            Check(
                "PUT", "302 302 302 302 302 302 302 200", {"username": "nobody", "password": "x"}
            ),
        ]
    ),
    "logout": Case([POST("login login login login login login login login", {}, multipart=True)]),
}


# The admin site is its own category: staff only, so every actor here (none is
# staff) is sent to the admin's sign-in page, whatever the model or object.
ADMIN_PREFIX = "admin/"


def _resolve(value: Any, world: World) -> Any:
    if callable(value):
        return value(world)
    if isinstance(value, dict):
        return {k: _resolve(v, world) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, world) for v in value]
    return value


ROUTES = [r for r in all_routes() if not r.route.startswith(ADMIN_PREFIX)]
ADMIN_ROUTES = [r for r in all_routes() if r.route.startswith(ADMIN_PREFIX)]


@pytest.fixture(scope="module")
def world(django_db_setup, django_db_blocker):
    """One world for the module, in a transaction rolled back at the end; each test
    runs in a savepoint inside it (pytest-django's ``db``)."""
    with django_db_blocker.unblock():
        with transaction.atomic():
            built = build_world()
            clients: dict[str, Client] = {}
            for actor in ACTORS:
                client = Client(HTTP_ACCEPT_LANGUAGE="vi")
                if built.users[actor] is not None:
                    client.force_login(built.users[actor])
                clients[actor] = client
            built.extra["clients"] = clients
            yield built
            transaction.set_rollback(True)


def test_every_route_has_a_case():
    missing = sorted(r.key for r in ROUTES if r.key not in CASES)
    assert not missing, (
        "Routes without a case in tests/security/test_http_matrix.py CASES (declare who may "
        f"do what on them): {missing}"
    )
    stale = sorted(set(CASES) - {r.key for r in ROUTES})
    assert not stale, f"Cases for routes that no longer exist: {stale}"


def _check_route(world: World, route_key: str, path: str, check: Check) -> list[str]:
    problems: list[str] = []
    observed: list[str] = []
    expected = None if "?" in check.expect else check.outcomes()
    for actor in ACTORS:
        client: Client = world.extra["clients"][actor]
        saved = {name: morsel.value for name, morsel in client.cookies.items()}
        body = _resolve(check.body, world)
        resolved = Check(check.method, check.expect, body, check.multipart, check.query)
        outcome = perform(client, check.method, path, resolved)
        client.cookies = SimpleCookie()
        for name, value in saved.items():
            client.cookies[name] = value
        token = outcome.token()
        observed.append(token)
        where = f"{check.method} {path}{check.query} as {actor}"
        if outcome.status >= 500:
            problems.append(f"{where}: server error {outcome.status}")
        if expected is not None and token != expected[actor]:
            problems.append(f"{where}: expected {expected[actor]}, got {token}")
        is_refused = refused(expected[actor] if expected else token)
        # The patient's own name shows in every page they are answered (the header).
        revealed = actor in check.reveals and not is_refused
        if (actor in OUTSIDERS and not revealed) or (is_refused and actor != "patient"):
            found = leaks(outcome, world.secrets)
            if found:
                problems.append(f"{where}: the answer ({token}) contains {found}")
        if is_refused:
            written = outcome.changed - MAY_CHANGE_WHEN_REFUSED - set(check.may_write)
            if written:
                problems.append(f"{where}: refused ({token}) but wrote to {sorted(written)}")
    if DISCOVER or expected is None:
        print(f"DISCOVER {route_key} {check.method}: {' '.join(observed)}")
    if expected is None and not DISCOVER:
        problems.append(f"{route_key} {check.method}: no outcome declared; got {observed}")
    return problems


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: r.key)
def test_route(world, route):
    case = CASES.get(route.key)
    assert case is not None, f"route {route.route!r} ({route.key}) has no case in CASES"
    implemented = route.implemented_methods()
    declared = {check.method for check in case.checks}
    if implemented is not None:
        assert declared == implemented, (
            f"{route.key}: the view answers {sorted(implemented)}, the case checks "
            f"{sorted(declared)}"
        )
    values = path_values(world)
    values.update({k: _resolve(v, world) for k, v in case.kwargs.items()})
    path = fill(route.route, values)
    problems: list[str] = []
    for check in case.checks:
        if "{doctor_profile}" in check.query:
            check = Check(
                check.method,
                check.expect,
                check.body,
                check.multipart,
                check.query.replace("{doctor_profile}", str(world.doctor.pk)),
                check.reveals,
                check.may_write,
            )
        problems += _check_route(world, route.key, path, check)
    if implemented is None:
        problems += _undeclared_methods(world, path, case)
    assert not problems, "\n".join(problems)


def _undeclared_methods(world: World, path: str, case: Case) -> list[str]:
    """A function view has no method list to compare with: every method the case does
    not declare must be refused (405) or answered exactly as GET is, writing nothing
    (read-only pages render for any method), so no write hides behind a page."""
    problems: list[str] = []
    declared = {check.method: check for check in case.checks}
    get = declared.get("GET")
    for method in ("GET", "POST", "PUT", "PATCH", "DELETE"):
        if method in declared:
            continue
        for actor in ("other_patient", "doctor", "anon"):
            outcome = perform(world.extra["clients"][actor], method, path, None)
            token = outcome.token()
            allowed = {"405", get.outcomes()[actor]} if get else {"405"}
            if actor == "anon":
                allowed.add("login")
            if token not in allowed:
                problems.append(f"{method} {path} as {actor}: undeclared method answered {token}")
            written = outcome.changed - MAY_CHANGE_WHEN_REFUSED
            if written:
                problems.append(f"{method} {path} as {actor}: undeclared method wrote {written}")
            if actor != "doctor" and leaks(outcome, world.secrets):
                problems.append(f"{method} {path} as {actor}: the answer names the patient")
    return problems


def test_admin_is_for_staff_only(world):
    """Every admin page sends each of these actors (none is staff) to the admin's sign-in,
    whatever the model or object; only the sign-in page itself answers."""
    import re

    problems: list[str] = []
    for route in ADMIN_ROUTES:
        path = "/" + re.sub(r"<(?:\w+:)?\w+>|\(\?P<\w+>[^)]*\)", "1", route.route)
        path = path.replace("^", "").replace("$", "")
        for actor in ACTORS:
            outcome = perform(world.extra["clients"][actor], "GET", path, None)
            token = outcome.token()
            if route.name == "login":
                allowed = {"200"} if actor == "anon" else {"200", "302"}
            elif route.name == "logout":
                allowed = {"302", "405", "admin"}  # signing out is checked on /logout/
            else:
                allowed = {"admin"}
            if token not in allowed:
                problems.append(f"GET {path} ({route.key}) as {actor}: {token}")
            if leaks(outcome, world.secrets):
                problems.append(f"GET {path} as {actor}: the answer names the patient")
    assert not problems, "\n".join(problems[:40])
