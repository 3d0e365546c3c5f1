"""What a patient agreed to, what they asked of us, and what is held back because of it.

Personal data protection (Law 91/2025/QH15, Decree 356/2025/ND-CP): consent is
recorded per purpose against a versioned notice (``privacy.notices``), never
overwritten; a patient's requests (correction, restriction, deletion) are
handled by coordinators against a deadline; a restriction holds the record
back from processing that is not care.

Other apps read these through ``privacy.selectors`` (``consent_allows``) and
change them through ``privacy.services``; they never write them directly.
"""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from telehealth.models import PatientProfile


class Purpose(models.TextChoices):
    """The fixed list of purposes a patient is asked about. A new purpose needs a new
    notice version (``privacy.notices``) that describes it."""

    CARE = "care", _("Examination and care through the telehealth service")
    RECORDING = "recording", _("Recording of video visits")
    REFERRAL_SHARING = (
        "referral_sharing",
        _("Sharing the record with a facility that has not cared for the patient, on referral"),
    )
    CASE_DISCUSSION = "case_discussion", _("Discussion of the case in mentoring case conferences")


class AppendOnlyQuerySet(models.QuerySet):
    def update(self, **kwargs):  # type: ignore[no-untyped-def]
        raise RecordIsAppendOnly("consent records cannot be changed; record a new decision")

    def delete(self):  # type: ignore[no-untyped-def]
        raise RecordIsAppendOnly("consent records cannot be deleted; record a withdrawal")


class RecordIsAppendOnly(Exception):
    pass


