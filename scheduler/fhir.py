"""FHIR R4 shapes of what the scheduler stores: the statuses already are FHIR codes.

A referral exports as a ServiceRequest (what is asked) plus a Task (where it
is in the workflow), an appointment as an Appointment, a slot as a Slot.
References use local ids (``Patient/12``); a gateway maps them to national ones.
"""

from __future__ import annotations

from typing import Any

from scheduler.models import PRIORITY_FHIR, Appointment, Referral, Slot

SYSTEM = "urn:vn-telehealth"


def _iso(value) -> str | None:  # type: ignore[no-untyped-def]
    return value.isoformat() if value is not None else None


def referral_bundle(referral: Referral) -> dict[str, Any]:
    service_request = {
        "resourceType": "ServiceRequest",
        "id": f"referral-{referral.pk}",
        "status": {
            "draft": "draft",
            "cancelled": "revoked",
            "completed": "completed",
            "rejected": "revoked",
        }.get(referral.status, "active"),
        "intent": "order",
        "priority": PRIORITY_FHIR[referral.priority],
        "code": {
            "coding": [
                {
                    "system": f"{SYSTEM}/referral-mode",
                    "code": referral.requested_mode,
                }
            ],
            "text": referral.get_requested_mode_display(),
        },
        "subject": {"reference": f"Patient/{referral.patient_id}"},
        "requester": {"reference": f"Practitioner/{referral.requester_id}"},
        "performerType": {
            "coding": [{"system": f"{SYSTEM}/specialty", "code": referral.specialty.code}]
        },
        "reasonCode": [{"text": referral.reason}],
        "note": [{"text": referral.clinical_summary}] if referral.clinical_summary else [],
        "authoredOn": _iso(referral.requested_at or referral.created_at),
        "locationReference": [{"reference": f"Organization/{referral.requesting_facility.code}"}],
    }
    task = {
        "resourceType": "Task",
        "id": f"referral-task-{referral.pk}",
        "status": referral.status,
        "intent": "order",
        "priority": PRIORITY_FHIR[referral.priority],
        "focus": {"reference": f"ServiceRequest/referral-{referral.pk}"},
        "for": {"reference": f"Patient/{referral.patient_id}"},
        "requester": {"reference": f"Organization/{referral.requesting_facility.code}"},
        "owner": (
            {"reference": f"Organization/{referral.target_facility.code}"}
            if referral.target_facility_id
            else None
        ),
        "businessStatus": {"text": referral.get_routing_state_display()},
        "statusReason": {"text": referral.status_reason} if referral.status_reason else None,
        "authoredOn": _iso(referral.created_at),
        "lastModified": _iso(referral.closed_at or referral.accepted_at or referral.routed_at),
        "restriction": (
            {"period": {"end": _iso(referral.accept_due_at)}} if referral.accept_due_at else None
        ),
        "identifier": (
            [
                {
                    "system": f"{SYSTEM}/queue-ticket/{referral.target_facility.code}",
                    "value": f"{referral.queue_day}:{referral.ticket_number}",
                }
            ]
            if referral.ticket_number
            else []
        ),
    }
    task = {k: v for k, v in task.items() if v is not None}
    entries = [{"resource": service_request}, {"resource": task}]
    counter = getattr(referral, "counter_referral", None)
    if counter is not None:
        entries.append(
            {
                "resource": {
                    "resourceType": "CarePlan",
                    "id": f"counter-referral-{referral.pk}",
                    "status": "active",
                    "intent": "plan",
                    "subject": {"reference": f"Patient/{referral.patient_id}"},
                    "basedOn": [{"reference": f"ServiceRequest/referral-{referral.pk}"}],
                    "author": {"reference": f"Practitioner/{counter.author_id}"},
                    "description": counter.care_plan,
                    "created": _iso(counter.created_at),
                }
            }
        )
    return {"resourceType": "Bundle", "type": "collection", "entry": entries}


def appointment_resource(appointment: Appointment) -> dict[str, Any]:
    return {
        "resourceType": "Appointment",
        "id": str(appointment.pk),
        "status": appointment.status,
        "serviceType": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                        "code": "VR" if appointment.mode == "video" else "AMB",
                    }
                ]
            }
        ],
        "start": _iso(appointment.start),
        "end": _iso(appointment.end),
        "slot": [{"reference": f"Slot/{appointment.slot_id}"}],
        "basedOn": (
            [{"reference": f"ServiceRequest/referral-{appointment.referral_id}"}]
            if appointment.referral_id
            else []
        ),
        "description": appointment.reason,
        "cancelationReason": (
            {"text": appointment.cancellation_reason} if appointment.cancellation_reason else None
        ),
        "participant": [
            {
                "actor": {"reference": f"Patient/{appointment.patient_id}"},
                "status": "accepted",
            },
            {
                "actor": {"reference": f"Practitioner/{appointment.clinician_id}"},
                "status": "accepted",
            },
        ],
    }


def slot_resource(slot: Slot) -> dict[str, Any]:
    return {
        "resourceType": "Slot",
        "id": str(slot.pk),
        "schedule": {"reference": f"Schedule/{slot.schedule_id}"},
        "status": slot.status,
        "start": _iso(slot.start),
        "end": _iso(slot.end),
    }
