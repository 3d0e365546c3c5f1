"""Appointments and referrals: what doctors offer, what patients book, where referrals go.

Two halves share this app:

* appointments: a clinician's ``Schedule`` (weekly hours, breaks, exceptions,
  visit length, buffer) produces ``Slot`` rows; a patient (or a health worker
  for them) books a ``Slot`` as an ``Appointment``. Statuses are FHIR's
  Slot.status and Appointment.status codes, so an export is direct.
* referrals: a ``Referral`` (FHIR ServiceRequest + Task in spirit) moves a
  patient from one facility to another. ``scheduler.services.referral_route``
  places it in a ``Queue`` (a facility's specialty) and records a
  ``RoutingDecision`` with its reasons; every status change leaves a
  ``ReferralEvent``; the loop closes with a ``CounterReferral``.

The policy tables ``LevelRule`` and ``ServiceLevel`` hold the routing rules and
the acceptance deadlines; their defaults come from migration 0002.

Writes go through ``scheduler.services`` / ``scheduler.appointment_services``,
reads of anything about a patient through the selectors.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from telehealth.models import (
    ClinicianProfile,
    Facility,
    FacilityLevel,
    PatientProfile,
    Specialty,
)

# --- Policy tables ------------------------------------------------------------------


class Priority(models.TextChoices):
    ROUTINE = "routine", _("routine")
    URGENT = "urgent", _("urgent")
    EMERGENCY = "emergency", _("emergency")


# Lower is more pressing; also FHIR ServiceRequest.priority for the export.
PRIORITY_RANK = {Priority.EMERGENCY: 0, Priority.URGENT: 1, Priority.ROUTINE: 2}
PRIORITY_FHIR = {Priority.EMERGENCY: "stat", Priority.URGENT: "urgent", Priority.ROUTINE: "routine"}


class LevelRule(models.Model):
    """Where a referral from a facility of ``from_level`` may go, and how much we prefer it.

    A missing (from, to) pair is not allowed. ``preference`` 0 is tried first:
    the router prefers the lowest level that can serve and only goes higher when
    no facility of a preferred level offers the specialty within
    ``max_distance_km`` with capacity left today. Emergencies ignore the
    preference and the distance limit and go to the nearest capable facility.
    """

    from_level = models.PositiveSmallIntegerField(_("from level"), choices=FacilityLevel.choices)
    to_level = models.PositiveSmallIntegerField(_("to level"), choices=FacilityLevel.choices)
    preference = models.PositiveSmallIntegerField(_("preference (0 = first)"))
    max_distance_km = models.FloatField(_("farthest distance (km)"), null=True, blank=True)

    class Meta:
        ordering = ["from_level", "preference"]
        verbose_name = _("referral level rule")
        verbose_name_plural = _("referral level rules")
        constraints = [
            models.UniqueConstraint(fields=["from_level", "to_level"], name="level_rule_once")
        ]

    def __str__(self) -> str:
        return f"{self.from_level} → {self.to_level} ({self.preference})"


class ServiceLevel(models.Model):
    """How fast a referral of a priority must be accepted, and what happens when it is not.

    The deadline is ``accept_within_minutes`` of clock time, or
    ``accept_within_working_days`` (Monday to Friday, Asia/Ho_Chi_Minh) when set.
    When it passes, the province coordinator is alerted; ``reroute_after_minutes``
    later, if still not accepted, the referral is re-routed to the next facility.
    A referral no facility can take lands on the no-slot worklist and must be
    contacted within ``no_slot_contact_minutes``.
    """

    priority = models.CharField(_("priority"), max_length=10, choices=Priority.choices, unique=True)
    accept_within_minutes = models.PositiveIntegerField(
        _("accept within (minutes)"), null=True, blank=True
    )
    accept_within_working_days = models.PositiveSmallIntegerField(
        _("accept within (working days)"), null=True, blank=True
    )
    reroute_after_minutes = models.PositiveIntegerField(_("re-route after escalation (minutes)"))
    no_slot_contact_minutes = models.PositiveIntegerField(_("no-slot contact within (minutes)"))

    class Meta:
        ordering = ["priority"]
        verbose_name = _("service level")
        verbose_name_plural = _("service levels")
        constraints = [
            models.CheckConstraint(
                condition=Q(accept_within_minutes__isnull=False)
                | Q(accept_within_working_days__isnull=False),
                name="service_level_has_deadline",
            )
        ]

    def __str__(self) -> str:
        return self.priority


# --- Referrals ------------------------------------------------------------------------


class Queue(models.Model):
    """One facility's queue for one specialty, with its daily numbering machine.

    ``day``, ``last_ticket`` and ``assigned_today`` are the per-queue daily
    counter: the first assignment of a new day resets them, under the row's
    lock (``select_for_update``), so tickets are 1, 2, 3… per queue and day and
    are never computed by counting rows. ``waiting`` is the number of referrals
    routed here and not yet accepted, rejected or cancelled (the queue wait).
    """

    facility = models.ForeignKey(Facility, on_delete=models.CASCADE, related_name="queues")
    specialty = models.ForeignKey(Specialty, on_delete=models.PROTECT, related_name="queues")
    day = models.DateField(_("counting day"), null=True, blank=True)
    last_ticket = models.PositiveIntegerField(_("last ticket"), default=0)
    assigned_today = models.PositiveIntegerField(_("assigned today"), default=0)
    waiting = models.IntegerField(_("waiting"), default=0)

    class Meta:
        verbose_name = _("referral queue")
        verbose_name_plural = _("referral queues")
        constraints = [
            models.UniqueConstraint(fields=["facility", "specialty"], name="queue_once"),
        ]

    def __str__(self) -> str:
        return f"{self.facility_id}/{self.specialty_id}"


class Referral(models.Model):
    """A request to move a patient's care to another facility (ServiceRequest + Task).

    ``status`` uses FHIR Task.status codes; ``ready`` is shown as "scheduled".
    Routing is tracked apart from the status: ``routing_state`` is ``pending``
    while a routing decision is owed, ``routed`` once it is in a queue with a
    ticket, ``no_slot`` while it sits on the worklist of referrals no facility
    could take. ``route_generation`` counts decisions: the decision that moves
    it from generation n to n+1 is unique, so a referral is never assigned twice
    by the same decision.
    """

    class Status(models.TextChoices):
        DRAFT = "draft", _("draft")
        REQUESTED = "requested", _("requested")
        RECEIVED = "received", _("received")
        ACCEPTED = "accepted", _("accepted")
        REJECTED = "rejected", _("rejected")
        READY = "ready", _("scheduled")
        IN_PROGRESS = "in-progress", _("in progress")
        COMPLETED = "completed", _("completed")
        CANCELLED = "cancelled", _("cancelled")

    class Mode(models.TextChoices):
        REMOTE_FIRST = "remote_first", _("remote consultation first")
        PHYSICAL = "physical", _("physical transfer")

    class RoutingState(models.TextChoices):
        NONE = "", _("not submitted")
        PENDING = "pending", _("waiting for routing")
        ROUTED = "routed", _("in a queue")
        NO_SLOT = "no_slot", _("no slot: on the worklist")

    patient = models.ForeignKey(
        PatientProfile,
        on_delete=models.PROTECT,
        related_name="referrals",
        verbose_name=_("patient"),
    )
    requester = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        related_name="referrals_requested",
        verbose_name=_("referred by"),
    )
    requesting_facility = models.ForeignKey(
        Facility,
        on_delete=models.PROTECT,
        related_name="referrals_sent",
        verbose_name=_("referring facility"),
    )
    specialty = models.ForeignKey(
        Specialty, on_delete=models.PROTECT, related_name="referrals", verbose_name=_("specialty")
    )
    priority = models.CharField(
        _("priority"), max_length=10, choices=Priority.choices, default=Priority.ROUTINE
    )
    requested_mode = models.CharField(
        _("requested mode"), max_length=20, choices=Mode.choices, default=Mode.REMOTE_FIRST
    )
    reason = models.CharField(_("reason"), max_length=255)
    clinical_summary = models.TextField(_("clinical summary"), blank=True)
    status = models.CharField(
        _("status"), max_length=20, choices=Status.choices, default=Status.DRAFT
    )
    status_reason = models.CharField(_("status reason"), max_length=255, blank=True)

    routing_state = models.CharField(
        _("routing"), max_length=10, choices=RoutingState.choices, default="", blank=True
    )
    route_generation = models.PositiveIntegerField(default=0)
    # Facilities that rejected it or let its deadline pass: never routed there again.
    excluded_facility_ids = models.JSONField(default=list, blank=True)
    target_facility = models.ForeignKey(
        Facility,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="referrals_received",
        verbose_name=_("receiving facility"),
    )
    queue = models.ForeignKey(
        Queue, on_delete=models.PROTECT, null=True, blank=True, related_name="referrals"
    )
    queue_day = models.DateField(_("queue day"), null=True, blank=True)
    ticket_number = models.PositiveIntegerField(_("ticket"), null=True, blank=True)
    receiving_clinician = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="referrals_received",
        verbose_name=_("receiving clinician"),
    )
    # The advice conversation and its attachments (consult Thread, kind "referral").
    thread_id = models.BigIntegerField(null=True, blank=True)

    created_at = models.DateTimeField(_("created"), default=timezone.now)
    requested_at = models.DateTimeField(_("submitted"), null=True, blank=True)
    routed_at = models.DateTimeField(_("routed"), null=True, blank=True)
    accept_due_at = models.DateTimeField(_("accept by"), null=True, blank=True)
    no_slot_since = models.DateTimeField(null=True, blank=True)
    contact_due_at = models.DateTimeField(_("contact by"), null=True, blank=True)
    escalation_level = models.PositiveSmallIntegerField(default=0)
    escalated_at = models.DateTimeField(null=True, blank=True)
    received_at = models.DateTimeField(null=True, blank=True)
    accepted_at = models.DateTimeField(null=True, blank=True)
    advised_at = models.DateTimeField(null=True, blank=True)
    scheduled_for = models.DateTimeField(_("scheduled for"), null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = _("referral")
        verbose_name_plural = _("referrals")
        indexes = [
            models.Index(fields=["routing_state", "requested_at"], name="referral_routing"),
            models.Index(fields=["queue", "status", "accept_due_at"], name="referral_queue_order"),
            models.Index(fields=["target_facility", "status"], name="referral_target_status"),
            models.Index(fields=["requesting_facility", "status"], name="referral_source_status"),
            models.Index(fields=["status", "accept_due_at"], name="referral_sla"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["queue", "queue_day", "ticket_number"],
                condition=Q(ticket_number__isnull=False),
                name="referral_ticket_once_per_queue_day",
            ),
            models.CheckConstraint(
                condition=~Q(routing_state="routed")
                | (Q(queue__isnull=False) & Q(ticket_number__isnull=False)),
                name="referral_routed_has_ticket",
            ),
        ]

    def __str__(self) -> str:
        return f"{_('Referral')} #{self.pk}"

    @property
    def ticket_label(self) -> str:
        if self.ticket_number is None:
            return ""
        return f"{self.ticket_number:03d}"


class RoutingDecision(models.Model):
    """One routing decision and why it was made: the target, or "no slot", with reasons."""

    class Method(models.TextChoices):
        FIRST = "first", _("on submission")
        RETRY = "retry", _("retry from the no-slot worklist")
        BATCH = "batch", _("batch re-optimisation")
        ESCALATION = "escalation", _("re-routed after the deadline")
        COORDINATOR = "coordinator", _("re-routed by a coordinator")
        REJECTION = "rejection", _("re-routed after a rejection")

    class Outcome(models.TextChoices):
        ASSIGNED = "assigned", _("assigned")
        NO_SLOT = "no_slot", _("no slot")

    referral = models.ForeignKey(Referral, on_delete=models.CASCADE, related_name="decisions")
    generation = models.PositiveIntegerField()
    at = models.DateTimeField(default=timezone.now)
    method = models.CharField(max_length=12, choices=Method.choices)
    outcome = models.CharField(max_length=10, choices=Outcome.choices)
    facility = models.ForeignKey(
        Facility, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    queue_day = models.DateField(null=True, blank=True)
    ticket_number = models.PositiveIntegerField(null=True, blank=True)
    distance_km = models.FloatField(null=True, blank=True)
    reasons = models.JSONField(default=dict)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["referral", "generation"]
        verbose_name = _("routing decision")
        verbose_name_plural = _("routing decisions")
        constraints = [
            models.UniqueConstraint(
                fields=["referral", "generation"], name="routing_decision_once_per_generation"
            )
        ]

    def __str__(self) -> str:
        return f"{self.referral_id}#{self.generation}: {self.outcome}"


class ReferralEvent(models.Model):
    """The recorded history of a referral: every status change and action, who and why."""

    referral = models.ForeignKey(Referral, on_delete=models.CASCADE, related_name="events")
    at = models.DateTimeField(default=timezone.now)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    action = models.CharField(max_length=30)
    from_status = models.CharField(max_length=20, blank=True)
    to_status = models.CharField(max_length=20, blank=True)
    note = models.TextField(blank=True)

    class Meta:
        ordering = ["referral", "at", "id"]
        verbose_name = _("referral event")
        verbose_name_plural = _("referral history")

    def __str__(self) -> str:
        return f"{self.referral_id}: {self.action}"


class CounterReferral(models.Model):
    """The answer back to the referring (lower-level) facility when treatment ends."""

    referral = models.OneToOneField(
        Referral, on_delete=models.CASCADE, related_name="counter_referral"
    )
    from_facility = models.ForeignKey(Facility, on_delete=models.PROTECT, related_name="+")
    to_facility = models.ForeignKey(Facility, on_delete=models.PROTECT, related_name="+")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    care_plan = models.TextField(_("care plan"))
    created_at = models.DateTimeField(default=timezone.now)
    acknowledged_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = _("counter-referral")
        verbose_name_plural = _("counter-referrals")

    def __str__(self) -> str:
        return f"{_('Counter-referral')} #{self.referral_id}"


# --- Appointments ---------------------------------------------------------------------


class AppointmentMode(models.TextChoices):
    VIDEO = "video", _("video visit")
    IN_PERSON = "in_person", _("in person")


class Schedule(models.Model):
    """A clinician's availability (FHIR Schedule): what produces their slots."""

    clinician = models.OneToOneField(
        ClinicianProfile, on_delete=models.CASCADE, related_name="schedule"
    )
    visit_minutes = models.PositiveSmallIntegerField(_("visit length (minutes)"), default=20)
    buffer_minutes = models.PositiveSmallIntegerField(_("buffer between visits"), default=5)
    horizon_days = models.PositiveSmallIntegerField(_("bookable days ahead"), default=28)
    allows_video = models.BooleanField(_("video visits"), default=True)
    allows_in_person = models.BooleanField(_("in-person visits"), default=True)
    is_active = models.BooleanField(_("active"), default=True)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = _("schedule")
        verbose_name_plural = _("schedules")
        constraints = [
            models.CheckConstraint(
                condition=Q(visit_minutes__gte=5) & Q(visit_minutes__lte=240),
                name="schedule_visit_length_sane",
            )
        ]

    def __str__(self) -> str:
        return f"{_('Schedule')}: {self.clinician_id}"


