"""privacy/selectors.py: may this patient's data be used for this purpose now, and which
coordinators cover which patients."""

from __future__ import annotations

import pytest
from django.utils import timezone

from privacy import selectors, services
from privacy.models import ConsentRecord, ProcessingRestriction, Purpose
from telehealth.models import CareRelationship
from tests.factories import (
    ClinicianFactory,
    CoordinatorFactory,
    FacilityFactory,
    PatientFactory,
    province,
)

pytestmark = pytest.mark.django_db


def test_a_patient_who_never_answered_the_notice_has_consented_to_nothing():
    patient = PatientFactory(consent=False)

    for purpose in Purpose.values:
        status = selectors.consent_status(patient=patient, purpose=purpose)
        assert (status.allowed, status.state) == (False, "never")


def test_the_factories_patients_agreed_to_every_purpose_of_the_current_notice(patient):
    record = selectors.consent_current(patient=patient)

    assert record.method == ConsentRecord.Method.IMPORTED
    assert all(selectors.consent_allows(patient=patient, purpose=p) for p in Purpose.values)


def test_only_the_purposes_of_the_latest_decision_are_allowed():
    patient = PatientFactory(consent=[Purpose.CARE, Purpose.RECORDING])
    services.consent_withdraw(
        patient=patient, purpose=Purpose.RECORDING, method="web", by=patient.user
    )

    assert selectors.consent_allows(patient=patient, purpose=Purpose.CARE)
    assert not selectors.consent_allows(patient=patient, purpose=Purpose.RECORDING)
    assert not selectors.consent_allows(patient=patient, purpose=Purpose.CASE_DISCUSSION)
    assert selectors.consent_status(patient=patient, purpose=Purpose.RECORDING).state == (
        "not_given"
    )


def test_a_restriction_holds_back_every_purpose_but_care(patient):
    ProcessingRestriction.objects.create(patient=patient, reason="request")

    assert selectors.consent_allows(patient=patient, purpose=Purpose.CARE)
    for purpose in (Purpose.RECORDING, Purpose.REFERRAL_SHARING, Purpose.CASE_DISCUSSION):
        status = selectors.consent_status(patient=patient, purpose=purpose)
        assert (status.allowed, status.state) == (False, "restricted")


def test_a_restriction_that_ended_holds_back_nothing(patient):
    ProcessingRestriction.objects.create(patient=patient, reason="request", ends_at=timezone.now())

    assert selectors.consent_allows(patient=patient, purpose=Purpose.RECORDING)


def test_the_check_costs_one_query(patient, django_assert_num_queries):
    with django_assert_num_queries(1):
        selectors.consent_allows(patient=patient, purpose=Purpose.REFERRAL_SHARING)
    with django_assert_num_queries(1):
        selectors.consent_allows(patient=patient.pk, purpose=Purpose.RECORDING)


def test_the_error_after_a_withdrawal_says_what_and_when(patient):
    services.consent_withdraw(
        patient=patient, purpose=Purpose.RECORDING, method="web", by=patient.user
    )

    with pytest.raises(selectors.ConsentRequired) as refused:
        selectors.consent_check(patient=patient, purpose=Purpose.RECORDING)

    assert refused.value.status == 409
    assert refused.value.code == "consent_withdrawn"
    assert "withdrew" in refused.value.message or "rút" in refused.value.message
    assert timezone.localtime().strftime("%d/%m/%Y") in refused.value.message


def test_a_coordinator_covers_patients_at_home_in_their_province_or_cared_for_in_their_scope():
    hanoi_patient = PatientFactory()  # lives in the first commune: Hà Nội
    home = hanoi_patient.home_commune.province
    elsewhere = province("79") if home.code != "79" else province("46")
    hanoi = CoordinatorFactory(province=home).user
    other_province = CoordinatorFactory(province=elsewhere).user
    hospital = FacilityFactory(province=elsewhere)
    hospital_coordinator = CoordinatorFactory(facility=hospital, province=None).user

    assert selectors.coordinator_covers(user=hanoi, patient=hanoi_patient)
    assert not selectors.coordinator_covers(user=other_province, patient=hanoi_patient)
    assert not selectors.coordinator_covers(user=hospital_coordinator, patient=hanoi_patient)

    # once a doctor of that hospital cared for the patient (even in the past)
    CareRelationship.objects.create(
        patient=hanoi_patient,
        member=ClinicianFactory(facility=hospital).user,
        kind="referral",
        ends_at=timezone.now(),
    )

    assert selectors.coordinator_covers(user=hospital_coordinator, patient=hanoi_patient)
    assert selectors.coordinator_covers(user=other_province, patient=hanoi_patient)
