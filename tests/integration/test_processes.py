"""The real processes `make run` starts: daphne serves the site, a Celery worker runs tasks.

They run as subprocesses against the test database, as they would in production.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.sessions.models import Session
from django.db import connection
from django.utils import timezone

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    db = connection.settings_dict
    if connection.vendor == "postgresql":
        env["DATABASE_URL"] = (
            f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
        )
    else:
        env["DATABASE_URL"] = f"sqlite:///{db['NAME']}"
    env["TELEHEALTH_DATA_DIR"] = str(settings.DATA_DIR)
    return env


def _stop(process: subprocess.Popen) -> str:
    process.terminate()
    try:
        out, _ = process.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        out, _ = process.communicate()
    return out or ""


def _wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_daphne_serves_the_api_and_the_sign_in_page():
    port = _free_port()
    web = subprocess.Popen(
        [str(BIN / "daphne"), "-b", "127.0.0.1", "-p", str(port), "telehealth.asgi:application"],
        cwd=ROOT,
        env=_child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:

        def up() -> bool:
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{port}/api/v1/health/", timeout=2
                ) as r:
                    return r.status == 200
            except OSError:
                return False

        _wait_for(up, 30, "daphne to answer")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/login/", timeout=5) as response:
            page = response.read().decode()
        with urllib.request.urlopen(
            f"http://127.0.0.1:{port}/static/css/app.css", timeout=5
        ) as css:
            assert css.status == 200
    finally:
        log = _stop(web)
    assert "Đăng nhập" in page, log


def test_a_celery_worker_process_runs_a_task_sent_through_the_broker():
    from telehealth.tasks import sessions_clear_expired

    Session.objects.create(
        session_key="expired-session-key",
        session_data="",
        expire_date=timezone.now() - timedelta(days=1),
    )
    worker = subprocess.Popen(
        [str(BIN / "celery"), "-A", "telehealth", "worker", "--pool", "solo", "--loglevel", "INFO"],
        cwd=ROOT,
        env=_child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        sessions_clear_expired.delay()
        _wait_for(
            lambda: not Session.objects.filter(session_key="expired-session-key").exists(),
            60,
            "the worker to clear the expired session",
        )
    finally:
        log = _stop(worker)
    assert "sessions_clear_expired" in log