class WeeklyHours(models.Model):
    """Recurring weekly hours, or a recurring break inside them (local time)."""

    class Kind(models.TextChoices):
        HOURS = "hours", _("working hours")
        BREAK = "break", _("break")

    schedule = models.ForeignKey(Schedule, on_delete=models.CASCADE, related_name="weekly")
    weekday = models.PositiveSmallIntegerField(_("weekday (0 = Monday)"))
    start_time = models.TimeField(_("from"))
    end_time = models.TimeField(_("to"))
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.HOURS)

    class Meta:
        ordering = ["weekday", "start_time"]
        constraints = [
            models.CheckConstraint(
                condition=Q(weekday__lte=6) & Q(start_time__lt=models.F("end_time")),
                name="weekly_hours_valid",
            )
        ]

    def __str__(self) -> str:
        return f"{self.weekday} {self.start_time:%H:%M}–{self.end_time:%H:%M} ({self.kind})"


class ScheduleException(models.Model):
    """A one-off change: time off (``blocked``) or extra hours (``extra``)."""

    class Kind(models.TextChoices):
        BLOCKED = "blocked", _("unavailable")
        EXTRA = "extra", _("extra hours")

    schedule = models.ForeignKey(Schedule, on_delete=models.CASCADE, related_name="exceptions")
    starts_at = models.DateTimeField(_("from"))
    ends_at = models.DateTimeField(_("to"))
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.BLOCKED)
    note = models.CharField(_("note"), max_length=200, blank=True)

    class Meta:
        ordering = ["starts_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(starts_at__lt=models.F("ends_at")), name="schedule_exception_valid"
            )
        ]

    def __str__(self) -> str:
        return f"{self.kind}: {self.starts_at:%Y-%m-%d %H:%M}–{self.ends_at:%Y-%m-%d %H:%M}"


