"""The shared kernel: where things are, who people are, and what was done to whose data.

Other apps read these models through ``telehealth.selectors`` and change them
through ``telehealth.services``; they never write them directly.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from django.contrib.auth.models import AbstractUser
from django.contrib.auth.models import UserManager as DjangoUserManager
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

# --- Where ----------------------------------------------------------------------


class Province(models.Model):
    """One of the 34 provinces and centrally-run cities since 1 July 2025."""

    code = models.CharField(_("code"), max_length=4, unique=True)
    name = models.CharField(_("name"), max_length=100)
    short_name = models.CharField(_("short name"), max_length=60)
    is_city = models.BooleanField(_("centrally-run city"), default=False)
    latitude = models.FloatField(_("latitude"))
    longitude = models.FloatField(_("longitude"))

    class Meta:
        ordering = ["code"]
        verbose_name = _("province")
        verbose_name_plural = _("provinces")

    def __str__(self) -> str:
        return self.name


class LegacyProvince(models.Model):
    """One of the 63 provinces before 1 July 2025, so older records still resolve."""

    code = models.CharField(_("code"), max_length=4, unique=True)
    name = models.CharField(_("name"), max_length=100)
    short_name = models.CharField(_("short name"), max_length=60)
    province = models.ForeignKey(
        Province,
        on_delete=models.PROTECT,
        related_name="legacy_provinces",
        verbose_name=_("merged into"),
    )

    class Meta:
        ordering = ["code"]
        verbose_name = _("legacy province (before 2025)")
        verbose_name_plural = _("legacy provinces (before 2025)")

    def __str__(self) -> str:
        return f"{self.name} → {self.province.short_name}"


class Commune(models.Model):
    """A commune, ward or special zone of the two-level local government."""

    code = models.CharField(_("code"), max_length=8, unique=True)
    name = models.CharField(_("name"), max_length=120)
    kind = models.CharField(_("kind"), max_length=20)
    province = models.ForeignKey(
        Province, on_delete=models.PROTECT, related_name="communes", verbose_name=_("province")
    )
    latitude = models.FloatField(_("latitude"))
    longitude = models.FloatField(_("longitude"))
    area_km2 = models.FloatField(_("area (km²)"), null=True, blank=True)

    class Meta:
        ordering = ["code"]
        verbose_name = _("commune or ward")
        verbose_name_plural = _("communes and wards")

    def __str__(self) -> str:
        return self.name


class Specialty(models.Model):
    code = models.SlugField(_("code"), max_length=40, unique=True)
    name_vi = models.CharField(_("name (Vietnamese)"), max_length=100)
    name_en = models.CharField(_("name (English)"), max_length=100)

    class Meta:
        ordering = ["code"]
        verbose_name = _("specialty")
        verbose_name_plural = _("specialties")

    def __str__(self) -> str:
        return self.name

    @property
    def name(self) -> str:
        from django.utils.translation import get_language

        return self.name_en if (get_language() or "vi").startswith("en") else self.name_vi


class FacilityLevel(models.IntegerChoices):
    """Lower numbers are higher levels: a referral goes up when the number goes down."""

    CENTRAL = 1, _("central")
    PROVINCIAL = 2, _("provincial")
    DISTRICT = 3, _("district / regional")
    COMMUNE = 4, _("commune health station")


class Facility(models.Model):
    code = models.CharField(_("code"), max_length=20, unique=True)
    name = models.CharField(_("name"), max_length=200)
    # Lower-case, without diacritics: "bach mai" finds "Bệnh viện Bạch Mai".
    search_name = models.CharField(max_length=200, editable=False, db_index=True)
    level = models.PositiveSmallIntegerField(_("level"), choices=FacilityLevel.choices)
    province = models.ForeignKey(
        Province, on_delete=models.PROTECT, related_name="facilities", verbose_name=_("province")
    )
    commune = models.ForeignKey(
        Commune,
        on_delete=models.PROTECT,
        related_name="facilities",
        null=True,
        blank=True,
        verbose_name=_("commune or ward"),
    )
    parent = models.ForeignKey(
        "self",
        on_delete=models.PROTECT,
        related_name="children",
        null=True,
        blank=True,
        verbose_name=_("parent facility"),
    )
    address = models.CharField(_("address"), max_length=255, blank=True)
    latitude = models.FloatField(_("latitude"))
    longitude = models.FloatField(_("longitude"))
    is_telehealth_hub = models.BooleanField(_("telehealth hub"), default=False)
    is_active = models.BooleanField(_("active"), default=True)
    specialties = models.ManyToManyField(
        Specialty,
        through="FacilitySpecialty",
        related_name="facilities",
        verbose_name=_("specialties offered"),
    )

    class Meta:
        ordering = ["level", "code"]
        verbose_name = _("facility")
        verbose_name_plural = _("facilities")
        indexes = [models.Index(fields=["province", "level"], name="facility_province_level")]
        constraints = [
            models.CheckConstraint(
                condition=Q(latitude__gte=-90, latitude__lte=90)
                & Q(longitude__gte=-180, longitude__lte=180),
                name="facility_coordinates_valid",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def save(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        self.search_name = search_key(self.name)
        update_fields = kwargs.get("update_fields")
        if update_fields is not None and "name" in update_fields:
            kwargs["update_fields"] = {*update_fields, "search_name"}
        super().save(*args, **kwargs)


class FacilitySpecialty(models.Model):
    """A specialty a facility offers, with how many referrals a day it can take."""

    facility = models.ForeignKey(Facility, on_delete=models.CASCADE, related_name="offerings")
    specialty = models.ForeignKey(Specialty, on_delete=models.PROTECT, related_name="offerings")
    daily_referral_capacity = models.PositiveIntegerField(_("daily referral capacity"), default=0)

    class Meta:
        verbose_name = _("specialty offered")
        verbose_name_plural = _("specialties offered")
        constraints = [
            models.UniqueConstraint(
                fields=["facility", "specialty"], name="facility_specialty_once"
            )
        ]

    def __str__(self) -> str:
        return f"{self.facility.code}: {self.specialty.code} ({self.daily_referral_capacity}/d)"


def search_key(text: str) -> str:
    """Lower-case ASCII form of a Vietnamese name, for accent-insensitive search."""
    from unidecode import unidecode

    return " ".join(unidecode(text).lower().split())


# --- Who ------------------------------------------------------------------------


class Role(models.TextChoices):
    PATIENT = "patient", _("patient")
    DOCTOR = "doctor", _("doctor")
    HEALTH_WORKER = "health_worker", _("commune health worker")
    COORDINATOR = "coordinator", _("coordinator")
    PRIVACY_OFFICER = "privacy_officer", _("privacy officer")
    ADMINISTRATOR = "administrator", _("administrator")


class UserQuerySet(models.QuerySet["User"]):
    def update(self, **kwargs: Any) -> int:
        """A bulk update that may turn ``is_active`` off (``update(is_active=False)``,
        ``0``, an expression, ``bulk_update(..., ["is_active"])``) deactivates each
        account it turned off the way one save does: sessions, sockets and API tokens
        closed, audited (``services.user_deactivate``). Every other update is Django's."""
        if "is_active" not in kwargs or kwargs["is_active"] is True:
            return super().update(**kwargs)
        from django.db import transaction

        from telehealth import services

        with transaction.atomic(using=self.db):
            ids = list(self.filter(is_active=True).values_list("pk", flat=True))
            updated = super().update(**kwargs)
            for user in User.objects.filter(pk__in=ids, is_active=False):
                services.user_deactivate(user=user, reason="is_active turned off in bulk")
        return updated

    def update_rows(self, **kwargs: Any) -> int:
        """Django's update, with nothing added: for ``user_deactivate`` itself."""
        return super().update(**kwargs)