class ConsentRecord(models.Model):
    """One decision of a patient about the purposes of the notice they read.

    ``purposes`` is the whole set the patient agrees to after this decision;
    ``given`` and ``withdrawn`` say what this decision changed. The latest
    decision (by ``decided_at``, then id) is the one in force. Append-only:
    a withdrawal is a new record, and the history is the evidence the law asks for.
    """

    class Action(models.TextChoices):
        ANSWERED = "answered", _("answered the privacy notice")
        GIVEN = "given", _("gave consent")
        WITHDRAWN = "withdrawn", _("withdrew consent")

    class Method(models.TextChoices):
        WEB = "web", _("on the privacy page")
        PAPER = "paper", _("on a paper form, recorded by a health worker")
        API = "api", _("through the API")
        IMPORTED = "imported", _("imported with the patient's record")

    patient = models.ForeignKey(
        PatientProfile, on_delete=models.PROTECT, related_name="consent_records"
    )
    notice_version = models.CharField(_("notice version"), max_length=20)
    action = models.CharField(_("decision"), max_length=12, choices=Action.choices)
    purposes = models.JSONField(_("purposes agreed to"), default=list)
    given = models.JSONField(default=list, blank=True)
    withdrawn = models.JSONField(default=list, blank=True)
    method = models.CharField(_("how"), max_length=10, choices=Method.choices)
    recorded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("recorded by"),
    )
    # When the patient decided (a paper form: the date on the form); when we wrote it down.
    decided_at = models.DateTimeField(_("decided"), default=timezone.now)
    recorded_at = models.DateTimeField(_("recorded"), default=timezone.now)
    note = models.CharField(_("note"), max_length=255, blank=True)

    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        ordering = ["-decided_at", "-id"]
        verbose_name = _("consent record")
        verbose_name_plural = _("consent records")
        indexes = [
            models.Index(fields=["patient", "-decided_at", "-id"], name="consent_patient_latest"),
        ]

    def __str__(self) -> str:
        return f"{self.patient_id} {self.action} {self.purposes} ({self.notice_version})"

    def save(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        if self.pk is not None:
            raise RecordIsAppendOnly("consent records cannot be changed; record a new decision")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        raise RecordIsAppendOnly("consent records cannot be deleted; record a withdrawal")


class DataRequest(models.Model):
    """A patient's request about their data: correct it, restrict it, delete it.

    received → in progress → done, or refused with a reason. Both deadlines are set
    when it is received (``privacy.deadlines``): ``respond_by`` (take it or refuse
    it) and ``due_at`` (complete it). At most one open request of each kind per
    patient.
    """

    class Kind(models.TextChoices):
        CORRECTION = "correction", _("correct my data")
        RESTRICTION = "restriction", _("restrict the processing of my data")
        DELETION = "deletion", _("delete my data")

    class Status(models.TextChoices):
        RECEIVED = "received", pgettext_lazy("data request", "received")
        IN_PROGRESS = "in_progress", pgettext_lazy("data request", "in progress")
        DONE = "done", pgettext_lazy("data request", "done")
        REFUSED = "refused", pgettext_lazy("data request", "refused")

    OPEN = (Status.RECEIVED, Status.IN_PROGRESS)

    patient = models.ForeignKey(
        PatientProfile, on_delete=models.PROTECT, related_name="data_requests"
    )
    kind = models.CharField(_("kind"), max_length=12, choices=Kind.choices)
    status = models.CharField(
        _("status"), max_length=12, choices=Status.choices, default=Status.RECEIVED
    )
    details = models.TextField(_("details"), blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(_("received"), default=timezone.now)
    respond_by = models.DateTimeField(_("respond by"))
    due_at = models.DateTimeField(_("complete by"))
    handler = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("handled by"),
    )
    started_at = models.DateTimeField(
        pgettext_lazy("data request", "started"), null=True, blank=True
    )
    closed_at = models.DateTimeField(pgettext_lazy("data request", "closed"), null=True, blank=True)
    outcome = models.TextField(_("outcome"), blank=True)
    # What was changed, deleted and kept (with why and until when): shown to the patient.
    result = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["due_at", "id"]
        verbose_name = _("data request")
        verbose_name_plural = _("data requests")
        indexes = [
            models.Index(fields=["status", "due_at"], name="datarequest_status_due"),
            models.Index(fields=["patient", "created_at"], name="datarequest_patient"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["patient", "kind"],
                condition=Q(status__in=["received", "in_progress"]),
                name="datarequest_one_open_per_kind",
            )
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.kind} {self.status}"

    @property
    def is_open(self) -> bool:
        return self.status in self.OPEN

    @property
    def extended(self) -> bool:
        """Whether the completion deadline was extended (once is all the law allows)."""
        return any(e.action == "extended" for e in self.events.all())

    @property
    def can_extend(self) -> bool:
        """Open, not extended yet, and its completion deadline still ahead."""
        return self.is_open and not self.extended and self.due_at >= timezone.now()

    @property
    def awaits_response(self) -> bool:
        """Received and not yet taken or refused, with responding the nearer deadline."""
        return self.status == self.Status.RECEIVED and self.respond_by <= self.due_at

    @property
    def next_deadline(self) -> datetime:
        """The deadline the request waits on: responding while received (or completing,
        if that comes first), completing once in progress."""
        return self.respond_by if self.awaits_response else self.due_at

    @property
    def is_overdue(self) -> bool:
        return self.is_open and self.next_deadline < timezone.now()


class DataRequestEvent(models.Model):
    """What happened to a request, in order: received, started, done or refused."""

    request = models.ForeignKey(DataRequest, on_delete=models.CASCADE, related_name="events")
    at = models.DateTimeField(default=timezone.now)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    action = models.CharField(max_length=20)
    from_status = models.CharField(max_length=12, blank=True)
    to_status = models.CharField(max_length=12, blank=True)
    note = models.TextField(blank=True)

    class Meta:
        ordering = ["at", "id"]
        verbose_name = _("data request event")
        verbose_name_plural = _("data request events")

    def __str__(self) -> str:
        return f"{self.request_id} {self.action}"


class ProcessingRestriction(models.Model):
    """While active, the patient's record is held back from processing that is not
    care: recording, sharing with a new facility, case conferences.

    From a restriction request (active from the moment it is received until the
    patient lifts it or a coordinator refuses the request), or from a deletion
    (the medical record kept until its legal retention ends).
    """

    class Reason(models.TextChoices):
        REQUEST = "request", _("the patient asked for it")
        RETENTION = "retention", _("kept only for its legal retention after deletion")

    patient = models.ForeignKey(
        PatientProfile, on_delete=models.PROTECT, related_name="processing_restrictions"
    )
    reason = models.CharField(_("why"), max_length=12, choices=Reason.choices)
    request = models.ForeignKey(
        DataRequest, on_delete=models.PROTECT, null=True, blank=True, related_name="restrictions"
    )
    starts_at = models.DateTimeField(pgettext_lazy("restriction", "from"), default=timezone.now)
    ends_at = models.DateTimeField(_("until"), null=True, blank=True)
    ended_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["-starts_at", "-id"]
        verbose_name = _("processing restriction")
        verbose_name_plural = _("processing restrictions")
        indexes = [models.Index(fields=["patient", "ends_at"], name="restriction_patient_end")]

    def __str__(self) -> str:
        return f"{self.patient_id} {self.reason} {self.starts_at:%Y-%m-%d}–{self.ends_at or ''}"