class Slot(models.Model):
    """A bookable interval (FHIR Slot). Free, busy (booked), blocked or held for an offer."""

    class Status(models.TextChoices):
        FREE = "free", _("free")
        BUSY = "busy", _("busy")
        BLOCKED = "busy-unavailable", _("blocked")
        HELD = "busy-tentative", _("held for an offer")
        ERROR = "entered-in-error", _("entered in error")

    schedule = models.ForeignKey(Schedule, on_delete=models.CASCADE, related_name="slots")
    start = models.DateTimeField(_("start"))
    end = models.DateTimeField(_("end"))
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.FREE)

    class Meta:
        ordering = ["start"]
        indexes = [models.Index(fields=["schedule", "status", "start"], name="slot_lookup")]
        constraints = [
            models.UniqueConstraint(fields=["schedule", "start"], name="slot_once_per_start"),
        ]

    def __str__(self) -> str:
        return f"{self.start:%Y-%m-%d %H:%M} ({self.status})"


class Appointment(models.Model):
    """A booked visit (FHIR Appointment). A video appointment has a consult visit."""

    class Status(models.TextChoices):
        PROPOSED = "proposed", _("proposed")
        PENDING = "pending", _("pending")
        BOOKED = "booked", _("booked")
        ARRIVED = "arrived", _("arrived")
        FULFILLED = "fulfilled", _("fulfilled")
        CANCELLED = "cancelled", _("cancelled")
        NOSHOW = "noshow", _("did not attend")
        ERROR = "entered-in-error", _("entered in error")
        CHECKED_IN = "checked-in", _("checked in")
        WAITLIST = "waitlist", _("on the waiting list")

    ACTIVE = ("pending", "booked", "arrived", "checked-in")

    patient = models.ForeignKey(
        PatientProfile, on_delete=models.PROTECT, related_name="appointments"
    )
    clinician = models.ForeignKey(
        ClinicianProfile, on_delete=models.PROTECT, related_name="appointments"
    )
    slot = models.ForeignKey(Slot, on_delete=models.PROTECT, related_name="appointments")
    start = models.DateTimeField(_("start"))
    end = models.DateTimeField(_("end"))
    mode = models.CharField(_("mode"), max_length=10, choices=AppointmentMode.choices)
    status = models.CharField(
        _("status"), max_length=20, choices=Status.choices, default=Status.BOOKED
    )
    reason = models.CharField(_("reason"), max_length=255, blank=True)
    booked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    referral = models.ForeignKey(
        Referral, on_delete=models.SET_NULL, null=True, blank=True, related_name="appointments"
    )
    rescheduled_from = models.OneToOneField(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="rescheduled_to"
    )
    reschedule_count = models.PositiveSmallIntegerField(default=0)
    # The consult visit of a video appointment (consult.visit_services.visit_schedule).
    visit_id = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    arrived_at = models.DateTimeField(null=True, blank=True)
    cancelled_at = models.DateTimeField(null=True, blank=True)
    cancelled_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    cancellation_reason = models.CharField(max_length=255, blank=True)

    class Meta:
        ordering = ["start"]
        verbose_name = _("appointment")
        verbose_name_plural = _("appointments")
        indexes = [
            models.Index(fields=["status", "start"], name="appointment_status_start"),
            models.Index(fields=["clinician", "start"], name="appointment_clinician_start"),
            models.Index(fields=["patient", "start"], name="appointment_patient_start"),
        ]
        constraints = [
            # The last line of defence against double booking; the slot's row lock is the first.
            models.UniqueConstraint(
                fields=["slot"],
                condition=Q(status__in=["pending", "booked", "arrived", "checked-in"]),
                name="appointment_one_active_per_slot",
            ),
        ]

    def __str__(self) -> str:
        return f"{_('Appointment')} #{self.pk}"


