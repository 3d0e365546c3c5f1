"""Under real concurrency (PostgreSQL, two connections): two decisions about one patient at
once are taken one after the other, so neither withdrawal is lost."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection

from privacy import selectors, services
from privacy.models import Purpose
from tests.factories import PatientFactory

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def test_two_withdrawals_at_once_both_stick(monkeypatch):
    patient = PatientFactory()
    read_current = selectors.consent_current

    def slow_current(**kwargs):  # widen the window between reading and writing
        found = read_current(**kwargs)
        time.sleep(0.3)
        return found

    monkeypatch.setattr(selectors, "consent_current", slow_current)
    barrier = threading.Barrier(2)
    errors: list[Exception] = []

    def withdraw(purpose: str) -> None:
        try:
            barrier.wait()
            services.consent_withdraw(
                patient=patient, purpose=purpose, method="web", by=patient.user
            )
        except Exception as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [
        threading.Thread(target=withdraw, args=(p,))
        for p in (Purpose.RECORDING, Purpose.CASE_DISCUSSION)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert not errors, errors
    current = read_current(patient=patient)
    assert Purpose.RECORDING not in current.purposes
    assert Purpose.CASE_DISCUSSION not in current.purposes
    assert sorted(p for r in selectors.consent_history(patient=patient) for p in r.withdrawn) == [
        Purpose.CASE_DISCUSSION,
        Purpose.RECORDING,
    ]
