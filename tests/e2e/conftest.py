"""Browser tests: real processes (daphne, a relay node) and Debian's Chromium driven by
Playwright, with a fake camera and microphone. Screenshots go to tests/e2e/screenshots/.

Chromium comes from Debian (`apt-get install chromium`), never from Playwright's own
download. Without it these tests skip locally; `.ci/run` installs it, so CI runs them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.test_processes import BIN, ROOT, _child_env, _free_port, _stop, _wait_for

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SCREENSHOTS = Path(__file__).parent / "screenshots"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1366, "height": 900}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if Path(CHROMIUM).exists() or os.environ.get("TELEHEALTH_TEST_REQUIRE_SERVICES") == "1":
        return
    for item in items:
        if "e2e" in item.keywords:
            item.add_marker(pytest.mark.skip(reason="Chromium is not installed"))


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


class Servers:
    def __init__(self, web_port: int, relay_port: int | None) -> None:
        self.web = f"http://127.0.0.1:{web_port}"
        self.relay = f"http://127.0.0.1:{relay_port}" if relay_port else None


@pytest.fixture
def servers(transactional_db) -> Iterator[Servers]:
    """daphne and one relay node, both on the test database's settings."""
    web_port, relay_port = _free_port(), _free_port()
    env = _child_env()
    env["RELAY_URL"] = f"http://127.0.0.1:{relay_port}"
    # Recording files go from the node back to this daphne, not to the default port.
    env["RELAY_RECORDING_UPLOAD_BASE"] = f"http://127.0.0.1:{web_port}"
    processes = []
    relay_main = ROOT / "relay" / "__main__.py"
    if relay_main.exists():
        processes.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "relay",
                    "--dev",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(relay_port),
                    "--node-id",
                    "relay-e2e",
                    "--public-url",
                    f"http://127.0.0.1:{relay_port}",
                    "--ice-host",
                    "127.0.0.1",
                ],
                cwd=ROOT,
                env={**env, "RELAY_CORS_ORIGINS": f"http://127.0.0.1:{web_port}"},
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    processes.append(
        subprocess.Popen(
            [
                str(BIN / "daphne"),
                "-b",
                "127.0.0.1",
                "-p",
                str(web_port),
                "telehealth.asgi:application",
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
    )
    try:
        _wait_for(lambda: _listening(web_port), 30, "daphne")
        if relay_main.exists():
            _wait_for(lambda: _listening(relay_port), 30, "the relay node")
        yield Servers(web_port, relay_port if relay_main.exists() else None)
    finally:
        for process in processes:
            log = _stop(process)
            if os.environ.get("E2E_SHOW_LOGS"):
                print(log)


@pytest.fixture
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--use-fake-ui-for-media-stream",
                "--use-fake-device-for-media-stream",
                "--autoplay-policy=no-user-gesture-required",
            ],
        )
        violations = _watch_content_security_policy(browser)
        yield browser
        browser.close()
    # Every browser test also proves its pages run under the Content-Security-Policy:
    # Chromium reports each blocked script, style, connection or frame on the console.
    assert not violations, "Content-Security-Policy violations:\n" + "\n".join(violations)


def _watch_content_security_policy(browser) -> list[str]:
    """Note every CSP violation reported on the console of any page the test opens."""
    violations: list[str] = []

    def note(message) -> None:
        if "Content Security Policy" in message.text:
            violations.append(f"{message.location.get('url', '?')}: {message.text}")

    new_context, new_page = browser.new_context, browser.new_page

    def watched_context(*args, **kwargs):
        context = new_context(*args, **kwargs)
        context.on("console", note)
        return context

    def watched_page(*args, **kwargs):
        page = new_page(*args, **kwargs)
        page.on("console", note)
        return page

    browser.new_context, browser.new_page = watched_context, watched_page
    return violations


def signed_in_page(browser, servers: Servers, username: str, password: str, *, viewport=DESKTOP):
    context = browser.new_context(viewport=viewport, locale="vi-VN")
    context.grant_permissions(["camera", "microphone"], origin=servers.web)
    page = context.new_page()
    page.goto(f"{servers.web}/login/")
    page.get_by_label("Tên đăng nhập").fill(username)
    page.get_by_label("Mật khẩu").fill(password)
    page.get_by_role("button", name="Đăng nhập").click()
    page.wait_for_url(f"{servers.web}/")
    return page


def screenshot(page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


@pytest.fixture(autouse=True)
def _orm_beside_playwright(monkeypatch):
    """Playwright's sync API keeps an event loop running in this thread; the test's own
    ORM calls are still plain synchronous code, so let Django allow them here only."""
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
