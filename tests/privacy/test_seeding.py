"""privacy/seeding.py: the demo network's patients have answered the privacy notice."""

from __future__ import annotations

import pytest

from privacy.models import ConsentRecord, Purpose
from privacy.seeding import privacy_demo_seed
from privacy.selectors import consent_allows
from tests.factories import PatientFactory

pytestmark = pytest.mark.django_db


def test_every_seeded_patient_agrees_to_the_current_notice_once():
    never = [PatientFactory(consent=False) for _ in range(3)]
    answered = PatientFactory(consent=[Purpose.CARE])

    assert privacy_demo_seed() == 3
    assert privacy_demo_seed() == 0

    assert all(consent_allows(patient=p, purpose=Purpose.RECORDING) for p in never)
    assert not consent_allows(patient=answered, purpose=Purpose.RECORDING)  # left alone
    assert ConsentRecord.objects.filter(patient__in=never, method="imported").count() == 3