class UserManager(DjangoUserManager.from_queryset(UserQuerySet)):  # type: ignore[misc]
    pass


class User(AbstractUser):
    """A person who signs in. Roles come from the profiles the person holds.

    One person can be, say, a doctor and a patient, or a doctor and a
    coordinator: each role is its own profile row, never a flag here.
    """

    objects = UserManager()

    full_name = models.CharField(_("full name"), max_length=150, blank=True)
    phone = models.CharField(_("phone"), max_length=20, blank=True)
    preferred_language = models.CharField(
        _("preferred language"),
        max_length=8,
        choices=[("vi", "Tiếng Việt"), ("en", "English")],
        default="vi",
    )

    class Meta(AbstractUser.Meta):
        swappable = "AUTH_USER_MODEL"
        verbose_name = _("person")
        verbose_name_plural = _("people")

    def __str__(self) -> str:
        return self.display_name

    @property
    def display_name(self) -> str:
        return self.full_name or self.get_full_name() or self.username

    @property
    def roles(self) -> set[str]:
        """The roles this person holds. Reads the profiles; cache with select_related."""
        held: set[str] = set()
        if hasattr(self, "patient_profile"):
            held.add(Role.PATIENT)
        clinician = getattr(self, "clinician_profile", None)
        if clinician is not None:
            held.add(clinician.kind)
        if self.coordinator_assignments.exists():
            held.add(Role.COORDINATOR)
        if self.privacy_officer_assignments.exists():
            held.add(Role.PRIVACY_OFFICER)
        if self.is_staff:
            held.add(Role.ADMINISTRATOR)
        return held


