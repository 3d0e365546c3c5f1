"""Sending Celery tasks for work a committed change asks for."""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction

from telehealth.errors import is_service_unavailable

logger = logging.getLogger(__name__)


def send_task_on_commit(task: Any, *args: Any, what: str) -> None:
    """``task.delay(*args)`` once the current transaction commits.

    With the broker down the committed change stands and the caller does not
    fail: the refused send is logged as "``what`` not sent" and the work is
    picked up later (each caller says by what: a sweeper, or nothing needed).
    Any other error is raised.
    """

    def after_commit() -> None:
        try:
            task.delay(*args)
        except Exception as error:
            if not is_service_unavailable(error):
                raise
            logger.warning("%s not sent: %s", what, error)

    transaction.on_commit(after_commit)
