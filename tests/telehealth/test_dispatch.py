"""``telehealth.dispatch.send_task_on_commit``: a task for committed work, broker or not."""

from __future__ import annotations

import logging

import pytest
from django.db import transaction
from kombu.exceptions import OperationalError as BrokerError

from telehealth.dispatch import send_task_on_commit

pytestmark = pytest.mark.django_db(transaction=True)


class Task:
    def __init__(self, error: Exception | None = None) -> None:
        self.sent: list[tuple] = []
        self.error = error

    def delay(self, *args) -> None:
        if self.error is not None:
            raise self.error
        self.sent.append(args)


def test_the_task_is_sent_only_once_the_change_commits() -> None:
    task = Task()
    with transaction.atomic():
        send_task_on_commit(task, 7, "x", what="task of thing 7")
        assert task.sent == [], "sent before the change was committed"
    assert task.sent == [(7, "x")]


def test_a_rolled_back_change_sends_nothing() -> None:
    task = Task()

    def failing_change() -> None:
        with transaction.atomic():
            send_task_on_commit(task, 7, what="task of thing 7")
            raise RuntimeError("the change failed")

    with pytest.raises(RuntimeError):
        failing_change()
    assert task.sent == []


def test_a_broker_that_is_down_is_logged_and_the_change_stands(caplog) -> None:
    task = Task(BrokerError("Error 111 connecting to 127.0.0.1:6379. Connection refused."))
    with caplog.at_level(logging.WARNING, logger="telehealth.dispatch"):
        with transaction.atomic():
            send_task_on_commit(task, 7, what="task of thing 7")
    assert "task of thing 7 not sent: Error 111" in caplog.text


def test_any_other_error_is_raised() -> None:
    task = Task(TypeError("a bug"))

    def change() -> None:
        with transaction.atomic():
            send_task_on_commit(task, 7, what="task of thing 7")

    with pytest.raises(TypeError):
        change()
