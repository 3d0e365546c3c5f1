"""The demo network's patients agreed to the current privacy notice.

Patients need an answer on record before their data is used for anything that
needs consent (``privacy.selectors``); the seeded ones are recorded as having
agreed to every purpose, as if brought over from a register where they signed
(method ``imported``). Idempotent: patients who already answered are left alone.
"""

from __future__ import annotations

from privacy.models import ConsentRecord
from privacy.services import consent_import
from telehealth.models import PatientProfile

BATCH = 20_000


def privacy_demo_seed() -> int:
    """Record consent for every patient without a decision. Returns how many."""
    recorded = 0
    while True:
        ids = list(
            PatientProfile.objects.exclude(
                pk__in=ConsentRecord.objects.values("patient_id")
            ).values_list("pk", flat=True)[:BATCH]
        )
        if not ids:
            return recorded
        recorded += consent_import(patient_ids=ids, note="demo seed")
