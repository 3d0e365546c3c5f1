"""The doctor network: who mentors whom, under which policy, and the national assignment runs.

Write only through ``network.services``; read through ``network.selectors``.
A clinician's level is their facility's level (``ClinicianProfile.level``); a
facility's coverage (how many of its staff have a mentor) is always derived
from ``Mentorship`` rows, never stored.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from telehealth.models import ClinicianProfile, FacilityLevel, PatientProfile, Province

# --- Policy -----------------------------------------------------------------------


class MentoringPolicy(models.Model):
    """Which levels mentor which, and how many each mentor takes.

    One policy is active at a time. Changing the policy means adding a new one and
    activating it: existing mentorships are never touched; a mentor who now holds
    more than the new quota is reported as over quota, not cut.
    """

    name = models.CharField(_("name"), max_length=120)
    is_active = models.BooleanField(_("active"), default=False)
    # Candidates further apart than this are not proposed by auto-assignment and
    # not suggested.
    max_distance_km = models.PositiveIntegerField(_("largest distance (km)"), default=800)
    note = models.CharField(_("note"), max_length=255, blank=True)
    created_at = models.DateTimeField(_("created"), default=timezone.now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = _("mentoring policy")
        verbose_name_plural = _("mentoring policies")
        constraints = [
            models.UniqueConstraint(
                fields=["is_active"], condition=Q(is_active=True), name="network_one_active_policy"
            )
        ]

    def __str__(self) -> str:
        return self.name


class PolicyQuota(models.Model):
    """How many mentees of ``mentee_level`` one mentor at ``mentor_level`` takes.

    A row with a quota above zero is what makes ``mentor_level`` "upper level" for
    ``mentee_level``.
    """

    policy = models.ForeignKey(MentoringPolicy, on_delete=models.CASCADE, related_name="quotas")
    mentor_level = models.PositiveSmallIntegerField(
        _("mentor's level"), choices=FacilityLevel.choices
    )
    mentee_level = models.PositiveSmallIntegerField(
        _("mentee's level"), choices=FacilityLevel.choices
    )
    quota = models.PositiveSmallIntegerField(_("quota"))

    class Meta:
        ordering = ["mentor_level", "mentee_level"]
        verbose_name = _("quota")
        verbose_name_plural = _("quotas")
        constraints = [
            models.UniqueConstraint(
                fields=["policy", "mentor_level", "mentee_level"], name="network_quota_once"
            ),
            models.CheckConstraint(
                condition=Q(mentor_level__lt=F("mentee_level")),
                name="network_quota_mentor_is_upper_level",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.mentor_level} → {self.mentee_level}: {self.quota}"


# --- The graph ----------------------------------------------------------------------


class Mentorship(models.Model):
    """A link between an upper-level doctor (mentor) and a lower-level clinician (mentee).

    requested → accepted | declined; requested or accepted → ended (with a reason).
    At most one live (requested or accepted) link per pair.
    """

    class State(models.TextChoices):
        REQUESTED = "requested", _("requested")
        ACCEPTED = "accepted", _("accepted")
        DECLINED = "declined", _("declined")
        ENDED = "ended", _("ended")

    class EndReason(models.TextChoices):
        COMPLETED = "completed", _("the mentoring is complete")
        WITHDRAWN = "withdrawn", _("request withdrawn")
        MOVED = "moved", _("one of us moved or changed role")
        UNAVAILABLE = "unavailable", _("no time to continue")
        MISMATCH = "mismatch", _("not a good match")
        EXPIRED = "expired", _("nobody answered the request")
        OTHER = "other", _("other")

    class Source(models.TextChoices):
        DIRECT = "direct", _("asked directly")
        SUGGESTION = "suggestion", _("from a suggestion")
        AUTO = "auto", _("proposed by auto-assignment")

    LIVE_STATES = (State.REQUESTED, State.ACCEPTED)

    mentor = models.ForeignKey(
        ClinicianProfile,
        on_delete=models.PROTECT,
        related_name="mentorships_as_mentor",
        verbose_name=_("mentor"),
    )
    mentee = models.ForeignKey(
        ClinicianProfile,
        on_delete=models.PROTECT,
        related_name="mentorships_as_mentee",
        verbose_name=_("mentee"),
    )
    # Which of the mentor's quota slots the link takes: the mentee's level when it
    # was asked for. Kept with the link so that a mentee moving facility never
    # silently moves quota between levels; coverage uses the live level.
    mentee_level = models.PositiveSmallIntegerField(
        _("mentee's level"), choices=FacilityLevel.choices
    )
    state = models.CharField(
        _("state"), max_length=12, choices=State.choices, default=State.REQUESTED
    )
    source = models.CharField(
        _("source"), max_length=12, choices=Source.choices, default=Source.DIRECT
    )
    message = models.CharField(_("message"), max_length=500, blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    requested_at = models.DateTimeField(_("requested"), default=timezone.now)
    responded_at = models.DateTimeField(_("answered"), null=True, blank=True)
    ended_at = models.DateTimeField(_("ended"), null=True, blank=True)
    ended_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    end_reason = models.CharField(
        _("why it ended"), max_length=12, choices=EndReason.choices, blank=True
    )
    end_note = models.CharField(_("note"), max_length=500, blank=True)
    thread = models.ForeignKey(
        "consult.Thread",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("conversation"),
    )

    class Meta:
        ordering = ["-requested_at", "-id"]
        verbose_name = _("mentorship")
        verbose_name_plural = _("mentorships")
        constraints = [
            models.UniqueConstraint(
                fields=["mentor", "mentee"],
                condition=Q(state__in=["requested", "accepted"]),
                name="network_mentorship_live_once",
            ),
            models.CheckConstraint(
                condition=~Q(mentor=F("mentee")), name="network_mentorship_not_self"
            ),
        ]
        indexes = [
            models.Index(fields=["mentor", "state", "mentee_level"], name="network_mentor_load"),
            models.Index(fields=["mentee", "state"], name="network_mentee_state"),
        ]

    def __str__(self) -> str:
        return f"{self.mentor_id} → {self.mentee_id} ({self.state})"

    @property
    def is_live(self) -> bool:
        return self.state in self.LIVE_STATES


class MentorshipEvent(models.Model):
    """The history of a mentorship: every change of state, who made it and why."""

    mentorship = models.ForeignKey(Mentorship, on_delete=models.CASCADE, related_name="events")
    at = models.DateTimeField(_("when"), default=timezone.now)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    state = models.CharField(_("state"), max_length=12, choices=Mentorship.State.choices)
    note = models.CharField(_("note"), max_length=500, blank=True)

    class Meta:
        ordering = ["at", "id"]
        verbose_name = _("mentorship event")
        verbose_name_plural = _("mentorship history")

    def __str__(self) -> str:
        return f"{self.mentorship_id}: {self.state}"


# --- Case conferences -----------------------------------------------------------------


class CaseConference(models.Model):
    """A mentor presents a case to several mentees and colleagues in one thread.

    The presentation and the discussion are messages of the thread (with
    attachments); the recommendations are recorded here when it is concluded.
    """

    class State(models.TextChoices):
        OPEN = "open", _("open")
        CONCLUDED = "concluded", _("concluded")

    organiser = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    subject = models.CharField(_("subject"), max_length=200)
    patient = models.ForeignKey(
        PatientProfile,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("patient"),
    )
    thread = models.ForeignKey(
        "consult.Thread", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    state = models.CharField(_("state"), max_length=12, choices=State.choices, default=State.OPEN)
    created_at = models.DateTimeField(_("opened"), default=timezone.now)
    presented_at = models.DateTimeField(_("presented"), null=True, blank=True)
    recommendations = models.TextField(_("recommendations"), blank=True)
    concluded_at = models.DateTimeField(_("concluded"), null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = _("case conference")
        verbose_name_plural = _("case conferences")

    def __str__(self) -> str:
        return self.subject


# --- National auto-assignment -----------------------------------------------------------


class AssignmentRun(models.Model):
    """One optimisation of mentor-mentee pairs, for a province or the whole country.

    queued → running → proposed (or failed); a coordinator reviews the proposals,
    then applying turns the accepted ones into mentorship requests.
    """

    class State(models.TextChoices):
        QUEUED = "queued", _("queued")
        RUNNING = "running", _("running")
        PROPOSED = "proposed", _("ready for review")
        FAILED = "failed", _("failed")
        APPLYING = "applying", _("applying")
        APPLIED = "applied", _("applied")

    province = models.ForeignKey(
        Province,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("province (empty: the whole country)"),
    )
    policy = models.ForeignKey(MentoringPolicy, on_delete=models.SET_NULL, null=True, blank=True)
    max_distance_km = models.PositiveIntegerField(_("largest distance (km)"))
    state = models.CharField(_("state"), max_length=12, choices=State.choices, default=State.QUEUED)
    progress = models.PositiveSmallIntegerField(_("progress (%)"), default=0)
    stage = models.CharField(_("stage"), max_length=60, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(_("created"), default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    mentees = models.PositiveIntegerField(_("mentees without a mentor"), default=0)
    mentors = models.PositiveIntegerField(_("mentors with free places"), default=0)
    places = models.PositiveIntegerField(_("free places"), default=0)
    arcs = models.PositiveIntegerField(_("candidate pairs"), default=0)
    assigned = models.PositiveIntegerField(_("assigned"), default=0)
    cost = models.BigIntegerField(_("total cost"), null=True, blank=True)
    greedy_assigned = models.PositiveIntegerField(_("assigned by the greedy baseline"), default=0)
    greedy_cost = models.BigIntegerField(_("cost of the greedy baseline"), null=True, blank=True)
    # Seconds per stage: read, arcs, solve, greedy, store, total.
    timings = models.JSONField(default=dict, blank=True)
    error = models.CharField(max_length=500, blank=True)
    # Applying: who asked (the requests are sent in their name) and when the apply task
    # last showed it was alive; the sweeper sends the task again when that is old.
    applied_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
    applying_seen_at = models.DateTimeField(null=True, blank=True)
    apply_resends = models.PositiveSmallIntegerField(default=0)
    applied_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = _("auto-assignment run")
        verbose_name_plural = _("auto-assignment runs")

    def __str__(self) -> str:
        return f"#{self.pk} {self.province or 'national'} ({self.state})"

    @property
    def coverage(self) -> float | None:
        return self.assigned / self.mentees if self.mentees else None

    @property
    def greedy_coverage(self) -> float | None:
        return self.greedy_assigned / self.mentees if self.mentees else None


class AssignmentProposal(models.Model):
    """One proposed pair of a run. Why it was proposed is kept as facts, shown as a
    sentence in the reader's language."""

    class Status(models.TextChoices):
        PROPOSED = "proposed", _("proposed")
        ACCEPTED = "accepted", _("accepted")
        REJECTED = "rejected", _("rejected")
        APPLIED = "applied", _("request sent")
        SKIPPED = "skipped", _("could not be applied")

    run = models.ForeignKey(AssignmentRun, on_delete=models.CASCADE, related_name="proposals")
    mentor = models.ForeignKey(ClinicianProfile, on_delete=models.CASCADE, related_name="+")
    mentee = models.ForeignKey(ClinicianProfile, on_delete=models.CASCADE, related_name="+")
    mentee_level = models.PositiveSmallIntegerField(choices=FacilityLevel.choices)
    cost = models.PositiveIntegerField(_("cost"))
    distance_km = models.FloatField(_("distance (km)"))
    specialty_match = models.BooleanField(_("same specialty"))
    on_referral_line = models.BooleanField(_("on the referral line"))
    status = models.CharField(
        _("status"), max_length=10, choices=Status.choices, default=Status.PROPOSED
    )
    note = models.CharField(max_length=255, blank=True)
    mentorship = models.ForeignKey(
        Mentorship, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["id"]
        verbose_name = _("proposal")
        verbose_name_plural = _("proposals")
        constraints = [
            models.UniqueConstraint(fields=["run", "mentee"], name="network_proposal_mentee_once")
        ]
        indexes = [models.Index(fields=["run", "status"], name="network_proposal_status")]

    def __str__(self) -> str:
        return f"{self.run_id}: {self.mentor_id} → {self.mentee_id}"