class Sex(models.TextChoices):
    FEMALE = "female", _("female")
    MALE = "male", _("male")
    OTHER = "other", _("other")
    UNKNOWN = "unknown", _("unknown")


class PatientProfile(models.Model):
    """Who the patient is. Sensitive: read only through the access helper."""

    user = models.OneToOneField(User, on_delete=models.CASCADE, related_name="patient_profile")
    date_of_birth = models.DateField(_("date of birth"), null=True, blank=True)
    sex = models.CharField(_("sex"), max_length=10, choices=Sex.choices, default=Sex.UNKNOWN)
    health_insurance_number = models.CharField(
        _("health insurance number"), max_length=20, blank=True
    )
    home_commune = models.ForeignKey(
        Commune,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("home commune or ward"),
    )
    address = models.CharField(_("address"), max_length=255, blank=True)

    class Meta:
        verbose_name = _("patient")
        verbose_name_plural = _("patients")

    def __str__(self) -> str:
        return self.user.display_name


class ClinicianProfile(models.Model):
    """A doctor or a commune health worker, at one facility.

    The level is the facility's level, never stored twice.
    """

    class Kind(models.TextChoices):
        DOCTOR = Role.DOCTOR.value, _("doctor")
        HEALTH_WORKER = Role.HEALTH_WORKER.value, _("commune health worker")

    user = models.OneToOneField(User, on_delete=models.CASCADE, related_name="clinician_profile")
    kind = models.CharField(_("kind"), max_length=20, choices=Kind.choices)
    facility = models.ForeignKey(
        Facility, on_delete=models.PROTECT, related_name="clinicians", verbose_name=_("facility")
    )
    specialties = models.ManyToManyField(
        Specialty, related_name="clinicians", blank=True, verbose_name=_("specialties")
    )
    licence_number = models.CharField(
        _("licence number"), max_length=30, null=True, blank=True, unique=True
    )
    title = models.CharField(_("title"), max_length=60, blank=True)

    class Meta:
        verbose_name = _("clinician")
        verbose_name_plural = _("clinicians")
        indexes = [models.Index(fields=["facility", "kind"], name="clinician_facility_kind")]

    def __str__(self) -> str:
        return f"{self.user.display_name} ({self.facility.code})"

    @property
    def level(self) -> int:
        return self.facility.level


