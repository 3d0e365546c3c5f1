"""telehealth/selectors.py: the coordinator scope that scheduler/ and privacy/ both
decide with, so a coordinator reaches the same patients through either."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import AnonymousUser

from privacy import selectors as privacy_selectors
from privacy import services as privacy_services
from scheduler.events import may_watch_board_sync
from telehealth.models import ClinicianProfile, Commune
from telehealth.selectors import coordinator_scope
from tests.factories import (
    ClinicianFactory,
    CoordinatorFactory,
    FacilityFactory,
    PatientFactory,
    province,
)

pytestmark = pytest.mark.django_db


def test_a_coordinator_covers_their_facilities_and_whole_provinces():
    hanoi, hue = province("01"), province("46")
    facility = FacilityFactory(province=hue)
    by_province = CoordinatorFactory(province=hanoi)
    CoordinatorFactory(user=by_province.user, facility=facility, province=None)

    scope = coordinator_scope(user=by_province.user)

    assert scope.facility_ids == {facility.pk} and scope.province_ids == {hanoi.pk}
    assert scope.covers(facility) and scope.covers(FacilityFactory(province=hanoi))
    assert not scope.covers(FacilityFactory(province=hue)) and not scope.covers(None)
    assert scope.covers_ids(None, hanoi.pk) and not scope.covers_ids(None, hue.pk)
    inside, in_province = (
        ClinicianFactory(facility=facility),
        ClinicianFactory(facility=FacilityFactory(province=hanoi)),
    )
    outside = ClinicianFactory(facility=FacilityFactory(province=hue))
    covered = set(ClinicianProfile.objects.filter(scope.facilities_q("facility")))
    assert {inside, in_province} <= covered and outside not in covered


def test_a_deactivated_coordinator_covers_nothing_in_any_app():
    # given a province coordinator who may watch the province's board and has a
    # patient's data request on the worklist
    assignment = CoordinatorFactory()
    user = assignment.user
    board = f"board.province.{assignment.province.code}"
    patient = PatientFactory(home_commune=Commune.objects.filter(province=assignment.province)[0])
    privacy_services.data_request_create(
        patient=patient, kind="deletion", details="", by=patient.user
    )
    assert may_watch_board_sync(user, board)
    assert privacy_selectors.data_request_worklist(user=user)
    # when the account is deactivated
    user.is_active = False
    user.save(update_fields=["is_active"])
    # then neither app lets them coordinate anything
    assert coordinator_scope(user=user).empty
    assert not may_watch_board_sync(user, board)
    assert privacy_selectors.data_request_worklist(user=user) == []
    assert coordinator_scope(user=AnonymousUser()).empty