class AppointmentReminder(models.Model):
    """A reminder sent (once) for an appointment, in the patient's language."""

    class Kind(models.TextChoices):
        DAY_BEFORE = "day_before", _("a day before")
        FIFTEEN_MINUTES = "fifteen_minutes", _("fifteen minutes before")

    appointment = models.ForeignKey(Appointment, on_delete=models.CASCADE, related_name="reminders")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    sent_at = models.DateTimeField(default=timezone.now)
    language = models.CharField(max_length=8)
    text = models.TextField()
    link = models.CharField(max_length=200, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["appointment", "kind"], name="reminder_once_per_kind")
        ]

    def __str__(self) -> str:
        return f"{self.appointment_id}: {self.kind}"


class WaitlistEntry(models.Model):
    """A patient waiting for an earlier slot with a clinician; freed slots are offered in turn."""

    class Status(models.TextChoices):
        WAITING = "waiting", _("waiting")
        OFFERED = "offered", _("slot offered")
        BOOKED = "booked", _("booked")
        EXPIRED = "expired", _("expired")
        CANCELLED = "cancelled", _("cancelled")

    patient = models.ForeignKey(PatientProfile, on_delete=models.CASCADE, related_name="waitlist")
    clinician = models.ForeignKey(
        ClinicianProfile, on_delete=models.CASCADE, related_name="waitlist"
    )
    mode = models.CharField(max_length=10, choices=AppointmentMode.choices)
    not_before = models.DateTimeField(_("not before"))
    not_after = models.DateTimeField(_("not after"))
    reason = models.CharField(_("reason"), max_length=255, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.WAITING)
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    offered_slot = models.ForeignKey(
        Slot, on_delete=models.SET_NULL, null=True, blank=True, related_name="offers"
    )
    offer_expires_at = models.DateTimeField(null=True, blank=True)
    appointment = models.ForeignKey(
        Appointment, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    # Slots this patient turned down (or let expire): never offered to them again.
    declined_slot_ids = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [
            models.Index(fields=["clinician", "status", "created_at"], name="waitlist_turn"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["offered_slot"],
                condition=Q(status="offered"),
                name="waitlist_one_offer_per_slot",
            )
        ]

    def __str__(self) -> str:
        return f"{_('Waiting list')} #{self.pk} ({self.status})"