class CoordinatorAssignment(models.Model):
    """A coordinator's scope: one facility, or a whole province."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="coordinator_assignments")
    facility = models.ForeignKey(
        Facility,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="coordinators",
        verbose_name=_("facility"),
    )
    province = models.ForeignKey(
        Province,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="coordinators",
        verbose_name=_("province"),
    )

    class Meta:
        verbose_name = _("coordinator assignment")
        verbose_name_plural = _("coordinator assignments")
        constraints = [
            models.CheckConstraint(
                condition=(Q(facility__isnull=False) & Q(province__isnull=True))
                | (Q(facility__isnull=True) & Q(province__isnull=False)),
                name="coordinator_scope_is_facility_xor_province",
            ),
            models.UniqueConstraint(
                fields=["user", "facility"],
                condition=Q(facility__isnull=False),
                name="coordinator_facility_once",
            ),
            models.UniqueConstraint(
                fields=["user", "province"],
                condition=Q(province__isnull=False),
                name="coordinator_province_once",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user.display_name} → {self.facility or self.province}"


class PrivacyOfficerAssignment(models.Model):
    """Who reviews emergency (break-glass) access for a facility.

    A role of its own, like a coordinator's scope: a person may be a privacy
    officer of one or more facilities whatever else they are. Break-glass
    alerts go to the officers of the facility of the doctor who broke the glass.
    """

    user = models.ForeignKey(
        User, on_delete=models.CASCADE, related_name="privacy_officer_assignments"
    )
    facility = models.ForeignKey(
        Facility,
        on_delete=models.CASCADE,
        related_name="privacy_officers",
        verbose_name=_("facility"),
    )

    class Meta:
        verbose_name = _("privacy officer assignment")
        verbose_name_plural = _("privacy officer assignments")
        constraints = [
            models.UniqueConstraint(fields=["user", "facility"], name="privacy_officer_once")
        ]

    def __str__(self) -> str:
        return f"{self.user.display_name} → {self.facility}"


class CareRelationship(models.Model):
    """Why a person may see a patient's data: the care team, a visit, a referral.

    Apps grant and end these through ``telehealth.services``; the access helper
    reads them. A relationship with ``ends_at`` in the past no longer grants access.
    """

    class Kind(models.TextChoices):
        PRIMARY = "primary", _("primary care")
        CONSULTATION = "consultation", _("consultation")
        VISIT = "visit", _("video visit")
        REFERRAL = "referral", _("referral")
        MENTORING = "mentoring", _("case discussion with a mentor")
        BREAK_GLASS = "break_glass", _("emergency access")

    patient = models.ForeignKey(
        PatientProfile, on_delete=models.CASCADE, related_name="care_relationships"
    )
    member = models.ForeignKey(User, on_delete=models.CASCADE, related_name="care_relationships")
    kind = models.CharField(_("kind"), max_length=20, choices=Kind.choices)
    # What the relationship hangs on, for example "scheduler.referral:42".
    source = models.CharField(_("source"), max_length=80, blank=True)
    starts_at = models.DateTimeField(_("starts"), default=timezone.now)
    ends_at = models.DateTimeField(_("ends"), null=True, blank=True)
    granted_by = models.ForeignKey(
        User, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        verbose_name = _("care relationship")
        verbose_name_plural = _("care relationships")
        indexes = [
            models.Index(fields=["member", "patient"], name="care_member_patient"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["patient", "member", "kind", "source"], name="care_relationship_once"
            )
        ]

    def __str__(self) -> str:
        return f"{self.member} → {self.patient} ({self.kind})"


class BreakGlassAccess(models.Model):
    """A doctor outside the care relationship opened a patient's record in an emergency.

    Written only by ``telehealth.services.break_glass_open``, which grants a
    ``break_glass`` care relationship ending at ``ends_at`` and alerts the
    privacy officers of ``facility`` (the doctor's facility at that moment).
    An officer then reviews it: justified, or not (which ends it at once).
    """

    class Review(models.TextChoices):
        PENDING = "pending", _("pending review")
        JUSTIFIED = "justified", _("justified")
        NOT_JUSTIFIED = "not_justified", _("not justified")

    doctor = models.ForeignKey(
        User,
        on_delete=models.PROTECT,
        related_name="break_glass_accesses",
        verbose_name=_("doctor"),
    )
    patient = models.ForeignKey(
        PatientProfile,
        on_delete=models.PROTECT,
        related_name="break_glass_accesses",
        verbose_name=_("patient"),
    )
    facility = models.ForeignKey(
        Facility, on_delete=models.PROTECT, related_name="break_glass_accesses"
    )
    reason = models.TextField(_("reason"))
    started_at = models.DateTimeField(_("started"), default=timezone.now)
    ends_at = models.DateTimeField(_("ends"))
    relationship = models.OneToOneField(
        CareRelationship,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="break_glass_access",
    )
    # The alert: when it was sent and to whom (the facility's privacy officers then).
    alerted_at = models.DateTimeField(_("alert sent"), null=True, blank=True)
    alerted_officers = models.ManyToManyField(User, related_name="+", blank=True)
    review_state = models.CharField(
        _("review"), max_length=20, choices=Review.choices, default=Review.PENDING
    )
    reviewed_by = models.ForeignKey(
        User, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    review_note = models.TextField(_("reviewer's note"), blank=True)
    reviewed_at = models.DateTimeField(_("reviewed"), null=True, blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]
        verbose_name = _("emergency access")
        verbose_name_plural = _("emergency accesses")
        indexes = [
            models.Index(
                fields=["facility", "review_state", "started_at"], name="breakglass_review"
            ),
            models.Index(fields=["patient", "started_at"], name="breakglass_patient"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(ends_at__gt=models.F("started_at")), name="breakglass_ends_after_start"
            ),
            models.CheckConstraint(
                condition=Q(review_state="pending")
                | (Q(reviewed_by__isnull=False) & Q(reviewed_at__isnull=False)),
                name="breakglass_review_has_reviewer",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.doctor} → {self.patient} ({self.started_at:%Y-%m-%d %H:%M})"

    @property
    def is_active(self) -> bool:
        return self.started_at <= timezone.now() < self.ends_at


# --- What was done --------------------------------------------------------------


class AuditQuerySet(models.QuerySet["AuditEvent"]):
    def update(self, **kwargs):  # type: ignore[no-untyped-def]
        raise AuditLogIsAppendOnly("audit events cannot be changed")

    def delete(self):  # type: ignore[no-untyped-def]
        raise AuditLogIsAppendOnly("audit events cannot be deleted")


class AuditLogIsAppendOnly(Exception):
    pass


class AuditEvent(models.Model):
    """Who read or changed which patient's data, when, from where and why.

    Append-only: the ORM refuses updates and deletes, and on PostgreSQL a trigger
    refuses them too. Each row carries the hash of the row before it, so a
    changed or removed row breaks the chain (``telehealth.audit.audit_verify_chain``).
    Write rows only with ``telehealth.audit.audit_record``.
    """

    class Action(models.TextChoices):
        READ = "read", _("read")
        CREATE = "create", _("create")
        UPDATE = "update", _("update")
        DELETE = "delete", _("delete")
        EXPORT = "export", _("export")
        SIGN_IN = "sign_in", _("sign in")
        SIGN_OUT = "sign_out", _("sign out")
        DENIED = "denied", _("access denied")

    at = models.DateTimeField(_("when"), default=timezone.now, db_index=True)
    actor = models.ForeignKey(
        User, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    actor_label = models.CharField(_("who"), max_length=150)
    patient = models.ForeignKey(
        PatientProfile, on_delete=models.PROTECT, null=True, blank=True, related_name="audit_events"
    )
    action = models.CharField(_("action"), max_length=20, choices=Action.choices)
    target = models.CharField(_("what"), max_length=120)
    reason = models.CharField(_("why"), max_length=255, blank=True)
    ip_address = models.GenericIPAddressField(_("from"), null=True, blank=True)
    user_agent = models.CharField(_("client"), max_length=255, blank=True)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, unique=True)

    objects = AuditQuerySet.as_manager()

    class Meta:
        ordering = ["id"]
        verbose_name = _("audit event")
        verbose_name_plural = _("audit log")
        indexes = [models.Index(fields=["patient", "at"], name="audit_patient_at")]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M} {self.actor_label} {self.action} {self.target}"

    def save(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        if self.pk is not None:
            raise AuditLogIsAppendOnly("audit events cannot be changed")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        raise AuditLogIsAppendOnly("audit events cannot be deleted")

    def compute_hash(self) -> str:
        payload = json.dumps(
            [
                self.prev_hash,
                self.at.isoformat(),
                self.actor_id,
                self.actor_label,
                self.patient_id,
                self.action,
                self.target,
                self.reason,
                self.ip_address,
                self.user_agent,
            ],
            ensure_ascii=False,
            separators=(",", ":"),
        )
        return hashlib.sha256(payload.encode()).hexdigest()


# Vietnamese vowels and đ by their unaccented letter: "nguyen" finds "Nguyễn" in the
# database itself (a regex class per letter), on PostgreSQL and SQLite alike, with no
# extension and no stored search column on the user.
_ACCENTED = {
    "a": "aàáảãạăằắẳẵặâầấẩẫậ",
    "e": "eèéẻẽẹêềếểễệ",
    "i": "iìíỉĩị",
    "o": "oòóỏõọôồốổỗộơờớởỡợ",
    "u": "uùúủũụưừứửữự",
    "y": "yỳýỷỹỵ",
    "d": "dđ",
}


def name_search_pattern(word: str) -> str:
    """A case- and accent-insensitive regex for one word of a Vietnamese name."""
    return "".join(
        f"[{_ACCENTED[c]}{_ACCENTED[c].upper()}]" if c in _ACCENTED else re.escape(c)
        for c in search_key(word)
    )
