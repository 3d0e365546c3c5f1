"""The national facility directory over the API: search, filters, errors."""

import pytest

from telehealth.models import FacilityLevel
from tests.factories import ClinicianFactory, FacilityFactory, province

pytestmark = pytest.mark.django_db


@pytest.fixture
def signed_in(api_client, doctor):
    api_client.force_authenticate(doctor.user)
    return api_client


def test_anonymous_cannot_read_the_directory(api_client):
    response = api_client.get("/api/v1/facilities/")

    assert response.status_code in (401, 403)
    assert response.json()["code"] in ("not_authenticated", "authentication_failed")


def test_search_by_name_ignores_diacritics(signed_in):
    FacilityFactory(name="Bệnh viện Bạch Mai", level=FacilityLevel.CENTRAL)
    FacilityFactory(name="Bệnh viện Chợ Rẫy", level=FacilityLevel.CENTRAL, province=province("79"))

    response = signed_in.get("/api/v1/facilities/", {"q": "bach mai"})

    assert response.status_code == 200
    assert [f["name"] for f in response.json()["results"]] == ["Bệnh viện Bạch Mai"]


def test_filters_by_province_level_and_specialty(signed_in):
    FacilityFactory(code="HCM-1", province=province("79"), offers={"cardiology": 30})
    FacilityFactory(code="HCM-2", province=province("79"), offers={"pediatrics": 10})
    FacilityFactory(code="HN-1", province=province("01"), offers={"cardiology": 30})
    FacilityFactory(code="HCM-C", province=province("79"), level=FacilityLevel.COMMUNE)

    response = signed_in.get(
        "/api/v1/facilities/",
        {"province": "79", "level": FacilityLevel.PROVINCIAL, "specialty": "cardiology"},
    )

    assert response.status_code == 200
    assert [f["code"] for f in response.json()["results"]] == ["HCM-1"]


def test_list_is_paginated(signed_in):
    for _ in range(7):
        FacilityFactory()

    response = signed_in.get("/api/v1/facilities/", {"page_size": 3})

    body = response.json()
    assert body["count"] >= 7
    assert len(body["results"]) == 3
    assert body["next"]


def test_bad_filter_value_is_a_400_with_the_field_named(signed_in):
    response = signed_in.get("/api/v1/facilities/", {"level": "seven"})

    assert response.status_code == 400
    assert "level" in response.json()["fields"]


def test_facility_detail_shows_specialties_and_capacity(signed_in):
    FacilityFactory(code="BM", offers={"cardiology": 80, "oncology": 40})

    response = signed_in.get("/api/v1/facilities/BM/")

    assert response.status_code == 200
    offered = {s["code"]: s["daily_referral_capacity"] for s in response.json()["specialties"]}
    assert offered == {"cardiology": 80, "oncology": 40}


def test_unknown_facility_is_a_404_in_the_error_shape(signed_in):
    response = signed_in.get("/api/v1/facilities/NOPE/")

    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


def test_provinces_list_all_34_with_coordinates(signed_in):
    response = signed_in.get("/api/v1/provinces/")

    provinces = response.json()
    assert len(provinces) == 34
    assert all(p["latitude"] and p["longitude"] for p in provinces)


def test_a_legacy_province_code_resolves_to_the_province_it_merged_into(signed_in):
    # Hà Giang (02) merged into Tuyên Quang (08) on 1 July 2025.
    by_list = signed_in.get("/api/v1/provinces/", {"legacy_code": "02"}).json()
    by_detail = signed_in.get("/api/v1/provinces/02/").json()

    assert [p["code"] for p in by_list] == ["08"]
    assert by_detail["code"] == "08"
    assert "02" in by_detail["legacy_codes"]


def test_unknown_province_code_is_404(signed_in):
    assert signed_in.get("/api/v1/provinces/99/").status_code == 404


def test_communes_of_a_province(signed_in):
    response = signed_in.get("/api/v1/communes/", {"province": "01", "page_size": 200})

    body = response.json()
    assert body["count"] > 100
    assert {c["province"] for c in body["results"]} == {"01"}


def test_schema_and_docs_are_served(signed_in):
    schema = signed_in.get("/api/schema/")
    docs = signed_in.get("/api/docs/")

    assert schema.status_code == 200
    assert b"/api/v1/facilities/" in schema.content
    assert docs.status_code == 200


def test_directory_list_uses_a_constant_number_of_queries(signed_in, django_assert_max_num_queries):
    for _ in range(30):
        ClinicianFactory()

    with django_assert_max_num_queries(6):
        response = signed_in.get("/api/v1/facilities/", {"page_size": 30})

    assert len(response.json()["results"]) == 30


def test_the_openapi_schema_is_valid_and_complete(tmp_path):
    from django.core.management import call_command

    out = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))

    schema = out.read_text()
    for path in ("/api/v1/facilities/", "/api/v1/threads/{thread_id}/messages/", "/api/v1/me/"):
        assert path in schema
