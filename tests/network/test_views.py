"""The pages: "Mạng lưới của tôi" for clinicians, the coverage page for coordinators."""

from __future__ import annotations

import json
import re

import pytest
from django.test import Client

from telehealth.models import FacilityLevel
from tests.factories import CoordinatorFactory, PatientFactory, province, sign_in
from tests.network.conftest import clinician

pytestmark = [pytest.mark.django_db]


def _client(user) -> Client:  # type: ignore[no-untyped-def]
    client = Client()
    sign_in(client, user.username)
    return client


def test_anonymous_visitors_are_sent_to_sign_in():
    response = Client().get("/network/")

    assert response.status_code == 302 and response["Location"].startswith("/login/")


def test_my_network_page_is_vietnamese_and_starts_its_script():
    doctor = clinician(FacilityLevel.DISTRICT)

    page = _client(doctor.user).get("/network/").content.decode()

    assert "<title>Mạng lưới của tôi</title>" in page
    assert "Người hướng dẫn tôi" in page and "Gợi ý" in page
    assert "js/network.js" in page and 'type="module"' in page
    strings = json.loads(re.search(r'id="network-strings"[^>]*>(.*?)</script>', page, re.S)[1])
    assert strings["accept"] == "Chấp nhận"
    assert strings["levels"]["4"] == "trạm y tế xã"


def test_my_network_page_says_who_it_is_for():
    patient = PatientFactory()

    page = _client(patient.user).get("/network/").content.decode()

    assert "dành cho bác sĩ và nhân viên y tế xã" in page
    assert "js/network.js" not in page


def test_the_coverage_page_is_for_coordinators():
    coordinator = CoordinatorFactory(province=province("01")).user
    doctor = clinician(FacilityLevel.CENTRAL)

    page = _client(coordinator).get("/network/coverage/")
    refused = _client(doctor.user).get("/network/coverage/")

    assert page.status_code == 200
    text = page.content.decode()
    assert "Độ bao phủ kèm cặp" in text and "Phân công tự động" in text
    assert 'data-manage="01"' in text
    assert refused.status_code == 403
    # what the script says when sending a run's requests stopped for good
    found = re.search(r'<script id="network-strings"[^>]*>(.*?)</script>', text, re.S)
    strings = json.loads(found.group(1))
    assert strings["applyStopped"].startswith("Việc gửi yêu cầu kèm cặp đã dừng")


def test_the_page_turns_english_with_the_language_switch():
    doctor = clinician(FacilityLevel.DISTRICT)
    client = _client(doctor.user)

    client.post("/i18n/setlang/", {"language": "en", "next": "/network/"})
    page = client.get("/network/").content.decode()

    assert "<title>My network</title>" in page


def test_every_network_message_is_translated():
    from pathlib import Path

    import polib

    catalogue = polib.pofile(
        str(Path(__file__).resolve().parents[2] / "network/locale/vi/LC_MESSAGES/django.po")
    )

    assert catalogue.percent_translated() == 100
    assert not [e.msgid for e in catalogue if "fuzzy" in e.flags]
