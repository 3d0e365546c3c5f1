"""Demo activity for ``manage.py seed_network``: bookable doctors and a referral in flight.

Without it a fresh ``make run`` would show an empty booking page and an empty
coordinator board. Everything goes through the public services (availability,
referral create and route), so the demo data is exactly what a user would have
made; and it is idempotent: a doctor who already has a schedule and a health
worker who already referred someone are left alone.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction

from telehealth.models import ClinicianProfile, PatientProfile, User

# Working hours of a Vietnamese public hospital: mornings Monday to Saturday,
# afternoons Monday to Friday, lunch between.
_MORNING = ("07:30", "11:30")
_AFTERNOON = ("13:30", "16:30")
DEMO_AVAILABILITY = {
    "visit_minutes": 20,
    "buffer_minutes": 5,
    "horizon_days": 14,
    "hours": [{"weekday": d, "start": _MORNING[0], "end": _MORNING[1]} for d in range(6)]
    + [{"weekday": d, "start": _AFTERNOON[0], "end": _AFTERNOON[1]} for d in range(5)],
}
DEMO_DOCTORS = (
    "demo.doctor.central",
    "demo.doctor.provincial",
    "demo.doctor.district",
    "demo.doctor.commune",
)
# Other doctors of the demo province who take bookings, so a patient choosing a
# specialty finds more than the four demo logins.
OTHER_BOOKABLE_DOCTORS = 24
DEMO_PROVINCE = "01"


@dataclass
class SchedulerDemoSummary:
    schedules_created: int
    referral_created: bool

    def describe(self) -> str:
        referral = "a demo referral routed" if self.referral_created else "no new referral"
        return f"{self.schedules_created} doctors' availability published, {referral}"


def scheduler_demo_seed() -> SchedulerDemoSummary:
    """Publish availability for the demo doctors and some colleagues, and route one
    urgent referral from the demo health worker for the demo patient (idempotent)."""
    from scheduler.appointment_services import availability_set

    created = 0
    demo = list(
        ClinicianProfile.objects.filter(
            user__username__in=DEMO_DOCTORS, schedule__isnull=True
        ).select_related("user")
    )
    others = list(
        ClinicianProfile.objects.filter(
            kind=ClinicianProfile.Kind.DOCTOR,
            facility__province__code=DEMO_PROVINCE,
            user__is_active=True,
            schedule__isnull=True,
        )
        .exclude(user__username__startswith="demo.")
        .select_related("user")
        .order_by("pk")[:OTHER_BOOKABLE_DOCTORS]
    )
    already = ClinicianProfile.objects.filter(
        facility__province__code=DEMO_PROVINCE, schedule__isnull=False
    ).exclude(user__username__startswith="demo.")
    if already.count() >= OTHER_BOOKABLE_DOCTORS:
        others = []
    for clinician in [*demo, *others]:
        availability_set(by=clinician.user, data=DEMO_AVAILABILITY)
        created += 1
    return SchedulerDemoSummary(schedules_created=created, referral_created=_demo_referral())


def _demo_referral() -> bool:
    from scheduler.models import Priority, Referral
    from scheduler.services import referral_create, referral_route

    worker = User.objects.filter(username="demo.healthworker").first()
    patient = PatientProfile.objects.filter(user__username="demo.patient").first()
    if worker is None or patient is None or Referral.objects.filter(requester=worker).exists():
        return False
    with transaction.atomic():
        referral = referral_create(
            by=worker,
            patient_id=patient.pk,
            specialty_code="cardiology",
            reason="Đau ngực khi gắng sức, điện tim có ST chênh xuống",
            clinical_summary=(
                "Nữ 58 tuổi, tăng huyết áp 10 năm. Ba ngày nay đau thắt ngực khi leo cầu "
                "thang, đỡ khi nghỉ. HA 160/95, mạch 92. Đề nghị khám chuyên khoa tim mạch."
            ),
            priority=Priority.URGENT,
            submit=True,
        )
    # Routed here rather than by the worker, so the board shows it on first sign-in.
    referral_route(referral_id=referral.pk)
    return True
